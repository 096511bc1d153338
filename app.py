"""The web app's UI: Gradio Blocks over the engine, one function per tab.

    .venv/bin/python app.py [--config FILE]      # or: .venv/bin/asr serve

Thin by design: every tab calls the engine (asr.service.engine.Engine) and shows what it returns.
The server (asr.service.server) takes ``build_ui`` as its UI factory and serves it with the API;
nothing in the package imports this module.
"""


import html
import logging
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asr.atomic import write_atomic
from asr.config import Settings
from asr.core.options import build_options, hotwords_available, speakers_available
from asr.core.writers import VAD_WRITERS, WRITERS, format_timestamp, render
from asr.errors import AsrError, EngineBusyError, storage_error
from asr.service.engine import Engine
from asr.service.jobs import JobKind, JobRecord, JobState
from asr.types import Transcript, VadResult

logger = logging.getLogger("asr.app")

AUDIO_TYPES = [".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus", ".webm", ".mp4", ".mkv", ".mov", ".amr", ".wma"]
UI_FORMATS = ["srt", "vtt", "txt", "json"]
POLL_S = 0.5


# ---- helpers shared by the tabs -------------------------------------------------------------


def _gradio():
    import gradio as gr

    return gr


def user_error(message: str) -> Exception:
    """The message shown to the user; it is their input's fault, so no stack goes to the log."""
    return _gradio().Error(message, print_exception=False)


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
            rendered = render(record.result, fmt, settings.output, stem)
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
        f"[{format_timestamp(s.start_ms, '.')} → {format_timestamp(s.end_ms, '.')}] {speaker(s)}{s.text}"
        for s in transcript.sentences
    ]
    return "\n".join(lines) if lines else "(no speech found)"


#: Speaker colours, distinct on light and dark backgrounds (Okabe-Ito, colour-blind safe).
SPEAKER_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#999999")


def speakers_html(transcripts: list[tuple[str, Transcript]]) -> str:
    """The sentence list with each speaker in a colour of its own; empty without speaker labels."""
    blocks = []
    for title, transcript in transcripts:
        if not transcript.speakers:
            continue
        rows = []
        for s in transcript.sentences:
            colour = SPEAKER_COLOURS[(s.speaker or 0) % len(SPEAKER_COLOURS)]
            rows.append(
                f'<div class="asr-sentence" data-speaker="{s.speaker}">'
                f'<span class="asr-time">{format_timestamp(s.start_ms, ".")[:-4]}</span> '
                f'<b class="asr-speaker" style="color:{colour}">{html.escape(transcript.speaker_name(s) or "")}</b> '
                f'{html.escape(s.text)}</div>'
            )
        heading = f"<h4>{html.escape(title)}</h4>" if len(transcripts) > 1 else ""
        blocks.append(heading + "".join(rows))
    return "".join(blocks)


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


def wait_for(engine: Engine, jobs: list[JobRecord], progress) -> list[JobRecord]:
    """Poll until every job has finished, reporting queue position and stage."""
    total = len(jobs)
    while True:
        records = [engine.get(j.id) for j in jobs]
        pending = [r for r in records if not r.state.finished]
        if not pending:
            return records
        current = pending[0]
        done = total - len(pending)
        if current.state is JobState.QUEUED:
            progress((done) / total, desc=f"{current.filename}: waiting in queue (position {current.queue_position})")
        else:
            progress((done + current.progress) / total, desc=f"{current.filename}: {current.stage}")
        time.sleep(POLL_S)


def history_rows(engine: Engine, owner: str | None) -> list[list[Any]]:
    rows = []
    for r in engine.jobs(limit=200, owner=owner):
        rows.append([
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created_at)),
            r.filename,
            f"{r.duration_s:.1f}" if r.duration_s else "",
            r.state.value + (f" ({r.error})" if r.error and r.state is not JobState.COMPLETED else ""),
            f"{r.rtf:.4f}" if r.rtf is not None else "",
            r.kind.value,
            r.id,
        ])
    return rows


def system_markdown(engine: Engine) -> str:
    status = engine.status()
    lines = [
        f"- **ready**: {status['ready']}",
        f"- **device**: {status.get('device', 'loading…')}",
        f"- **precision**: {status.get('precision', 'loading…')}",
        f"- **queue**: {status['queue_waiting']} waiting (max {status['queue_max_size']})",
        "- **workers**: " + ", ".join(f"#{w['index']} {w['state']}" + (f" (job {w['job'][:8]})" if w["job"] else "")
                                      for w in status["workers"]),
        f"- **model load**: {status['load_seconds']} s, warm-up {status['warmup_seconds']} s",
    ]
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
        return getattr(request, "username", None) if self.settings.server.auth else None


