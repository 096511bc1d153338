"""HTTP API on the same engine and queue as the UI (FastAPI; no Gradio here).

* ``POST /v1/audio/transcriptions`` — OpenAI-compatible, waits for the result.
* ``POST /v1/jobs``, ``GET /v1/jobs``, ``GET|DELETE /v1/jobs/{id}``, ``GET /v1/jobs/{id}/result`` —
  for hours-long files: submit, poll, fetch in any output format.
* ``GET /v1/jobs?q=...`` searches the history by file name or text; ``DELETE /v1/jobs/{id}?purge=true``
  deletes a finished job with its files (a plain ``DELETE`` cancels).
* ``PATCH /v1/jobs/{id}/transcript``, ``DELETE /v1/jobs/{id}/transcript/edits`` — correct a finished
  transcript (kept with the job, the original too), or go back to what was recognised.
* ``GET /v1/system`` — the service and its machine (the System tab's facts).
* ``GET /healthz`` (process up), ``GET /readyz`` (models loaded and warmed).
* ``GET /metrics`` — Prometheus text format (asr.service.metrics); behind the logins when they are on.
"""


import asyncio
import base64
import hmac
import json
import logging
import os
import tempfile
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from asr.config import Settings
from asr.core.options import build_options, hotwords_available
from asr.core.writers import VAD_WRITERS, WRITERS, render, render_zip
from asr.errors import (
    AsrError,
    EngineNotReadyError,
    FileTooLargeError,
    JobNotCompletedError,
    LoginRequiredError,
    NotFoundError,
    RequestError,
    RequestTooLargeError,
    StorageFullError,
    status_of,
    storage_error,
)
from asr.service.edits import SentenceEdit
from asr.service.engine import Engine
from asr.service.guards import LoginThrottle, envelope, error_headers
from asr.service.jobs import JobKind, JobRecord, JobState
from asr.service.stages import stage_names
from asr.types import TranscribeOptions, Transcript

logger = logging.getLogger(__name__)

OPENAI_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
HOTWORDS_HELP = ("names and jargon to favour, separated by spaces or new lines "
                 "(needs models.asr_model: seaco; limits: hotwords.max_count, hotwords.max_chars)")
ITN_HELP = "write numbers, dates and money as digits (一百二十三 → 123); empty: the deployment's text.itn"
SPEAKERS_HELP = "label each sentence with its speaker (needs the vad+asr+punc+spk profile)"
#: The model id OpenAI clients name (and list with GET /v1/models); one pinned model serves all.
MODEL_ID = "paraformer-large"
_COPY_CHUNK = 1 << 20
#: Most an edit's JSON body may carry: every sentence of hours of speech, with room to spare. Read
#: with this cap by the route itself: the upload guard caps only uploads, at the file size.
MAX_EDIT_BYTES = 8 << 20
#: Codes for the HTTP errors that FastAPI and Starlette raise themselves (routing, validation).
_HTTP_CODES = {400: "invalid_request", 401: "login_required", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "request_too_large", 415: "unsupported_media_type",
               422: "invalid_request", 429: "too_many_requests"}


class SentenceEditBody(BaseModel):
    index: int = Field(description="0-based position of the sentence")
    text: str | None = Field(None, description="its new text; leave out to keep it")
    speaker: int | None = Field(None, description="a speaker id, or the next one to add a speaker")


class TranscriptEditBody(BaseModel):
    sentences: list[SentenceEditBody] = Field(default_factory=list)
    speakers: list[str] | None = Field(None, description="display names: the i-th renames speaker i")


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its nested models written in place, for a request body the
    OpenAPI document describes without FastAPI parsing it (its refs would point nowhere)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)


async def _json_body(request: Request, model: type[BaseModel], max_bytes: int) -> Any:
    """The request's JSON body as ``model``, read up to ``max_bytes`` (413 past it, 422 if invalid)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise RequestTooLargeError(f"the request body is larger than the {max_bytes >> 20} MB allowed")
    try:
        return model.model_validate_json(bytes(body))
    except ValidationError as e:
        raise RequestValidationError(e.errors()) from None


def error_response(error: AsrError, **extra: Any) -> JSONResponse:
    return JSONResponse(envelope(error, **extra), status_code=error.http_status, headers=error_headers(error))


def _http_error(status: int, message: str) -> AsrError:
    """An HTTPException of the framework's, as the AsrError with that status (one envelope)."""
    error = AsrError(message)
    error.http_status = status
    error.code = _HTTP_CODES.get(status, "internal_error" if status >= 500 else f"http_{status}")
    return error


