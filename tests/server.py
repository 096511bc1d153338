"""Run the real service (``app.py``: UI + API in one process) as a subprocess for end-to-end tests.

    with running_server(tmp_dir, test_models) as server:
        httpx.get(server.url + "/readyz")

The server gets a config file of its own in ``tmp_dir`` (test models, CPU, private state and cache
dirs), a free port on 127.0.0.1, and none of the caller's ``ASR_*`` environment. Its output goes to
``tmp_dir/server.log``; ``server.log_tail()`` shows the end when something goes wrong.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def write_config(directory: Path, models_dir: Path, overrides: dict[str, Any] | None = None) -> Path:
    """A YAML config for the test server: the given model cache, CPU, state and cache under ``directory``."""
    # The server sees the models through a link inside its own temp dir, so what it shows (the
    # System tab, the screenshots in docs/) names no path of the machine the tests ran on.
    link = directory / "models"
    if not link.exists():
        link.symlink_to(models_dir.resolve(), target_is_directory=True)
    config = _merge({
        "models": {"cache_dir": str(link)},
        "runtime": {"device": "cpu"},
        "storage": {"state_dir": str(directory / "state"), "cache_dir": str(directory / "cache")},
    }, overrides or {})
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen
    config_path: Path
    log_path: Path

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return "(no server log)"

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + "/readyz", timeout=5, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASR_")}
    env.update(PYTHONUNBUFFERED="1", GRADIO_ANALYTICS_ENABLED="False", NO_PROXY="127.0.0.1,localhost",
               no_proxy="127.0.0.1,localhost")
    return env


def start_server(directory: Path, models_dir: Path, *, overrides: dict[str, Any] | None = None,
                 ready_timeout: float = READY_TIMEOUT_S, attempts: int = 3,
                 env: dict[str, str] | None = None) -> Server:
    """Start ``app.py`` and wait until ``GET /readyz`` answers 200 (models loaded and warmed up).

    Retries on a new port if the chosen one was taken in the meantime; raises RuntimeError with the
    end of the server's log if it exits or is not ready within ``ready_timeout`` seconds.
    """
    directory.mkdir(parents=True, exist_ok=True)
    config_path = write_config(directory, models_dir, overrides)
    for attempt in range(1, attempts + 1):
        port = free_port()
        log_path = directory / f"server-{attempt}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "app.py", "--config", str(config_path), "--port", str(port)],
                cwd=REPO, env={**_environment(), **(env or {})}, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = Server(f"http://127.0.0.1:{port}", port, process, config_path, log_path)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if server.ready():
                return server
            time.sleep(0.5)
        else:
            stop_server(server)
            raise RuntimeError(f"the server was not ready within {ready_timeout:.0f} s; its log ends:\n"
                               f"{server.log_tail()}")
        tail = server.log_tail()
        if "address already in use" not in tail.lower() or attempt == attempts:
            raise RuntimeError(f"the server exited with code {process.returncode} before it was ready; "
                               f"its log ends:\n{tail}")
    raise AssertionError("unreachable")


def stop_server(server: Server, timeout: float = STOP_TIMEOUT_S) -> int | None:
    """Terminate (SIGTERM: graceful shutdown), then kill if it is still running after ``timeout``."""
    process = server.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return process.returncode


@contextlib.contextmanager
def running_server(directory: Path, models_dir: Path, **kwargs: Any) -> Iterator[Server]:
    server = start_server(directory, models_dir, **kwargs)
    try:
        yield server
    finally:
        stop_server(server)
