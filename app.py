"""The web app's UI: Gradio Blocks over the engine, one function per tab.

    .venv/bin/python app.py [--config FILE]      # or: .venv/bin/asr serve

Thin by design: every tab calls the engine (asr.service.engine.Engine) and shows what it returns.
The server (asr.service.server) takes ``build_ui`` as its UI factory and serves it with the API;
nothing in the package imports this module.
"""


import html
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from asr.atomic import write_atomic
from asr.config import Settings
from asr.core.options import build_options, hotwords_available, speakers_available
from asr.core.writers import VAD_WRITERS, WRITERS, format_timestamp, render, render_zip
from asr.errors import AsrError, EngineBusyError, LoginRequiredError, storage_error
from asr.service.edits import SentenceEdit
from asr.service.engine import Engine
from asr.service.error_text import localize
from asr.service.jobs import JobKind, JobRecord, JobState
from asr.service.language import Language, headers_language
from asr.service.media import VIDEO_TYPES, keep_video, media_root, playback_path, video_path, write_playback
from asr.service.stages import kind_name, stage_name
from asr.service.ui_text import UI_TEXT, ui_text
from asr.types import Transcript, VadResult

logger = logging.getLogger("asr.app")

AUDIO_TYPES = [".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus", ".webm", ".mp4", ".mkv", ".mov", ".amr", ".wma"]
UI_FORMATS = ["srt", "vtt", "txt", "json"]
POLL_S = 0.5
SYSTEM_REFRESH_S = 5.0


# ---- helpers shared by the tabs -------------------------------------------------------------


def _gradio():
    import gradio as gr

    return gr


def user_error(message: str) -> Exception:
    """The message shown to the user; it is their input's fault, so no stack goes to the log."""
    # duration=None: it stays until closed (Gradio's default hides it after 10 s, leaving a bare "Error")
    return _gradio().Error(message, duration=None, print_exception=False)


def static_text(key: str) -> Any:
    """A label, button or placeholder that Gradio's client shows in the page's language (asr.service.ui_text)."""
    from gradio.i18n import I18nData

    if key not in UI_TEXT:
        raise KeyError(key)  # here, at build time, not as a raw key in someone's browser
    return I18nData(key)


def language_of(request: Any) -> Language:
    """The language this request's page is in: the switch's cookie, else the browser's (asr.service.language)."""
    headers = getattr(request, "headers", None)
    if headers is None:
        headers = getattr(getattr(request, "request", None), "headers", None) or {}
    return headers_language({str(k).lower(): v for k, v in dict(headers).items()})


def error_message(error: BaseException, language: Language) -> str:
    """What the user reads for ``error``: an AsrError's message in ``language``; anything else is logged and
    kept vague."""
    if isinstance(error, AsrError):
        return localize(str(error), error.code, language)
    logger.exception("unexpected error in the UI", exc_info=error)
    return ui_text("error.internal", language)


def friendly(error: BaseException, language: Language = "en") -> Exception:
    """error_message as the gr.Error a handler raises."""
    return user_error(error_message(error, language))


def job_error(record: JobRecord, language: Language) -> str:
    """A failed job's stored message (English, as the API gives it) in ``language``."""
    return localize(record.error, record.error_code, language) if record.error else state_text(record.state, language)


def state_text(state: JobState, language: Language) -> str:
    return ui_text(f"state.{state.value}", language)


def write_result_files(record: JobRecord, formats: list[str], settings: Settings, registry: Any) -> list[str]:
    """The job's result as download files; raises StorageFullError / StorageUnavailableError
    (nothing partial is left) when they cannot be written. The job itself is done and saved."""
    directory = registry.results_dir / record.id
    stem = Path(record.filename).stem or "audio"
    paths = []
    try:
        for fmt in formats:
            rendered = render(record.current, fmt, settings.output, stem)  # as edited, if it was
            path = directory / rendered.filename
            write_atomic(path, rendered.body)
            registry.add_result(path)
            paths.append(str(path))
    except OSError as e:
        shutil.rmtree(directory, ignore_errors=True)
        raise storage_error(e, "the download files could not be written (the transcript is saved in History)",
                            directory) from e
    return paths


def result_files_or_note(record: JobRecord, formats: list[str], settings: Settings, registry: Any,
                         language: Language = "en") -> tuple[list[str], str]:
    """The download files, or none and the reason, so that a finished transcript is still shown."""
    try:
        return write_result_files(record, formats, settings, registry), ""
    except AsrError as e:
        logger.error("job %s: %s", record.id, e)
        return [], f"⚠️ {error_message(e, language)}"


def sentences_text(transcript: Transcript, language: Language = "en") -> str:
    def speaker(s) -> str:
        name = transcript.speaker_name(s)
        return f"{name}: " if name else ""

    lines = [
        f"[{format_timestamp(s.start_ms, '.')} → {format_timestamp(s.end_ms, '.')}] {speaker(s)}{clean_text(s.text)}"
        for s in transcript.sentences
    ]
    return "\n".join(lines) if lines else ui_text("card.no_speech", language)


#: Speaker colours, distinct on light and dark backgrounds (Okabe-Ito, colour-blind safe).
SPEAKER_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#999999")


STATIC = Path(__file__).resolve().parent / "static"

@dataclass(frozen=True)
class FileRow:
    """One file of a batch in the workspace: its job once submitted, or why it never was."""

    name: str
    job: JobRecord | None = None
    refused: str = ""


def clean_text(text: str) -> str:
    """What a reader sees: FunASR's ``<unk>`` (which the sentences and subtitles already drop) removed, with
    no space left where it was between Chinese characters."""
    if "<unk>" not in text:
        return text
    return re.sub(" {2,}", " ", text.replace("<unk>", "")).strip()


def transcript_text(transcript: Transcript) -> str:
    return "".join(clean_text(s.text) for s in transcript.sentences) or clean_text(transcript.text)


