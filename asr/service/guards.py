"""ASGI middleware that guards every route, the API's and the UI's alike, before any of them runs.

* ``HostGuard``: the Host header must name this service (stops DNS rebinding), and a browser's
  ``Origin`` must be this service or a configured origin (stops CSRF through an SSH tunnel).
* ``LoginGuard``: failed logins back off, per user and per client, on the UI's login form.
* ``UploadGuard``: caps what one request may upload and what all uploads may take together.
* ``EventFileGuard``: a UI event may only name files this service handed out.

Each refusal is one JSON error envelope (``envelope``), the same the API's own errors use.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from asr.errors import (
    AsrError,
    ForbiddenFileError,
    ForbiddenHostError,
    ForbiddenOriginError,
    RequestTooLargeError,
    TooManyLoginAttemptsError,
)

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
_WILDCARDS = ("", "0.0.0.0", "::")
#: UI event payloads are small JSON (files travel through the upload route); more is refused unread.
MAX_EVENT_BYTES = 1 << 20


def envelope(error: AsrError, **extra: Any) -> dict[str, Any]:
    """The one error body of the service: ``{"error": {"code", "message", "type", ...}}``."""
    return {"error": {"code": error.code, "message": str(error), "type": error.code, **extra}}


def error_headers(error: AsrError) -> dict[str, str]:
    if error.code == "busy":
        return {"Retry-After": "30"}
    if isinstance(error, TooManyLoginAttemptsError):
        return {"Retry-After": str(max(1, math.ceil(error.retry_after_s)))}
    if error.http_status == 401:
        return {"WWW-Authenticate": 'Basic realm="asr"'}
    return {}


async def send_error(send: Send, error: AsrError, scope: Scope | None = None, close: bool = False) -> None:
    """Answer with ``error`` in the envelope (a WebSocket handshake is refused instead)."""
    if scope is not None and scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": str(error)[:120]})
        return
    body = json.dumps(envelope(error), ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error_headers(error).items()]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers") or []:
        if key == name:
            return value.decode("latin-1")
    return ""


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


def _split_host(value: str) -> tuple[str, str]:
    """("name", "port") of a Host header or an origin's authority; IPv6 brackets removed."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        return name, rest.lstrip(":")
    name, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    return name, port


def allowed_hosts(bind_host: str, extra: Iterable[str]) -> frozenset[str]:
    """The default allow-list (loopback names and the bound host) plus the configured names."""
    names = set(LOOPBACK_HOSTS)
    if bind_host not in _WILDCARDS:
        names.add(_split_host(bind_host)[0] if bind_host.startswith("[") else bind_host.lower())
    names.update(h.strip().lower() for h in extra if h.strip())
    return frozenset(names)


