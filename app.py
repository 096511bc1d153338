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
from asr.errors import AsrError, EngineBusyError, storage_error
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
        return gr.Error(str(error), print_exception=False)
    logger.exception("unexpected error in the UI", exc_info=error)
    return gr.Error("Internal error while handling this request; the details are in the service log.", print_exception=False)


def outputs_dir() -> Path:
    """Files the UI offers for download live in Gradio's own temp dir, which it serves and sweeps."""
    root = Path(os.environ.get("GRADIO_TEMP_DIR") or "/tmp/gradio") / "results"
    root.mkdir(parents=True, exist_ok=True)
    return root


def write_result_files(record: JobRecord, formats: list[str], settings: Settings, registry: Any) -> list[str]:
    """The job's result as download files; raises StorageFullError / StorageUnavailableError
    (nothing partial is left) when they cannot be written. The job itself is done and saved."""
    directory = outputs_dir() / record.id
    stem = Path(record.filename).stem or "audio"
    paths = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for fmt in formats:
            path = directory / f"{stem}.{fmt}"
            partial = path.with_name(path.name + ".part")
            with open(partial, "w", encoding="utf-8", newline="") as f:
                if isinstance(record.result, VadResult):
                    VAD_WRITERS[fmt].write(record.result, f)
                else:
                    WRITERS[fmt].write(record.result, f, settings.output)
            os.replace(partial, path)
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
            raise gr.Error(f"Invalid file type. Please upload a file that is one of these formats: "
                           f"{box.file_types}", print_exception=False)
        path = NamedString(f.path)
        # The user's own name for the file, which the stored name may lack characters of:
        # messages and the history then name it as the API and the CLI do.
        path.orig_name = f.orig_name or Path(f.path).name
        return path

    box._process_single_file = process_single_file
    return box


def build_ui(engine: Engine, settings: Settings, registry: Any):
    """The Gradio Blocks app: Transcribe, VAD, History and System tabs.

    ``registry`` (asr.uploads.UploadRegistry) is told of every result file written, and of every
    upload a job has copied, which it then removes."""
    gr = _gradio()

    def user_of(request: gr.Request | None) -> str | None:
        return getattr(request, "username", None) if settings.server.auth else None

    # inputs order must match handler signature
    def transcribe(files, recording, punctuate, formats, request: gr.Request, progress=gr.Progress()):
        given = list(files or []) + ([recording] if recording else [])
        if not given:
            raise gr.Error("Upload a file or record from the microphone first.", print_exception=False)
        names = {Path(f): getattr(f, "orig_name", None) or Path(f).name for f in given}
        paths = list(names)
        formats = [f for f in (formats or []) if f in WRITERS] or ["srt"]
        jobs, refused = [], []
        for path in paths:
            try:
                jobs.append(engine.submit(path, names[path], JobKind.TRANSCRIBE,
                                          TranscribeOptions(punctuate=bool(punctuate)), owner=user_of(request)))
            except EngineBusyError as e:
                if not jobs:
                    raise friendly(e) from None
                refused.append(f"{names[path]}: {e}")
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
            raise gr.Error(" / ".join(n.replace("**", "") for n in notes), print_exception=False)
        full_text = "\n\n".join(r.result.text for r in records if r.state is JobState.COMPLETED)
        return full_text, "\n\n".join(texts), files, "\n\n".join(notes)

    def detect(file, request: gr.Request, progress=gr.Progress()):
        if not file:
            raise gr.Error("Upload a file first.", print_exception=False)
        path = Path(file)
        try:
            job = engine.submit(path, getattr(file, "orig_name", None) or path.name, JobKind.VAD, owner=user_of(request))
        except Exception as e:
            raise friendly(e) from None
        finally:
            registry.discard(path)
        record = wait_for(engine, [job], progress)[0]
        if record.state is not JobState.COMPLETED:
            raise gr.Error(record.error or f"{record.filename}: {record.state.value}", print_exception=False)
        rows = [[i + 1, format_timestamp(s.start_ms, "."), format_timestamp(s.end_ms, "."), round(s.duration_ms / 1000, 3)]
                for i, s in enumerate(record.result.segments)]
        summary = (f"**{len(rows)} speech segments** in {record.result.duration_s:.1f} s of audio "
                   f"(VAD took {record.result.timings.total_s:.2f} s)")
        written, problem = result_files_or_note(record, ["csv"], settings, registry)
        return rows, written, summary + (f"  \n{problem}" if problem else "")

    def refresh_history(request: gr.Request):
        rows = history_rows(engine, user_of(request))
        choices = [(f"{r[0]} · {r[1]} · {r[3].split(' ')[0]}", r[6]) for r in rows]
        return rows, gr.update(choices=choices, value=None)

    def open_job(job_id, request: gr.Request):
        if not job_id:
            raise gr.Error("Choose a job from the list first.", print_exception=False)
        try:
            record = engine.get(job_id)
        except Exception as e:
            raise friendly(e) from None
        if settings.server.auth and record.owner != user_of(request):
            raise gr.Error("No such job.", print_exception=False)
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

    with gr.Blocks(title="Offline ASR", delete_cache=settings.server.delete_cache_s) as demo:
        gr.Markdown("## Offline speech recognition · Paraformer-large (中文)")
        banner = gr.Markdown()
        with gr.Tabs():
            with gr.Tab("Transcribe", id="transcribe"):
                with gr.Row():
                    with gr.Column():
                        files = upload_box(label="Audio or video files", file_count="multiple", file_types=AUDIO_TYPES)
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
                        vad_file = upload_box(label="Audio or video file", file_types=AUDIO_TYPES)
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
    try:
        if directory.exists():
            shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise storage_error(e, f"the cache directory {directory} cannot be used (set storage.cache_dir)", directory) from e


