"""The systemd unit (checked by the real systemd-analyze) and the notify protocol of the real
``asr serve``, started as the unit starts it: no systemd runs here, so the test plays the service
manager. It binds the datagram socket that NOTIFY_SOCKET names, sets WATCHDOG_USEC, and reads
what the service sends, while it polls /readyz itself.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from asr.errors import ConfigError
from asr.service.health import ensure_port_free
from asr.service.notify import Notifier, Watchdog
from tests.server import REPO, free_port, write_config

UNIT = REPO / "systemd" / "asr.service"
WATCHDOG_USEC = 2_000_000
WAIT_S = 120.0  # a hang guard only: every wait below ends on an event


# ---- the unit file ----------------------------------------------------------------------------


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value given (systemd allows a key more than once)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path}: a setting outside any section: {raw!r}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def environment(service: dict[str, list[str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in service.get("Environment", []):
        for assignment in line.split():
            name, _, value = assignment.partition("=")
            env[name] = value
    return env


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is not installed (apt-get install systemd); the unit tests need it")
    return tool


@pytest.fixture(scope="module")
def unit_root(tmp_path_factory) -> Path:
    """A file-system root for systemd-analyze --root: the distribution's units (for the targets
    the unit depends on), the unit itself, and an executable where ExecStart points, since
    `verify` checks that the command exists and nothing is installed under /opt here."""
    root = tmp_path_factory.mktemp("unit-root")
    system_units = next((Path(p) for p in ("/usr/lib/systemd/system", "/lib/systemd/system")
                         if Path(p, "sysinit.target").exists()), None)
    if system_units is None:
        pytest.fail("no systemd unit directory with sysinit.target found (apt-get install systemd)")
    shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system/asr.service")
    exec_start = parse_unit(UNIT)["Service"]["ExecStart"][0].split()[0]
    stub = root / exec_start.lstrip("/")
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    return root


def test_unit_passes_systemd_analyze_verify(unit_root):
    result = subprocess.run([systemd_analyze(), "verify", f"--root={unit_root}", "/etc/systemd/system/asr.service"],
                            capture_output=True, text=True, timeout=120)
    # verify exits 0 even for unknown keys or unparsable values: any output at all is a finding.
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        result.returncode, result.stdout, result.stderr)


def test_unit_security_exposure_stays_low(unit_root):
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", f"--root={unit_root}", "--threshold=20", "--no-pager",
         "/etc/systemd/system/asr.service"],
        capture_output=True, text=True, timeout=120,
    )
    overall = [line for line in result.stdout.splitlines() if "Overall exposure level" in line]
    assert result.returncode == 0, f"exposure above 2.0: {overall or result.stdout[-2000:]}\n{result.stderr}"


def test_unit_has_the_required_settings():
    unit = parse_unit(UNIT)
    service = unit["Service"]

    def one(key: str) -> str:
        assert key in service, f"{key}= is missing"
        return service[key][-1]

    # life cycle
    assert one("Type") == "notify" and one("NotifyAccess") == "main"
    assert one("Restart") == "on-failure" and one("RestartSec") and one("TimeoutStartSec")
    assert one("WatchdogSec") and one("TimeoutStopSec")
    exec_start = one("ExecStart").split()
    assert exec_start[0].endswith("/bin/asr") and exec_start[1:3] == ["serve", "--config"], exec_start
    assert one("DynamicUser") == "yes" or service.get("User"), "runs as a dedicated user"
    assert one("ExecStartPre").split() == [exec_start[0], "serve", "--check", "--config", exec_start[3]]
    # the config (it may hold logins) comes in as a credential, readable by the service alone
    assert one("LoadCredential") == "config.yaml:/etc/asr/config.yaml" and exec_start[3] == "%d/config.yaml"
    # hardening
    expected = {"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
                "DevicePolicy": "closed", "PrivateDevices": "no", "IPAddressDeny": "any",
                "IPAddressAllow": "localhost", "OOMPolicy": "continue"}
    assert {k: one(k) for k in expected} == expected
    assert any("nvidia" in allow for allow in service["DeviceAllow"])
    for key in ("MemoryMax", "LimitNOFILE", "LogRateLimitIntervalSec", "LogRateLimitBurst"):
        assert one(key)
    assert "MemoryDenyWriteExecute" not in service  # breaks PyTorch's oneDNN JIT
    # directories: what the service writes goes exactly where systemd gives it a place
    env = environment(service)
    assert env["ASR_CONFIG"] == exec_start[3]
    assert env["MODELSCOPE_CACHE"]
    assert env["ASR_STORAGE__STATE_DIR"] == f"/var/lib/{one('StateDirectory')}"
    assert env["ASR_STORAGE__CACHE_DIR"] == f"/var/cache/{one('CacheDirectory')}"
    assert env["HF_HUB_OFFLINE"] == "1" and env["GRADIO_ANALYTICS_ENABLED"] == "False"


# ---- the notify protocol --------------------------------------------------------------------------


class ServiceManager:
    """The notify socket of a pretend service manager: every datagram, with when it arrived."""

    def __init__(self, path: Path):
        self.path = path
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.socket.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.socket.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._changed:
                self.messages.append((time.monotonic(), data.decode("utf-8")))
                self._changed.notify_all()

    def wait_for(self, predicate: Callable[[list[str]], bool], what: str, process: subprocess.Popen,
                 log: Path) -> None:
        deadline = time.monotonic() + WAIT_S
        with self._changed:
            while not predicate([m for _, m in self.messages]):
                assert process.poll() is None, (f"the service exited ({process.returncode}) before {what}\n"
                                                 f"{log_tail(log)}")
                if time.monotonic() >= deadline:
                    pytest.fail(f"no {what} within {WAIT_S:.0f} s; last: {self.texts()[-8:]}\n"
                                f"{hung_service_report(process, log)}")
                self._changed.wait(0.2)

    def texts(self) -> list[str]:
        with self._changed:
            return [m for _, m in self.messages]

    def first(self, field: str) -> int:
        return next(i for i, m in enumerate(self.texts()) if has(m, field))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.socket.close()


def log_tail(log: Path, chars: int = 6000) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-chars:]


def hung_service_report(process: subprocess.Popen, log: Path) -> str:
    """What the service was doing: SIGUSR1 makes it write every thread's stack to its log."""
    if process.poll() is None:
        process.send_signal(signal.SIGUSR1)
        time.sleep(2)
    return f"the service's log, ending with its threads' stacks:\n{log_tail(log, 20000)}"