def _validation_message(error: RequestValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(p) for p in item.get("loc", ()) if p not in ("body", "query", "path"))
        problems.append(f"{where}: {item.get('msg', 'invalid')}" if where else str(item.get("msg", "invalid")))
    return "invalid request: " + "; ".join(problems)


def _body_storage_error(error: BaseException) -> AsrError | None:
    """The storage error behind a body FastAPI could not parse (its spool file hit a full disk)."""
    cause = error.__cause__ or error.__context__
    while cause is not None:
        if isinstance(cause, OSError):
            mapped = storage_error(cause, "the upload could not be kept", "the upload spool")
            return mapped if isinstance(mapped, StorageFullError) else None
        cause = cause.__cause__ or cause.__context__
    return None


def parse_logins(entries: list[str]) -> dict[str, str]:
    return dict(entry.split(":", 1) for entry in entries)


def presented_login(request: Request) -> tuple[str, str] | None:
    """The (user, password) of an ``Authorization: Basic`` or ``Bearer user:password`` header."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            credentials = base64.b64decode(value, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return ("", "")
    elif scheme.lower() == "bearer":
        credentials = value
    else:
        return None
    user, _, password = credentials.partition(":")
    return user, password


def login_valid(logins: dict[str, str], user: str, password: str) -> bool:
    expected = logins.get(user)
    # compared even for an unknown user, so that the answer takes as long either way
    ok = hmac.compare_digest((expected or "\0").encode(), password.encode())
    return expected is not None and ok


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
        "stage_name": stage_names(record.stage),  # {"en": "recognition", "zh": "识别"}
        "progress": round(record.progress, 4),
        "queue_position": record.queue_position,
        "eta_s": record.eta_s,
        "duration_s": record.duration_s,
        "rtf": round(record.rtf, 5) if record.rtf is not None else None,
        "timings": record.timings.__dict__ if record.timings else None,
        "error": {"message": record.error, "code": record.error_code} if record.error else None,
        # what was asked for: ITN, hotwords, speakers (a transcription's checked options)
        "options": record.options if record.kind is JobKind.TRANSCRIBE else {},
        # corrected by a user: the result routes give the edited version (the original on request)
        "edited": record.is_edited,
        "edited_at": record.edited_at,
    }
    if record.state is JobState.COMPLETED:
        formats = VAD_WRITERS if record.kind is JobKind.VAD else WRITERS  # listings carry no result
        data["result_formats"] = list(formats)
    return data


def openai_body(transcript: Transcript, fmt: str, settings: Settings) -> Response:
    if fmt == "json":
        return JSONResponse({"text": transcript.text})
    if fmt == "text":
        return PlainTextResponse(transcript.text)
    if fmt in ("srt", "vtt"):
        rendered = render(transcript, fmt, settings.output)
        return Response(rendered.body, media_type=rendered.media_type)
    return JSONResponse({
        "task": "transcribe",
        "language": "chinese",
        "duration": round(transcript.duration_s, 3),
        "text": transcript.text,
        **({"speakers": list(transcript.speakers)} if transcript.speakers else {}),
        "segments": [
            {
                "id": i,
                "start": round(s.start_ms / 1000, 3),
                "end": round(s.end_ms / 1000, 3),
                "text": s.text,
                **({"speaker": transcript.speaker_name(s), "speaker_id": s.speaker} if transcript.speakers else {}),
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
        raise storage_error(e, "the upload could not be kept", directory) from e
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
        raise storage_error(e, "the upload could not be kept", directory) from e
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def create_api(engine: Engine, settings: Settings, throttle: LoginThrottle | None = None) -> FastAPI:
    """The FastAPI application with the API routes; the UI is mounted onto it by app.py."""
    app = FastAPIOffline(title="Offline ASR", version="1", docs_url="/v1/docs", openapi_url="/v1/openapi.json",
                         redoc_url=None, static_url="/v1/docs/static")
    max_bytes = int(settings.audio.max_file_mb * 1024 * 1024)
    logins = parse_logins(settings.server.auth)
    throttle = throttle or LoginThrottle(settings.server.login_max_failures, settings.server.login_max_wait_s)
    uploads = settings.storage.cache_path() / "uploads"
    # Nothing the API waits on runs in asyncio's shared default pool (a few threads): there a
    # handful of requests waiting for their jobs would stall every other route. A job is awaited
    # without a thread at all; probes (seconds each, at most one per queue place) and database
    # reads each have a pool of their own, so reads answer while the queue is full.
    places = settings.queue.max_size + settings.queue.workers
    submit_pool = ThreadPoolExecutor(max_workers=places + 1, thread_name_prefix="api-submit")
    read_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="api-read")

    async def in_pool(pool: ThreadPoolExecutor, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    async def finished(job_id: str) -> JobRecord:
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def wake() -> None:
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

        engine.add_done_callback(job_id, wake)
        await done
        return await in_pool(read_pool, engine.get, job_id)

    def current_user(request: Request) -> str | None:
        if not logins:
            return None
        presented = presented_login(request)
        if presented is None:
            raise LoginRequiredError("login required: send Authorization: Basic (or Bearer user:password)")
        user, password = presented
        client = request.client.host if request.client else "unknown"
        throttle.check(user, client)
        if not login_valid(logins, user, password):
            logger.warning("failed API login for user %r from %s", user[:64], client)
            throttle.failed(user, client)
            raise LoginRequiredError("login failed: wrong user name or password")
        throttle.succeeded(user, client)
        return user

    User = Annotated[str | None, Depends(current_user)]

    @app.exception_handler(AsrError)
    async def _asr_error(request: Request, error: AsrError) -> JSONResponse:
        if error.http_status >= 500 and error.code not in ("busy", "not_ready", "storage_full", "storage_unavailable"):
            logger.error("%s %s: %s", request.method, request.url.path, error)
        return error_response(error)

    @app.exception_handler(StarletteHTTPException)
    async def _http_exception(request: Request, error: StarletteHTTPException) -> JSONResponse:
        storage = _body_storage_error(error) if error.status_code == 400 else None
        if storage is not None:
            return error_response(storage)
        detail = error.detail if isinstance(error.detail, str) else json.dumps(error.detail, ensure_ascii=False)
        response = error_response(_http_error(error.status_code, detail))
        response.headers.update(error.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(_http_error(422, _validation_message(error)))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.error("%s %s failed unexpectedly", request.method, request.url.path, exc_info=error)
        return error_response(AsrError("internal error; the details are in the service log"))

    router = APIRouter()

    async def the_file(request: Request, upload: UploadFile) -> UploadFile:
        form = await request.form()  # parsed already for the parameters: no second read
        if len(form.getlist("file")) > 1:
            raise RequestError("send one file per request (this one has "
                               f"{len(form.getlist('file'))} 'file' fields)")
        return upload

    async def submit(upload: UploadFile, kind: JobKind, options: TranscribeOptions, user: str | None) -> JobRecord:
        path = await _save_upload(upload, uploads, max_bytes)
        try:
            return await in_pool(submit_pool, engine.submit, path, upload.filename or "audio", kind, options, user, True)
        finally:
            path.unlink(missing_ok=True)  # moved into the job dir, or refused

    @router.post("/v1/audio/transcriptions")
    async def transcriptions(
        request: Request,
        user: User,
        file: Annotated[UploadFile, File(description="audio or video file")],
        model: Annotated[str, Form()] = MODEL_ID,
        response_format: Annotated[str, Form()] = "json",
        language: Annotated[str | None, Form()] = None,
        prompt: Annotated[str | None, Form()] = None,
        temperature: Annotated[float | None, Form()] = None,
        hotwords: Annotated[str | None, Form(description=HOTWORDS_HELP)] = None,
        itn: Annotated[bool | None, Form(description=ITN_HELP)] = None,
        speakers: Annotated[bool, Form(description=SPEAKERS_HELP)] = False,
        num_speakers: Annotated[int | None, Form()] = None,
        min_speakers: Annotated[int | None, Form()] = None,
        max_speakers: Annotated[int | None, Form()] = None,
    ) -> Response:
        """OpenAI-compatible. `model`, `language` and `temperature` are accepted and ignored (one pinned
        Chinese model serves every request). `prompt`, which Whisper users fill with vocabulary, is
        taken as hotwords (space-separated) where the deployment runs SeACo-Paraformer, and ignored
        elsewhere, so that clients which always send one keep working."""
        if response_format not in OPENAI_FORMATS:
            raise RequestError(f"response_format must be one of {', '.join(OPENAI_FORMATS)}")
        words = " ".join(w for w in ((prompt if hotwords_available(settings) else None), hotwords) if w)
        options = build_options(settings, itn=itn, hotwords=words or None, speakers=speakers,
                                num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers)
        job = await submit(await the_file(request, file), JobKind.TRANSCRIBE, options, user)
        # If the client goes away, the job still finishes and is kept in the history.
        record = await finished(job.id)
        if record.state is not JobState.COMPLETED:
            error = AsrError(record.error or record.state.value)
            error.code = record.error_code or record.state.value
            # the status of the error the job met, as if it had been met before the job queued
            error.http_status = status_of(error.code, default=500)
            return error_response(error, job_id=job.id)
        return openai_body(record.result, response_format, settings)

    @router.post("/v1/jobs", status_code=202)
    async def create_job(
        request: Request,
        user: User,
        file: Annotated[UploadFile, File()],
        kind: Annotated[str, Form()] = "transcribe",
        punctuate: Annotated[bool, Form()] = True,
        hotwords: Annotated[str | None, Form(description=HOTWORDS_HELP)] = None,
        itn: Annotated[bool | None, Form(description=ITN_HELP)] = None,
        speakers: Annotated[bool, Form(description=SPEAKERS_HELP)] = False,
        num_speakers: Annotated[int | None, Form()] = None,
        min_speakers: Annotated[int | None, Form()] = None,
        max_speakers: Annotated[int | None, Form()] = None,
    ) -> dict[str, Any]:
        try:
            job_kind = JobKind(kind)
        except ValueError:
            raise RequestError("kind must be transcribe or vad") from None
        options = TranscribeOptions()
        if job_kind is JobKind.TRANSCRIBE:
            options = build_options(settings, punctuate=punctuate, itn=itn, hotwords=hotwords, speakers=speakers,
                                    num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers)
        record = await submit(await the_file(request, file), job_kind, options, user)
        return job_status(record)

    def owned(job_id: str, user: str | None) -> JobRecord:
        return engine.owned(job_id, user if logins else None)

    @router.get("/v1/jobs")
    async def list_jobs(
        user: User,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
        q: Annotated[str | None, Query(description="only jobs whose file name or text contains this")] = None,
    ):
        """The history, newest first; with ``q``, the jobs whose file name or text (as edited) contains it."""
        records = await in_pool(read_pool, engine.jobs, limit, offset, user if logins else None, q)
        return {"object": "list", "data": [job_status(r) for r in records]}

    @router.get("/v1/jobs/{job_id}")
    async def get_job(job_id: str, user: User) -> dict[str, Any]:
        return job_status(await in_pool(read_pool, owned, job_id, user))

    @router.delete("/v1/jobs/{job_id}")
    async def cancel_job(job_id: str, user: User, purge: bool = False) -> dict[str, Any]:
        """Cancel a waiting or running job (409 ``already_finished`` once it has finished). With
        ``purge=true``, delete a finished job from the history with its files instead (409 ``job_active``
        while it still waits or runs: cancel it first)."""
        if purge:
            await in_pool(read_pool, engine.delete_job, job_id, user if logins else None)
            return {"id": job_id, "object": "asr.job.deleted", "deleted": True}
        await in_pool(read_pool, owned, job_id, user)
        return job_status(await in_pool(read_pool, engine.cancel, job_id))

    @router.patch("/v1/jobs/{job_id}/transcript", openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": _inline_schema(TranscriptEditBody)}}}})
    async def edit_transcript(job_id: str, user: User, request: Request) -> dict[str, Any]:
        """Correct a completed transcript: a sentence's text or speaker (the next id adds a speaker), the
        speakers' names. Saved with the job; the result routes then give the edited version."""
        body = await _json_body(request, TranscriptEditBody, MAX_EDIT_BYTES)
        edits = [SentenceEdit(e.index, e.text, e.speaker) for e in body.sentences]
        record = await in_pool(read_pool, engine.edit_transcript, job_id, edits, body.speakers,
                               user if logins else None)
        return job_status(record)

    @router.delete("/v1/jobs/{job_id}/transcript/edits")
    async def revert_transcript(job_id: str, user: User) -> dict[str, Any]:
        """Drop the corrections: the job gives what was recognised again."""
        return job_status(await in_pool(read_pool, engine.revert_transcript, job_id, user if logins else None))

    @router.get("/v1/jobs/{job_id}/result")
    async def job_result(job_id: str, user: User, format: str = "json", original: bool = False) -> Response:
        """The result in ``format`` (``zip``: every format of its kind in one file): the edited version
        where the transcript was corrected, the one recognised with ``original=true``."""
        record = await in_pool(read_pool, owned, job_id, user)
        if record.state is not JobState.COMPLETED:
            raise JobNotCompletedError(f"job {job_id} is {record.state.value}, not completed")
        result = record.result if original else record.current
        stem = Path(record.filename).stem or "result"
        if format.lower() == "zip":
            rendered = render_zip([(stem, result)], None, settings.output, stem)
        else:
            rendered = render(result, format.lower(), settings.output, stem)
        fallback = rendered.filename.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
        return Response(rendered.body, media_type=rendered.media_type, headers={
            # the ASCII name for old clients, the user's own (RFC 6266) for the rest
            "Content-Disposition": f"attachment; filename=\"{fallback}\"; "
                                   f"filename*=UTF-8''{urllib.parse.quote(rendered.filename)}",
            "X-Content-Type-Options": "nosniff",
        })

    @router.get("/v1/system")
    async def system(user: User) -> dict[str, Any]:
        """The service and its machine: version, uptime, queue and workers, jobs completed and failed,
        CPU, memory, GPU memory (CUDA), free disk, whether logins are on, the loaded models."""
        return await in_pool(read_pool, engine.status)  # reads SQLite and /proc

    @router.get("/v1/models")
    async def list_models(user: User) -> dict[str, Any]:
        """OpenAI-compatible: the model this deployment serves, with what is loaded behind it."""
        status = await in_pool(read_pool, engine.status)
        loaded = {role: {"id": m["id"], "revision": m["revision"]} for role, m in status.get("models", {}).items()}
        return {"object": "list", "data": [{
            "id": MODEL_ID, "object": "model", "created": int(engine.started_at), "owned_by": "asr-service",
            "ready": engine.ready.is_set(), "profile": settings.models.profile, "loaded": loaded,
        }]}

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> Response:
        if not engine.ready.is_set():
            return JSONResponse({"status": "starting", **envelope(EngineNotReadyError("the models are loading"))},
                                status_code=503)
        try:
            engine.store.check()  # stats only: cheap enough for the event loop
        except AsrError as e:
            return JSONResponse({"status": "unavailable", **envelope(e)}, status_code=e.http_status)
        return JSONResponse({"status": "ready"})

    if settings.server.metrics:
        from asr.service.metrics import ServiceMetrics

        metrics = ServiceMetrics(engine)

        @router.get("/metrics", include_in_schema=False)
        async def prometheus_metrics(user: User) -> Response:
            body, content_type = await in_pool(read_pool, metrics.render)  # reads SQLite
            return Response(body, media_type=content_type)

    @router.api_route("/v1/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    async def unknown_route(rest: str) -> Response:
        raise NotFoundError(f"no API route /v1/{rest[:100]} (see /v1/docs)")

    app.include_router(router)
    return app