def transcribe_tab(tab: _Tab) -> None:
    """Upload or record, transcribe, read the text and download subtitles."""
    gr = _gradio()
    engine, settings, registry = tab.engine, tab.settings, tab.registry

    # inputs order must match handler signature
    def transcribe(files, recording, punctuate, formats, itn, speakers, num_speakers, hotwords,
                   request: gr.Request, progress=gr.Progress()):
        given = list(files or []) + ([recording] if recording else [])
        if not given:
            raise user_error("Upload a file or record from the microphone first.")
        names = {Path(f): getattr(f, "orig_name", None) or Path(f).name for f in given}
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
        jobs, refused = [], []
        for path, name in names.items():
            try:
                jobs.append(engine.submit(path, name, JobKind.TRANSCRIBE, options, owner=tab.user_of(request)))
            except EngineBusyError as e:
                if not jobs:
                    raise friendly(e) from None
                refused.append(f"{name}: {e}")
            except Exception as e:
                raise friendly(e) from None
            finally:
                registry.discard(path)  # the job has its own copy (or the file was refused)
        records = wait_for(engine, jobs, progress)
        texts, files, notes = [], [], []
        for record in records:
            if record.state is not JobState.COMPLETED:
                # the job's own message, as the API and the CLI give it (it names the file)
                notes.append(record.error or f"{record.filename}: {record.state.value}")
                continue
            header = f"### {record.filename}\n" if len(records) > 1 else ""
            texts.append(header + sentences_text(record.result))
            written, problem = result_files_or_note(record, formats, settings, registry)
            files.extend(written)
            notes.append(timings_markdown(record) + (f"  \n{problem}" if problem else ""))
        notes.extend(f"**not queued** — {r}" for r in refused)
        if not texts and notes:
            raise user_error(" / ".join(n.replace("**", "") for n in notes))
        done = [r for r in records if r.state is JobState.COMPLETED]
        full_text = "\n\n".join(r.result.text for r in done)
        coloured = speakers_html([(r.filename, r.result) for r in done])
        return full_text, "\n\n".join(texts), gr.update(value=coloured, visible=bool(coloured)), files, \
            "\n\n".join(notes)

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
                run = gr.Button("Transcribe", variant="primary")
            with gr.Column():
                text = gr.Textbox(label="Text", lines=6, buttons=["copy"])
                sentences = gr.Textbox(label="Sentences with timestamps", lines=10)
                by_speaker = gr.HTML(visible=False, elem_id="speaker-sentences")
                downloads = gr.File(label="Downloads", file_count="multiple", interactive=False)
                timings = gr.Markdown()
        run.click(transcribe, [files, recording, punctuate, formats, itn, speakers, num_speakers, hotwords],
                  [text, sentences, by_speaker, downloads, timings],
                  concurrency_id="engine", api_visibility="private")


def vad_tab(tab: _Tab) -> None:
    """Speech segments only, as a table and a CSV."""
    gr = _gradio()
    engine, settings, registry = tab.engine, tab.settings, tab.registry

    def detect(file, request: gr.Request, progress=gr.Progress()):
        if not file:
            raise user_error("Upload a file first.")
        path = Path(file)
        try:
            job = engine.submit(path, getattr(file, "orig_name", None) or path.name, JobKind.VAD,
                                owner=tab.user_of(request))
        except Exception as e:
            raise friendly(e) from None
        finally:
            registry.discard(path)
        record = wait_for(engine, [job], progress)[0]
        if record.state is not JobState.COMPLETED:
            raise user_error(record.error or f"{record.filename}: {record.state.value}")
        rows = [[i + 1, format_timestamp(s.start_ms, "."), format_timestamp(s.end_ms, "."), round(s.duration_ms / 1000, 3)]
                for i, s in enumerate(record.result.segments)]
        summary = (f"**{len(rows)} speech segments** in {record.result.duration_s:.1f} s of audio "
                   f"(VAD took {record.result.timings.total_s:.2f} s)")
        written, problem = result_files_or_note(record, ["csv"], settings, registry)
        return rows, written, summary + (f"  \n{problem}" if problem else "")

    with gr.Tab("VAD", id="vad"):
        with gr.Row():
            with gr.Column():
                vad_file = upload_box(label="Audio or video file", file_types=AUDIO_TYPES)
                vad_run = gr.Button("Find speech", variant="primary")
            with gr.Column():
                vad_summary = gr.Markdown()
                vad_table = gr.Dataframe(headers=["#", "start", "end", "duration (s)"], interactive=False,
                                         label="Speech segments")
                vad_csv = gr.File(label="CSV", file_count="multiple", interactive=False)
        vad_run.click(detect, [vad_file], [vad_table, vad_csv, vad_summary], concurrency_id="engine",
                      api_visibility="private")