def has(message: str, field: str) -> bool:
    """The datagram has a line that is ``field`` or starts with it (STATUS=unhealthy: ...)."""
    return any(line.startswith(field) for line in message.split("\n"))


def count(messages: list[str], field: str, start: int = 0) -> int:
    return sum(1 for m in messages[start:] if has(m, field))


def service_env(notify_socket: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASR_", "NOTIFY_", "WATCHDOG_"))}
    env.update(NOTIFY_SOCKET=str(notify_socket), WATCHDOG_USEC=str(WATCHDOG_USEC), PYTHONUNBUFFERED="1",
               GRADIO_ANALYTICS_ENABLED="False", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return env


def start_service(directory: Path, models_dir: Path, manager: ServiceManager,
                  overrides: dict | None = None) -> tuple[subprocess.Popen, str, Path]:
    """`asr serve --config FILE` from an empty working directory, as ExecStart runs it."""
    port = free_port()
    config = write_config(directory, models_dir, {"server": {"port": port, "health_timeout_s": 0.5},
                                                  **(overrides or {})})
    workdir = directory / "workdir"
    workdir.mkdir(exist_ok=True)
    log = directory / "service.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "asr", "serve", "--config", str(config)],
                                   cwd=workdir, env=service_env(manager.path), stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}", log


def stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return process.returncode


@pytest.fixture
def manager(tmp_path):
    path = tmp_path / "notify.sock"
    assert len(str(path)) < 100, "AF_UNIX paths are limited to 108 bytes"
    m = ServiceManager(path)
    yield m
    m.close()


def test_ready_is_sent_only_once_readyz_is_true_then_watchdog_pings_follow(tmp_path, test_models, manager):
    process, url, log = start_service(tmp_path, test_models, manager)
    polls: list[tuple[float, int | None]] = []
    polling = threading.Event()

    def poll() -> None:
        with httpx.Client(trust_env=False, timeout=5) as client:
            while not polling.is_set():
                started = time.monotonic()
                try:
                    status: int | None = client.get(url + "/readyz").status_code
                except httpx.HTTPError:
                    status = None  # not listening yet
                polls.append((started, status))
                time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        manager.wait_for(lambda ms: count(ms, "READY=1") == 1, "READY=1", process, log)
        ready_at = manager.messages[manager.first("READY=1")][0]
        # READY=1 means ready: at the moment it arrives, /readyz already says so.
        assert httpx.get(url + "/readyz", trust_env=False, timeout=5).status_code == 200
        ready_index = manager.first("READY=1")
        manager.wait_for(lambda ms: count(ms, "WATCHDOG=1", ready_index) >= 3, "three WATCHDOG=1 pings", process, log)
        polling.set()
        poller.join(10)
        messages = manager.texts()
        assert count(messages, "WATCHDOG=1", 0) == count(messages, "WATCHDOG=1", ready_index), \
            "a watchdog ping came before READY=1"
        assert messages[0] == "STATUS=loading the models"
        assert any(m.startswith("STATUS=ready") for m in messages[ready_index].split("\n"))
        assert [s for t, s in polls if t >= ready_at and s != 200] == [], "/readyz failed after READY=1"
        assert any(s != 200 for _, s in polls), "the poller never saw the service before it was ready"
        # SIGUSR1 (systemctl kill -s USR1): every thread's stack to the log, and the service goes on.
        process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + WAIT_S
        while "in _work" not in log_tail(log) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert 'File "' in log_tail(log) and "in _work" in log_tail(log), log_tail(log)
        assert process.poll() is None
        assert httpx.get(url + "/readyz", trust_env=False, timeout=5).status_code == 200
        # A stop: STOPPING=1 at once, then a clean exit.
        assert stop(process) == 0, log.read_text(errors="replace")[-3000:]
        manager.wait_for(lambda ms: count(ms, "STOPPING=1") == 1, "STOPPING=1", process, log)
    finally:
        polling.set()
        stop(process)


def test_no_ready_when_the_models_are_missing(tmp_path, manager):
    empty = tmp_path / "no-models"
    empty.mkdir()
    process, _, log = start_service(tmp_path, empty, manager)
    assert process.wait(WAIT_S) == 2
    output = log.read_text(errors="replace")
    assert "asr serve: error: vad model" in output and "not found" in output and "asr download" in output, output
    assert "Traceback" not in output
    time.sleep(0.5)  # let any stray datagram arrive before asserting there is none
    assert count(manager.texts(), "READY=1") == 0


def test_no_ready_and_a_clear_error_when_the_port_is_taken(tmp_path, test_models, manager):
    """A second instance on the same port stops at once, before loading the models, and says why."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        process, _, log = start_service(tmp_path, test_models, manager, {"server": {"port": port}})
        assert process.wait(WAIT_S) == 2, log_tail(log)
    output = log_tail(log)
    assert f"asr serve: error: cannot listen on 127.0.0.1:{port}: Address already in use" in output, output
    assert "another asr serve" in output and "--port" in output and "Traceback" not in output
    assert "loaded" not in output, "the models were loaded before the port was checked"
    assert count(manager.texts(), "READY=1") == 0


def test_the_port_check_binds_as_the_server_does():
    """Every address the host resolves to is tried (a taken IPv4 port is seen through
    "localhost" and the wildcard), and IPv6 sockets are IPv6-only, as the web server's are."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        for host in ("127.0.0.1", "localhost", "0.0.0.0"):
            with pytest.raises(ConfigError, match=f"cannot listen on {re.escape(host)}:{port}: Address already in use"):
                ensure_port_free(host, port)
        if socket.has_ipv6 and _ipv6_loopback():
            ensure_port_free("::1", port)  # another family's port: free


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_no_ready_when_a_model_fails_to_load(tmp_path, test_models, manager):
    """The files pass the start-up size check, but the checkpoint is garbage: the engine fails
    while loading, the process exits non-zero, and READY=1 is never sent."""
    models = tmp_path / "broken-models"
    shutil.copytree(test_models / "models", models / "models")
    checkpoint = next((models / "models").glob("iic--speech_paraformer-large-vad-punc*/snapshots/*/model.pt"))
    checkpoint.write_bytes(b"\0" * checkpoint.stat().st_size)
    process, _, log = start_service(tmp_path, models, manager)
    assert process.wait(WAIT_S) == 3, log.read_text(errors="replace")[-3000:]
    assert "the engine could not start" in log.read_text(errors="replace")
    assert manager.texts()[:1] == ["STATUS=loading the models"]
    assert count(manager.texts(), "READY=1") == 0


def test_watchdog_pings_stop_while_the_job_database_is_locked(tmp_path, test_models, manager):
    """Another process holds the job database's write lock: submits would hang and fail, so the
    health check fails and the pings stop (systemd would restart the service after WatchdogSec).
    They resume once the lock is released."""
    process, _, log = start_service(tmp_path, test_models, manager)
    try:
        manager.wait_for(lambda ms: count(ms, "WATCHDOG=1") >= 1, "a first WATCHDOG=1", process, log)
        db = sqlite3.connect(str(tmp_path / "state" / "jobs.sqlite3"), isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            locked = len(manager.texts())
            manager.wait_for(lambda ms: count(ms, "STATUS=unhealthy", locked) >= 2, "two unhealthy reports",
                             process, log)
            messages = manager.texts()
            first_bad = next(i for i in range(locked, len(messages)) if messages[i].startswith("STATUS=unhealthy"))
            assert count(messages, "WATCHDOG=1", first_bad) == 0, messages[first_bad:]
            assert "database is locked" in messages[first_bad]
        finally:
            db.execute("ROLLBACK")
            db.close()
        released = len(manager.texts())
        manager.wait_for(lambda ms: count(ms, "WATCHDOG=1", released) >= 1, "pings after the lock is released",
                         process, log)
        after = manager.texts()[released:]
        assert any(m.startswith("STATUS=ready") for m in after), after
        assert "health check failed, withholding the watchdog ping" in log.read_text(errors="replace")
    finally:
        stop(process)


# ---- the notifier on its own ------------------------------------------------------------------------


def test_notifier_reads_and_hides_the_environment_and_honours_watchdog_pid(tmp_path):
    env = {"NOTIFY_SOCKET": "@asr-test", "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}
    notifier = Notifier.from_environment(env)
    assert notifier.watchdog_interval_s == 4.0 and env == {}, "children must not inherit the socket"
    other = Notifier.from_environment({"NOTIFY_SOCKET": "@asr-test", "WATCHDOG_USEC": "4000000",
                                       "WATCHDOG_PID": "1"})
    assert other.enabled and other.watchdog_interval_s is None, "the watchdog is meant for another process"
    assert not Notifier.from_environment({}).enabled and not Notifier.from_environment({}).send("READY=1")
    with pytest.raises(ValueError, match="WATCHDOG_USEC"):
        Watchdog(Notifier.from_environment({}), lambda: None, "ready")


def test_notifier_speaks_to_an_abstract_socket():
    """systemd may hand out an abstract-namespace socket ("@name")."""
    name = f"asr-test-{os.getpid()}-{time.monotonic_ns()}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind("\0" + name)
    receiver.settimeout(10)
    try:
        notifier = Notifier(f"@{name}")
        assert notifier.ready("ready: test")
        assert receiver.recv(4096) == b"READY=1\nSTATUS=ready: test"
        assert notifier.status("two\nlines")  # a newline would start a new field: it is flattened
        assert receiver.recv(4096) == b"STATUS=two lines"
    finally:
        receiver.close()
