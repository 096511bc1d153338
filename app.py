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
from asr.service.jobs import JobKind, JobRecord, JobState
from asr.service.media import media_root, playback_path, write_playback
from asr.service.stages import kind_name, stage_name
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


def friendly(error: BaseException) -> Exception:
    """An AsrError's own message for the user; anything else is logged and kept vague."""
    if isinstance(error, AsrError):
        return user_error(str(error))
    logger.exception("unexpected error in the UI", exc_info=error)
    return user_error("Internal error while handling this request; the details are in the service log.")


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


def result_files_or_note(record: JobRecord, formats: list[str], settings: Settings, registry: Any) -> tuple[list[str], str]:
    """The download files, or none and the reason, so that a finished transcript is still shown."""
    try:
        return write_result_files(record, formats, settings, registry), ""
    except AsrError as e:
        logger.error("job %s: %s", record.id, e)
        return [], f"⚠️ {e}"


def sentences_text(transcript: Transcript) -> str:
    def speaker(s) -> str:
        name = transcript.speaker_name(s)
        return f"{name}: " if name else ""

    lines = [
        f"[{format_timestamp(s.start_ms, '.')} → {format_timestamp(s.end_ms, '.')}] {speaker(s)}{clean_text(s.text)}"
        for s in transcript.sentences
    ]
    return "\n".join(lines) if lines else "(no speech found)"


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


def _progress_line(record: JobRecord) -> str:
    if record.state is JobState.QUEUED and record.queue_position:
        return f"waiting in queue (position {record.queue_position})"
    stage = stage_name(record.stage or "starting")
    line = f"{stage} · {record.progress:.0%}"
    eta = record.eta_s
    if eta is not None:
        line += f" · about {max(1, round(eta))} s left"
    return line


def _sentence_html(index: int, sentence, transcript: Transcript) -> str:
    speaker = ""
    if transcript.speakers:
        options = "".join(
            f'<option value="{k}"{" selected" if k == sentence.speaker else ""}>{html.escape(name)}</option>'
            for k, name in enumerate(transcript.speakers)
        )
        colour = SPEAKER_COLOURS[(sentence.speaker or 0) % len(SPEAKER_COLOURS)]
        speaker = f'<select class="ws-who" aria-label="speaker" style="color:{colour}">{options}</select>'
    else:
        speaker = '<span class="ws-who"></span>'  # keeps the grid's columns
    return (
        f'<li class="ws-sentence" data-index="{index}" data-start="{sentence.start_ms}" data-end="{sentence.end_ms}"'
        f' data-speaker="{sentence.speaker if sentence.speaker is not None else ""}">'
        f'<span class="ws-time">{clock(sentence.start_ms)}</span>{speaker}'
        f'<span class="ws-text">{html.escape(clean_text(sentence.text))}</span>'
        f'<button class="ws-edit" title="edit" aria-label="edit sentence {index + 1}">✎</button></li>'
    )


def _transcript_html(record: JobRecord, transcript: Transcript, playback: Path | None) -> str:
    parts = []
    if playback is not None:
        parts.append(f'<audio controls preload="metadata" src="ui/media/{record.id}"></audio>')
    if transcript.speakers:
        chips = "".join(
            f'<span class="ws-chip" style="color:{SPEAKER_COLOURS[k % len(SPEAKER_COLOURS)]}">'
            f'<span class="ws-name-of" data-speaker="{k}">{html.escape(name)}</span>'
            f'<button class="ws-rename" title="rename" aria-label="rename {html.escape(name)}">✎</button></span>'
            for k, name in enumerate(transcript.speakers)
        )
        parts.append(f'<div class="ws-speakers">{chips}</div>')
    rows = "".join(_sentence_html(i, s, transcript) for i, s in enumerate(transcript.sentences))
    parts.append(f'<ol class="ws-sentences">{rows}</ol>' if rows else "<p>(no speech found)</p>")
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