def clock(ms: int) -> str:
    """A sentence's start as a player shows it: 1:02.5, or 1:02:03.5 past the hour."""
    tenths = ms // 100
    hours, rest = divmod(tenths, 36000)
    minutes, rest = divmod(rest, 600)
    seconds = f"{rest // 10:02d}.{rest % 10}"
    return f"{hours}:{minutes:02d}:{seconds}" if hours else f"{minutes}:{seconds}"


def _progress_line(record: JobRecord, language: Language) -> str:
    if record.state is JobState.QUEUED and record.queue_position:
        return ui_text("card.waiting", language, position=record.queue_position)
    stage = stage_name(record.stage or "starting", language)
    line = f"{stage} · {record.progress:.0%}"
    eta = record.eta_s
    if eta is not None:
        line += " · " + ui_text("card.eta", language, seconds=max(1, round(eta)))
    return line


def _sentence_html(index: int, sentence, transcript: Transcript, language: Language, edited: bool = False) -> str:
    speaker = ""
    if transcript.speakers:
        options = "".join(
            f'<option value="{k}"{" selected" if k == sentence.speaker else ""}>{html.escape(name)}</option>'
            for k, name in enumerate(transcript.speakers)
        )
        colour = SPEAKER_COLOURS[(sentence.speaker or 0) % len(SPEAKER_COLOURS)]
        speaker = (f'<select class="ws-who" aria-label="{ui_text("card.speaker", language)}" '
                   f'style="color:{colour}">{options}</select>')
    else:
        speaker = '<span class="ws-who"></span>'  # keeps the grid's columns
    return (
        f'<li class="ws-sentence{" ws-edited" if edited else ""}" data-index="{index}" '
        f'data-start="{sentence.start_ms}" data-end="{sentence.end_ms}"'
        f' data-speaker="{sentence.speaker if sentence.speaker is not None else ""}">'
        f'<span class="ws-time">{clock(sentence.start_ms)}</span>{speaker}'
        f'<span class="ws-text">{html.escape(clean_text(sentence.text))}</span>'
        f'<button class="ws-edit" title="{ui_text("card.edit", language)}" '
        f'aria-label="{ui_text("card.edit_sentence", language, number=index + 1)}">✎</button></li>'
    )


def player_html(record: JobRecord, playback: Path) -> str:
    """The job's player: its video (kept as uploaded) with the FLAC after it, which a browser that cannot play the
    video's codec falls back to; or the FLAC alone. Both count time as the transcript's timestamps do."""
    video = video_path(playback.parent)
    if video is None:
        return f'<audio controls preload="metadata" src="ui/media/{record.id}"></audio>'
    return (f'<video controls preload="metadata" playsinline>'
            f'<source src="ui/media/{record.id}/video" type="{VIDEO_TYPES[video.suffix]}">'
            f'<source src="ui/media/{record.id}" type="audio/flac"></video>')


def _transcript_html(record: JobRecord, transcript: Transcript, playback: Path | None, language: Language) -> str:
    parts = []
    if playback is not None:
        parts.append(player_html(record, playback))
    if transcript.speakers:
        chips = "".join(
            f'<span class="ws-chip" style="color:{SPEAKER_COLOURS[k % len(SPEAKER_COLOURS)]}">'
            f'<span class="ws-name-of" data-speaker="{k}">{html.escape(name)}</span>'
            f'<button class="ws-rename" title="{ui_text("card.rename", language)}" '
            f'aria-label="{html.escape(ui_text("card.rename_speaker", language, name=name))}">✎</button></span>'
            for k, name in enumerate(transcript.speakers)
        )
        parts.append(f'<div class="ws-speakers">{chips}</div>')
    original = record.result.sentences if isinstance(record.result, Transcript) else ()

    def edited(index: int, sentence) -> bool:  # as it shows while being edited, when the job is reopened
        return index < len(original) and (original[index].text, original[index].speaker) != (sentence.text,
                                                                                          sentence.speaker)

    rows = "".join(_sentence_html(i, s, transcript, language, edited(i, s)) for i, s in enumerate(transcript.sentences))
    parts.append(f'<ol class="ws-sentences">{rows}</ol>' if rows else f"<p>{ui_text('card.no_speech', language)}</p>")
    return "".join(parts)


TIMELINE_BARS = 400


