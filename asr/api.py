"""HTTP API on the same engine and queue as the UI (FastAPI; no Gradio here).

* ``POST /v1/audio/transcriptions`` — OpenAI-compatible, waits for the result.
* ``POST /v1/jobs``, ``GET /v1/jobs``, ``GET|DELETE /v1/jobs/{id}``, ``GET /v1/jobs/{id}/result`` —
  for hours-long files: submit, poll, fetch in any output format.
* ``GET /healthz`` (process up), ``GET /readyz`` (models loaded and warmed).
* ``GET /metrics`` — Prometheus text format (asr.metrics); behind the logins when they are on.
"""


import asyncio
import base64
import hmac
import io
import logging
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from asr.config import Settings
from asr.engine import Engine
from asr.errors import AsrError, FileTooLargeError, JobNotFoundError, StorageFullError
from asr.jobs import JobKind, JobRecord, JobState
from asr.types import TranscribeOptions, Transcript, VadResult
from asr.writers import VAD_WRITERS, WRITERS

logger = logging.getLogger(__name__)

OPENAI_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
_COPY_CHUNK = 1 << 20


def error_response(error: AsrError) -> JSONResponse:
    status = error.http_status
    headers = {"Retry-After": "30"} if error.code == "busy" else None
    return JSONResponse(
        {"error": {"message": str(error), "type": error.code, "code": error.code}}, status_code=status, headers=headers
    )


class BodyLimit:
    """ASGI middleware: refuse request bodies over the limit with 413 while they stream in,
    so an oversized upload never fills the disk (Content-Length is checked first)."""

    def __init__(self, app, max_bytes: int, prefixes: tuple[str, ...] = ("/v1/",)):
        self.app = app
        self.max_bytes = max_bytes
        self.prefixes = prefixes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(self.prefixes):
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _too_large(send, self.max_bytes)
        seen = 0
        exceeded = False
        answered = False

        async def limited_receive():
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise _BodyTooLarge()
            return message

        async def guarded_send(message):
            nonlocal answered
            if exceeded:  # whatever the app answers to a cut-off body, the answer is 413
                if not answered:
                    answered = True
                    await _too_large(send, self.max_bytes)
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLarge:
            pass
        if exceeded and not answered:
            await _too_large(send, self.max_bytes)