def timeline_svg(result: VadResult, peaks: list[float]) -> str:
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
        f'<title>speech {i + 1}: {clock(seg.start_ms)} → {clock(seg.end_ms)}</title></rect>'
        for i, seg in enumerate(result.segments)
    )
    return (f'<svg class="ws-timeline" viewBox="0 0 {width} {height}" preserveAspectRatio="none" role="img" '
            f'aria-label="speech segments over the waveform">{wave}{segments}</svg>')


def _segments_html(record: JobRecord, result: VadResult, playback: Path | None) -> str:
    """Speech segments as the workspace's rows, under the waveform with the segments on it: click one to hear it."""
    audio = ""
    if playback is not None:
        audio = f'<audio controls preload="metadata" src="ui/media/{record.id}"></audio>'
        try:
            audio = timeline_svg(result, waveform_peaks(playback)) + audio
        except (OSError, RuntimeError) as e:
            logger.warning("job %s: no waveform (%s)", record.id, e)
    rows = "".join(
        f'<li class="ws-sentence" data-index="{i}" data-start="{seg.start_ms}" data-end="{seg.end_ms}">'
        f'<span class="ws-time">{clock(seg.start_ms)}</span><span class="ws-who"></span>'
        f'<span class="ws-text">speech {i + 1}: {clock(seg.start_ms)} → {clock(seg.end_ms)} '
        f'({seg.duration_ms / 1000:.1f} s)</span><span></span></li>'
        for i, seg in enumerate(result.segments)
    )
    return audio + (f'<ol class="ws-sentences">{rows}</ol>' if rows else "<p>(no speech found)</p>")


def workspace_html(rows: list[FileRow], media: Path | None = None) -> str:
    """Every file of a batch as a card of its own: its progress while it runs; then its player and sentences,
    or its error, which stays next to it. Rendered here (escaped) and made live by static/workspace.js."""
    def playback(record: JobRecord) -> Path | None:
        path = playback_path(media / record.id) if media is not None else None
        return path if path is not None and path.is_file() else None

    cards = []
    for row in rows:
        record = row.job
        if record is None:
            state, status, body = "refused", "not transcribed", f'<p class="ws-error" role="alert">{html.escape(row.refused)}</p>'
            kind, job_id, active = "", "", False
        else:
            state, job_id, active = record.state.value, record.id, not record.state.finished
            kind = kind_name(record.kind.value)
            if active:
                status = "queued" if record.state is JobState.QUEUED else "running"
                width = 0 if record.state is JobState.QUEUED else round(100 * record.progress)
                body = (f'<div class="ws-progress" role="progressbar" aria-valuenow="{width}" aria-valuemin="0" '
                        f'aria-valuemax="100"><div class="ws-bar" style="width:{width}%"></div>'
                        f'<span>{html.escape(_progress_line(record))}</span></div>'
                        '<div class="ws-tools"><button class="ws-cancel">Cancel</button></div>')
            elif record.state is JobState.COMPLETED and isinstance(record.result, Transcript):
                status = f"done · {record.result.duration_s:.1f} s of audio"  # the RTF is in the timings line
                body = _transcript_html(record, record.current, playback(record))
            elif record.state is JobState.COMPLETED and isinstance(record.result, VadResult):
                status = f"done · {len(record.result.segments)} speech segments in {record.result.duration_s:.1f} s"
                body = _segments_html(record, record.result, playback(record))
            else:
                status = record.state.value
                body = f'<p class="ws-error" role="alert">{html.escape(record.error or record.state.value)}</p>'
        cards.append(
            f'<section class="ws-job" data-job="{job_id}" data-kind="{record.kind.value if record else ""}" '
            f'data-state="{state}" data-active="{str(active).lower()}">'
            f'<header><span class="ws-file">{html.escape(row.name)}</span><span class="ws-kind">{kind}</span>'
            f'<span class="ws-status">{html.escape(status)}</span></header>{body}</section>'
        )
    if sum(1 for r in rows if r.job is not None and not r.job.state.finished) > 1:
        cards.insert(0, '<div class="ws-tools"><button class="ws-cancel-all">Cancel all</button></div>')
    return "".join(cards)