def waveform_peaks(path: Path, bars: int = TIMELINE_BARS) -> list[float]:
    """The loudest sample of each of ``bars`` equal stretches of a playback file, read a block at a time."""
    import soundfile as sf

    with sf.SoundFile(path) as audio:
        per_bar = max(1, -(-audio.frames // bars))
        peaks = [float(abs(block).max()) if len(block) else 0.0
                 for block in audio.blocks(blocksize=per_bar, dtype="float32")]
    top = max(peaks, default=0.0) or 1.0
    return [p / top for p in peaks]


def timeline_svg(result: VadResult, peaks: list[float], language: Language = "en") -> str:
    """The waveform with the speech segments over it, as one SVG: a segment is a rectangle to click."""
    width, height = 1000, 120
    total_ms = max(1.0, result.duration_s * 1000)
    step = width / max(1, len(peaks))
    wave = "".join(
        f'<rect x="{i * step:.1f}" y="{height / 2 - p * height * 0.45:.1f}" width="{max(step * 0.8, 0.5):.1f}" '
        f'height="{max(p * height * 0.9, 0.5):.1f}" class="ws-wave"/>'
        for i, p in enumerate(peaks)
    )
    segments = "".join(
        f'<rect class="ws-seg" data-start="{seg.start_ms}" data-end="{seg.end_ms}" x="{seg.start_ms / total_ms * width:.1f}" '
        f'y="0" width="{max(seg.duration_ms / total_ms * width, 1):.1f}" height="{height}">'
        f'<title>{_segment_words(i, seg, language)}</title></rect>'
        for i, seg in enumerate(result.segments)
    )
    return (f'<svg class="ws-timeline" viewBox="0 0 {width} {height}" preserveAspectRatio="none" role="img" '
            f'aria-label="{ui_text("card.timeline", language)}">{wave}{segments}</svg>')


def _segment_words(index: int, segment, language: Language) -> str:
    return ui_text("card.segment", language, number=index + 1, start=clock(segment.start_ms), end=clock(segment.end_ms))


def _segments_html(record: JobRecord, result: VadResult, playback: Path | None, language: Language) -> str:
    """Speech segments as the workspace's rows, under the waveform with the segments on it: click one to hear it."""
    audio = ""
    if playback is not None:
        audio = f'<audio controls preload="metadata" src="ui/media/{record.id}"></audio>'
        try:
            audio = timeline_svg(result, waveform_peaks(playback), language) + audio
        except (OSError, RuntimeError) as e:
            logger.warning("job %s: no waveform (%s)", record.id, e)
    rows = "".join(
        f'<li class="ws-sentence" data-index="{i}" data-start="{seg.start_ms}" data-end="{seg.end_ms}">'
        f'<span class="ws-time">{clock(seg.start_ms)}</span><span class="ws-who"></span>'
        f'<span class="ws-text">{_segment_words(i, seg, language)} '
        f'({ui_text("card.segment_seconds", language, seconds=seg.duration_ms / 1000)})</span><span></span></li>'
        for i, seg in enumerate(result.segments)
    )
    return audio + (f'<ol class="ws-sentences">{rows}</ol>' if rows else f"<p>{ui_text('card.no_speech', language)}</p>")


def workspace_html(rows: list[FileRow], media: Path | None = None, language: Language = "en") -> str:
    """Every file of a batch as a card of its own: its progress while it runs; then its player and sentences,
    or its error, which stays next to it. Rendered here (escaped) and made live by static/workspace.js."""
    def playback(record: JobRecord) -> Path | None:
        path = playback_path(media / record.id) if media is not None else None
        return path if path is not None and path.is_file() else None

    cards = []
    for row in rows:
        record = row.job
        if record is None:
            state, status = "refused", ui_text("card.refused", language)
            body = f'<p class="ws-error" role="alert">{html.escape(row.refused)}</p>'
            kind, job_id, active = "", "", False
        else:
            state, job_id, active = record.state.value, record.id, not record.state.finished
            kind = kind_name(record.kind.value, language)
            if active:
                status = state_text(record.state, language)
                width = 0 if record.state is JobState.QUEUED else round(100 * record.progress)
                body = (f'<div class="ws-progress" role="progressbar" aria-valuenow="{width}" aria-valuemin="0" '
                        f'aria-valuemax="100"><div class="ws-bar" style="width:{width}%"></div>'
                        f'<span>{html.escape(_progress_line(record, language))}</span></div>'
                        f'<div class="ws-tools"><button class="ws-cancel">{ui_text("card.cancel", language)}</button></div>')
            elif record.state is JobState.COMPLETED and isinstance(record.result, Transcript):
                # the RTF is in the timings line
                status = ui_text("card.done_transcript", language, duration=record.result.duration_s)
                body = _transcript_html(record, record.current, playback(record), language)
            elif record.state is JobState.COMPLETED and isinstance(record.result, VadResult):
                status = ui_text("card.done_vad", language, count=len(record.result.segments),
                                 duration=record.result.duration_s)
                body = _segments_html(record, record.result, playback(record), language)
            else:
                status = state_text(record.state, language)
                body = f'<p class="ws-error" role="alert">{html.escape(job_error(record, language))}</p>'
        cards.append(
            f'<section class="ws-job" data-job="{job_id}" data-kind="{record.kind.value if record else ""}" '
            f'data-state="{state}" data-active="{str(active).lower()}">'
            f'<header><span class="ws-file">{html.escape(row.name)}</span><span class="ws-kind">{kind}</span>'
            f'<span class="ws-status">{html.escape(status)}</span></header>{body}</section>'
        )
    if sum(1 for r in rows if r.job is not None and not r.job.state.finished) > 1:
        cards.insert(0, f'<div class="ws-tools"><button class="ws-cancel-all">{ui_text("card.cancel_all", language)}'
                        '</button></div>')
    return "".join(cards)


def timings_markdown(record: JobRecord, language: Language = "en") -> str:
    t = record.timings
    if t is None or record.result is None:
        return ""
    stages = [("decode", t.decode_s), ("vad", t.vad_s), ("asr", t.asr_s), ("punc", t.punc_s)]
    stages += [(key, seconds) for key, seconds in (("spk", t.speakers_s), ("itn", t.itn_s)) if seconds]
    return (ui_text("timings.head", language, file=record.filename, audio=record.result.duration_s, wall=t.total_s,
                    rtf=record.rtf) + "  \n"
            + " · ".join(ui_text(f"timings.{key}", language, seconds=seconds) for key, seconds in stages))


HISTORY_COLUMNS = ("time", "file", "type", "duration", "state", "rtf", "id")


def history_headers(language: Language = "en") -> list[str]:
    return [ui_text(f"history.col.{column}", language) for column in HISTORY_COLUMNS]


def history_rows(engine: Engine, owner: str | None, query: str = "", language: Language = "en") -> list[list[Any]]:
    rows = []
    for r in engine.jobs(limit=200, owner=owner, **({"query": query} if query else {})):
        failed = r.error and r.state is not JobState.COMPLETED
        rows.append([
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created_at)),
            r.filename,
            kind_name(r.kind.value, language),
            f"{r.duration_s:.1f}" if r.duration_s else "",
            state_text(r.state, language) + (f" ({job_error(r, language)})" if failed else ""),
            f"{r.rtf:.4f}" if r.rtf is not None else "",
            r.id,
        ])
    return rows


def history_table_value(engine: Engine, owner: str | None, query: str = "", language: Language = "en") -> dict:
    """The History's table with its headers in ``language`` (Gradio's client translates no table headers)."""
    return {"headers": history_headers(language), "data": history_rows(engine, owner, query, language)}


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n:.1f} TB"


