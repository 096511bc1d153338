"""The server: the HTTP API, the guards and the UI in one ASGI app, served by uvicorn, with the
process around it (systemd readiness and watchdog, signals, the engine's start in the background).

    asr serve [--config FILE]      # the UI file is found through server.ui_path
    python app.py [--config FILE]  # app.py hands its own UI in

The UI comes in through one seam, ``ui``: a factory ``(engine, settings, registry) -> gradio.Blocks``
(app.py's ``build_ui``). The package never imports app.py; ``load_ui`` loads it from a file path.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib.util
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
from asr.errors import AsrError, ConfigError, storage_error
from asr.service.engine import Engine
from asr.service.health import HealthCheck, ensure_port_free, local_url
from asr.service.notify import Notifier, Watchdog
from asr.service.uploads import UploadRegistry

logger = logging.getLogger(__name__)

#: What the server takes the UI as: (engine, settings, upload registry) -> a gradio.Blocks.
UiFactory = Callable[[Engine, Settings, UploadRegistry], Any]


def ui_file(settings: Settings) -> Path:
    """The app.py ``asr serve`` takes its UI from: ``server.ui_path``, else the one beside the package
    (a checkout or an editable install). Raises ConfigError when there is none."""
    path = settings.server.ui_path or Path(__file__).resolve().parents[2] / "app.py"
    if not path.is_file():
        raise ConfigError(f"the web UI {path} was not found: set server.ui_path (ASR_SERVER__UI_PATH) to the "
                          "app.py of this release, e.g. /opt/asr/src/app.py")
    return path


def load_ui(settings: Settings) -> UiFactory:
    """The UI factory (``build_ui``) of ``ui_file``, loaded from its path under a module name of its
    own, so that no module called ``app`` is imported or needs installing."""
    path = ui_file(settings)
    spec = importlib.util.spec_from_file_location("asr_webui", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.build_ui


def session_user(gradio_app: Any, request: Any) -> str | None:
    """The user of the UI's login cookie on ``request`` (Gradio's App keeps the sessions); None without one."""
    tokens, cookie_id = getattr(gradio_app, "tokens", None), getattr(gradio_app, "cookie_id", None)
    if not isinstance(tokens, dict) or cookie_id is None:
        return None
    token = (request.cookies.get(f"access-token-{cookie_id}")
             or request.cookies.get(f"access-token-unsecure-{cookie_id}"))
    return tokens.get(token)


def live_user(ui_user: Callable[[Any], str | None], auth: list[str], throttle: Any) -> Callable[[Any], str | None]:
    """Who a live stream is: the UI's login cookie (the Live tab), else HTTP Basic or ``Bearer user:password``
    (``ws://user:password@host``, which FunASR's Python clients turn into the header), with the same back-off
    for wrong passwords as the API's."""
    from asr.service.api import login_valid, parse_logins, presented_login

    logins = parse_logins(auth)

    def user_of(websocket: Any) -> str | None:
        user = ui_user(websocket)
        if user is not None:
            return user
        presented = presented_login(websocket)
        if presented is None:
            return None
        name, password = presented
        client = websocket.client.host if websocket.client else "unknown"
        throttle.check(name, client)
        if not login_valid(logins, name, password):
            throttle.failed(name, client)
            return None
        throttle.succeeded(name, client)
        return name

    return user_of


def results_dir() -> Path:
    """Files the UI offers for download live in Gradio's own temp dir, which it serves and sweeps."""
    root = Path(os.environ.get("GRADIO_TEMP_DIR") or "/tmp/gradio") / "results"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _sweep(directory: Path) -> None:
    """Gradio only deletes the temp files of its own process; a crash leaves the rest."""
    try:
        if directory.exists():
            shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise storage_error(e, f"the cache directory {directory} cannot be used (set storage.cache_dir)", directory) from e


def create_app(settings: Settings, ui: UiFactory, engine: Engine | None = None):
    """The ASGI app (API + UI) and its engine, not yet started."""
    cache = settings.storage.cache_path()
    os.environ["GRADIO_TEMP_DIR"] = str(cache / "gradio")
    for name in ("gradio", "tmp", "uploads"):
        _sweep(cache / name)
    import gradio as gr

    from asr.service.api import create_api
    from asr.service.guards import (
        EventFileGuard,
        GradioRequestGuard,
        HostGuard,
        LoginGuard,
        LoginThrottle,
        UploadBudget,
        UploadGuard,
        allowed_hosts,
    )
    from asr.service.language import UiLanguage
    from asr.service.live import add_live_routes
    from asr.service.login_page import add_login_page
    from asr.service.media import media_root, remove_orphans
    from asr.service.ui_text import GRADIO_LOCALE, gradio_translations
    from asr.service.uploads import add_playback_route, add_ui_upload_route

    engine = engine or Engine(settings)
    server = settings.server
    throttle = LoginThrottle(server.login_max_failures, server.login_max_wait_s)
    registry = UploadRegistry(cache / "gradio", results_dir(), settings.storage.ui_upload_ttl_s)
    engine.result_dirs.append(registry.results_dir)  # the UI's downloads of a job go when it is deleted
    engine.result_dirs.append(media_root(settings))  # and its playback audio
    remove_orphans(media_root(settings), engine.has_job)
    registry.start_sweeper(threading.Event())
    api = create_api(engine, settings, throttle)
    max_file = int(settings.audio.max_file_mb * 1024 * 1024)
    gradio_app: list[Any] = []

    def ui_user(request: Any) -> str | None:
        return session_user(gradio_app[0], request)

    # Before the mount, so that it answers in place of Gradio's own upload route.
    add_ui_upload_route(api, registry, max_file, ui_user, logins_on=bool(server.auth))
    add_playback_route(api, engine, media_root(settings), ui_user, logins_on=bool(server.auth))
    if engine.live is not None:  # before the mount: FunASR's clients connect to the root
        add_live_routes(api, engine, settings, live_user(ui_user, server.auth, throttle))
    demo = ui(engine, settings, registry)
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
        i18n=gr.I18n(**gradio_translations()),
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
    app.add_middleware(UiLanguage, locale_of=GRADIO_LOCALE, root_path=server.root_path)
    if server.auth:  # our login page in place of Gradio's; it logs in through Gradio's /login, behind LoginGuard
        add_login_page(app, ui_user, server.root_path)
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
    ui: UiFactory,
    engine: Engine | None = None,
    notifier: "Notifier | None" = None,
    on_stop: "Callable[[], None] | None" = None,
) -> int:
    """Run the web app and API until stopped.

    ``asr serve --ray`` passes an engine whose workers are Ray actors (and what to shut down after);
    everything else, systemd readiness and the watchdog included, is the same."""
    import uvicorn

    from asr.models.files import locate_all

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
    app, engine = create_app(settings, ui, engine)
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


def main(ui: UiFactory | None = None, argv: list[str] | None = None) -> int:
    """``python app.py``: the service with the UI handed in (``ui``), else the one ``load_ui`` finds."""
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
        return serve(settings, ui or load_ui(settings))
    except AsrError as e:
        print(f"asr serve: error: {e}", file=sys.stderr)
        return 2