def timings_markdown(record: JobRecord) -> str:
    t = record.timings
    if t is None or record.result is None:
        return ""
    return (
        f"**{record.filename}** — audio {record.result.duration_s:.1f} s, wall {t.total_s:.2f} s, "
        f"**RTF {record.rtf:.4f}**  \n"
        f"decode {t.decode_s:.2f} s · VAD {t.vad_s:.2f} s · ASR {t.asr_s:.2f} s · punctuation {t.punc_s:.2f} s"
        + (f" · speakers {t.speakers_s:.2f} s" if t.speakers_s else "")
        + (f" · ITN {t.itn_s:.2f} s" if t.itn_s else "")
    )


HISTORY_HEADERS = ["time", "file", "type", "duration (s)", "state", "RTF", "id"]


def history_rows(engine: Engine, owner: str | None, query: str = "") -> list[list[Any]]:
    rows = []
    for r in engine.jobs(limit=200, owner=owner, **({"query": query} if query else {})):
        rows.append([
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created_at)),
            r.filename,
            kind_name(r.kind.value),
            f"{r.duration_s:.1f}" if r.duration_s else "",
            r.state.value + (f" ({r.error})" if r.error and r.state is not JobState.COMPLETED else ""),
            f"{r.rtf:.4f}" if r.rtf is not None else "",
            r.id,
        ])
    return rows


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n:.1f} TB"


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    days, h = divmod(hours, 24)
    return (f"{days} d " if days else "") + (f"{h} h " if days or h else "") + f"{m} min {s} s"


def system_markdown(engine: Engine) -> str:
    status = engine.status()
    cpu, memory, gpu, disk = (status.get(k) or {} for k in ("cpu", "memory", "gpu", "disk"))
    lines = [
        f"- **ready**: {status['ready']} · **version** {status.get('version', '?')} · "
        f"**up** {_duration(status.get('uptime_s', 0))}",
        f"- **device**: {status.get('device', 'loading…')}",
        f"- **precision**: {status.get('precision', 'loading…')}",
        f"- **logins**: {'on' if status.get('logins_on') else 'off (anyone who reaches the port can use it)'}",
        f"- **jobs**: {status.get('jobs_completed', '?')} done, {status.get('jobs_failed', '?')} failed "
        f"(in the history)",
        f"- **queue**: {status['queue_waiting']} waiting (max {status['queue_max_size']})",
        "- **workers**: " + ", ".join(f"#{w['index']} {w['state']}" + (f" (job {w['job'][:8]})" if w["job"] else "")
                                      for w in status["workers"]),
    ]
    if cpu:
        load = " / ".join(f"{x:.2f}" for x in cpu.get("load") or [])
        lines.append(f"- **CPU**: {cpu.get('usable', cpu.get('count'))} cores, load {load}, "
                     f"this service {cpu.get('process_percent', 0):.0f} %")
    if memory:
        lines.append(f"- **memory**: {_size(memory.get('available_bytes'))} free of {_size(memory.get('total_bytes'))}, "
                     f"this service {_size(memory.get('process_rss_bytes'))}")
    if gpu:
        lines.append(f"- **GPU memory**: {_size(gpu.get('used_bytes'))} used of {_size(gpu.get('total_bytes'))}")
    for name, facts in disk.items():
        lines.append(f"- **disk** ({name.replace('_', ' ')}): {_size(facts.get('free_bytes'))} free of "
                     f"{_size(facts.get('total_bytes'))}")
    lines.append(f"- **model load**: {status['load_seconds']} s, warm-up {status['warmup_seconds']} s")
    for role, model in status.get("models", {}).items():
        flag = " — **RANDOM WEIGHTS (test model)**" if model["random_weights"] else ""
        lines.append(f"- **{role}**: `{model['id']}` @ `{model['revision']}` ({model['class']}, "
                     f"{model['parameters_m']} M params){flag}  \n  `{model['path']}`")
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
            raise user_error(f"Invalid file type. Please upload a file that is one of these formats: "
                         f"{box.file_types}")
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
        elif not playback_path(job_dir).is_file():
            shutil.rmtree(job_dir, ignore_errors=True)
    except (AsrError, OSError) as e:
        logger.warning("job %s: no playback copy (%s)", record.id, e)
    finally:
        for source in sources:
            source.unlink(missing_ok=True)
    return playback_path(job_dir).is_file()