#: Where the UI's uploads are kept, inside Gradio's temp dir (which its file checks count as uploaded).
UI_UPLOADS = "ui-uploads"


def create_app(settings: Settings, engine: Engine | None = None):
    """The ASGI app (API + UI) and its engine, not yet started."""
    cache = settings.storage.cache_path()
    os.environ["GRADIO_TEMP_DIR"] = str(cache / "gradio")
    for name in ("gradio", "tmp", "uploads"):
        _sweep(cache / name)
    gr = _gradio()
    from asr.api import create_api
    from asr.guards import (
        EventFileGuard,
        GradioRequestGuard,
        HostGuard,
        LoginGuard,
        LoginThrottle,
        UploadBudget,
        UploadGuard,
        allowed_hosts,
    )
    from asr.uploads import UploadRegistry, add_ui_upload_route

    engine = engine or Engine(settings)
    server = settings.server
    throttle = LoginThrottle(server.login_max_failures, server.login_max_wait_s)
    registry = UploadRegistry(cache / "gradio" / UI_UPLOADS, outputs_dir(), settings.storage.ui_upload_ttl_s)
    registry.start_sweeper(threading.Event())
    api = create_api(engine, settings, throttle)
    max_file = int(settings.audio.max_file_mb * 1024 * 1024)
    gradio_app: list[Any] = []

    def ui_user(request: Any) -> str | None:
        """The user of the UI's login cookie (Gradio keeps the sessions)."""
        app = gradio_app[0]
        token = (request.cookies.get(f"access-token-{app.cookie_id}")
                 or request.cookies.get(f"access-token-unsecure-{app.cookie_id}"))
        return app.tokens.get(token)

    # Before the mount, so that it answers in place of Gradio's own upload route.
    add_ui_upload_route(api, registry, max_file, ui_user, logins_on=bool(server.auth))
    demo = build_ui(engine, settings, registry)
    slots = settings.queue.max_size + settings.queue.workers
    demo.queue(max_size=slots, default_concurrency_limit=slots, api_open=False)
    theme = gr.themes.Default(font=["system-ui", "Noto Sans CJK SC", "sans-serif"], font_mono=["monospace"])
    logins = [tuple(entry.split(":", 1)) for entry in server.auth] or None
    app = gr.mount_gradio_app(
        api, demo, path="/",
        auth=logins,
        max_file_size=max_file,
        allowed_paths=[],
        blocked_paths=[str(settings.storage.state_path()), str(cache / "jobs"), str(cache / "uploads")],
        root_path=server.root_path or None,
        show_error=False,
        ssr_mode=False,
        enable_monitoring=False,
        footer_links=[],
        run_history=False,
        pwa=False,
        mcp_server=False,
        theme=theme,
    )
    gradio_app.append(next(r.app for r in app.routes if type(getattr(r, "app", None)).__name__ == "App"))
    # Gradio applies its own file checks (blocked paths, "was it uploaded") only once launch() has
    # run, which a mounted app never does: make them apply too, behind ours (EventFileGuard).
    demo.has_launched = True
    # Added innermost first: every request meets the Host check before anything else.
    request_cap = int(settings.audio.max_request_mb * 1024 * 1024)
    budget = UploadBudget(int(settings.storage.max_uploads_mb * 1024 * 1024), registry.stored_bytes)
    from asr.errors import FileTooLargeError, RequestTooLargeError

    api_cap = min(request_cap, max_file + 64 * 1024)  # one file, plus the multipart framing
    app.add_middleware(EventFileGuard, allows=registry.allows,
                       skip=("/v1/", "/gradio_api/upload", "/gradio_api/process_recording", "/login"))
    app.add_middleware(UploadGuard, budget=budget, limits={
        "/v1/": (api_cap, lambda: FileTooLargeError(f"the file is larger than the {max_file >> 20} MB limit")),
        "/gradio_api/upload": (request_cap, lambda: RequestTooLargeError(
            f"the upload is larger than the {request_cap >> 20} MB a request may send; send fewer files at once")),
        "/gradio_api/process_recording": (max_file, lambda: FileTooLargeError(
            f"the recording is larger than the {max_file >> 20} MB limit")),
    })
    event_names = {fn.api_name for fn in demo.fns.values() if fn.api_name}
    app.add_middleware(GradioRequestGuard, known_session=lambda s: s in demo._queue.pending_messages_per_session,
                       known_event=event_names.__contains__)
    app.add_middleware(LoginGuard, throttle=throttle)
    app.add_middleware(HostGuard, hosts=allowed_hosts(server.host, server.allowed_hosts),
                       allowed_origins=tuple(server.allowed_origins))
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