def _duration(seconds: float, language: Language = "en") -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    days, h = divmod(hours, 24)
    return ui_text("system.duration", language, days=ui_text("system.days", language, n=days) if days else "",
                   hours=ui_text("system.hours", language, n=h) if days or h else "", minutes=m, seconds=s)


def system_markdown(engine: Engine, language: Language = "en") -> str:
    status = engine.status()
    cpu, memory, gpu, disk = (status.get(k) or {} for k in ("cpu", "memory", "gpu", "disk"))

    def say(key: str, **params: Any) -> str:
        return ui_text(key, language, **params)

    def fact(key: str, value: str) -> str:
        return f"- **{say(key)}**: {value}"

    loading = say("system.loading")
    workers = ", ".join(
        f"#{w['index']} " + (say(f"system.worker.{w['state']}") if f"system.worker.{w['state']}" in UI_TEXT
                             else w["state"])
        + (f" ({say('system.worker_job', job=w['job'][:8])})" if w["job"] else "")
        for w in status["workers"])
    lines = [
        f"- **{say('system.ready')}**: {say('system.yes') if status['ready'] else say('system.no')} · "
        f"**{say('system.version')}** {status.get('version', '?')} · "
        f"**{say('system.up')}** {_duration(status.get('uptime_s', 0), language)}",
        fact("system.device", str(status.get("device", loading))),
        fact("system.precision", str(status.get("precision", loading))),
        fact("system.logins", say("system.logins_on") if status.get("logins_on") else say("system.logins_off")),
        fact("system.jobs", say("system.jobs_done", done=status.get("jobs_completed", "?"),
                                failed=status.get("jobs_failed", "?"))),
        fact("system.queue", say("system.queue_waiting", waiting=status["queue_waiting"], max=status["queue_max_size"])),
        fact("system.workers", workers),
    ]
    if cpu:
        load = " / ".join(f"{x:.2f}" for x in cpu.get("load") or [])
        lines.append(fact("system.cpu", say("system.cpu_facts", cores=cpu.get("usable", cpu.get("count")), load=load,
                                            percent=cpu.get("process_percent", 0))))
    if memory:
        lines.append(fact("system.memory", say("system.memory_facts", free=_size(memory.get("available_bytes")),
                                               total=_size(memory.get("total_bytes")),
                                               rss=_size(memory.get("process_rss_bytes")))))
    if gpu:
        lines.append(fact("system.gpu", say("system.gpu_facts", used=_size(gpu.get("used_bytes")),
                                            total=_size(gpu.get("total_bytes")))))
    for name, facts in disk.items():
        lines.append(f"- **{say('system.disk', name=name.replace('_', ' '))}**: "
                     + say("system.disk_facts", free=_size(facts.get("free_bytes")), total=_size(facts.get("total_bytes"))))
    lines.append(fact("system.model_load", say("system.model_load_facts", load=status["load_seconds"],
                                               warmup=status["warmup_seconds"])))
    for role, model in status.get("models", {}).items():
        flag = f" — **{say('system.random')}**" if model["random_weights"] else ""
        lines.append(f"- **{role}**: `{model['id']}` @ `{model['revision']}` ({model['class']}, "
                     f"{say('system.params', millions=model['parameters_m'])}){flag}  \n  `{model['path']}`")
    return "\n".join(lines)


# ---- the UI -----------------------------------------------------------------------------------


def upload_box(**kwargs: Any):
    """A gr.File for uploads, less one leak: Gradio 6.31's preprocess opens an empty temp file per
    uploaded file (``NamedTemporaryFile(delete=False)``), never uses it and never removes it, so
    every UI upload left a 0-byte file in the cache. Patched on the instance: a subclass would make
    Gradio write a type-stub file next to this module, at run time, wherever it is installed."""
    gr = _gradio()
    from gradio.utils import NamedString
    from gradio_client import utils as client_utils

    box = gr.File(**kwargs)

    def process_single_file(f):
        if box.file_types and not client_utils.is_valid_file(f.path, box.file_types):
            from gradio.context import LocalContext  # the event's request: a preprocess is given none

            language = language_of(LocalContext.request.get(None))
            raise user_error(ui_text("error.file_type", language, types=", ".join(box.file_types)))
        path = NamedString(f.path)
        # The user's own name for the file, which the stored name may lack characters of:
        # messages and the history then name it as the API and the CLI do.
        path.orig_name = f.orig_name or Path(f.path).name
        return path

    box._process_single_file = process_single_file
    return box


@dataclass(frozen=True)
class _Tab:
    """What every tab works with."""

    engine: Engine
    settings: Settings
    registry: Any  # asr.service.uploads.UploadRegistry

    def user_of(self, request: Any) -> str | None:
        """The signed-in user (None with logins off); raises LoginRequiredError with logins on and no user."""
        if not self.settings.server.auth:
            return None
        user = getattr(request, "username", None) or _cookie_user(request)
        if user is None:
            raise LoginRequiredError("log in first")
        return user


def _cookie_user(request: Any) -> str | None:
    """The user of the login cookie. Gradio 6.31 fills in ``username`` for queued events only; the calls of a
    component's server functions (the workspace's edits and cancels) come without it, and without this every
    one of them would run as nobody in particular, on anyone's job."""
    from asr.service.server import session_user

    raw = request if hasattr(request, "cookies") else getattr(request, "request", None)  # Starlette's, or gr's
    return session_user(raw.scope.get("app"), raw) if raw is not None else None


def keep_for_playback(media: Path, path: Path, job: JobRecord) -> None:
    """The upload, kept beside the job until its playback copy is made (the job has its own copy)."""
    target = media / job.id / ("source" + Path(path).suffix.lower())
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)
    except OSError as e:
        logger.warning("job %s: no playback copy (%s)", job.id, e)