def _arguments(data: Any, count: int) -> list[Any]:
    """A workspace call's arguments: static/workspace.js passes them as one list, which Gradio hands over."""
    if not isinstance(data, list) or len(data) != count:
        raise user_error("This request from the page is not understood; reload the page.")
    return data


def workspace_functions(tab: _Tab) -> list[Callable[..., Any]]:
    """What static/workspace.js calls on the server: each answers {"error": message} for a bad request, the
    message the API gives for the same edit, shown beside the transcript it concerns."""
    gr = _gradio()
    engine = tab.engine

    def save_sentence(data: Any, request: gr.Request) -> dict[str, Any]:
        try:
            job_id, index, text, speaker = _arguments(data, 4)
            record = engine.edit_transcript(
                str(job_id), [SentenceEdit(index=int(index), text=text, speaker=speaker)], owner=tab.user_of(request))
            return {"text": clean_text(record.current.sentences[int(index)].text)}
        except (AsrError, ValueError, TypeError) as e:
            return {"error": str(e) if isinstance(e, AsrError) else "This edit is not understood."}
        except Exception as e:
            return {"error": str(friendly(e))}

    def rename_speaker(data: Any, request: gr.Request) -> dict[str, Any]:
        try:
            job_id, speaker, name = _arguments(data, 3)
            owner = tab.user_of(request)
            names = list(engine.owned(str(job_id), owner).current.speakers)
            if not isinstance(speaker, int) or not 0 <= speaker < len(names):
                return {"error": "There is no such speaker in this transcript."}
            names[speaker] = name
            record = engine.edit_transcript(str(job_id), (), names, owner=owner)
            return {"name": record.current.speakers[speaker]}
        except AsrError as e:
            return {"error": str(e)}
        except Exception as e:
            return {"error": str(friendly(e))}

    def cancel_jobs(data: Any, request: gr.Request) -> dict[str, str]:
        ids = _arguments(data, 1)[0]
        owner = tab.user_of(request)
        for job_id in ids if isinstance(ids, list) else []:
            try:
                engine.owned(str(job_id), owner)
                engine.cancel(str(job_id))
            except AsrError as e:
                if len(ids) == 1:
                    return {"error": str(e)}
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
        given = list(files or []) + ([recording] if recording else [])
        if not given:
            raise user_error("Upload a file or record from the microphone first.")
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
            raise friendly(e) from None
        rows: list[FileRow] = []
        for path, name in names.items():
            try:
                job = engine.submit(path, name, JobKind.TRANSCRIBE, options, owner=tab.user_of(request))
                keep_for_playback(media, path, job)
                rows.append(FileRow(name, job))
            except EngineBusyError as e:
                rows.append(FileRow(name, refused=f"not queued: {e}"))
            except AsrError as e:
                rows.append(FileRow(name, refused=str(e)))  # the file's own message, as the API and CLI give it
            except Exception as e:
                rows.append(FileRow(name, refused=str(friendly(e))))
            finally:
                registry.discard(path)  # the job has its own copy (or the file was refused)
        while True:
            rows = [replace(r, job=engine.get(r.job.id)) if r.job else r for r in rows]
            if all(r.job is None or r.job.state.finished for r in rows):
                break
            yield gr.skip(), gr.skip(), workspace_html(rows), gr.skip(), gr.skip(), gr.skip()
            time.sleep(POLL_S)
        for row in rows:
            if row.job is not None:
                finish_playback(media, row.job, settings)
        texts, files, notes = [], [], []
        done = [r.job for r in rows if r.job is not None and r.job.state is JobState.COMPLETED]
        for record in done:
            header = f"### {record.filename}\n" if len(rows) > 1 else ""
            texts.append(header + sentences_text(record.result))
            written, problem = result_files_or_note(record, formats, settings, registry)
            files.extend(written)
            notes.append(timings_markdown(record) + (f"  \n{problem}" if problem else ""))
        if len(done) > 1:
            try:
                files.append(write_zip(done, formats, settings, registry))  # the files are written above
            except AsrError as e:
                notes.append(f"⚠️ {e}")
        board = workspace_html(rows, media)
        full_text = "\n\n".join(transcript_text(r.result) for r in done)
        yield full_text, "\n\n".join(texts), board, files, "\n\n".join(notes), ",".join(r.id for r in done)
        if not done:
            # Nothing to read: the errors also come up as a message, as they did (each stays on its card too).
            raise user_error(" / ".join(
                (r.job.error or f"{r.name}: {r.job.state.value}") if r.job else r.refused for r in rows))

    with gr.Tab("Transcribe", id="transcribe"):
        with gr.Row():
            with gr.Column():
                files = upload_box(label="Audio or video files", file_count="multiple", file_types=AUDIO_TYPES)
                recording = gr.Audio(label="…or record", sources=["microphone"], type="filepath", format="wav")
                with gr.Row():
                    punctuate = gr.Checkbox(label="Punctuation", value=True)
                    itn = gr.Checkbox(label="Numbers as digits (ITN)", value=True,
                                      info="一百二十三 → 123, 百分之五 → 5%")
                spk_ok, hot_ok = speakers_available(settings), hotwords_available(settings)
                with gr.Row():
                    speakers = gr.Checkbox(label="Speaker labels", value=False, interactive=spk_ok,
                                           info=None if spk_ok else "needs models.profile: vad+asr+punc+spk")
                    # no minimum/maximum here: build_options checks the count, with the message the API gives
                    num_speakers = gr.Number(label="Speakers (0 = find out)", value=0, precision=0,
                                             interactive=spk_ok)
                hotwords = gr.Textbox(label="Hotwords", lines=2, interactive=hot_ok,
                                      placeholder="names and jargon, separated by spaces or new lines",
                                      info=None if hot_ok else "needs models.asr_model: seaco")
                formats = gr.CheckboxGroup(UI_FORMATS, value=["srt", "txt"], label="Files to download")
                run = gr.Button("Transcribe", variant="primary", elem_id="transcribe-button")
            with gr.Column():
                board = workspace_board(tab, "workspace")
                board_jobs = gr.Textbox(visible=False)  # the ids on the board, for Export
                downloads = gr.File(label="Downloads", file_count="multiple", interactive=False)
                export = gr.Button("Export the edited version", size="sm")
                timings = gr.Markdown()
                text = gr.Textbox(label="Text", lines=6, buttons=["copy"])
                sentences = gr.Textbox(label="Sentences with timestamps", lines=10)
        # No progress overlay: each file's card shows its own (Gradio drew one on every output).
        run.click(transcribe, [files, recording, punctuate, formats, itn, speakers, num_speakers, hotwords],
                  [text, sentences, board, downloads, timings, board_jobs], show_progress="hidden",
                  concurrency_id="engine", api_visibility="private")

        def export_edited(job_ids: str, formats: list[str], request: gr.Request):
            if not job_ids:
                raise user_error("Transcribe something first.")
            chosen = [f for f in (formats or []) if f in WRITERS] or ["srt"]
            try:
                return export_files(engine, job_ids, chosen, settings, registry, tab.user_of(request))
            except AsrError as e:
                raise friendly(e) from None

        export.click(export_edited, [board_jobs, formats], downloads, api_visibility="private")


