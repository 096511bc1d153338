"""The web app: a Gradio Blocks UI over the engine, served with the HTTP API in one process.

    .venv/bin/asr serve [--config FILE]      # or: .venv/bin/python app.py

Thin by design: every tab calls the engine (asr.engine.Engine) and shows what it returns.
This is the only module that imports Gradio.
"""


import argparse
import faulthandler
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asr.config import Settings, load_settings
from asr.engine import Engine
from asr.errors import AsrError, EngineBusyError
from asr.health import HealthCheck, ensure_port_free, local_url
from asr.jobs import JobKind, JobRecord, JobState
from asr.notify import Notifier, Watchdog
from asr.types import TranscribeOptions, Transcript, VadResult
from asr.writers import VAD_WRITERS, WRITERS, format_timestamp

logger = logging.getLogger("asr.app")

AUDIO_TYPES = [".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus", ".webm", ".mp4", ".mkv", ".mov", ".amr", ".wma"]
UI_FORMATS = ["srt", "vtt", "txt", "json"]
POLL_S = 0.5


# ---- helpers shared by the tabs -------------------------------------------------------------


def _gradio():
    import gradio as gr

    return gr


def friendly(error: BaseException) -> Exception:
    """An AsrError's own message for the user; anything else is logged and kept vague."""
    gr = _gradio()
    if isinstance(error, AsrError):
        return gr.Error(str(error))
    logger.exception("unexpected error in the UI", exc_info=error)
    return gr.Error("Internal error while handling this request; the details are in the service log.")


def outputs_dir() -> Path:
    """Files the UI offers for download live in Gradio's own temp dir, which it serves and sweeps."""
    root = Path(os.environ.get("GRADIO_TEMP_DIR") or "/tmp/gradio") / "results"
    root.mkdir(parents=True, exist_ok=True)
    return root


def write_result_files(record: JobRecord, formats: list[str], settings: Settings) -> list[str]:
    directory = outputs_dir() / record.id
    directory.mkdir(parents=True, exist_ok=True)
    stem = Path(record.filename).stem or "audio"
    paths = []
    for fmt in formats:
        path = directory / f"{stem}.{fmt}"
        with open(path, "w", encoding="utf-8", newline="") as f:
            if isinstance(record.result, VadResult):
                VAD_WRITERS[fmt].write(record.result, f)
            else:
                WRITERS[fmt].write(record.result, f, settings.output)
        paths.append(str(path))
    return paths


def sentences_text(transcript: Transcript) -> str:
    lines = [
        f"[{format_timestamp(s.start_ms, '.')} → {format_timestamp(s.end_ms, '.')}] {s.text}"
        for s in transcript.sentences
    ]
    return "\n".join(lines) if lines else "(no speech found)"