class OriginGuard:
    """ASGI middleware: every route (API and UI) refuses requests a browser sends from another site.

    Through an SSH tunnel the service is ``localhost`` to the user's browser, so any web page
    that browser opens could otherwise POST files to it (CSRF). Browsers send ``Origin`` on
    such requests; it must name this service (same host and port) or a configured origin.
    Clients that are not browsers (curl, SDKs) send no Origin and are not affected."""

    def __init__(self, app, allowed_origins: tuple[str, ...] = (), prefixes: tuple[str, ...] = ("/",)):
        self.app = app
        self.allowed = {o.rstrip("/").lower() for o in allowed_origins}
        self.prefixes = prefixes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(self.prefixes):
            headers = dict(scope.get("headers") or [])
            origin = headers.get(b"origin", b"").decode("latin-1").rstrip("/").lower()
            host = headers.get(b"host", b"").decode("latin-1").lower()
            if origin and origin != "null" and origin.split("://", 1)[-1] != host and origin not in self.allowed:
                body = b'{"error": {"message": "cross-origin request refused (Origin does not match this service)", ' \
                       b'"type": "forbidden_origin", "code": "forbidden_origin"}}'
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
                return
            if origin == "null":
                await send({"type": "http.response.start", "status": 403, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send, max_bytes: int) -> None:
    body = (
        '{"error": {"message": "the file is larger than the %d MB limit", "type": "file_too_large", '
        '"code": "file_too_large"}}' % (max_bytes // (1024 * 1024))
    ).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def parse_logins(entries: list[str]) -> dict[str, str]:
    return dict(entry.split(":", 1) for entry in entries)


def basic_or_bearer_user(request: Request, logins: dict[str, str]) -> str | None:
    """The user of an ``Authorization: Basic`` or ``Bearer user:password`` header, if valid."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    credentials = ""
    if scheme.lower() == "basic":
        try:
            credentials = base64.b64decode(value, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
    elif scheme.lower() == "bearer":
        credentials = value
    user, _, password = credentials.partition(":")
    expected = logins.get(user)
    if expected is not None and hmac.compare_digest(expected.encode(), password.encode()):
        return user
    return None


def job_status(record: JobRecord) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": record.id,
        "object": "asr.job",
        "kind": record.kind.value,
        "status": record.state.value,
        "filename": record.filename,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "stage": record.stage,
        "progress": round(record.progress, 4),
        "queue_position": record.queue_position,
        "duration_s": record.duration_s,
        "rtf": round(record.rtf, 5) if record.rtf is not None else None,
        "timings": record.timings.__dict__ if record.timings else None,
        "error": {"message": record.error, "code": record.error_code} if record.error else None,
    }
    if record.state is JobState.COMPLETED:
        formats = VAD_WRITERS if record.kind is JobKind.VAD else WRITERS
        data["result_formats"] = list(formats)
    return data


def render(result: Transcript | VadResult, fmt: str, settings: Settings) -> tuple[str, str]:
    """(body, media type) of a result in one output format."""
    buffer = io.StringIO()
    if isinstance(result, VadResult):
        if fmt not in VAD_WRITERS:
            raise HTTPException(400, f"format must be one of {', '.join(VAD_WRITERS)} for a VAD job")
        writer = VAD_WRITERS[fmt]
        writer.write(result, buffer)
    else:
        if fmt not in WRITERS:
            raise HTTPException(400, f"format must be one of {', '.join(WRITERS)}")
        writer = WRITERS[fmt]
        writer.write(result, buffer, settings.output)
    return buffer.getvalue(), writer.media_type


def openai_body(transcript: Transcript, fmt: str, settings: Settings) -> Response:
    if fmt == "json":
        return JSONResponse({"text": transcript.text})
    if fmt == "text":
        return PlainTextResponse(transcript.text)
    if fmt in ("srt", "vtt"):
        body, media = render(transcript, fmt, settings)
        return Response(body, media_type=media)
    return JSONResponse({
        "task": "transcribe",
        "language": "chinese",
        "duration": round(transcript.duration_s, 3),
        "text": transcript.text,
        "segments": [
            {
                "id": i,
                "start": round(s.start_ms / 1000, 3),
                "end": round(s.end_ms / 1000, 3),
                "text": s.text,
                "words": [
                    {"word": t.text, "start": round(t.start_ms / 1000, 3), "end": round(t.end_ms / 1000, 3)}
                    for t in s.tokens
                ],
            }
            for i, s in enumerate(transcript.sentences)
        ],
        "timings": transcript.timings.__dict__,
    })


async def _save_upload(upload: UploadFile, directory: Path, max_bytes: int) -> Path:
    """Stream the upload to a private temp file on the service's own disk."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="upload-", dir=directory)
    except OSError as e:
        full = StorageFullError.from_os_error(e, "the upload could not be kept")
        if full is None:
            raise
        raise full from e
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await upload.read(_COPY_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise FileTooLargeError(f"the file is larger than the {max_bytes // (1024 * 1024)} MB limit")
                out.write(chunk)
    except OSError as e:
        os.unlink(name)
        full = StorageFullError.from_os_error(e, "the upload could not be kept")
        if full is None:
            raise
        raise full from e
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def create_api(engine: Engine, settings: Settings) -> FastAPI:
    """The FastAPI application with the API routes; the UI is mounted onto it by app.py."""
    app = FastAPI(title="Offline ASR", version="1", docs_url="/v1/docs", openapi_url="/v1/openapi.json", redoc_url=None)
    max_bytes = int(settings.audio.max_file_mb * 1024 * 1024)
    app.add_middleware(BodyLimit, max_bytes=max_bytes + 64 * 1024)  # multipart framing on top
    app.add_middleware(OriginGuard, allowed_origins=tuple(settings.server.allowed_origins))
    logins = parse_logins(settings.server.auth)
    uploads = settings.storage.cache_path() / "uploads"

    def current_user(request: Request) -> str | None:
        if not logins:
            return None
        user = basic_or_bearer_user(request, logins)
        if user is None:
            raise HTTPException(401, "login required", headers={"WWW-Authenticate": 'Basic realm="asr"'})
        return user

    User = Annotated[str | None, Depends(current_user)]

    @app.exception_handler(AsrError)
    async def _asr_error(request: Request, error: AsrError) -> JSONResponse:
        if error.http_status >= 500 and error.code not in ("busy", "not_ready", "storage_full"):
            logger.error("%s %s: %s", request.method, request.url.path, error)
        return error_response(error)

    router = APIRouter()

    async def submit(upload: UploadFile, kind: JobKind, options: TranscribeOptions, user: str | None) -> JobRecord:
        path = await _save_upload(upload, uploads, max_bytes)
        try:
            return await asyncio.to_thread(
                engine.submit, path, upload.filename or "audio", kind, options, user, True
            )
        finally:
            path.unlink(missing_ok=True)  # moved into the job dir, or refused

    @router.post("/v1/audio/transcriptions")
    async def transcriptions(
        user: User,
        file: Annotated[UploadFile, File(description="audio or video file")],
        model: Annotated[str, Form()] = "paraformer-large",
        response_format: Annotated[str, Form()] = "json",
        language: Annotated[str | None, Form()] = None,
        prompt: Annotated[str | None, Form()] = None,
        temperature: Annotated[float | None, Form()] = None,
    ) -> Response:
        """OpenAI-compatible: the `model`, `language`, `prompt` and `temperature` fields are accepted
        and ignored (one pinned Chinese model serves every request)."""
        if response_format not in OPENAI_FORMATS:
            raise HTTPException(400, f"response_format must be one of {', '.join(OPENAI_FORMATS)}")
        job = await submit(file, JobKind.TRANSCRIBE, TranscribeOptions(), user)
        # If the client goes away, the job still finishes and is kept in the history.
        record = await asyncio.to_thread(engine.wait, job.id)
        if record.state is not JobState.COMPLETED:
            status = 400 if record.state is JobState.FAILED and record.error_code != "internal_error" else 500
            return JSONResponse(
                {"error": {"message": record.error, "type": record.error_code, "code": record.error_code, "job_id": job.id}},
                status_code=status,
            )
        return openai_body(record.result, response_format, settings)

    @router.post("/v1/jobs", status_code=202)
    async def create_job(
        user: User,
        file: Annotated[UploadFile, File()],
        kind: Annotated[str, Form()] = "transcribe",
        punctuate: Annotated[bool, Form()] = True,
    ) -> dict[str, Any]:
        try:
            job_kind = JobKind(kind)
        except ValueError:
            raise HTTPException(400, "kind must be transcribe or vad") from None
        record = await submit(file, job_kind, TranscribeOptions(punctuate=punctuate), user)
        return job_status(record)

    def owned(job_id: str, user: str | None) -> JobRecord:
        record = engine.get(job_id)
        if logins and record.owner != user:
            raise JobNotFoundError(f"no job with id {job_id!r}")
        return record

    @router.get("/v1/jobs")
    async def list_jobs(user: User, limit: Annotated[int, Query(ge=1, le=500)] = 50, offset: Annotated[int, Query(ge=0)] = 0):
        records = await asyncio.to_thread(engine.jobs, limit, offset, user if logins else None)
        return {"object": "list", "data": [job_status(r) for r in records]}

    @router.get("/v1/jobs/{job_id}")
    async def get_job(job_id: str, user: User) -> dict[str, Any]:
        return job_status(await asyncio.to_thread(owned, job_id, user))

    @router.delete("/v1/jobs/{job_id}")
    async def cancel_job(job_id: str, user: User) -> dict[str, Any]:
        await asyncio.to_thread(owned, job_id, user)
        return job_status(await asyncio.to_thread(engine.cancel, job_id))

    @router.get("/v1/jobs/{job_id}/result")
    async def job_result(job_id: str, user: User, format: str = "json") -> Response:
        record = await asyncio.to_thread(owned, job_id, user)
        if record.state is not JobState.COMPLETED:
            raise HTTPException(409, f"job {job_id} is {record.state.value}, not completed")
        body, media = render(record.result, format.lower(), settings)
        stem = Path(record.filename).stem or "result"
        ascii_stem = stem.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
        return Response(body, media_type=media, headers={
            "Content-Disposition": f'attachment; filename="{ascii_stem}.{format.lower()}"',
            "X-Content-Type-Options": "nosniff",
        })

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> Response:
        if engine.ready.is_set():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "starting"}, status_code=503)

    if settings.server.metrics:
        from asr.metrics import ServiceMetrics

        metrics = ServiceMetrics(engine)

        @router.get("/metrics", include_in_schema=False)
        async def prometheus_metrics(user: User) -> Response:
            body, content_type = await asyncio.to_thread(metrics.render)  # reads SQLite
            return Response(body, media_type=content_type)

    app.include_router(router)
    return app