def vad_tab(tab: _Tab) -> None:
    """Speech segments only, as a table and a CSV."""
    gr = _gradio()
    engine, settings, registry = tab.engine, tab.settings, tab.registry

    media = media_root(settings)

    def detect(file, request: gr.Request):
        if not file:
            raise user_error("Upload a file first.")
        path = Path(file)
        name = getattr(file, "orig_name", None) or path.name
        try:
            job = engine.submit(path, name, JobKind.VAD, owner=tab.user_of(request))
            keep_for_playback(media, path, job)
        except Exception as e:
            raise friendly(e) from None
        finally:
            registry.discard(path)
        while not (record := engine.get(job.id)).state.finished:
            yield gr.skip(), gr.skip(), gr.skip(), workspace_html([FileRow(name, record)])
            time.sleep(POLL_S)
        finish_playback(media, record, settings)
        board = workspace_html([FileRow(name, record)], media)
        if record.state is not JobState.COMPLETED:
            yield gr.skip(), gr.skip(), gr.skip(), board
            raise user_error(record.error or f"{record.filename}: {record.state.value}")
        rows = [[i + 1, format_timestamp(s.start_ms, "."), format_timestamp(s.end_ms, "."), round(s.duration_ms / 1000, 3)]
                for i, s in enumerate(record.result.segments)]
        summary = (f"**{len(rows)} speech segments** in {record.result.duration_s:.1f} s of audio "
                   f"(VAD took {record.result.timings.total_s:.2f} s)")
        written, problem = result_files_or_note(record, ["csv"], settings, registry)
        yield rows, written, summary + (f"  \n{problem}" if problem else ""), board

    with gr.Tab("VAD", id="vad"):
        with gr.Row():
            with gr.Column():
                vad_file = upload_box(label="Audio or video file", file_types=AUDIO_TYPES)
                vad_run = gr.Button("Find speech", variant="primary")
            with gr.Column():
                vad_summary = gr.Markdown()
                vad_board = workspace_board(tab, "vad-workspace")  # the waveform, the segments on it, a player
                vad_table = gr.Dataframe(headers=["#", "start", "end", "duration (s)"], interactive=False,
                                         label="Speech segments")
                vad_csv = gr.File(label="CSV", file_count="multiple", interactive=False)
        vad_run.click(detect, [vad_file], [vad_table, vad_csv, vad_summary, vad_board], show_progress="hidden",
                      concurrency_id="engine", api_visibility="private")