def finish_playback(media: Path, record: JobRecord, settings: Settings) -> bool:
    """Once the job has ended: its playback audio from the kept upload if it completed, else nothing left."""
    job_dir = media / record.id
    sources = list(job_dir.glob("source.*")) if job_dir.is_dir() else []
    try:
        if record.state is JobState.COMPLETED and sources:
            write_playback(sources[0], job_dir, settings.audio, record.filename)
            if record.kind is JobKind.TRANSCRIBE:  # a transcript is read along with the picture
                keep_video(sources[0], job_dir)
        elif not playback_path(job_dir).is_file():
            shutil.rmtree(job_dir, ignore_errors=True)
    except (AsrError, OSError) as e:
        logger.warning("job %s: no playback copy (%s)", record.id, e)
    finally:
        for source in sources:
            source.unlink(missing_ok=True)
    return playback_path(job_dir).is_file()


class _NotUnderstood(Exception):
    """A workspace call whose arguments are not what static/workspace.js sends."""


def _arguments(data: Any, count: int) -> list[Any]:
    """A workspace call's arguments: static/workspace.js passes them as one list, which Gradio hands over."""
    if not isinstance(data, list) or len(data) != count:
        raise _NotUnderstood()
    return data


def workspace_functions(tab: _Tab) -> list[Callable[..., Any]]:
    """What static/workspace.js calls on the server: each answers {"error": message} for a bad request, the
    message the API gives for the same edit, shown beside the transcript it concerns."""
    gr = _gradio()
    engine = tab.engine

    def save_sentence(data: Any, request: gr.Request) -> dict[str, Any]:
        language = language_of(request)
        try:
            job_id, index, text, speaker = _arguments(data, 4)
            record = engine.edit_transcript(
                str(job_id), [SentenceEdit(index=int(index), text=text, speaker=speaker)], owner=tab.user_of(request))
            return {"text": clean_text(record.current.sentences[int(index)].text)}
        except _NotUnderstood:
            return {"error": ui_text("error.not_understood", language)}
        except (ValueError, TypeError):
            return {"error": ui_text("error.edit_not_understood", language)}
        except Exception as e:
            return {"error": error_message(e, language)}

    def rename_speaker(data: Any, request: gr.Request) -> dict[str, Any]:
        language = language_of(request)
        try:
            job_id, speaker, name = _arguments(data, 3)
            owner = tab.user_of(request)
            names = list(engine.owned(str(job_id), owner).current.speakers)
            if not isinstance(speaker, int) or not 0 <= speaker < len(names):
                return {"error": ui_text("error.no_such_speaker", language)}
            names[speaker] = name
            record = engine.edit_transcript(str(job_id), (), names, owner=owner)
            return {"name": record.current.speakers[speaker]}
        except _NotUnderstood:
            return {"error": ui_text("error.not_understood", language)}
        except Exception as e:
            return {"error": error_message(e, language)}

    def cancel_jobs(data: Any, request: gr.Request) -> dict[str, str]:
        language = language_of(request)
        try:
            ids = _arguments(data, 1)[0]
            owner = tab.user_of(request)
        except _NotUnderstood:
            return {"error": ui_text("error.not_understood", language)}
        except AsrError as e:
            return {"error": error_message(e, language)}
        for job_id in ids if isinstance(ids, list) else []:
            try:
                engine.owned(str(job_id), owner)
                engine.cancel(str(job_id))
            except AsrError as e:
                if len(ids) == 1:
                    return {"error": error_message(e, language)}
        return {}

    return [save_sentence, rename_speaker, cancel_jobs]


def workspace_board(tab: _Tab, elem_id: str):
    gr = _gradio()
    return gr.HTML(value="", elem_id=elem_id, elem_classes=["ws-board"], js_on_load=(STATIC / "workspace.js").read_text(),
                   css_template=(STATIC / "workspace.css").read_text(), server_functions=workspace_functions(tab))


def write_zip(records: list[JobRecord], formats: list[str], settings: Settings, registry: Any) -> str:
    """One ZIP of the current (edited) version of every finished job of a board, in ``formats`` (VAD jobs in
    theirs); raises the storage errors write_result_files does."""
    results = [(Path(r.filename).stem or "audio", r.current) for r in records]
    wanted = set(formats) | (set(VAD_WRITERS) if any(isinstance(r.result, VadResult) for r in records) else set())
    bundle = render_zip(results, sorted(wanted), settings.output, "transcripts")
    path = registry.results_dir / f"zip-{records[0].id}" / bundle.filename
    try:
        write_atomic(path, bundle.body)
    except OSError as e:
        raise storage_error(e, "the ZIP could not be written (the transcripts are saved in History)",
                            path.parent) from e
    registry.add_result(path)
    return str(path)


def export_files(engine: Engine, job_ids: str, formats: list[str], settings: Settings, registry: Any,
                 owner: str | None) -> list[str]:
    """Download files of the jobs on a board, from their current (edited) version, plus one ZIP of them all
    when there is more than one file."""
    records = []
    for job_id in [j for j in (job_ids or "").split(",") if j]:
        record = engine.owned(job_id, owner)
        if record.state is JobState.COMPLETED:
            records.append(record)
    paths: list[str] = []
    for record in records:
        kinds = formats if isinstance(record.result, Transcript) else list(VAD_WRITERS)
        paths.extend(write_result_files(record, kinds, settings, registry))
    if len(paths) > 1:
        paths.append(write_zip(records, formats, settings, registry))
    return paths


