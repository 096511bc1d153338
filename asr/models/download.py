"""``asr download`` and ``asr verify``: fetch the pinned models from ModelScope, check them offline.

Downloading goes through modelscope's own ``snapshot_download`` (modelscope 1.40.2, which
delegates to ``modelscope_hub`` 0.5.1). For one model it asks the endpoint for:

* ``GET {endpoint}/api/v1/models/{owner}/{name}/repo/files?Revision={rev}&Recursive=True``
  (the file listing, with ``Size`` and ``Sha256`` per file, which the client checks);
* ``GET {endpoint}/api/v1/repos/internalAccelerationInfo`` (Alibaba-Cloud intranet probe,
  0.2 s, failure ignored);
* ``GET {endpoint}/api/v1/models/{owner}/{name}/repo?Revision={rev}&FilePath={file}`` for each
  wanted file (``Range: bytes=N-`` to resume a partial file).

A mirror must serve those. Files land in ``download_target()`` (the layout modelscope >= 1.38
writes: ``{cache}/models/{owner}--{name}/snapshots/{revision}/``), and the manifest
(``.asr-manifest.json``: sha256 and size of every file) is written last, only after every
required file is present; its presence is what "complete" means, and a model whose manifest
already matches is skipped without touching the network (modelscope is not even imported).

Network settings. ``download.endpoint`` (else ``$MODELSCOPE_ENDPOINT``) is passed to
``snapshot_download(endpoint=...)``; with neither, modelscope picks https://modelscope.cn and
falls back to https://www.modelscope.ai. modelscope_hub reads its timeouts and retry counts
from environment variables (``MODELSCOPE_API_CONNECT_TIMEOUT``, ``MODELSCOPE_API_TIMEOUT``,
``MODELSCOPE_DOWNLOAD_TIMEOUT``, ``MODELSCOPE_REPO_TREE_PAGE_TIMEOUT_SECONDS``,
``MODELSCOPE_DOWNLOAD_MAX_RETRIES``, ``MODELSCOPE_REPO_TREE_PAGE_MAX_ATTEMPTS``), but only
ONCE, when ``modelscope_hub.constants`` is imported; every module then holds its own copy
(``from .constants import API_TIMEOUT``). Setting the variables later has no effect, so
:func:`_modelscope_network_settings` sets those module values for the duration of the call
(and puts them back): ``download.timeout_s`` becomes the connect, read and per-listing
timeout, and modelscope's own retries are turned off so that ``download.retries`` (our loop,
with exponential back-off) is the only retry policy. A host name that does not resolve (no DNS,
no network, a mistyped endpoint) is never retried: the error names the host and the resolver's
own words at once instead of after several resolver timeouts.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import re
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from asr.config import ModelSpec, Settings
from asr.errors import (
    DownloadError,
    ManifestMismatchError,
    ModelError,
    ModelIncompleteError,
)
from asr.models.files import (
    LOCAL_NOTE,
    MANIFEST_NAME,
    REQUIRED_FILES,
    ModelRole,
    check_model,
    download_target,
    is_local,
    locate_model,
    model_file_names,
    model_spec,
    read_manifest,
    roles_for_profile,
    sha256_file,
    verified_copy,
    verify_manifest,
    write_manifest,
)

logger = logging.getLogger(__name__)

#: ModelScope's default endpoint, named in messages when none is configured.
DEFAULT_ENDPOINT = "https://modelscope.cn"
#: First back-off between attempts, doubled after each failure, capped at BACKOFF_MAX_S.
BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 60.0

_WHAT_TO_DO = (
    "check that this machine reaches the endpoint (network, proxy, firewall), or set "
    "MODELSCOPE_ENDPOINT (or download.endpoint in the config) to a reachable ModelScope "
    "mirror, or raise download.timeout_s / download.retries; on a machine without network, "
    "install an offline bundle with `asr install-bundle FILE`"
)
_WHAT_TO_DO_DNS = (
    "check this machine's network and DNS (it must resolve {host}), or set "
    "MODELSCOPE_ENDPOINT (or download.endpoint in the config) to a ModelScope mirror this machine "
    "can resolve and reach; on a machine without network, install an offline bundle with "
    "`asr install-bundle FILE`"
)


@dataclass(frozen=True)
class DownloadReport:
    role: str
    model_id: str
    revision: str
    directory: Path
    downloaded: bool
    """False when the model was already complete (its manifest matched; no network used)."""


# ---- public API ----------------------------------------------------------------------------


def download_models(
    settings: Settings,
    roles: Iterable[str] | None = None,
    *,
    backoff_s: float = BACKOFF_BASE_S,
    sleep: Callable[[float], None] = time.sleep,
) -> list[DownloadReport]:
    """Make every model of ``roles`` (default: the profile's) complete in the cache.

    A model whose manifest already matches is left alone, offline. A model with an explicit
    ``path`` is only checked, never downloaded into. ``backoff_s``/``sleep`` exist so that
    tests need not wait. Raises DownloadError, ModelIncompleteError or another ModelError.
    """
    models = settings.models
    selected = list(roles) if roles is not None else list(roles_for_profile(models.profile))
    for role in selected:
        if role not in REQUIRED_FILES:
            raise ValueError(f"unknown model role {role!r}; expected one of {sorted(REQUIRED_FILES)}")
    reports: list[DownloadReport] = []
    for role in selected:
        spec = model_spec(models, role)  # type: ignore[arg-type]
        if spec.path is not None:
            reports.append(_check_explicit_path(settings, role))  # type: ignore[arg-type]
            continue
        present = verified_copy(settings.models, role)  # type: ignore[arg-type]
        if present is not None:
            logger.info("%s model %s@%s is complete in %s", role, spec.id, spec.revision, present)
            reports.append(DownloadReport(role, spec.id, spec.revision, present, False))
            continue
        directory = _download(settings, role, spec, backoff_s=backoff_s, sleep=sleep)  # type: ignore[arg-type]
        reports.append(DownloadReport(role, spec.id, spec.revision, directory, True))
    return reports


def verify_models(settings: Settings) -> list[dict]:
    """Offline: recompute every sha256 of the profile's models; raise on the first mismatch.

    Returns one dict per model: its manifest plus ``directory`` and ``is_test_model``.
    """
    results: list[dict] = []
    for role in roles_for_profile(settings.models.profile):
        location = locate_model(settings.models, role)
        manifest = verify_manifest(location)
        results.append(
            {
                **manifest,
                "role": role,
                "directory": str(location.directory),
                "is_test_model": location.is_test_model,
            }
        )
        logger.info("%s model %s verified in %s%s", role, location.spec.id, location.directory,
                    f" ({LOCAL_NOTE})" if is_local(manifest) else "")
    return results


# ---- no-network checks ---------------------------------------------------------------------


def _check_explicit_path(settings: Settings, role: ModelRole) -> DownloadReport:
    """A model the config points at with ``path``: check it, never write into it."""
    location = locate_model(settings.models, role)
    if check_model(location) is None:
        logger.warning(
            "%s model at %s has no %s, so its files cannot be checked against checksums",
            role, location.directory, MANIFEST_NAME,
        )
    spec = location.spec
    return DownloadReport(role, spec.id, spec.revision, location.directory, False)


# ---- downloading ---------------------------------------------------------------------------


def resolve_endpoint(settings: Settings) -> str | None:
    """download.endpoint, else $MODELSCOPE_ENDPOINT, else None (modelscope's default)."""
    return settings.download.endpoint or os.environ.get("MODELSCOPE_ENDPOINT") or None


def _describe_endpoint(endpoint: str | None) -> str:
    if endpoint:
        return endpoint
    if os.environ.get("MODELSCOPE_DOMAIN"):  # deprecated, still honoured by modelscope
        return f"{os.environ['MODELSCOPE_DOMAIN']} (from the deprecated MODELSCOPE_DOMAIN)"
    return (
        f"{DEFAULT_ENDPOINT} (ModelScope's default, falling back to https://www.modelscope.ai; "
        "MODELSCOPE_ENDPOINT is not set)"
    )


def _download(
    settings: Settings,
    role: ModelRole,
    spec: ModelSpec,
    *,
    backoff_s: float,
    sleep: Callable[[float], None],
) -> Path:
    cache_dir = settings.models.resolved_cache_dir()
    target = download_target(cache_dir, spec)
    endpoint = resolve_endpoint(settings)
    where = _describe_endpoint(endpoint)
    what = f"{role} model {spec.id}@{spec.revision}"

    snapshot_download = _load_snapshot_download(what)
    _invalidate(target)
    attempts = settings.download.retries + 1
    logger.info("downloading %s from %s into %s", what, where, target)
    for attempt in range(1, attempts + 1):
        try:
            with _modelscope_network_settings(settings.download.timeout_s):
                returned = snapshot_download(
                    model_id=spec.id,
                    revision=spec.revision,
                    cache_dir=str(cache_dir),
                    allow_patterns=model_file_names(role),
                    endpoint=endpoint,
                )
            break
        except Exception as error:  # noqa: BLE001 - classified, then re-raised as DownloadError
            retryable = _is_retryable(error)
            cause = _describe_error(error, endpoint)
            if not retryable or attempt == attempts:
                tried = f"after {attempt} attempt(s)" if retryable else "(not retried)"
                raise DownloadError(
                    f"could not download {what} from {where} {tried}: {cause}. "
                    f"To fix: {_advice(error, role, endpoint)}."
                ) from error
            delay = min(backoff_s * 2 ** (attempt - 1), BACKOFF_MAX_S)
            logger.warning(
                "download of %s from %s failed (attempt %d of %d): %s; retrying in %.1f s",
                what, where, attempt, attempts, cause, delay,
            )
            sleep(delay)

    returned = Path(returned)
    if not _same_dir(returned, target):
        # modelscope reused an older cache layout (modelscope_hub's {cache}/models/{owner}/
        # {name___} or {cache}/hub/..., or modelscope's own flat {cache}/{owner}/{name}) and
        # put the files there. Those layouts carry no revision, may be shared with other
        # tools, and some are not among locate_model's candidates, so we neither record that
        # path nor move it away: the wanted files are hard-linked (copied across file systems)
        # into download_target, which locate_model tries first. No extra disk space in the
        # common case, the legacy cache keeps working, and download_target is self-contained.
        logger.info("modelscope used the existing cache %s; linking the files into %s", returned, target)
        _adopt(returned, target, role)

    _require_files(target, role, what, where)
    write_manifest(target, spec, role)  # last: its presence means "complete"
    logger.info("downloaded %s into %s", what, target)
    return target


def _invalidate(target: Path) -> None:
    """Before downloading into ``target``, make sure nothing there still looks complete.

    The old manifest goes first, so a crash from here on cannot leave a stale "complete"
    mark. A file that no longer matches its old checksum is deleted so that it is fetched
    again, even from a mirror whose listing has no Sha256 (modelscope then reuses any
    cached file of the right size).
    """
    manifest_path = target / MANIFEST_NAME
    if not manifest_path.is_file():
        return
    try:
        old = read_manifest(target) or {"files": {}}
    except ManifestMismatchError:
        old = {"files": {}}
    manifest_path.unlink(missing_ok=True)
    for name, entry in old["files"].items():
        if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith("."):
            continue  # manifests name plain files of the model directory, nothing else
        path = target / name
        try:
            if path.is_file() and (
                path.stat().st_size != entry.get("size") or sha256_file(path) != entry.get("sha256")
            ):
                logger.info("%s does not match its old manifest; it will be downloaded again", path)
                path.unlink()
        except (OSError, AttributeError):
            continue


def _require_files(directory: Path, role: ModelRole, what: str, where: str) -> None:
    if not any((directory / name).is_file() for name in model_file_names(role)):
        raise ModelIncompleteError(
            f"{what}: {where} listed none of the model files ({', '.join(model_file_names(role)[:4])}, "
            f"...) for this revision, so nothing was downloaded and no manifest was written. "
            f"To fix: check models.{role}.id and models.{role}.revision (the revision must exist "
            f"on the endpoint), or install an offline bundle with `asr install-bundle FILE`."
        )
    for alternatives in REQUIRED_FILES[role]:
        if not any((directory / name).is_file() for name in alternatives):
            missing = " or ".join(alternatives)
            raise ModelIncompleteError(
                f"{what}: the download from {where} finished without {missing}, so {directory} is "
                f"incomplete (no manifest was written). The repository at that revision, or the "
                f"mirror, does not provide it. To fix: check models.{role}.id and revision, use a "
                f"mirror that serves the whole repository, or install an offline bundle with "
                f"`asr install-bundle FILE`."
            )


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _adopt(source: Path, target: Path, role: ModelRole) -> None:
    """Hard-link (or copy) the wanted files of ``source`` into ``target``, atomically each."""
    target.mkdir(parents=True, exist_ok=True)
    for name in model_file_names(role):
        src = source / name
        if not src.is_file():
            continue
        dst = target / name
        if dst.exists() and os.path.samefile(src, dst):
            continue
        tmp = target / f".{name}.adopt-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)
        os.replace(tmp, dst)


# ---- modelscope ----------------------------------------------------------------------------

#: modelscope_hub constants set per call: (env variable it is read from, value or None=timeout)
_NETWORK_CONSTANTS = {
    "API_CONNECT_TIMEOUT": ("MODELSCOPE_API_CONNECT_TIMEOUT", None),
    "API_TIMEOUT": ("MODELSCOPE_API_TIMEOUT", None),
    "DOWNLOAD_TIMEOUT": ("MODELSCOPE_DOWNLOAD_TIMEOUT", None),
    "REPO_TREE_PAGE_TIMEOUT_SECONDS": ("MODELSCOPE_REPO_TREE_PAGE_TIMEOUT_SECONDS", None),
    "DOWNLOAD_RETRY_TIMES": ("MODELSCOPE_DOWNLOAD_MAX_RETRIES", 0),
    "REPO_TREE_PAGE_MAX_ATTEMPTS": ("MODELSCOPE_REPO_TREE_PAGE_MAX_ATTEMPTS", 1),
}
_NETWORK_LOCK = threading.Lock()


@contextlib.contextmanager
def _modelscope_network_settings(timeout_s: float) -> Iterator[None]:
    """Apply ``timeout_s`` and "no internal retries" to modelscope_hub for one call.

    modelscope_hub reads these from the environment once, at import, and each of its
    modules keeps a copy (see the module docstring), so the copies are what must change.
    Its timeouts are whole seconds; ``timeout_s`` is rounded up. The lock keeps two of our
    downloads from interleaving the change and the restore.
    """
    timeout = max(1, math.ceil(timeout_s))
    with _NETWORK_LOCK:
        saved: list[tuple[object, str, object]] = []
        try:
            modules = [
                module for name, module in list(sys.modules.items())
                if module is not None and (name == "modelscope_hub" or name.startswith("modelscope_hub."))
            ]
            applied = set()
            for module in modules:
                for attr, (_env, value) in _NETWORK_CONSTANTS.items():
                    if hasattr(module, attr):
                        saved.append((module, attr, getattr(module, attr)))
                        setattr(module, attr, timeout if value is None else value)
                        applied.add(attr)
            missing = set(_NETWORK_CONSTANTS) - applied
            if missing:
                logger.warning(
                    "this modelscope_hub version has no %s; download.timeout_s/retries may not "
                    "fully apply (set %s in the environment instead)",
                    ", ".join(sorted(missing)),
                    ", ".join(_NETWORK_CONSTANTS[m][0] for m in sorted(missing)),
                )
            yield
        finally:
            for module, attr, value in reversed(saved):
                setattr(module, attr, value)


def _load_snapshot_download(what: str) -> Callable[..., str]:
    """modelscope's real snapshot_download. Imported here, not at the top of the module, so
    that checking complete models never loads modelscope (nor torch, which it imports)."""
    try:
        from modelscope.hub.snapshot_download import snapshot_download
    except ImportError as error:
        raise DownloadError(
            f"cannot download {what}: the modelscope package is not importable here ({error}). "
            f"To fix: install the project's dependencies (pip install modelscope), or install an "
            f"offline bundle with `asr install-bundle FILE`."
        ) from error
    return snapshot_download


# ---- error classification -----------------------------------------------------------------


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error and the errors it was raised from."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _failed_files(error: BaseException) -> dict[str, BaseException]:
    """Per-file errors of modelscope's FileDownloadError (raised once every file was tried)."""
    for current in _causes(error):
        failed = getattr(current, "failed_files", None)
        if isinstance(failed, dict) and failed:
            return {str(k): v for k, v in failed.items() if isinstance(v, BaseException)}
    return {}


def _status(error: BaseException) -> int | None:
    """The HTTP status behind an error, if one is known (or shared by all failed files)."""
    for current in _causes(error):
        for status in (
            getattr(current, "status_code", None),
            getattr(getattr(current, "response", None), "status_code", None),
        ):
            if isinstance(status, int):
                return status
    statuses = {_status(e) for e in _failed_files(error).values()}
    return statuses.pop() if len(statuses) == 1 else None


@dataclass(frozen=True)
class _Unresolved:
    """A request that never left this machine: a host name did not resolve."""

    host: str | None
    reason: str
    """The innermost error that says so, whole, e.g. "NameResolutionError: ...: Failed to resolve
    'x' ([Errno -2] Name or service not known)"."""


_FAILED_TO_RESOLVE = re.compile(r"Failed to resolve '([^']+)'")


def _name_resolution_failure(error: BaseException) -> _Unresolved | None:
    """Set when the endpoint's host name (or, for files, every host asked) did not resolve: no DNS,
    no network, or a typo in the endpoint. Retrying is pointless (the name will not resolve a few
    seconds later) and costly (each try may wait out the resolver's own timeout, ~20 s)."""
    failed = _failed_files(error)
    if failed:
        found = [_name_resolution_failure(e) for e in failed.values()]
        return found[0] if all(found) else None
    unresolved: _Unresolved | None = None
    for current in _causes(error):  # outermost first: the innermost urllib3 error wins
        match = _FAILED_TO_RESOLVE.search(str(current))
        # The text counts too: a wrapper (modelscope's NetworkError) may drop the chain but keep
        # urllib3's "Failed to resolve 'host'" in its message.
        if type(current).__name__ == "NameResolutionError" or match:
            host = getattr(getattr(current, "conn", None), "host", None) or (match.group(1) if match else None)
            unresolved = _Unresolved(host, _one_line(current))
        elif isinstance(current, socket.gaierror) and unresolved is None:
            unresolved = _Unresolved(None, _one_line(current))
    return unresolved


def _is_retryable(error: BaseException) -> bool:
    """Network trouble, timeouts and server-side errors (5xx, 408, 429) are worth another try;
    not-found, no-permission, bad-request, a full or read-only disk and a host name that does not
    resolve are final."""
    if isinstance(error, ModelError):
        return False
    if _name_resolution_failure(error) is not None:
        return False
    failed = _failed_files(error)
    if failed:
        return all(_is_retryable(e) for e in failed.values())
    causes = list(_causes(error))
    if any(isinstance(e, TimeoutError) for e in causes):
        # Includes modelscope's per-file total budget (MODELSCOPE_DOWNLOAD_TOTAL_TIMEOUT),
        # which it marks final; the partial file is kept, so another attempt makes progress.
        return True
    status = _status(error)
    if status is not None:
        return status >= 500 or status in (408, 429)
    for current in causes:
        if isinstance(current, OSError) and current.errno in _DISK_ERRNOS:
            return False
        retryable = getattr(current, "retryable", None)
        if isinstance(retryable, bool) and type(current).__module__.startswith("modelscope_hub"):
            return retryable
        if isinstance(current, ConnectionError):
            return True
        if type(current).__module__.startswith(("requests", "urllib3")):
            return True  # connection errors, broken or truncated bodies
    return False


_DISK_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT)


def _endpoint_host(endpoint: str | None) -> str | None:
    return urlsplit(endpoint or DEFAULT_ENDPOINT).hostname


def _describe_error(error: BaseException, endpoint: str | None) -> str:
    unresolved = _name_resolution_failure(error)
    if unresolved is not None:
        host = unresolved.host or _endpoint_host(endpoint)
        return f"the host name {host!r} could not be resolved ({unresolved.reason})"
    failed = _failed_files(error)
    if failed:
        parts = [f"{path}: {_one_line(e)}" for path, e in sorted(failed.items())]
        return f"{len(failed)} file(s) failed ({'; '.join(parts)})"
    return _one_line(error)


def _one_line(error: BaseException) -> str:
    # Whole, never cut: the part that says why (urllib3's "Caused by ...") comes last.
    text = " ".join(str(error).split()) or "no details"
    return f"{type(error).__name__}: {text}"


def _advice(error: BaseException, role: str, endpoint: str | None) -> str:
    unresolved = _name_resolution_failure(error)
    if unresolved is not None:
        return _WHAT_TO_DO_DNS.format(host=unresolved.host or _endpoint_host(endpoint))
    status = _status(error)
    if status == 404:
        return (
            f"check models.{role}.id and models.{role}.revision in the config, and that the "
            "endpoint or mirror carries this model at this revision; or install an offline "
            "bundle with `asr install-bundle FILE`"
        )
    if status in (401, 403):
        return (
            "this model needs access rights on the endpoint: set MODELSCOPE_API_TOKEN, or use "
            "a mirror or an offline bundle (`asr install-bundle FILE`)"
        )
    if any(isinstance(e, OSError) and e.errno in _DISK_ERRNOS for e in _causes(error)):
        return "make models.cache_dir writable and give it enough free space"
    return _WHAT_TO_DO
