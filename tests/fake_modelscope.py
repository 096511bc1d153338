"""A fake ModelScope hub on 127.0.0.1, for testing the download path without any network.

No model hub is reachable from the test machines, so ``asr download`` is exercised against
this server instead. It answers the requests that modelscope's real ``snapshot_download``
(modelscope 1.40.2, delegating to modelscope_hub 0.5.1) makes for a model repository; they
were found by reading modelscope_hub (``_legacy_api.py``, ``_download.py``) and by logging what
the real client sends to this server:

``GET /api/v1/models/{owner}/{name}/repo/files?Revision=REV&Recursive=True``
    The file listing (one request; ``Root=DIR`` is added only for directory-scoped
    listings). Answered as ModelScope does: ``{"Code": 200, "Data": {"Files": [...]}}`` with
    ``Path``, ``Name``, ``Type`` (``blob``/``tree``), ``Size`` and ``Sha256`` per file. The
    client checks every downloaded file against ``Size`` and ``Sha256``.
``GET /api/v1/models/{owner}/{name}/repo?Revision=REV&FilePath=PATH``
    One file's bytes. ``Range: bytes=N-`` is honoured (206) because the client resumes
    partial files with it.
``GET /api/v1/repos/internalAccelerationInfo``
    Alibaba-Cloud intranet detection, probed once per download with a 0.2 s timeout; a
    failure is ignored. Answered with an empty ``InternalRegionQueryAddress``.

For completeness (older modelscope releases and other tools ask for them; 1.40.2 does not)
it also answers ``GET /api/v1/models/{owner}/{name}`` (repo info) and
``GET /api/v1/models/{owner}/{name}/revisions``. Anything else is a 404 with a
ModelScope-shaped JSON body, and is recorded, so a test sees unexpected calls.

Repositories are served from a directory in the ModelScope cache layout, the layout
``scripts/make_test_models.py --out DIR`` writes:
``ROOT/models/{owner}--{name}/snapshots/{revision}/<files>``. Files whose name starts with
a dot (e.g. ``.asr-manifest.json``) are not served.

Every request is recorded (method, path, query) in :attr:`FakeModelScope.requests`.
Failure simulation, all thread-safe and bounded:

* :meth:`FakeModelScope.fail_next` — the next N requests fail with HTTP 500, or with the
  connection closed before any response (``mode="disconnect"``).
* :meth:`FakeModelScope.hang` — requests get no answer until :meth:`release` or
  :meth:`stop` (and never longer than ``max_hang_s``).
* :attr:`FakeModelScope.missing_files` — files the repository lacks: absent from the
  listing and 404 when asked for. With ``list_missing = True`` they are listed but 404.

Use it as a context manager (``with FakeModelScope(root) as hub: hub.endpoint``) or via
``start()``/``stop()``. It binds to 127.0.0.1 on an ephemeral port and never contacts
anything else.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

API = "/api/v1"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str] = field(compare=False, repr=False)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


class FakeModelScope:
    """A threaded HTTP server imitating the ModelScope hub API used by snapshot_download."""

    def __init__(self, root: Path, *, max_hang_s: float = 30.0) -> None:
        self.root = Path(root)
        self.max_hang_s = max_hang_s
        self.requests: list[RecordedRequest] = []
        #: File paths (repo-relative) the repository lacks.
        self.missing_files: set[str] = set()
        #: List missing files anyway (then only their download fails, with 404).
        self.list_missing = False
        #: Put Sha256 in listings, as ModelScope does; some mirrors may not.
        self.list_sha256 = True
        self._lock = threading.Lock()
        self._failures: list[str] = []
        self._hanging = False
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeModelScope:
        handler = type("_Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="fake-modelscope", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeModelScope:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # ---- simulation --------------------------------------------------------------------

    def fail_next(self, count: int, mode: str = "500") -> None:
        """Make the next ``count`` requests fail: ``"500"`` or ``"disconnect"``."""
        if mode not in ("500", "disconnect"):
            raise ValueError(mode)
        with self._lock:
            self._failures.extend([mode] * count)

    def hang(self) -> None:
        """Stop answering: every request from now on waits for release() (bounded)."""
        with self._lock:
            self._hanging = True
            self._release.clear()

    def release(self) -> None:
        with self._lock:
            self._hanging = False
        self._release.set()

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def recorded(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self.requests)

    # ---- used by the handler -----------------------------------------------------------

    def _record(self, request: RecordedRequest) -> tuple[str | None, bool]:
        with self._lock:
            self.requests.append(request)
            failure = self._failures.pop(0) if self._failures else None
            return failure, self._hanging

    def repo_dir(self, owner: str, name: str, revision: str) -> Path | None:
        directory = self.root / "models" / f"{owner}--{name}" / "snapshots" / revision
        return directory if directory.is_dir() else None

    def revisions(self, owner: str, name: str) -> list[str]:
        snapshots = self.root / "models" / f"{owner}--{name}" / "snapshots"
        return sorted(p.name for p in snapshots.iterdir()) if snapshots.is_dir() else []

    def repo_files(self, directory: Path) -> list[str]:
        files = []
        for path in sorted(directory.rglob("*")):
            rel = path.relative_to(directory).as_posix()
            if path.is_file() and not any(part.startswith(".") for part in rel.split("/")):
                files.append(rel)
        return files


class _Handler(BaseHTTPRequestHandler):
    hub: FakeModelScope
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    # ---- plumbing ----------------------------------------------------------------------

    def do_GET(self) -> None:
        self._handle(body=True)

    def do_HEAD(self) -> None:
        self._handle(body=False)

    def _handle(self, body: bool) -> None:
        split = urlsplit(self.path)
        query = parse_qs(split.query, keep_blank_values=True)
        request = RecordedRequest(self.command, unquote(split.path), query, dict(self.headers))
        failure, hanging = self.hub._record(request)
        if hanging:
            self.hub._release.wait(self.hub.max_hang_s)
            self.close_connection = True
            return  # no response at all: the client must time out
        if failure == "disconnect":
            self.close_connection = True
            return  # close without a status line: a connection failure for the client
        if failure == "500":
            self._json(500, {"Code": 500, "Message": "simulated internal error", "Success": False}, body)
            return
        try:
            self._route(request, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _json(self, status: int, payload: dict, body: bool = True) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _ok(self, data: object, body: bool) -> None:
        self._json(
            200,
            {"Code": 200, "Data": data, "Message": "success", "RequestId": uuid.uuid4().hex,
             "Success": True},
            body,
        )

    def _not_found(self, message: str, body: bool) -> None:
        self._json(
            404,
            {"Code": 10010205001, "Message": message, "RequestId": uuid.uuid4().hex,
             "Success": False},
            body,
        )

    # ---- API ---------------------------------------------------------------------------

    def _route(self, request: RecordedRequest, body: bool) -> None:
        path = request.path
        if path == f"{API}/repos/internalAccelerationInfo":
            self._ok({"InternalRegionQueryAddress": ""}, body)
            return
        prefix = f"{API}/models/"
        parts = path[len(prefix):].strip("/").split("/") if path.startswith(prefix) else []
        if len(parts) < 2:
            self._not_found(f"no such API: {path}", body)
            return
        owner, name, rest = parts[0], parts[1], "/".join(parts[2:])
        if not self.hub.revisions(owner, name):
            self._not_found(f"model {owner}/{name} does not exist", body)
            return
        if rest == "":
            self._ok({"Path": owner, "Name": name, "Id": 1, "ModelType": ["pytorch"]}, body)
        elif rest == "revisions":
            tags = [{"Revision": r, "CreatedAt": 1700000000} for r in self.hub.revisions(owner, name)]
            self._ok({"RevisionMap": {"Tags": tags, "Branches": []}}, body)
        elif rest == "repo/files":
            self._list_files(owner, name, request, body)
        elif rest == "repo":
            self._send_file(owner, name, request, body)
        else:
            self._not_found(f"no such API: {path}", body)

    def _repo_dir(self, owner: str, name: str, request: RecordedRequest, body: bool) -> Path | None:
        revision = request.param("Revision") or "master"
        directory = self.hub.repo_dir(owner, name, revision)
        if directory is None:
            self._not_found(f"revision {revision} of {owner}/{name} does not exist", body)
        return directory

    def _list_files(self, owner: str, name: str, request: RecordedRequest, body: bool) -> None:
        directory = self._repo_dir(owner, name, request, body)
        if directory is None:
            return
        root = (request.param("Root") or "").strip("/")
        recursive = (request.param("Recursive") or "").lower() == "true"
        entries = []
        for rel in self.hub.repo_files(directory):
            if rel in self.hub.missing_files and not self.hub.list_missing:
                continue
            if root and not rel.startswith(root + "/"):
                continue
            inner = rel[len(root) + 1:] if root else rel
            if not recursive and "/" in inner:
                continue
            file = directory / rel
            entry = {
                "Name": rel.rsplit("/", 1)[-1],
                "Path": rel,
                "Type": "blob",
                "Size": file.stat().st_size,
                "Revision": request.param("Revision"),
                "IsLFS": file.suffix in (".pt", ".bin"),
            }
            if self.hub.list_sha256:
                entry["Sha256"] = hashlib.sha256(file.read_bytes()).hexdigest()
            entries.append(entry)
        self._ok({"Files": entries}, body)

    def _send_file(self, owner: str, name: str, request: RecordedRequest, body: bool) -> None:
        directory = self._repo_dir(owner, name, request, body)
        if directory is None:
            return
        rel = (request.param("FilePath") or "").strip("/")
        file = directory / rel
        if not rel or ".." in rel.split("/") or not file.is_file() or rel in self.hub.missing_files:
            self._not_found(f"file {rel} does not exist", body)
            return
        data = file.read_bytes()
        start = 0
        range_header = self.headers.get("Range", "")
        if range_header.startswith("bytes=") and range_header.endswith("-"):
            try:
                start = int(range_header[len("bytes="):-1])
            except ValueError:
                start = 0
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        chunk = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(chunk)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if body:
            self.wfile.write(chunk)