class HostGuard:
    """Refuses a request whose Host is not this service, and a browser request from another site.

    DNS rebinding points an attacker's host name at 127.0.0.1: the browser then sends our
    service requests from the attacker's page with ``Host`` and ``Origin`` both naming the
    attacker, so comparing them proves nothing. The Host must be on the allow-list.
    Through an SSH tunnel the service is ``localhost`` to the user's browser, so any page that
    browser opens could POST files to it (CSRF): a browser's ``Origin`` must name this service
    (the same host and port as ``Host``) or a configured origin. Clients that are not browsers
    (curl, SDKs) send no Origin and are not affected."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str], allowed_origins: Iterable[str] = ()):
        self.app = app
        self.hosts = hosts
        self.origins = {o.rstrip("/").lower() for o in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        host = _header(scope, b"host")
        name, _ = _split_host(host)
        if not host or (name not in self.hosts and host.lower() not in self.hosts):
            logger.warning("refused a request for host %r from %s (not in server.allowed_hosts)",
                           host[:100], client_address(scope))
            return await send_error(send, ForbiddenHostError(
                f"this service does not answer to the host name {host[:100]!r}; an operator can add it to "
                "server.allowed_hosts"), scope)
        origin = _header(scope, b"origin").rstrip("/").lower()
        if origin and origin not in self.origins and (origin == "null" or origin.split("://", 1)[-1] != host.lower()):
            return await send_error(send, ForbiddenOriginError(
                "cross-origin request refused (Origin does not match this service)"), scope)
        await self.app(scope, receive, send)


# ---- logins ------------------------------------------------------------------------------------------


class LoginThrottle:
    """Back-off for failed logins, per user name and per client address.

    After ``max_failures`` failures in a row, each further attempt for that user or from that
    client must wait 1, 2, 4 ... seconds (at most ``max_wait_s``) after the last failure; a
    success clears the user's and the client's count. Thread-safe; memory is bounded."""

    _MAX_KEYS = 10000

    def __init__(self, max_failures: int = 5, max_wait_s: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self.max_failures = max_failures
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def check(self, user: str, client: str) -> None:
        """Raise TooManyLoginAttemptsError while the user or the client must wait."""
        now = self._clock()
        with self._lock:
            waits = [self._wait(key, now) for key in self._keys(user, client)]
        wait = max(waits)
        if wait > 0:
            raise TooManyLoginAttemptsError(
                f"too many failed logins; try again in {math.ceil(wait)} s", retry_after_s=wait)

    def failed(self, user: str, client: str) -> None:
        now = self._clock()
        with self._lock:
            for key in self._keys(user, client):
                count, _ = self._failures.pop(key, (0, now))
                self._failures[key] = (count + 1, now)
            while len(self._failures) > self._MAX_KEYS:
                self._failures.popitem(last=False)
            count = max(self._failures[k][0] for k in self._keys(user, client))
        if count >= self.max_failures:
            logger.warning("%d failed logins in a row for user %r or from %s; further tries back off",
                           count, user[:64], client)

    def succeeded(self, user: str, client: str) -> None:
        with self._lock:
            for key in self._keys(user, client):
                self._failures.pop(key, None)

    @staticmethod
    def _keys(user: str, client: str) -> tuple[str, str]:
        return f"user:{user}", f"client:{client}"

    def _wait(self, key: str, now: float) -> float:
        count, last = self._failures.get(key, (0, now))
        if count < self.max_failures:
            return 0.0
        backoff = min(self.max_wait_s, 2.0 ** (count - self.max_failures))
        return max(0.0, last + backoff - now)


class LoginGuard:
    """Applies the LoginThrottle to the UI's login form (Gradio's ``POST /login``), which the
    service does not implement itself: the outcome is read from Gradio's answer."""

    def __init__(self, app: ASGIApp, throttle: LoginThrottle, paths: tuple[str, ...] = ("/login", "/login/")):
        self.app = app
        self.throttle = throttle
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or _route_path(scope) not in self.paths:
            return await self.app(scope, receive, send)
        body, too_large = await _read_body(receive, 64 * 1024)
        if too_large:
            return await send_error(send, RequestTooLargeError("the login form is too large"), close=True)
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace")) if b"=" in body else {}
        user = (form.get("username") or [""])[0].strip()
        client = client_address(scope)
        try:
            self.throttle.check(user, client)
        except TooManyLoginAttemptsError as e:
            return await send_error(send, e)
        status = 0

        async def watching_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, _replay(body, receive), watching_send)
        if status == 200:
            self.throttle.succeeded(user, client)
        elif 400 <= status < 500:
            logger.warning("failed UI login for user %r from %s", user[:64], client)
            self.throttle.failed(user, client)


# ---- uploads ---------------------------------------------------------------------------------------------


class UploadBudget:
    """The space all uploads may take at once: files kept for the UI plus bodies streaming in.

    ``stored`` says how many bytes of kept uploads are on disk now; ``reserve`` adds what a
    request is about to write and refuses past the cap. Thread-safe."""

    def __init__(self, max_bytes: int, stored: Callable[[], int]):
        self.max_bytes = max_bytes
        self._stored = stored
        self._lock = threading.Lock()
        self._in_flight = 0

    def reserve(self, n: int) -> None:
        with self._lock:
            if self._in_flight + self._stored() + n > self.max_bytes:
                raise RequestTooLargeError(
                    f"the server's upload space ({self.max_bytes // (1 << 20)} MB) is taken by uploads in "
                    "progress; try again when they are done")
            self._in_flight += n

    def release(self, n: int) -> None:
        with self._lock:
            self._in_flight = max(0, self._in_flight - n)


