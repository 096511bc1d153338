"""systemd's notify protocol: READY=1, STATUS=, STOPPING=1 and health-gated WATCHDOG=1 pings.

This speaks sd_notify(3) itself (one datagram per message to ``$NOTIFY_SOCKET``) rather than
linking libsystemd: the protocol is a few lines, and the service must not depend on a C
library that a container or a developer machine may lack. Without ``$NOTIFY_SOCKET`` (a shell,
Docker) every call is a no-op.

The watchdog only pings while a health check passes. A process that is alive but cannot serve
(a dead worker thread, a locked job database, a wedged event loop) then stops pinging, and
systemd kills and restarts it after ``WatchdogSec``: being alive is not the same as being healthy.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, MutableMapping

logger = logging.getLogger(__name__)

#: A health check returns None when healthy, else a short reason for the operator.
Check = Callable[[], "str | None"]


class Notifier:
    """Sends sd_notify messages to the service manager, if there is one."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None):
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """Read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID, and remove them from
        the environment, so that child processes (decoders) neither ping nor report readiness."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        usec: int | None = None
        raw_usec, raw_pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if raw_usec:
            try:
                usec = int(raw_usec)
            except ValueError:
                logger.warning("ignoring WATCHDOG_USEC=%r: not a number of microseconds", raw_usec)
            # WATCHDOG_PID names the process the watchdog is meant for; another process's is not ours.
            if raw_pid and raw_pid != str(os.getpid()):
                usec = None
            if usec is not None and usec <= 0:
                usec = None
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(name, None)
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """systemd's WatchdogSec for this process, or None when no watchdog is armed for it."""
        return self.watchdog_usec / 1e6 if self.enabled and self.watchdog_usec else None

    def send(self, *fields: str) -> bool:
        """Send one message made of ``KEY=VALUE`` fields; False when it could not be delivered."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        payload = "\n".join(f.replace("\n", " ") for f in fields).encode("utf-8")
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.sendto(payload, target)
                return True
            except OSError as e:
                if not self._warned:  # once: a vanished manager must not flood the log
                    logger.warning("could not notify the service manager at %s: %s", self.address, e)
                    self._warned = True
                return False

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def stopping(self, status: str = "stopping") -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")


class Watchdog:
    """A thread that pings the watchdog at half its interval, but only while ``check`` passes.

    A failing check sends ``STATUS=unhealthy: <reason>`` instead of the ping (shown by
    ``systemctl status``) and logs a warning; the first passing check after that restores
    ``healthy_status``. A check that hangs simply stops the pings, which is the point.
    """

    def __init__(self, notifier: Notifier, check: Check, healthy_status: str):
        interval = notifier.watchdog_interval_s
        if not interval:
            raise ValueError("no watchdog interval: systemd did not set WATCHDOG_USEC for this process")
        self.notifier = notifier
        self.check = check
        self.healthy_status = healthy_status
        # sd_watchdog_enabled(3): ping at half the interval, so one late ping is not fatal.
        self.period_s = interval / 2
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)

    def start(self) -> None:
        logger.info("systemd watchdog: health-gated pings every %.1f s", self.period_s)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        failing = False
        while True:
            problem = self._probe()
            if problem is None:
                if failing:
                    logger.warning("health check passes again; watchdog pings resumed")
                    self.notifier.status(self.healthy_status)
                    failing = False
                self.notifier.watchdog()
            else:
                logger.warning("health check failed, withholding the watchdog ping: %s", problem)
                self.notifier.status(f"unhealthy: {problem}")
                failing = True
            if self._stop.wait(self.period_s):
                return

    def _probe(self) -> str | None:
        try:
            return self.check()
        except Exception as e:  # a crashing check is a failing check, never a dead watchdog thread
            logger.exception("the health check itself failed")
            return f"health check error: {type(e).__name__}: {e}"