def transcribe_tab(tab: _Tab) -> None:
    """Upload or record, transcribe, read the text and download subtitles."""
    gr = _gradio()
    engine, settings, registry = tab.engine, tab.settings, tab.registry

    media = media_root(settings)

    # inputs order must match handler signature
    def transcribe(files, recording, punctuate, formats, itn, speakers, num_speakers, hotwords,
                   request: gr.Request):
        language = language_of(request)
        given = list(files or []) + ([recording] if recording else [])
        if not given:
            raise user_error(ui_text("error.nothing_given", language))
        names = {Path(f): getattr(f, "orig_name", None) or Path(f).name for f in files or []}
        if recording:
            names[Path(recording)] = time.strftime("recording %Y-%m-%d %H-%M-%S.wav")
        formats = [f for f in (formats or []) if f in WRITERS] or ["srt"]
        try:
            options = build_options(
                settings, punctuate=bool(punctuate), itn=bool(itn), hotwords=(hotwords or "").strip() or None,
                speakers=bool(speakers), num_speakers=int(num_speakers) if speakers and num_speakers else None,
            )
        except AsrError as e:
            for path in names:
                registry.discard(path)
            raise friendly(e, language) from None
        rows: list[FileRow] = []
        for path, name in names.items():
            try:
                job = engine.submit(path, name, JobKind.TRANSCRIBE, options, owner=tab.user_of(request))
                keep_for_playback(media, path, job)
                rows.append(FileRow(name, job))
            except EngineBusyError as e:
                rows.append(FileRow(name, refused=ui_text("card.not_queued", language,
                                                          reason=error_message(e, language))))
            except Exception as e:  # an AsrError: the file's own message, as the API and CLI give it
                rows.append(FileRow(name, refused=error_message(e, language)))
            finally:
                registry.discard(path)  # the job has its own copy (or the file was refused)
        while True:
            rows = [replace(r, job=engine.get(r.job.id)) if r.job else r for r in rows]
            if all(r.job is None or r.job.state.finished for r in rows):
                break
            yield gr.skip(), gr.skip(), workspace_html(rows, language=language), gr.skip(), gr.skip(), gr.skip()
            time.sleep(POLL_S)
        for row in rows:
            if row.job is not None:
                finish_playback(media, row.job, settings)
        texts, files, notes = [], [], []
        done = [r.job for r in rows if r.job is not None and r.job.state is JobState.COMPLETED]
        for record in done:
            header = f"### {record.filename}\n" if len(rows) > 1 else ""
            texts.append(header + sentences_text(record.result, language))
            written, problem = result_files_or_note(record, formats, settings, registry, language)
            files.extend(written)
            notes.append(timings_markdown(record, language) + (f"  \n{problem}" if problem else ""))
        if len(done) > 1:
            try:
                files.append(write_zip(done, formats, settings, registry))  # the files are written above
            except AsrError as e:
                notes.append(f"⚠️ {error_message(e, language)}")
        board = workspace_html(rows, media, language)
        full_text = "\n\n".join(transcript_text(r.result) for r in done)
        yield full_text, "\n\n".join(texts), board, files, "\n\n".join(notes), ",".join(r.id for r in done)
        if not done:
            # Nothing to read: the errors also come up as a message, as they did (each stays on its card too).
            raise user_error(" / ".join(
                (job_error(r.job, language) if r.job.error else ui_text(
                    "error.job_ended", language, file=r.name, state=state_text(r.job.state, language)))
                if r.job else r.refused for r in rows))

    t = static_text
    with gr.Tab(t("tab.transcribe"), id="transcribe"):
        with gr.Row():
            with gr.Column():
                files = upload_box(label=t("transcribe.files"), file_count="multiple", file_types=AUDIO_TYPES)
                recording = gr.Audio(label=t("transcribe.record"), sources=["microphone"], type="filepath",
                                     format="wav")
                with gr.Row():
                    punctuate = gr.Checkbox(label=t("transcribe.punctuation"), value=True)
                    itn = gr.Checkbox(label=t("transcribe.itn"), value=True, info=t("transcribe.itn_info"))
                spk_ok, hot_ok = speakers_available(settings), hotwords_available(settings)
                with gr.Row():
                    speakers = gr.Checkbox(label=t("transcribe.speakers"), value=False, interactive=spk_ok,
                                           info=None if spk_ok else t("transcribe.speakers_off"))
                    # no minimum/maximum here: build_options checks the count, with the message the API gives
                    num_speakers = gr.Number(label=t("transcribe.num_speakers"), value=0, precision=0,
                                             interactive=spk_ok)
                hotwords = gr.Textbox(label=t("transcribe.hotwords"), lines=2, interactive=hot_ok,
                                      placeholder=t("transcribe.hotwords_hint"),
                                      info=None if hot_ok else t("transcribe.hotwords_off"))
                formats = gr.CheckboxGroup(UI_FORMATS, value=["srt", "txt"], label=t("transcribe.formats"))
                run = gr.Button(t("transcribe.run"), variant="primary", elem_id="transcribe-button")
            with gr.Column():
                board = workspace_board(tab, "workspace")
                board_jobs = gr.Textbox(visible=False)  # the ids on the board, for Export
                downloads = gr.File(label=t("transcribe.downloads"), file_count="multiple", interactive=False)
                export = gr.Button(t("transcribe.export"), size="sm")
                timings = gr.Markdown()
                text = gr.Textbox(label=t("transcribe.text"), lines=6, buttons=["copy"])
                sentences = gr.Textbox(label=t("transcribe.sentences"), lines=10)
        # No progress overlay: each file's card shows its own (Gradio drew one on every output).
        run.click(transcribe, [files, recording, punctuate, formats, itn, speakers, num_speakers, hotwords],
                  [text, sentences, board, downloads, timings, board_jobs], show_progress="hidden",
                  concurrency_id="engine", api_visibility="private")

        def export_edited(job_ids: str, formats: list[str], request: gr.Request):
            language = language_of(request)
            if not job_ids:
                raise user_error(ui_text("error.transcribe_first", language))
            chosen = [f for f in (formats or []) if f in WRITERS] or ["srt"]
            try:
                return export_files(engine, job_ids, chosen, settings, registry, tab.user_of(request))
            except AsrError as e:
                raise friendly(e, language) from None

        export.click(export_edited, [board_jobs, formats], downloads, api_visibility="private")


