"""Offline model bundles: ``asr bundle`` packs the pinned models, ``asr install-bundle`` unpacks them.

For a machine that cannot reach ModelScope: make the bundle where ``asr download`` works, carry
the file over, install it. The bundle is a tar archive (gzip when its name ends in .gz/.tgz):

    asr-bundle.json                                     first: format, and per model its role,
                                                        id, revision and every file's size + sha256
    models/<owner>--<name>/snapshots/<revision>/<file>  the model files, .asr-manifest.json included

which is the cache layout ``asr download`` writes, so an installed model is found like a
downloaded one. A model without ``.asr-manifest.json`` (a cache FunASR or modelscope filled itself,
a directory copied by hand to ``models.<role>.path``) is bundled once its required files are there,
with a manifest computed while bundling and marked ``"source": "local"``: ``asr verify`` on the
receiving machine then proves the files did not change since, and says the checksums are local,
since no hub listing vouched for them. Installing trusts nothing in the archive:

* every entry must be a regular file whose path is exactly one the manifest announces for a model
  the config pins (same id and revision); absolute paths, ``..``, links, devices and extra
  entries are refused before anything is written;
* each file is checked against the bundle's sha256 while it is unpacked, and each model again
  against its own ``.asr-manifest.json``;
* every model is unpacked beside its final place and moved in with one rename, after all of them
  passed; any failure removes what was unpacked and puts back what was there. Nothing is ever
  half-installed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import posixpath
import shutil
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from asr.atomic import atomic_file
from asr.config import ModelSpec, Settings
from asr.errors import ModelError, ModelIncompleteError
from asr.models.files import (
    LOCAL_NOTE,
    LOCAL_SOURCE,
    MANIFEST_NAME,
    REQUIRED_FILES,
    TEST_MODEL_MARKER,
    ModelLocation,
    ModelRole,
    build_manifest,
    check_manifest,
    checksum_mismatch,
    download_target,
    is_local,
    locate_model,
    manifest_matches,
    missing_required,
    model_file_names,
    model_spec,
    read_manifest,
    required_files_text,
    roles_for_profile,
    sha256_file,
    verified_copy,
    verify_manifest,
)

logger = logging.getLogger(__name__)

BUNDLE_MANIFEST = "asr-bundle.json"
BUNDLE_FORMAT = 1
#: The bundle manifest is a few KB; anything much larger is not one of ours.
_MAX_MANIFEST_BYTES = 1 << 20
_CHUNK = 1 << 20


class BundleError(ModelError):
    """A bundle cannot be made or installed; the message says why and what to do."""

    code = "bad_bundle"


@dataclass(frozen=True)
class BundleSummary:
    path: Path
    sha256: str
    """Of the whole bundle file: compare it on the receiving machine (install-bundle --sha256)."""
    models: list[dict[str, Any]]


@dataclass(frozen=True)
class InstallReport:
    role: str
    model_id: str
    revision: str
    directory: Path
    installed: bool
    """False when an identical, verified copy was already in place."""
    local_checksums: bool = False
    """The model's manifest was computed by ``asr bundle`` from the files at hand, not from the hub."""