def history_tab(tab: _Tab) -> tuple[Any, Callable[[str, Any], Any]]:
    """Past jobs: search, click one to open it (player, sentences, files); returns the table and its refresh."""
    gr = _gradio()
    engine, settings, registry = tab.engine, tab.settings, tab.registry
    media = media_root(settings)

    def refresh_history(query: str, request: gr.Request):
        return history_rows(engine, tab.user_of(request), (query or "").strip())

    def open_job(evt: gr.SelectData, request: gr.Request):
        job_id = (evt.row_value or [None])[-1]
        if not job_id:
            raise user_error("Click a job in the list to open it.")
        try:
            record = engine.get(job_id)
        except Exception as e:
            raise friendly(e) from None
        if settings.server.auth and record.owner != tab.user_of(request):
            raise user_error("No such job.")
        board = workspace_html([FileRow(record.filename, record)], media)
        if record.state is not JobState.COMPLETED:
            return board, f"{record.filename}: {record.state.value} — {record.error or ''}", [], "", job_id
        if isinstance(record.result, VadResult):
            text = "\n".join(f"{format_timestamp(s.start_ms, '.')} → {format_timestamp(s.end_ms, '.')}"
                             for s in record.result.segments)
            written, problem = result_files_or_note(record, list(VAD_WRITERS), settings, registry)
            return board, text, written, timings_markdown(record) + (f"  \n{problem}" if problem else ""), job_id
        written, problem = result_files_or_note(record, UI_FORMATS, settings, registry)
        transcript = record.current
        return (board, transcript_text(transcript) + "\n\n" + sentences_text(transcript), written,
                timings_markdown(record) + (f"  \n{problem}" if problem else ""), job_id)

    with gr.Tab("History", id="history"):
        with gr.Row():
            history_search = gr.Textbox(label="Search", placeholder="file name or words of the text", scale=4,
                                        elem_id="history-search")
            history_refresh = gr.Button("Refresh", scale=1, elem_id="history-refresh")
        history_table = gr.Dataframe(headers=HISTORY_HEADERS, interactive=False,
                                     label="Past jobs (newest first) · click one to open it")
        # the open job's id; not a gr.State: any State makes Gradio hold a heartbeat connection open for good
        opened = gr.Textbox(visible=False)
        history_board = workspace_board(tab, "history-workspace")
        history_files = gr.File(label="Files", file_count="multiple", interactive=False)
        with gr.Row():
            history_export = gr.Button("Export the edited version", size="sm")
            history_delete = gr.Button("Delete this job", size="sm", variant="stop")
        history_timings = gr.Markdown()
        history_text = gr.Textbox(label="Text", lines=10)
        # Enter in the search box clicks Refresh (static/workspace.js): a submit event of its own kept the
        # page's event stream open for good (Gradio 6.31), so the page never went idle.
        history_refresh.click(refresh_history, [history_search], history_table, api_visibility="private")
        history_table.select(open_job, None, [history_board, history_text, history_files, history_timings, opened],
                             api_visibility="private")

        def export_opened(job_id: str, request: gr.Request):
            if not job_id:
                raise user_error("Click a job in the list to open it.")
            try:
                return export_files(engine, job_id, UI_FORMATS, settings, registry, tab.user_of(request))
            except AsrError as e:
                raise friendly(e) from None

        def delete_opened(job_id: str, query: str, request: gr.Request):
            if not job_id:
                raise user_error("Click a job in the list to open it.")
            try:
                engine.delete_job(job_id, tab.user_of(request))
            except AsrError as e:
                raise friendly(e) from None
            return "", "", [], "", "", refresh_history(query, request)

        history_export.click(export_opened, [opened], history_files, api_visibility="private")
        history_delete.click(delete_opened, [opened, history_search],
                             [history_board, history_text, history_files, history_timings, opened, history_table],
                             api_visibility="private")
    return history_table, refresh_history