def vad_headers(language: Language = "en") -> list[str]:
    return [ui_text(f"vad.col.{column}", language) for column in ("number", "start", "end", "duration")]


def vad_tab(tab: _Tab) -> Any:
    """Speech segments only, as a table and a CSV."""
    gr = _gradio()
    engine, settings, registry = tab.engine, tab.settings, tab.registry

    media = media_root(settings)

    def detect(file, request: gr.Request):
        language = language_of(request)
        if not file:
            raise user_error(ui_text("error.upload_first", language))
        path = Path(file)
        name = getattr(file, "orig_name", None) or path.name
        try:
            job = engine.submit(path, name, JobKind.VAD, owner=tab.user_of(request))
            keep_for_playback(media, path, job)
        except Exception as e:
            raise friendly(e, language) from None
        finally:
            registry.discard(path)
        while not (record := engine.get(job.id)).state.finished:
            yield gr.skip(), gr.skip(), gr.skip(), workspace_html([FileRow(name, record)], language=language)
            time.sleep(POLL_S)
        finish_playback(media, record, settings)
        board = workspace_html([FileRow(name, record)], media, language)
        if record.state is not JobState.COMPLETED:
            yield gr.skip(), gr.skip(), gr.skip(), board
            raise user_error(job_error(record, language) if record.error else ui_text(
                "error.job_ended", language, file=record.filename, state=state_text(record.state, language)))
        rows = [[i + 1, format_timestamp(s.start_ms, "."), format_timestamp(s.end_ms, "."), round(s.duration_ms / 1000, 3)]
                for i, s in enumerate(record.result.segments)]
        summary = ui_text("vad.summary", language, count=len(rows), duration=record.result.duration_s,
                          seconds=record.result.timings.total_s)
        written, problem = result_files_or_note(record, ["csv"], settings, registry, language)
        table = {"headers": vad_headers(language), "data": rows}
        yield table, written, summary + (f"  \n{problem}" if problem else ""), board

    t = static_text
    with gr.Tab(t("tab.vad"), id="vad"):
        with gr.Row():
            with gr.Column():
                vad_file = upload_box(label=t("vad.file"), file_types=AUDIO_TYPES)
                vad_run = gr.Button(t("vad.run"), variant="primary")
            with gr.Column():
                vad_summary = gr.Markdown()
                vad_board = workspace_board(tab, "vad-workspace")  # the waveform, the segments on it, a player
                vad_table = gr.Dataframe(headers=vad_headers(), interactive=False, label=t("vad.segments"),
                                         elem_id="vad-table")
                vad_csv = gr.File(label=t("vad.csv"), file_count="multiple", interactive=False)
        vad_run.click(detect, [vad_file], [vad_table, vad_csv, vad_summary, vad_board], show_progress="hidden",
                      concurrency_id="engine", api_visibility="private")
    return vad_table


def history_tab(tab: _Tab) -> tuple[Any, Callable[[str, Any], Any]]:
    """Past jobs: search, click one to open it (player, sentences, files); returns the table and its refresh."""
    gr = _gradio()
    engine, settings, registry = tab.engine, tab.settings, tab.registry
    media = media_root(settings)

    def refresh_history(query: str, request: gr.Request):
        return history_table_value(engine, tab.user_of(request), (query or "").strip(), language_of(request))

    def open_job(evt: gr.SelectData, request: gr.Request):
        language = language_of(request)
        job_id = (evt.row_value or [None])[-1]
        if not job_id:
            raise user_error(ui_text("error.open_first", language))
        try:
            record = engine.get(job_id)
        except Exception as e:
            raise friendly(e, language) from None
        if settings.server.auth and record.owner != tab.user_of(request):
            raise user_error(ui_text("error.no_such_job", language))
        board = workspace_html([FileRow(record.filename, record)], media, language)
        if record.state is not JobState.COMPLETED:
            ended = ui_text("error.job_ended", language, file=record.filename, state=state_text(record.state, language))
            return board, ended + (f" — {job_error(record, language)}" if record.error else ""), [], "", job_id
        if isinstance(record.result, VadResult):
            text = "\n".join(f"{format_timestamp(s.start_ms, '.')} → {format_timestamp(s.end_ms, '.')}"
                             for s in record.result.segments)
            written, problem = result_files_or_note(record, list(VAD_WRITERS), settings, registry, language)
            notes = timings_markdown(record, language) + (f"  \n{problem}" if problem else "")
            return board, text, written, notes, job_id
        written, problem = result_files_or_note(record, UI_FORMATS, settings, registry, language)
        transcript = record.current
        return (board, transcript_text(transcript) + "\n\n" + sentences_text(transcript, language), written,
                timings_markdown(record, language) + (f"  \n{problem}" if problem else ""), job_id)

    t = static_text
    with gr.Tab(t("tab.history"), id="history"):
        with gr.Row():
            history_search = gr.Textbox(label=t("history.search"), placeholder=t("history.search_hint"), scale=4,
                                        elem_id="history-search")
            history_refresh = gr.Button(t("history.refresh"), scale=1, elem_id="history-refresh")
        history_table = gr.Dataframe(headers=history_headers(), interactive=False, label=t("history.table"),
                                     elem_id="history-table")
        # the open job's id; not a gr.State: any State makes Gradio hold a heartbeat connection open for good
        opened = gr.Textbox(visible=False)
        history_board = workspace_board(tab, "history-workspace")
        history_files = gr.File(label=t("history.files"), file_count="multiple", interactive=False)
        with gr.Row():
            history_export = gr.Button(t("history.export"), size="sm")
            history_delete = gr.Button(t("history.delete"), size="sm", variant="stop")
        history_timings = gr.Markdown()
        history_text = gr.Textbox(label=t("history.text"), lines=10)
        # Enter in the search box clicks Refresh (static/workspace.js): a submit event of its own kept the
        # page's event stream open for good (Gradio 6.31), so the page never went idle.
        history_refresh.click(refresh_history, [history_search], history_table, api_visibility="private")
        history_table.select(open_job, None, [history_board, history_text, history_files, history_timings, opened],
                             api_visibility="private")

        def export_opened(job_id: str, request: gr.Request):
            language = language_of(request)
            if not job_id:
                raise user_error(ui_text("error.open_first", language))
            try:
                return export_files(engine, job_id, UI_FORMATS, settings, registry, tab.user_of(request))
            except AsrError as e:
                raise friendly(e, language) from None

        def delete_opened(job_id: str, query: str, request: gr.Request):
            language = language_of(request)
            if not job_id:
                raise user_error(ui_text("error.open_first", language))
            try:
                engine.delete_job(job_id, tab.user_of(request))
            except AsrError as e:
                raise friendly(e, language) from None
            return "", "", [], "", "", refresh_history(query, request)

        history_export.click(export_opened, [opened], history_files, api_visibility="private")
        history_delete.click(delete_opened, [opened, history_search],
                             [history_board, history_text, history_files, history_timings, opened, history_table],
                             api_visibility="private")
    return history_table, refresh_history