def history_tab(tab: _Tab) -> tuple[Any, Any, Callable[[Any], tuple[Any, Any]]]:
    """Past jobs, reopened with their files; returns the table, the picker and their refresh."""
    gr = _gradio()
    engine, settings, registry = tab.engine, tab.settings, tab.registry

    def refresh_history(request: gr.Request):
        rows = history_rows(engine, tab.user_of(request))
        choices = [(f"{r[0]} · {r[1]} · {r[3].split(' ')[0]}", r[6]) for r in rows]
        return rows, gr.update(choices=choices, value=None)

    def open_job(job_id, request: gr.Request):
        if not job_id:
            raise user_error("Choose a job from the list first.")
        try:
            record = engine.get(job_id)
        except Exception as e:
            raise friendly(e) from None
        if settings.server.auth and record.owner != tab.user_of(request):
            raise user_error("No such job.")
        if record.state is not JobState.COMPLETED:
            return f"{record.filename}: {record.state.value} — {record.error or ''}", [], ""
        if isinstance(record.result, VadResult):
            text = "\n".join(f"{format_timestamp(s.start_ms, '.')} → {format_timestamp(s.end_ms, '.')}"
                             for s in record.result.segments)
            written, problem = result_files_or_note(record, list(VAD_WRITERS), settings, registry)
            return text, written, timings_markdown(record) + (f"  \n{problem}" if problem else "")
        written, problem = result_files_or_note(record, UI_FORMATS, settings, registry)
        return (record.result.text + "\n\n" + sentences_text(record.result), written,
                timings_markdown(record) + (f"  \n{problem}" if problem else ""))

    with gr.Tab("History", id="history"):
        history_refresh = gr.Button("Refresh")
        history_table = gr.Dataframe(
            headers=["time", "file", "duration (s)", "state", "RTF", "kind", "id"], interactive=False,
            label="Past jobs (newest first)",
        )
        with gr.Row():
            history_pick = gr.Dropdown(label="Job", choices=[], interactive=True)
            history_open = gr.Button("Open")
        history_text = gr.Textbox(label="Text", lines=10)
        history_files = gr.File(label="Files", file_count="multiple", interactive=False)
        history_timings = gr.Markdown()
        history_refresh.click(refresh_history, None, [history_table, history_pick], api_visibility="private")
        history_open.click(open_job, [history_pick], [history_text, history_files, history_timings],
                           api_visibility="private")
    return history_table, history_pick, refresh_history


def system_tab(tab: _Tab) -> Any:
    """What is loaded and how the workers are doing; returns the panel, for the page load."""
    gr = _gradio()
    with gr.Tab("System", id="system"):
        system_refresh = gr.Button("Refresh")
        system_info = gr.Markdown()
        system_refresh.click(lambda: system_markdown(tab.engine), None, system_info, api_visibility="private")
    return system_info


def build_ui(engine: Engine, settings: Settings, registry: Any):
    """The Gradio Blocks app: Transcribe, VAD, History and System tabs (the server's UI factory).

    ``registry`` (asr.service.uploads.UploadRegistry) is told of every result file written, and of
    every upload a job has copied, which it then removes."""
    gr = _gradio()
    tab = _Tab(engine, settings, registry)
    with gr.Blocks(title="Offline ASR", delete_cache=settings.server.delete_cache_s) as demo:
        gr.Markdown("## Offline speech recognition · Paraformer-large (中文)")
        banner = gr.Markdown()
        with gr.Tabs():
            transcribe_tab(tab)
            vad_tab(tab)
            history_table, history_pick, refresh_history = history_tab(tab)
            system_info = system_tab(tab)

        def on_load(request: gr.Request):
            warning = ""
            if engine.ready.is_set() and engine.status().get("test_models"):
                warning = "⚠️ **Test models with RANDOM WEIGHTS are loaded: transcripts are meaningless.**"
            elif not engine.ready.is_set():
                warning = "⏳ The service is loading its models; transcription starts when they are ready."
            rows, picks = refresh_history(request)
            return warning, rows, picks, system_markdown(engine)

        demo.load(on_load, None, [banner, history_table, history_pick, system_info], api_visibility="private")
    return demo


# ---- entry point -----------------------------------------------------------------------------------


if __name__ == "__main__":
    from asr.service.server import main

    sys.exit(main(ui=build_ui))