class UploadGuard:
    """Caps request bodies on the upload routes while they stream in, before any handler runs.

    ``limits`` maps a route prefix to (the most one request may send, the error to answer
    with). A declared Content-Length over the cap is refused unread; a body without one is cut
    off at the cap. Every byte counts against the shared UploadBudget while the request runs."""

    def __init__(self, app: ASGIApp, limits: dict[str, tuple[int, Callable[[], AsrError]]], budget: UploadBudget):
        self.app = app
        self.limits = limits
        self.budget = budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):
            return await self.app(scope, receive, send)
        path = _route_path(scope)
        limit = next((v for prefix, v in self.limits.items() if path.startswith(prefix)), None)
        if limit is None:
            return await self.app(scope, receive, send)
        max_bytes, too_large = limit
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > max_bytes:
            return await send_error(send, too_large(), close=True)
        reserved = 0
        try:
            if declared.isdigit():
                self.budget.reserve(int(declared))
                reserved = int(declared)
        except AsrError as e:
            return await send_error(send, e, close=True)
        seen = 0
        refusal: AsrError | None = None
        answered = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen, reserved, refusal
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                try:
                    if seen > max_bytes:
                        raise too_large()
                    if seen > reserved:
                        self.budget.reserve(seen - reserved)
                        reserved = seen
                except AsrError as e:
                    refusal = e
                    raise _Refused() from None
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal answered
            if refusal is not None:  # whatever the app answers to a cut-off body, the answer is ours
                if not answered:
                    answered = True
                    await send_error(send, refusal, close=True)
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _Refused:
            pass
        except Exception:
            if refusal is None:
                raise
        finally:
            self.budget.release(reserved)
        if refusal is not None and not answered:
            await send_error(send, refusal, close=True)


class _Refused(Exception):
    pass


# ---- files named in UI events ------------------------------------------------------------------------


class EventFileGuard:
    """A UI event (Gradio's queue/join, run, call, api and component routes) may only name files
    this service handed out: ``allows(path)`` decides, before Gradio reads, hashes or copies
    anything. Without this, one request naming ``/dev/zero`` pins the event loop, and one
    naming a server file gets it transcribed or copied into Gradio's cache."""

    def __init__(self, app: ASGIApp, allows: Callable[[str], bool], skip: tuple[str, ...]):
        self.app = app
        self.allows = allows
        self.skip = skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        path = _route_path(scope)
        if path.startswith(self.skip):
            return await self.app(scope, receive, send)
        if _header(scope, b"content-type").lower().startswith("multipart/"):
            # Only the upload route takes files; a multipart body elsewhere could carry paths unseen.
            return await send_error(send, ForbiddenFileError(
                "files are uploaded through the upload route only"), close=True)
        body, too_large = await _read_body(receive, MAX_EVENT_BYTES)
        if too_large:
            return await send_error(send, RequestTooLargeError(
                f"a UI request may carry at most {MAX_EVENT_BYTES // 1024} KB"), close=True)
        try:
            payload = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError):
            payload = None  # not JSON: Gradio refuses it without reading any file
        foreign = next((p for p in _named_paths(payload) if not self.allows(p)), None)
        if foreign is not None:
            logger.warning("refused a UI request from %s naming a file it was not given: %r",
                           client_address(scope), foreign[:200])
            return await send_error(send, ForbiddenFileError(
                "the request names a file on the server that this service did not hand out; upload the file instead"))
        await self.app(scope, _replay(body, receive), send)


def _named_paths(value: Any) -> Iterable[str]:
    """Every ``path`` (and file ``url``) a JSON payload names, however deeply nested."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if key == "path" and isinstance(child, str):
                    yield child
                elif key == "path" and child is not None and not isinstance(child, (dict, list)):
                    yield str(child)
                else:
                    stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)


class GradioRequestGuard:
    """Answers with a plain 404 the Gradio requests that Gradio itself fails with a traceback in
    the log: an event stream (``queue/data``) for a session the queue does not know, and a call
    (``run``, ``api``, ``call``) of an event name that does not exist. Any client could flood
    the log with those; refused here, they are one line of nothing."""

    _CALLS = ("/gradio_api/run/", "/gradio_api/api/", "/gradio_api/call/v2/", "/gradio_api/call/")

    def __init__(self, app: ASGIApp, known_session: Callable[[str], bool], known_event: Callable[[str], bool]):
        self.app = app
        self.known_session = known_session
        self.known_event = known_event

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            from asr.errors import NotFoundError

            path = _route_path(scope)
            if path == "/gradio_api/queue/data":
                query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
                if not self.known_session((query.get("session_hash") or [""])[0]):
                    return await send_error(send, NotFoundError("no such session (it ended, or never began)"))
            prefix = next((p for p in self._CALLS if path.startswith(p)), None)
            if prefix is not None and not self.known_event(path[len(prefix):].split("/", 1)[0]):
                return await send_error(send, NotFoundError("no such event"))
        await self.app(scope, receive, send)


# ---- helpers -----------------------------------------------------------------------------------------------


def _route_path(scope: Scope) -> str:
    """The path below the app's root path (a reverse proxy's sub-path)."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The whole request body, or (what was read, True) once it passes ``limit``."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), False


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then the real one (a disconnect)."""
    sent = False

    async def replayed() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