# ---- making a bundle -------------------------------------------------------------------------


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes what passes through it (the bundle's own sha256)."""

    def __init__(self, target: IO[bytes]):
        self.target = target
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.digest.update(data)
        return self.target.write(data)


class _HashingReader(io.RawIOBase):
    """Reads a model file into the archive and hashes it on the way, so a file that changed
    after it was verified is caught instead of shipped."""

    def __init__(self, source: IO[bytes]):
        self.source = source
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.digest.update(data)
        return data


def _tar_mode(path: Path, writing: bool) -> str:
    compressed = path.name.endswith((".gz", ".tgz"))
    if writing:
        return "w|gz" if compressed else "w|"
    return "r:*"


def _member(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    # Normalised metadata: no owner names or modes of the packing machine leak into the bundle.
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _local_manifest(location: ModelLocation) -> dict[str, Any]:
    """A manifest for a model that came without one (a cache FunASR or modelscope filled itself, a
    directory copied by hand), once its required files are there; marked local, since no hub
    listing vouched for these checksums. Nothing is written into the model directory: it may be
    read-only or someone else's (``models.<role>.path``)."""
    missing = missing_required(location.directory, location.role)
    if missing is not None:
        raise ModelIncompleteError(
            f"cannot bundle the {location.role} model {location.spec.id}@{location.spec.revision}: "
            f"{location.directory} has no {MANIFEST_NAME} and lacks {missing}. To fix: copy the whole "
            f"model directory there again (a {location.role} model needs {required_files_text(location.role)}), "
            f"or run `asr download` where the network reaches ModelScope and bundle that."
        )
    logger.warning("%s model %s in %s has no %s: bundling it with %s", location.role, location.spec.id,
                   location.directory, MANIFEST_NAME, LOCAL_NOTE)
    return build_manifest(location.directory, location.spec, location.role, local=True)


def _model_entry(location: ModelLocation, rel: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The bundle manifest's entry for one model, and the files packed from memory (a manifest
    made here) rather than from the model directory."""
    if read_manifest(location.directory) is None:
        manifest = _local_manifest(location)
        bodies = {MANIFEST_NAME: json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8")}
    else:
        # Sizes and pins now; each file's sha256 while it is packed (one read): never pack a damaged model.
        manifest, bodies = check_manifest(location), {}
    files = dict(manifest["files"])
    for extra in (MANIFEST_NAME, TEST_MODEL_MARKER):
        if extra in bodies:
            files[extra] = {"sha256": hashlib.sha256(bodies[extra]).hexdigest(), "size": len(bodies[extra])}
        elif (location.directory / extra).is_file():
            path = location.directory / extra
            files[extra] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    entry = {"role": location.role, "model_id": location.spec.id, "revision": location.spec.revision,
             "directory": rel, "files": files}
    if is_local(manifest):
        entry["source"] = LOCAL_SOURCE  # informational: install checks the model's own manifest
    return entry, bodies


def create_bundle(settings: Settings, out: Path) -> BundleSummary:
    """Pack the models of the configured profile into ``out``, after verifying each one.

    A model without a manifest is packed with one computed here, marked local (its entry in
    ``summary.models`` has ``"source": "local"``). Raises BundleError, or the ModelError of a
    model that is missing, incomplete or does not match its manifest.
    """
    selected = roles_for_profile(settings.models.profile)
    cache_dir = settings.models.resolved_cache_dir()
    entries: list[tuple[dict[str, Any], ModelLocation, dict[str, bytes]]] = []
    for role in selected:
        location = locate_model(settings.models, role)
        rel = download_target(cache_dir, location.spec).relative_to(cache_dir).as_posix()
        entry, bodies = _model_entry(location, rel)
        entries.append((entry, location, bodies))
        logger.info("%s model %s@%s: packing %d files", role, location.spec.id, location.spec.revision,
                    len(entry["files"]))
    manifest_bytes = json.dumps(
        {"format": BUNDLE_FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
         "models": [entry for entry, _, _ in entries]},
        indent=2, ensure_ascii=False,
    ).encode("utf-8")

    mtime = int(time.time())
    with atomic_file(out) as raw:
        writer = _HashingWriter(raw)
        with tarfile.open(fileobj=writer, mode=_tar_mode(out, writing=True), format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(_member(BUNDLE_MANIFEST, len(manifest_bytes), mtime), io.BytesIO(manifest_bytes))
            for entry, location, bodies in entries:
                _pack_model(tar, entry, location, bodies, mtime)
    return BundleSummary(out, writer.digest.hexdigest(), [entry for entry, _, _ in entries])


def _pack_model(tar: tarfile.TarFile, entry: dict[str, Any], location: ModelLocation, bodies: dict[str, bytes],
                mtime: int) -> None:
    for name, meta in entry["files"].items():
        member = _member(f"{entry['directory']}/{name}", meta["size"], mtime)
        if name in bodies:
            tar.addfile(member, io.BytesIO(bodies[name]))
            continue
        with open(location.directory / name, "rb") as source:
            reader = _HashingReader(source)
            tar.addfile(member, reader)
        if reader.digest.hexdigest() != meta["sha256"]:
            # A local manifest was computed moments ago, so a mismatch here means the file changed since.
            raise checksum_mismatch(location, name, reader.digest.hexdigest(), meta["sha256"],
                                    entry.get("source") == LOCAL_SOURCE)


# ---- installing a bundle ---------------------------------------------------------------------


@dataclass
class _Planned:
    role: ModelRole
    spec: ModelSpec
    entry: dict[str, Any]
    target: Path
    staging: Path | None = None
    aside: Path | None = None
    installed: bool = False
    local: bool = False
    digests: dict[str, str] = field(default_factory=dict)


def _refuse(bundle: Path, reason: str) -> BundleError:
    return BundleError(f"refusing the bundle {bundle}: {reason}. Nothing was installed.")


def _read_manifest(tar: tarfile.TarFile, first: tarfile.TarInfo, bundle: Path) -> dict[str, Any]:
    if first.name != BUNDLE_MANIFEST or not first.isreg():
        raise _refuse(bundle, f"it is not an asr model bundle (its first entry is {first.name!r}, "
                              f"not {BUNDLE_MANIFEST}); make one with `asr bundle --out FILE`")
    if first.size > _MAX_MANIFEST_BYTES:
        raise _refuse(bundle, f"{BUNDLE_MANIFEST} is {first.size} bytes, far larger than a bundle manifest")
    source = tar.extractfile(first)
    assert source is not None  # a regular file always has a body
    try:
        manifest = json.loads(source.read().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise _refuse(bundle, f"{BUNDLE_MANIFEST} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise _refuse(bundle, f"{BUNDLE_MANIFEST} is not a JSON object")
    if manifest.get("format") != BUNDLE_FORMAT:
        raise _refuse(bundle, f"{BUNDLE_MANIFEST} has format {manifest.get('format')!r}; this version of asr "
                              f"reads format {BUNDLE_FORMAT}")
    models = manifest.get("models")
    if not isinstance(models, list) or not models:
        raise _refuse(bundle, f"{BUNDLE_MANIFEST} lists no models")
    for entry in models:
        if not (isinstance(entry, dict) and isinstance(entry.get("files"), dict)
                and all(isinstance(entry.get(k), str) for k in ("role", "model_id", "revision"))):
            raise _refuse(bundle, f"{BUNDLE_MANIFEST} has a malformed model entry: {str(entry)[:200]}")
        for name, meta in entry["files"].items():
            if not (isinstance(meta, dict) and isinstance(meta.get("size"), int) and meta["size"] >= 0
                    and isinstance(meta.get("sha256"), str) and len(meta["sha256"]) == 64):
                raise _refuse(bundle, f"{BUNDLE_MANIFEST}: the entry for {entry['role']} file {name!r} "
                                      f"lacks a size or sha256")
    return manifest


def _plan(settings: Settings, manifest: dict[str, Any], bundle: Path) -> tuple[list[_Planned], dict[str, tuple]]:
    """Match the bundle's models with the config's pins; return the plan and every allowed entry."""
    cache_dir = settings.models.resolved_cache_dir()
    planned: list[_Planned] = []
    allowed: dict[str, tuple[_Planned, str, dict[str, Any]]] = {}
    for entry in manifest["models"]:
        role = entry["role"]
        if role not in REQUIRED_FILES:
            raise _refuse(bundle, f"it holds a model for the unknown role {role!r}")
        if any(p.role == role for p in planned):
            raise _refuse(bundle, f"it holds two {role} models")
        spec = model_spec(settings.models, role)  # type: ignore[arg-type]
        if (entry["model_id"], entry["revision"]) != (spec.id, spec.revision):
            raise _refuse(bundle, (
                f"its {role} model is {entry['model_id']}@{entry['revision']}, but the config pins "
                f"{spec.id}@{spec.revision}; make the bundle where the config pins the same models, "
                f"or change models.{role} in the config"))
        if MANIFEST_NAME not in entry["files"]:
            raise _refuse(bundle, f"its {role} model comes without {MANIFEST_NAME}")
        # The target comes from the trusted config, never from a path written in the bundle.
        target = download_target(cache_dir, spec)
        directory = target.relative_to(cache_dir).as_posix()
        plan = _Planned(role, spec, entry, target)  # type: ignore[arg-type]
        planned.append(plan)
        allowed_names = {*model_file_names(role), MANIFEST_NAME}
        for name, meta in entry["files"].items():
            if name not in allowed_names:
                raise _refuse(bundle, f"its {role} model lists the file {name!r}, which no {role} model "
                                      f"directory holds")
            allowed[f"{directory}/{name}"] = (plan, name, meta)
        if spec.path is not None:
            logger.warning("models.%s.path is set (%s): the service loads that directory, not the copy this "
                           "bundle installs into %s", role, spec.path, target)
    missing = [role for role in roles_for_profile(settings.models.profile)
               if not any(p.role == role for p in planned) and verified_copy(settings.models, role) is None]
    if missing:
        raise _refuse(bundle, (
            f"the profile {settings.models.profile} needs the {', '.join(missing)} model(s), which the bundle "
            f"does not hold and this machine does not have; make the bundle with the same models.profile"))
    return planned, allowed


def _check_entry(member: tarfile.TarInfo, allowed: dict[str, tuple], seen: set[str], bundle: Path) -> tuple:
    name = member.name
    normal = posixpath.normpath(name)
    if name.startswith("/") or "\\" in name or normal.startswith("..") or "/../" in f"/{name}/":
        raise _refuse(bundle, f"the entry {name!r} points outside the bundle (absolute path or '..')")
    if not member.isreg():
        kind = ("a symbolic link" if member.issym() else "a hard link" if member.islnk() else
                "a directory" if member.isdir() else "a device or special file")
        raise _refuse(bundle, f"the entry {name!r} is {kind}; a bundle holds regular files only")
    if name not in allowed:
        raise _refuse(bundle, f"the entry {name!r} is not announced by {BUNDLE_MANIFEST}")
    if name in seen:
        raise _refuse(bundle, f"the entry {name!r} appears twice")
    seen.add(name)
    plan, file_name, meta = allowed[name]
    if member.size != meta["size"]:
        raise _refuse(bundle, f"{name} has {member.size} bytes, {BUNDLE_MANIFEST} says {meta['size']}: "
                              f"the bundle is damaged or was altered")
    return plan, file_name, meta


def _unpack(tar: tarfile.TarFile, member: tarfile.TarInfo, plan: _Planned, name: str, meta: dict[str, Any],
            bundle: Path) -> None:
    """Write one file into the staging directory, checking it against the bundle; its sha256 is
    kept in ``plan.digests`` for the model's own manifest."""
    assert plan.staging is not None
    source = tar.extractfile(member)
    assert source is not None
    digest = hashlib.sha256()
    path = plan.staging / name
    with open(path, "xb") as out:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(path, 0o644)  # models are public; a service under another (dynamic) user must read them
    actual = digest.hexdigest()
    plan.digests[name] = actual
    if actual != meta["sha256"]:
        raise _refuse(bundle, (
            f"{plan.role} model {plan.entry['model_id']}: {name} does not match its checksum in the bundle "
            f"(sha256 {actual[:12]}…, expected {meta['sha256'][:12]}…): the bundle is damaged or was altered"))


def install_bundle(settings: Settings, bundle: Path, expected_sha256: str | None = None) -> list[InstallReport]:
    """Install the models of ``bundle`` into the model cache, verified, all or nothing.

    ``expected_sha256`` (what ``asr bundle`` printed) is checked first when given. Raises
    BundleError with the reason; on any failure the cache is as it was before.
    """
    if expected_sha256 is not None:
        expected = expected_sha256.strip().lower()
        if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
            raise BundleError(f"--sha256 must be 64 hexadecimal digits, not {expected_sha256!r}")
        try:
            actual = sha256_file(bundle)
        except OSError as e:
            raise BundleError(f"cannot read the bundle {bundle}: {e.strerror or e}") from None
        if actual != expected:
            raise _refuse(bundle, f"its sha256 is {actual}, not the expected {expected}: it is damaged, "
                                  f"incomplete, or not the bundle you meant")
    try:
        tar = tarfile.open(bundle, _tar_mode(bundle, writing=False))
    except FileNotFoundError:
        raise BundleError(f"no such bundle file: {bundle}") from None
    except IsADirectoryError:
        raise BundleError(f"{bundle} is a directory, not a bundle file") from None
    except (tarfile.TarError, EOFError) as e:
        raise _refuse(bundle, f"it is not a tar archive ({e}); make a bundle with `asr bundle --out FILE`") from None
    except OSError as e:
        raise BundleError(f"cannot read the bundle {bundle}: {e.strerror or e}") from None
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, EOFError, OSError) as e:
            raise _refuse(bundle, f"the archive is damaged or truncated ({e})") from None
        if not members:
            raise _refuse(bundle, "the archive is empty")
        manifest = _read_manifest(tar, members[0], bundle)
        planned, allowed = _plan(settings, manifest, bundle)
        seen: set[str] = set()
        checked = [(member, *_check_entry(member, allowed, seen, bundle)) for member in members[1:]]
        absent = sorted(set(allowed) - seen)
        if absent:
            raise _refuse(bundle, f"{BUNDLE_MANIFEST} announces {absent[0]}, which the archive lacks"
                                  + (f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""))
        _check_space(settings, checked, bundle)
        return _install(tar, checked, planned, bundle)


def _check_space(settings: Settings, checked: list[tuple], bundle: Path) -> None:
    need = sum(member.size for member, *_ in checked)
    probe = settings.models.resolved_cache_dir()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need > free:
        raise _refuse(bundle, f"it needs {need / 2**20:.0f} MiB in {settings.models.resolved_cache_dir()}, "
                              f"which has {free / 2**20:.0f} MiB free")


def _install(tar: tarfile.TarFile, checked: list[tuple], planned: list[_Planned], bundle: Path) -> list[InstallReport]:
    token = uuid.uuid4().hex[:12]
    created: list[Path] = []
    try:
        for plan in planned:
            created.extend(_make_parents(plan.target.parent))
            # Beside the target, so that moving it in is one rename on the same file system.
            plan.staging = plan.target.parent / f".{plan.target.name}.install-{token}"
            plan.staging.mkdir(mode=0o755)
            os.chmod(plan.staging, 0o755)
        for member, plan, name, meta in checked:
            _unpack(tar, member, plan, name, meta, bundle)
        for plan in planned:
            # The model's own manifest must agree too: a bundle manifest rewritten to match
            # altered files still fails here.
            try:
                staged = ModelLocation(plan.role, plan.spec, plan.staging, False)  # type: ignore[arg-type]
                plan.local = is_local(verify_manifest(staged, plan.digests))
            except ModelError as e:
                raise _refuse(bundle, f"{plan.role} model does not match its own {MANIFEST_NAME}: {e}") from None
        for plan in planned:
            _commit(plan, token)
    except BaseException:
        _roll_back(planned, created)
        raise
    finally:
        for plan in planned:
            if plan.staging is not None and plan.staging.exists():
                shutil.rmtree(plan.staging, ignore_errors=True)
    for plan in planned:
        if plan.aside is not None:
            shutil.rmtree(plan.aside, ignore_errors=True)
    return [InstallReport(p.role, p.entry["model_id"], p.entry["revision"], p.target, p.installed, p.local)
            for p in planned]


def _make_parents(directory: Path) -> list[Path]:
    """mkdir -p, returning the directories it created (deepest last) so a failure can remove them."""
    missing: list[Path] = []
    probe = directory
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for path in reversed(missing):
        path.mkdir(mode=0o755)
        os.chmod(path, 0o755)
    return list(reversed(missing))


def _already_there(plan: _Planned) -> bool:
    """The target holds a verified copy with exactly the staged files (sha256 by sha256)."""
    assert plan.staging is not None
    try:
        current = read_manifest(plan.target)
        new = read_manifest(plan.staging)
    except ModelError:
        return False
    return (current is not None and new is not None and current.get("files") == new.get("files")
            and manifest_matches(plan.target, plan.spec, plan.role))


def _commit(plan: _Planned, token: str) -> None:
    assert plan.staging is not None
    if plan.target.exists():
        if _already_there(plan):
            logger.info("%s model %s is already installed in %s", plan.role, plan.entry["model_id"], plan.target)
            return
        plan.aside = plan.target.parent / f".{plan.target.name}.replaced-{token}"
        os.rename(plan.target, plan.aside)
    os.rename(plan.staging, plan.target)
    plan.staging = None
    plan.installed = True
    logger.info("%s model %s@%s installed in %s", plan.role, plan.entry["model_id"], plan.entry["revision"],
                plan.target)


def _roll_back(planned: list[_Planned], created: list[Path]) -> None:
    for plan in reversed(planned):
        try:
            if plan.installed:
                shutil.rmtree(plan.target, ignore_errors=True)
                plan.installed = False
            if plan.aside is not None and plan.aside.exists() and not plan.target.exists():
                os.rename(plan.aside, plan.target)
                plan.aside = None
        except OSError:
            logger.exception("could not restore %s; the previous copy is in %s", plan.target, plan.aside)
    for plan in planned:
        if plan.staging is not None:
            shutil.rmtree(plan.staging, ignore_errors=True)
    for directory in reversed(created):  # deepest first; only the ones this install made, if empty
        try:
            directory.rmdir()
        except OSError:
            pass