def timings_markdown(record: JobRecord) -> str:
    t = record.timings
    if t is None or record.result is None:
        return ""
    return (
        f"**{record.filename}** — audio {record.result.duration_s:.1f} s, wall {t.total_s:.2f} s, "
        f"**RTF {record.rtf:.4f}**  \n"
        f"decode {t.decode_s:.2f} s · VAD {t.vad_s:.2f} s · ASR {t.asr_s:.2f} s · punctuation {t.punc_s:.2f} s"
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


def build_ui(engine: Engine, settings: Settings):
    """The Gradio Blocks app: Transcribe, VAD, History and System tabs."""
    gr = _gradio()

    def user_of(request: gr.Request | None) -> str | None:
        return getattr(request, "username", None) if settings.server.auth else None

    # inputs order must match handler signature
    def transcribe(files, recording, punctuate, formats, request: gr.Request, progress=gr.Progress()):
        paths = [Path(f) for f in (files or [])] + ([Path(recording)] if recording else [])
        if not paths:
            raise gr.Error("Upload a file or record from the microphone first.")
        formats = [f for f in (formats or []) if f in WRITERS] or ["srt"]
        jobs, refused = [], []
        for path in paths:
            try:
                jobs.append(engine.submit(path, path.name, JobKind.TRANSCRIBE,
                                          TranscribeOptions(punctuate=bool(punctuate)), owner=user_of(request)))
            except EngineBusyError as e:
                if not jobs:
                    raise friendly(e) from None
                refused.append(f"{path.name}: {e}")
            except Exception as e:
                raise friendly(e) from None
        records = wait_for(engine, jobs, progress)
        texts, files, notes = [], [], []
        for record in records:
            if record.state is not JobState.COMPLETED:
                notes.append(f"**{record.filename}**: {record.state.value} — {record.error}")
                continue
            header = f"### {record.filename}\n" if len(records) > 1 else ""
            texts.append(header + sentences_text(record.result))
            files.extend(write_result_files(record, formats, settings))
            notes.append(timings_markdown(record))
        notes.extend(f"**not queued** — {r}" for r in refused)
        if not texts and notes:
            raise gr.Error(" / ".join(n.replace("**", "") for n in notes))
        full_text = "\n\n".join(r.result.text for r in records if r.state is JobState.COMPLETED)
        return full_text, "\n\n".join(texts), files, "\n\n".join(notes)

    def detect(file, request: gr.Request, progress=gr.Progress()):
        if not file:
            raise gr.Error("Upload a file first.")
        path = Path(file)
        try:
            job = engine.submit(path, path.name, JobKind.VAD, owner=user_of(request))
        except Exception as e:
            raise friendly(e) from None
        record = wait_for(engine, [job], progress)[0]
        if record.state is not JobState.COMPLETED:
            raise gr.Error(f"{record.filename}: {record.error}")
        rows = [[i + 1, format_timestamp(s.start_ms, "."), format_timestamp(s.end_ms, "."), round(s.duration_ms / 1000, 3)]
                for i, s in enumerate(record.result.segments)]
        summary = (f"**{len(rows)} speech segments** in {record.result.duration_s:.1f} s of audio "
                   f"(VAD took {record.result.timings.total_s:.2f} s)")
        return rows, write_result_files(record, ["csv"], settings), summary

    def refresh_history(request: gr.Request):
        rows = history_rows(engine, user_of(request))
        choices = [(f"{r[0]} · {r[1]} · {r[3].split(' ')[0]}", r[6]) for r in rows]
        return rows, gr.update(choices=choices, value=None)

    def open_job(job_id, request: gr.Request):
        if not job_id:
            raise gr.Error("Choose a job from the list first.")
        try:
            record = engine.get(job_id)
        except Exception as e:
            raise friendly(e) from None
        if settings.server.auth and record.owner != user_of(request):
            raise gr.Error("No such job.")
        if record.state is not JobState.COMPLETED:
            return f"{record.filename}: {record.state.value} — {record.error or ''}", [], ""
        if isinstance(record.result, VadResult):
            text = "\n".join(f"{format_timestamp(s.start_ms, '.')} → {format_timestamp(s.end_ms, '.')}"
                             for s in record.result.segments)
            return text, write_result_files(record, list(VAD_WRITERS), settings), timings_markdown(record)
        return (record.result.text + "\n\n" + sentences_text(record.result),
                write_result_files(record, UI_FORMATS, settings), timings_markdown(record))

    with gr.Blocks(title="Offline ASR", delete_cache=settings.server.delete_cache_s) as demo:
        gr.Markdown("## Offline speech recognition · Paraformer-large (中文)")
        banner = gr.Markdown()
        with gr.Tabs():
            with gr.Tab("Transcribe", id="transcribe"):
                with gr.Row():
                    with gr.Column():
                        files = gr.File(label="Audio or video files", file_count="multiple", file_types=AUDIO_TYPES)
                        recording = gr.Audio(label="…or record", sources=["microphone"], type="filepath", format="wav")
                        punctuate = gr.Checkbox(label="Punctuation", value=True)
                        formats = gr.CheckboxGroup(UI_FORMATS, value=["srt", "txt"], label="Files to download")
                        run = gr.Button("Transcribe", variant="primary")
                    with gr.Column():
                        text = gr.Textbox(label="Text", lines=6, buttons=["copy"])
                        sentences = gr.Textbox(label="Sentences with timestamps", lines=10)
                        downloads = gr.File(label="Downloads", file_count="multiple", interactive=False)
                        timings = gr.Markdown()
                run.click(transcribe, [files, recording, punctuate, formats], [text, sentences, downloads, timings],
                          concurrency_id="engine", api_visibility="private")
            with gr.Tab("VAD", id="vad"):
                with gr.Row():
                    with gr.Column():
                        vad_file = gr.File(label="Audio or video file", file_types=AUDIO_TYPES)
                        vad_run = gr.Button("Find speech", variant="primary")
                    with gr.Column():
                        vad_summary = gr.Markdown()
                        vad_table = gr.Dataframe(headers=["#", "start", "end", "duration (s)"], interactive=False,
                                                 label="Speech segments")
                        vad_csv = gr.File(label="CSV", file_count="multiple", interactive=False)
                vad_run.click(detect, [vad_file], [vad_table, vad_csv, vad_summary], concurrency_id="engine",
                              api_visibility="private")
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
            with gr.Tab("System", id="system"):
                system_refresh = gr.Button("Refresh")
                system_info = gr.Markdown()
                system_refresh.click(lambda: system_markdown(engine), None, system_info, api_visibility="private")

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


# ---- serving --------------------------------------------------------------------------------------


def _sweep(directory: Path) -> None:
    """Gradio only deletes the temp files of its own process; a crash leaves the rest."""
    if directory.exists():
        shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)


