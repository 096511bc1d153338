"""The files the UI hands out, and the UI's upload route that hands them out.

Gradio, mounted into our FastAPI app rather than launched, would take any server path a UI
event names. So the service keeps its own register: a file is usable in an event only if our
upload route wrote it (``add_ui_upload_route``) or it is a result the UI wrote (``add_result``).
The register also bounds what uploads keep on disk: a UI upload is removed once its job has
its own copy (``discard``), or after ``ttl_s`` unused (``sweep``).

An upload is kept where Gradio's own cache would put it (``root/<content hash>/<name>``), so that
Gradio uses it in place instead of copying it again for the event; the same file uploaded twice is
one file there, counted twice.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from asr.errors import FileTooLargeError, LoginRequiredError, NotFoundError, RequestError, storage_error

logger = logging.getLogger(__name__)


@dataclass
class _Upload:
    size: int
    at: float  # when it was last handed out
    holders: int  # uploads of this same file not yet taken by a job


class UploadRegistry:
    """Thread-safe register of the UI's uploads (under ``root``, Gradio's temp dir) and results
    (under ``results_dir``). Requests stream into ``staging`` first, one folder each."""

    def __init__(self, root: Path, results_dir: Path, ttl_s: float):
        self.root = root
        self.staging = root / "ui-uploads"
        self.results_dir = results_dir
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._uploads: dict[Path, _Upload] = {}
        self._results: set[Path] = set()

    # ---- handing out ----------------------------------------------------------------------

    def keep(self, staged: Path) -> Path:
        """Move a staged upload (``staging/<request>/<hash>/<name>``) to where Gradio looks for it,
        register it, and return its path there."""
        target = self.root / staged.parent.name / staged.name
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            os.replace(staged, target)  # the same content under the same name: the same file
            real = Path(os.path.realpath(target))
            known = self._uploads.get(real)
            holders = known.holders + 1 if known else 1
            self._uploads[real] = _Upload(real.stat().st_size, time.monotonic(), holders)
        return real

    def add_result(self, path: Path) -> None:
        with self._lock:
            self._results.add(Path(os.path.realpath(path)))

    def allows(self, path: str) -> bool:
        """True only for a regular file we handed out that still lies in its folder.

        Checked on the name as given (no link is followed to decide), so a device, a FIFO, a link
        or a path that leaves the folder is refused before anything opens it."""
        if not path or "\0" in path or "://" in path:
            return False
        candidate = Path(path)
        if not candidate.is_absolute():
            return False
        try:
            info = os.lstat(candidate)
        except (OSError, ValueError):
            return False
        if not stat.S_ISREG(info.st_mode):
            return False
        real = Path(os.path.realpath(candidate))
        if real != Path(os.path.abspath(candidate)):
            return False  # a link somewhere on the way
        with self._lock:
            if real in self._uploads:
                return real.is_relative_to(self.root)
            return real in self._results and real.is_relative_to(self.results_dir)

    # ---- taking back ----------------------------------------------------------------------

    def discard(self, path: str | Path) -> None:
        """A job has its own copy of this upload: remove it, unless another upload of the same
        file still waits for its job."""
        real = Path(os.path.realpath(path))
        with self._lock:
            known = self._uploads.get(real)
            if known is not None:
                known.holders -= 1
                if known.holders > 0:
                    return
                del self._uploads[real]
        if real.is_relative_to(self.root) and not real.is_relative_to(self.results_dir):
            _remove(real, stop_at=self.root)

    def sweep(self) -> int:
        """Remove uploads unused for ``ttl_s``; returns how many."""
        cutoff = time.monotonic() - self.ttl_s
        with self._lock:
            stale = [path for path, u in self._uploads.items() if u.at < cutoff]
            for path in stale:
                del self._uploads[path]
        for path in stale:
            _remove(path, stop_at=self.root)
        if stale:
            logger.info("removed %d UI upload(s) unused for %g s", len(stale), self.ttl_s)
        return len(stale)

    def stored_bytes(self) -> int:
        with self._lock:
            return sum(u.size for u in self._uploads.values())

    def start_sweeper(self, stop: threading.Event) -> threading.Thread:
        def run() -> None:
            while not stop.wait(min(60.0, max(1.0, self.ttl_s / 4))):
                try:
                    self.sweep()
                except Exception:
                    logger.exception("the upload sweep failed")

        thread = threading.Thread(target=run, name="upload-sweeper", daemon=True)
        thread.start()
        return thread


def _remove(path: Path, stop_at: Path) -> None:
    """Delete a file, then its parent folders while they are empty, up to ``stop_at``."""
    path.unlink(missing_ok=True)
    parent = path.parent
    while parent != stop_at and parent.is_relative_to(stop_at):
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent


def add_ui_upload_route(app: Any, registry: UploadRegistry, max_file_bytes: int,
                        ui_user: Callable[[Any], str | None], logins_on: bool, prefix: str = "/gradio_api") -> None:
    """Serve Gradio's upload protocol (``POST {prefix}/upload``: multipart ``files`` → a JSON list
    of server paths) in front of Gradio's own route.

    Gradio's parser does the work (``route_utils.upload_fn``), into a folder of this request's
    own: whatever goes wrong (too large, a full disk, the client gone) the folder is removed,
    so nothing partial is left, and the error is the service's own. What succeeds is kept
    (``UploadRegistry.keep``) and registered."""
    from gradio.route_utils import MultiPartException, upload_fn

    async def upload(request: Request) -> Any:
        if logins_on and ui_user(request) is None:
            raise LoginRequiredError("log in first")
        staging = registry.staging / uuid.uuid4().hex
        try:
            try:
                staging.mkdir(parents=True)
                staged, _, _ = await upload_fn(request, str(staging), max_file_bytes, None, force_move=True)
                paths = [str(registry.keep(Path(p))) for p in staged]
            except MultiPartException as e:
                if "maximum allowed size" in e.message:
                    raise FileTooLargeError(
                        f"the file is larger than the {max_file_bytes // (1 << 20)} MB limit") from None
                raise RequestError(f"the upload could not be read: {e.message}") from None
            except HTTPException as e:
                raise RequestError(f"the upload could not be read: {e.detail}") from None
            except OSError as e:
                raise storage_error(e, "the upload could not be kept", staging) from e
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # kept files have moved out; nothing partial stays
        return JSONResponse(paths)

    app.add_api_route(f"{prefix}/upload", upload, methods=["POST"], include_in_schema=False)



def add_playback_route(app: Any, engine: Any, media: Path, ui_user: Callable[[Any], str | None],
                       logins_on: bool, prefix: str = "/ui/media") -> None:
    """``GET {prefix}/{job_id}``: the job's playback audio (asr.service.media) for the UI's player, with
    HTTP ranges so that a click on a sentence seeks without downloading the file first.

    With logins on, only the signed-in owner of the job gets it, as in History; any other job id, unknown or
    not theirs, is the same 404, so ids cannot be probed."""
    from starlette.responses import FileResponse

    from asr.errors import AsrError
    from asr.service.media import VIDEO_TYPES, playback_path, video_path

    def job_dir(request: Request, job_id: str) -> Path:
        user = ui_user(request) if logins_on else None
        if logins_on and user is None:
            raise LoginRequiredError("log in first")
        missing = NotFoundError("no playback audio for this job")
        if not job_id.isalnum() or len(job_id) > 64:
            raise missing
        try:
            record = engine.get(job_id)
        except AsrError:
            raise missing from None
        if logins_on and record.owner != user:
            raise missing
        return media / job_id

    def send(path: Path | None, media_type: str) -> Any:
        if path is None or not path.is_file():
            raise NotFoundError("no playback audio for this job")
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private, max-age=3600"})

    async def playback(request: Request, job_id: str) -> Any:
        return send(playback_path(job_dir(request, job_id)), "audio/flac")

    async def video(request: Request, job_id: str) -> Any:
        path = video_path(job_dir(request, job_id))
        return send(path, VIDEO_TYPES[path.suffix] if path is not None else "")

    app.add_api_route(f"{prefix}/{{job_id}}", playback, methods=["GET"], include_in_schema=False)
    app.add_api_route(f"{prefix}/{{job_id}}/video", video, methods=["GET"], include_in_schema=False)
