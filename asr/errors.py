"""The errors a user can cause or meet, each with a message written for that user.

The UI and the HTTP API turn these into friendly text and status codes; anything
that is not an ``AsrError`` is a bug and is logged with its traceback.
"""

from __future__ import annotations

import errno


class AsrError(Exception):
    """Base class: ``str(error)`` is safe and meaningful to show to a user."""

    #: HTTP status the API answers with for this kind of error.
    http_status: int = 500
    #: Short machine-readable code, stable across releases (API clients match on it).
    code: str = "internal_error"


# ---- audio input ---------------------------------------------------------------------------


class AudioError(AsrError):
    """The uploaded file cannot be used as audio."""

    http_status = 400
    code = "bad_audio"


class EmptyFileError(AudioError):
    code = "empty_file"


class NotAudioError(AudioError):
    http_status = 415
    code = "not_audio"


class NoAudioTrackError(AudioError):
    http_status = 415
    code = "no_audio_track"


class CorruptAudioError(AudioError):
    code = "corrupt_audio"


class UnsupportedCodecError(AudioError):
    http_status = 415
    code = "unsupported_codec"


class AudioTooLongError(AudioError):
    http_status = 413
    code = "audio_too_long"


class FileTooLargeError(AudioError):
    http_status = 413
    code = "file_too_large"


class DecoderFailedError(AudioError):
    """The decoder process crashed, hung or ran out of memory on this file."""

    code = "decoder_failed"


# ---- models and configuration -------------------------------------------------------------


class ConfigError(AsrError):
    code = "config_error"


class ModelError(AsrError):
    """A model directory is missing, incomplete or does not match its manifest."""

    http_status = 503
    code = "model_error"


class ModelNotFoundError(ModelError):
    code = "model_not_found"


class ModelIncompleteError(ModelError):
    code = "model_incomplete"


class ManifestMismatchError(ModelError):
    code = "manifest_mismatch"


class DownloadError(ModelError):
    code = "download_failed"


# ---- running --------------------------------------------------------------------------------


class EngineBusyError(AsrError):
    """The bounded queue is full; the client should retry later."""

    http_status = 503
    code = "busy"


class EngineNotReadyError(AsrError):
    http_status = 503
    code = "not_ready"


class JobNotFoundError(AsrError):
    http_status = 404
    code = "job_not_found"


class JobCancelledError(AsrError):
    http_status = 409
    code = "cancelled"


class JobNotCompletedError(AsrError):
    """The job has no result (yet): it is waiting, running, or ended without one."""

    http_status = 409
    code = "not_completed"


class JobActiveError(AsrError):
    """A job still waiting or running cannot be deleted: it is cancelled first."""

    http_status = 409
    code = "job_active"


class IdleTimeoutError(AsrError):
    """A live stream sent nothing for ``live.idle_timeout_s``: it was closed."""

    http_status = 408
    code = "idle_timeout"


class JobAlreadyFinishedError(AsrError):
    """A finished job cannot be cancelled (its result, if any, stays available)."""

    http_status = 409
    code = "already_finished"


# ---- requests -------------------------------------------------------------------------------


class RequestError(AsrError):
    """The request itself is malformed: a missing field, a bad value, too many files."""

    http_status = 400
    code = "invalid_request"


class HotwordsError(RequestError):
    """Hotwords over the configured limits (count or length), or an unreadable hotword file."""

    code = "bad_hotwords"


class HotwordsUnavailableError(RequestError):
    """Hotwords were asked for, but this deployment's ASR model is not SeACo-Paraformer."""

    code = "hotwords_unavailable"


class SpeakersError(RequestError):
    """A speaker count out of range, or min above max."""

    code = "bad_speakers"


class SpeakersUnavailableError(RequestError):
    """Speaker labels were asked for, but this deployment's profile does not load CAM++."""

    code = "speakers_unavailable"


class EditError(RequestError):
    """An edit of a transcript that cannot be applied: no such sentence or speaker, an empty or
    over-long text, a control character, or a job with no transcript to edit."""

    code = "bad_edit"


class NotFoundError(AsrError):
    http_status = 404
    code = "not_found"


class LoginRequiredError(AsrError):
    http_status = 401
    code = "login_required"


class TooManyLoginAttemptsError(AsrError):
    """Logins for this user or from this client failed too often; wait ``retry_after_s``."""

    http_status = 429
    code = "too_many_login_attempts"

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ForbiddenHostError(AsrError):
    """The Host header names no host this service answers to (DNS rebinding)."""

    http_status = 403
    code = "forbidden_host"


class ForbiddenOriginError(AsrError):
    http_status = 403
    code = "forbidden_origin"


class ForbiddenFileError(AsrError):
    """A UI event names a server file the service never handed out."""

    http_status = 403
    code = "forbidden_file"


class RequestTooLargeError(AsrError):
    """The whole request, or the upload folder with it, would pass its cap."""

    http_status = 413
    code = "request_too_large"


class OutOfMemoryError(AsrError):
    """Even the smallest batch did not fit in device memory."""

    http_status = 507
    code = "out_of_memory"


class StorageFullError(AsrError):
    http_status = 507
    code = "storage_full"

    @classmethod
    def from_os_error(cls, error: OSError, what: str) -> "StorageFullError | None":
        """This error when ``error`` is a full disk or an exhausted quota, else None."""
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            return cls(f"the server's storage is full; {what}, try again later")
        return None


class StorageUnavailableError(AsrError):
    """The job database or the state directory is missing, replaced or not writable.

    Nothing is accepted while it lasts: a job written into a deleted database would be lost."""

    http_status = 503
    code = "storage_unavailable"


def storage_error(error: OSError, what: str, path: object) -> AsrError:
    """The AsrError for an OSError met while keeping ``what`` at ``path``: full, or unavailable."""
    full = StorageFullError.from_os_error(error, what)
    if full is not None:
        return full
    return StorageUnavailableError(f"{what}: {path} is not usable ({error.strerror or error})")


def status_of(code: str | None, default: int = 500) -> int:
    """The HTTP status of the AsrError with this code (a job stores only the code of its error)."""
    pending: list[type[AsrError]] = [AsrError]
    while pending:
        cls = pending.pop()
        if cls.__dict__.get("code") == code:
            return cls.http_status
        pending.extend(cls.__subclasses__())
    return default


class FatalDeviceError(AsrError):
    """The device is in a state the process cannot recover from (e.g. a sticky CUDA error).

    The service exits non-zero on this so that its supervisor restarts it.
    """

    code = "device_failed"