def live_html(language: Language) -> str:
    """The Live tab's board in ``language``; static/live.js makes it live (its messages are in data-*)."""
    say = {key: html.escape(ui_text(f"live.{key}", language)) for key in
           ("start", "stop", "hint", "listening", "finishing", "done", "nomic")}
    return (f'<div class="live-board" data-listening="{say["listening"]}" data-finishing="{say["finishing"]}" '
            f'data-done="{say["done"]}" data-nomic="{say["nomic"]}">'
            f'<p class="live-hint">{say["hint"]}</p>'
            f'<div class="ws-tools"><button class="live-start">{say["start"]}</button>'
            f'<button class="live-stop" disabled>{say["stop"]}</button>'
            f'<span class="live-status" role="status"></span></div>'
            '<div class="live-captions" aria-live="polite"><div class="live-finals"></div>'
            '<span class="live-partial"></span></div></div>')


def live_tab(tab: _Tab) -> Any:
    """Live captions from the microphone (the live profile): returns its board, filled in on page load."""
    gr = _gradio()
    with gr.Tab(static_text("tab.live"), id="live"):
        return gr.HTML(value="", elem_id="live", js_on_load=(STATIC / "live.js").read_text(),
                       css_template=(STATIC / "workspace.css").read_text())


def system_tab(tab: _Tab) -> Any:
    """What is loaded and how the workers are doing; returns the panel, for the page load."""
    gr = _gradio()
    with gr.Tab(static_text("tab.system"), id="system"):
        system_info = gr.Markdown()
        # refreshes itself; a Refresh button was easy to forget, and the numbers were stale
        def refresh(request: gr.Request) -> str:
            return system_markdown(tab.engine, language_of(request))

        gr.Timer(SYSTEM_REFRESH_S).tick(refresh, None, system_info, show_progress="hidden", api_visibility="private")
    return system_info


def header_html(user: str | None, language: Language) -> str:
    """The header's right side: the signed-in user with a logout (with logins on), and the language switch."""
    other: Language = "en" if language == "zh" else "zh"
    # relative links, so that they stay under server.root_path behind a proxy (<base> is the UI's root).
    # The switch reloads the page: ?lang= sets the cookie (asr.service.language) that Gradio's words follow too.
    switch = (f'<a class="lang-switch" href="?lang={other}" target="_self" lang="{"zh-CN" if other == "zh" else "en"}">'
              f'{ui_text("app.switch", language)}</a>')
    if not user:
        return f'<div style="text-align:right"><span id="signed-in"></span>{switch}</div>'
    # logout for this browser only (Gradio's default ends the user's sessions everywhere, which a login
    # shared by a team would feel); an HTML link: Gradio's Markdown opens links in a new tab
    who = (ui_text("app.signed_in", language, user=html.escape(user))
           + f' · <a href="logout?all_session=false" target="_self">{ui_text("app.log_out", language)}</a>')
    return f'<div style="text-align:right"><span id="signed-in">{who}</span> · {switch}</div>'


def build_ui(engine: Engine, settings: Settings, registry: Any):
    """The Gradio Blocks app: Transcribe, VAD, History and System tabs (the server's UI factory).

    ``registry`` (asr.service.uploads.UploadRegistry) is told of every result file written, and of
    every upload a job has copied, which it then removes."""
    gr = _gradio()
    tab = _Tab(engine, settings, registry)
    with gr.Blocks(title="Offline ASR", delete_cache=settings.server.delete_cache_s) as demo:
        with gr.Row(equal_height=True):
            gr.Markdown("## " + static_text("app.title"))
            # who is signed in, with a logout; and the language switch
            header_tools = gr.HTML(elem_id="header-tools")
        banner = gr.Markdown()
        with gr.Tabs(overflow_behavior="wrap"):  # "menu" hid History and System behind an unlabelled ⋯ on a phone
            transcribe_tab(tab)
            live_board = live_tab(tab) if engine.live is not None else None
            vad_table = vad_tab(tab)
            history_table, refresh_history = history_tab(tab)
            system_info = system_tab(tab)

        def on_load(request: gr.Request):
            language = language_of(request)
            warning = ""
            if engine.ready.is_set() and engine.status().get("test_models"):
                warning = ui_text("app.random_weights", language)
            elif not engine.ready.is_set():
                warning = ui_text("app.loading", language)
            user = tab.user_of(request)
            filled = (warning, refresh_history("", request), system_markdown(engine, language),
                      header_html(user, language), {"headers": vad_headers(language), "data": []})
            return filled + ((live_html(language),) if live_board is not None else ())

        demo.load(on_load, None, [banner, history_table, system_info, header_tools, vad_table]
                  + ([live_board] if live_board is not None else []), api_visibility="private")
    return demo


# ---- entry point -----------------------------------------------------------------------------------


if __name__ == "__main__":
    from asr.service.server import main

    sys.exit(main(ui=build_ui))
