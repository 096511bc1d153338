"""The health check behind the systemd watchdog: can this process really serve a job right now?

Each probe exercises the thing a request needs, not a flag that merely says so:

* the engine finished loading and warming its models;
* every worker thread is alive (a worker that died takes no more jobs, yet the process lives on);
* the job database takes a write lock within the timeout (every submit writes a row first);
* the HTTP server answers its own ``/readyz`` (the event loop is not wedged).
"""

from __future__ import annotations

import errno
import socket
import sqlite3
import threading
import urllib.error
import urllib.request
from typing import Any

from asr.errors import AsrError, ConfigError

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def local_url(host: str, port: int) -> str:
    """The URL at which this process reaches its own server (a wildcard bind means loopback)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def ensure_port_free(host: str, port: int) -> None:
    """Fail before the models load when another process holds the port (a second instance, say),
    instead of after, with the web server's bare errno."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(f"server.host {host!r} cannot be bound: {e}") from e
    # Bound as asyncio's create_server binds for the web server: every address the host resolves to,
    # SO_REUSEADDR (a port left in TIME_WAIT by the last run is free), IPv6 sockets IPv6-only, and an
    # address family the machine has disabled skipped rather than fatal.
    for family, kind, proto, _, address in infos:
        try:
            probe = socket.socket(family, kind, proto)
        except OSError:
            continue
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as e:
                if e.errno == errno.EADDRNOTAVAIL:
                    continue
                raise ConfigError(
                    f"cannot listen on {host}:{port}: {e.strerror} (is another asr serve running? "
                    "stop it, or choose another port with --port or server.port)"
                ) from e


class HealthCheck:
    """Call it: None when healthy, else a short reason (it names the first failing probe)."""

    def __init__(self, engine: Any, base_url: str, timeout_s: float):
        self.engine = engine
        self.base_url = base_url
        self.timeout_s = timeout_s

    def __call__(self) -> str | None:
        for probe in (self._engine_ready, self._workers_alive, self._store_writable, self._http_ready):
            problem = probe()
            if problem is not None:
                return problem
        return None

    def _engine_ready(self) -> str | None:
        return None if self.engine.ready.is_set() else "the engine is not ready (models not loaded, or stopping)"

    def _workers_alive(self) -> str | None:
        # The engine names each worker thread asr-worker-<index>; status() lists the indexes.
        alive = {t.name for t in threading.enumerate() if t.is_alive()}
        dead = [w["index"] for w in self.engine.status()["workers"] if f"asr-worker-{w['index']}" not in alive]
        if dead:
            return f"worker thread(s) {', '.join(map(str, dead))} have died"
        return None

    def _store_writable(self) -> str | None:
        path = self.engine.store.path
        try:
            self.engine.store.check()  # deleted, replaced or read-only under the service
        except AsrError as e:
            return str(e)
        try:
            # A connection of our own, so that a stuck lock cannot hold up the service's own one,
            # and BEGIN IMMEDIATE + ROLLBACK: the write lock a submit needs, without writing.
            db = sqlite3.connect(str(path), timeout=self.timeout_s, isolation_level=None)
            try:
                db.execute("BEGIN IMMEDIATE")
                db.execute("SELECT COUNT(*) FROM jobs WHERE state = 'running'").fetchone()
                db.execute("ROLLBACK")
            finally:
                db.close()
        except sqlite3.Error as e:
            return f"the job database {path} is not writable: {e}"
        return None

    def _http_ready(self) -> str | None:
        url = self.base_url + "/readyz"
        try:
            with _NO_PROXY.open(url, timeout=self.timeout_s) as response:
                if response.status == 200:
                    return None
                return f"{url} answered {response.status}"
        except urllib.error.HTTPError as e:
            return f"{url} answered {e.code}"
        except (OSError, ValueError) as e:
            return f"{url} did not answer: {e}"