def create_app(settings: Settings, engine: Engine | None = None):
    """The ASGI app (API + UI) and its engine, not yet started."""
    cache = settings.storage.cache_path()
    os.environ["GRADIO_TEMP_DIR"] = str(cache / "gradio")
    for name in ("gradio", "tmp", "uploads"):
        _sweep(cache / name)
    gr = _gradio()
    from asr.api import create_api

    engine = engine or Engine(settings)
    api = create_api(engine, settings)
    demo = build_ui(engine, settings)
    slots = settings.queue.max_size + settings.queue.workers
    demo.queue(max_size=slots, default_concurrency_limit=slots, api_open=False)
    theme = gr.themes.Default(font=["system-ui", "Noto Sans CJK SC", "sans-serif"], font_mono=["monospace"])
    logins = [tuple(entry.split(":", 1)) for entry in settings.server.auth] or None
    app = gr.mount_gradio_app(
        api, demo, path="/",
        auth=logins,
        max_file_size=int(settings.audio.max_file_mb * 1024 * 1024),
        allowed_paths=[],
        blocked_paths=[str(settings.storage.state_path()), str(cache / "jobs"), str(cache / "uploads")],
        root_path=settings.server.root_path or None,
        show_error=False,
        ssr_mode=False,
        enable_monitoring=False,
        footer_links=[],
        run_history=False,
        pwa=False,
        mcp_server=False,
        theme=theme,
    )
    return app, engine


def start_engine_in_background(engine: Engine) -> threading.Thread:
    def load() -> None:
        try:
            engine.start()
        except Exception:
            logger.critical("the engine could not start", exc_info=True)
            logging.shutdown()
            os._exit(3)

    thread = threading.Thread(target=load, name="engine-start", daemon=True)
    thread.start()
    return thread


def announce_when_ready(engine: Engine, server: Any, notifier: Notifier, settings: Settings) -> Callable[[], None]:
    """Tell systemd READY=1 once the models are warmed AND the port listens, then start the
    health-gated watchdog. Nothing is sent if either never happens (the unit then times out).
    Returns the function that stops the watchdog, for the shutdown."""
    stopped = threading.Event()
    lock = threading.Lock()
    watchdogs: list[Watchdog] = []

    def run() -> None:
        while not (engine.ready.is_set() and server.started):
            if server.should_exit or stopped.is_set():
                return
            time.sleep(0.1)
        url = local_url(settings.server.host, settings.server.port)
        status = f"ready: models loaded in {engine.load_seconds:.1f} s, serving on {url}"
        with lock:
            if stopped.is_set():
                return
            notifier.ready(status)
            if notifier.watchdog_interval_s:
                watchdog = Watchdog(notifier, HealthCheck(engine, url, settings.server.health_timeout_s), status)
                watchdog.start()
                watchdogs.append(watchdog)

    def stop() -> None:
        with lock:
            stopped.set()
        for watchdog in watchdogs:
            watchdog.stop()

    threading.Thread(target=run, name="sd-notify", daemon=True).start()
    return stop


def serve(
    settings: Settings,
    engine: Engine | None = None,
    notifier: "Notifier | None" = None,
    on_stop: "Callable[[], None] | None" = None,
) -> int:
    """Run the web app and API until stopped.

    ``asr serve --ray`` passes an engine whose workers are Ray actors (and what to shut down after);
    everything else, systemd readiness and the watchdog included, is the same."""
    import uvicorn

    from asr.model_files import locate_all

    notifier = notifier or Notifier.from_environment()  # read first: it also hides NOTIFY_SOCKET from children
    # A service that hangs (start-up that never ends, a wedged worker) is diagnosed from outside:
    # `systemctl kill -s USR1 asr` writes every thread's stack to the journal and the service goes on.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    # Fail fast, with the fix, before anything slow: a taken port, missing model files.
    ensure_port_free(settings.server.host, settings.server.port)
    if engine is None:
        locate_all(settings)
        notifier.status("loading the models")
    # Starlette spools uploads through tempfile: keep them on our own disk, not a tmpfs /tmp.
    import tempfile

    os.environ["TMPDIR"] = str(settings.storage.cache_path() / "tmp")
    tempfile.tempdir = None
    # Models load while the UI is built: the two overlap on the cores and start-up is shorter.
    engine = engine or Engine(settings)
    start_engine_in_background(engine)
    app, engine = create_app(settings, engine)
    logger.info("serving on http://%s:%d (UI and API)", settings.server.host, settings.server.port)
    config = uvicorn.Config(app, host=settings.server.host, port=settings.server.port, log_level="warning",
                            timeout_graceful_shutdown=10)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if not self.should_exit:  # tell systemd at once, not after the graceful shutdown
                notifier.stopping("stopping: waiting jobs become interrupted")
            super().handle_exit(sig, frame)

    server = Server(config)
    stop_watchdog = announce_when_ready(engine, server, notifier, settings)
    # uvicorn re-raises SIGTERM once it has shut down; with the default handler that would kill
    # the process before the engine is stopped. The stop is clean, so exit 0 instead.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run()
    finally:
        stop_watchdog()
        engine.stop()
        if on_stop is not None:
            on_stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Offline ASR web app and API")
    parser.add_argument("--config", metavar="FILE", help="config file (default: $ASR_CONFIG or ./config.yaml)")
    parser.add_argument("--host", help="bind address (default from config: 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default from config: 6006)")
    args = parser.parse_args(argv)
    from asr.logs import setup_logging

    overrides: dict[str, Any] = {}
    if args.host or args.port:
        overrides["server"] = {k: v for k, v in (("host", args.host), ("port", args.port)) if v}
    try:
        settings = load_settings(args.config, **overrides)
        setup_logging(settings.log_level)
        return serve(settings)
    except AsrError as e:
        print(f"asr serve: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