def system_tab(tab: _Tab) -> Any:
    """What is loaded and how the workers are doing; returns the panel, for the page load."""
    gr = _gradio()
    with gr.Tab("System", id="system"):
        system_info = gr.Markdown()
        # refreshes itself; a Refresh button was easy to forget, and the numbers were stale
        gr.Timer(SYSTEM_REFRESH_S).tick(lambda: system_markdown(tab.engine), None, system_info,
                                        show_progress="hidden", api_visibility="private")
    return system_info


def build_ui(engine: Engine, settings: Settings, registry: Any):
    """The Gradio Blocks app: Transcribe, VAD, History and System tabs (the server's UI factory).

    ``registry`` (asr.service.uploads.UploadRegistry) is told of every result file written, and of
    every upload a job has copied, which it then removes."""
    gr = _gradio()
    tab = _Tab(engine, settings, registry)
    with gr.Blocks(title="Offline ASR", delete_cache=settings.server.delete_cache_s) as demo:
        with gr.Row(equal_height=True):
            gr.Markdown("## Offline speech recognition · Paraformer-large (中文)")
            signed_in = gr.HTML(elem_id="signed-in", visible=bool(settings.server.auth))
        banner = gr.Markdown()
        with gr.Tabs(overflow_behavior="wrap"):  # "menu" hid History and System behind an unlabelled ⋯ on a phone
            transcribe_tab(tab)
            vad_tab(tab)
            history_table, refresh_history = history_tab(tab)
            system_info = system_tab(tab)

        def on_load(request: gr.Request):
            warning = ""
            if engine.ready.is_set() and engine.status().get("test_models"):
                warning = "⚠️ **Test models with RANDOM WEIGHTS are loaded: transcripts are meaningless.**"
            elif not engine.ready.is_set():
                warning = "⏳ The service is loading its models; transcription starts when they are ready."
            user = tab.user_of(request)
            # relative, so that it stays under server.root_path behind a proxy; this browser only (Gradio's
            # default ends the user's sessions everywhere, which a login shared by a team would feel)
            # (an HTML link: Gradio's Markdown opens links in a new tab, which would leave this one signed in)
            who = (f'Signed in as <b>{html.escape(user)}</b> · '
                   '<a href="logout?all_session=false" target="_self">Log out</a>') if user else ""
            return warning, refresh_history("", request), system_markdown(engine), who

        demo.load(on_load, None, [banner, history_table, system_info, signed_in], api_visibility="private")
    return demo


# ---- entry point -----------------------------------------------------------------------------------


if __name__ == "__main__":
    from asr.service.server import main

    sys.exit(main(ui=build_ui))
