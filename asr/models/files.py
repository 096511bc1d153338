"""Where each pinned model lives on disk, what it must contain, and its sha256 manifest.

Nothing here touches the network or imports torch: it is what start-up, ``asr verify``
and ``asr download`` share to decide whether a model directory is usable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from asr.atomic import write_atomic
from asr.config import ModelsConfig, ModelSpec, Settings
from asr.errors import ManifestMismatchError, ModelIncompleteError, ModelNotFoundError

logger = logging.getLogger(__name__)

ModelRole = Literal["asr", "vad", "punc", "spk", "online"]

MANIFEST_NAME = ".asr-manifest.json"
#: A file that scripts/make_test_models.py puts in every model it builds.
TEST_MODEL_MARKER = "RANDOM_WEIGHTS_TEST_MODEL"

#: Files each role cannot work without; one of each tuple must exist.
REQUIRED_FILES: dict[ModelRole, tuple[tuple[str, ...], ...]] = {
    "asr": (("config.yaml",), ("model.pt",), ("am.mvn",), ("tokens.json", "tokens.txt")),
    "vad": (("config.yaml",), ("model.pt",), ("am.mvn",)),
    "punc": (("config.yaml",), ("model.pt",), ("tokens.json", "tokens.txt")),
    "spk": (("config.yaml",), ("campplus_cn_common.bin",)),
    # the streaming Paraformer: the same CMVN and token list as the offline one
    "online": (("config.yaml",), ("model.pt",), ("am.mvn",), ("tokens.json", "tokens.txt")),
}
#: The checkpoint of each role (CAM++ is published as a .bin, the rest as model.pt).
CHECKPOINT_NAMES: dict[ModelRole, str] = {"asr": "model.pt", "vad": "model.pt", "punc": "model.pt",
                                          "spk": "campplus_cn_common.bin", "online": "model.pt"}
#: Files used when present; downloads fetch them too.
OPTIONAL_FILES = ("configuration.json", "seg_dict", "jieba_usr_dict")

FIX_HINT = "run `asr download` where the network reaches ModelScope, or `asr install-bundle FILE`"

#: ``source`` of a manifest whose checksums were computed from the files at hand (``asr bundle`` of a
#: model without a manifest): they show that nothing changed since, not that the files are the
#: published ones. A manifest ``asr download`` writes has no ``source``: modelscope checked each
#: file against the hub's listing first.
LOCAL_SOURCE = "local"
LOCAL_NOTE = "checksums computed locally, not from the hub"


def roles_for_profile(profile: str) -> tuple[ModelRole, ...]:
    """The models a profile loads, in load order."""
    return {
        "vad": ("vad",),
        "asr": ("asr",),
        "asr+punc": ("asr", "punc"),
        "vad+asr+punc": ("vad", "asr", "punc"),
        "vad+asr+punc+spk": ("vad", "asr", "punc", "spk"),
        "vad+asr+punc+live": ("vad", "asr", "punc", "online"),
    }[profile]


def model_spec(models: ModelsConfig, role: ModelRole) -> ModelSpec:
    """The pinned model that plays ``role``: for ``asr``, the one ``models.asr_model`` chooses."""
    if role == "asr" and models.asr_model == "seaco":
        return models.seaco
    return getattr(models, role)


def cache_candidates(cache_dir: Path, spec: ModelSpec) -> list[Path]:
    """Every layout ModelScope has used for ``spec`` under ``cache_dir``, newest first."""
    owner, _, name = spec.id.partition("/")
    safe_name = name.replace(".", "___")
    return [
        # modelscope >= 1.38 (modelscope_hub): {cache}/models/{owner}--{name}/snapshots/{rev}
        cache_dir / "models" / f"{owner}--{name}" / "snapshots" / spec.revision,
        # modelscope <= 1.37 with MODELSCOPE_CACHE set, and its default ~/.cache/modelscope/hub
        cache_dir / "models" / owner / safe_name,
        cache_dir / "hub" / "models" / owner / safe_name,
        # the oldest flat layout
        cache_dir / owner / name,
    ]


def download_target(cache_dir: Path, spec: ModelSpec) -> Path:
    """Where ``asr download`` puts a model: the layout current ModelScope writes."""
    return cache_candidates(cache_dir, spec)[0]


@dataclass(frozen=True)
class ModelLocation:
    role: ModelRole
    spec: ModelSpec
    directory: Path
    is_test_model: bool


def locate_model(models: ModelsConfig, role: ModelRole) -> ModelLocation:
    """Find the directory of one model, or raise ModelNotFoundError saying how to fix it."""
    spec = model_spec(models, role)
    if spec.path is not None:
        candidates = [spec.path]
    else:
        candidates = cache_candidates(models.resolved_cache_dir(), spec)
    for directory in candidates:
        if (directory / "config.yaml").is_file() or (directory / MANIFEST_NAME).is_file():
            return ModelLocation(
                role, spec, directory, (directory / TEST_MODEL_MARKER).exists()
            )
    where = (
        f"at models.{role}.path = {spec.path}"
        if spec.path is not None
        else f"under the cache {models.resolved_cache_dir()} (looked in {candidates[0]})"
    )
    raise ModelNotFoundError(
        f"{role} model {spec.id}@{spec.revision} not found {where}. To fix: {FIX_HINT}."
    )


def missing_required(directory: Path, role: ModelRole) -> str | None:
    """The first required file ``directory`` lacks ("tokens.json or tokens.txt"), or None."""
    for alternatives in REQUIRED_FILES[role]:
        if not any((directory / name).is_file() for name in alternatives):
            return " or ".join(alternatives)
    return None


def required_files_text(role: ModelRole) -> str:
    """What a complete ``role`` directory holds, for messages: "config.yaml, model.pt, am.mvn"."""
    return ", ".join(" or ".join(alternatives) for alternatives in REQUIRED_FILES[role])


def check_required_files(location: ModelLocation) -> None:
    """Fail fast, naming the model and the missing file, before any expensive load."""
    missing = missing_required(location.directory, location.role)
    if missing is not None:
        raise ModelIncompleteError(
            f"{location.role} model {location.spec.id}@{location.spec.revision} in "
            f"{location.directory} is incomplete: {missing} is missing. To fix: {FIX_HINT}."
        )
    manifest = read_manifest(location.directory)
    if manifest is not None:
        # Cheap check on every start: sizes. `asr verify` does the full sha256 pass.
        for name, entry in manifest["files"].items():
            path = location.directory / name
            if not path.is_file():
                raise ModelIncompleteError(
                    f"{location.role} model {location.spec.id} in {location.directory} is "
                    f"incomplete: {name} is missing. To fix: {FIX_HINT}."
                )
            if path.stat().st_size != entry["size"]:
                raise ManifestMismatchError(
                    f"{location.role} model {location.spec.id}: {name} has "
                    f"{path.stat().st_size} bytes, the manifest says {entry['size']} "
                    f"(truncated or replaced). To fix: {FIX_HINT}."
                )


def locate_all(settings: Settings) -> dict[ModelRole, ModelLocation]:
    """Locate and check every model of the configured profile."""
    locations: dict[ModelRole, ModelLocation] = {}
    for role in roles_for_profile(settings.models.profile):
        location = locate_model(settings.models, role)
        check_required_files(location)
        locations[role] = location
    return locations


# ---- manifest ------------------------------------------------------------------------------


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_files(directory: Path, role: ModelRole) -> list[str]:
    """The files a manifest covers: the required and optional ones present."""
    names: list[str] = []
    for alternatives in REQUIRED_FILES[role]:
        names.extend(n for n in alternatives if (directory / n).is_file())
    names.extend(n for n in OPTIONAL_FILES if (directory / n).is_file())
    return names


def build_manifest(directory: Path, spec: ModelSpec, role: ModelRole, *, local: bool = False) -> dict:
    """Each file's size and sha256, so later checks need no network. ``local`` marks checksums that
    no hub listing vouched for (see LOCAL_SOURCE)."""
    files = {
        name: {"sha256": sha256_file(directory / name), "size": (directory / name).stat().st_size}
        for name in manifest_files(directory, role)
    }
    manifest = {
        "model_id": spec.id,
        "revision": spec.revision,
        "role": role,
        "files": files,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if local:
        manifest.update(source=LOCAL_SOURCE, note=LOCAL_NOTE)
    return manifest


def is_local(manifest: Mapping) -> bool:
    """True for a manifest whose checksums were computed locally (see LOCAL_SOURCE)."""
    return manifest.get("source") == LOCAL_SOURCE


def write_manifest(directory: Path, spec: ModelSpec, role: ModelRole) -> dict:
    """Record each file's size and sha256 (of files the download just checked against the hub)."""
    manifest = build_manifest(directory, spec, role)
    write_atomic(directory / MANIFEST_NAME, json.dumps(manifest, indent=2, ensure_ascii=False))
    return manifest


def read_manifest(directory: Path) -> dict | None:
    path = directory / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest.get("files"), dict):
            raise ValueError("no files section")
        return manifest
    except (ValueError, OSError) as e:
        raise ManifestMismatchError(f"manifest {path} is unreadable: {e}") from None


def check_manifest(location: ModelLocation) -> dict:
    """Everything but the checksums: the manifest is there, names the pinned model, and every
    file it lists has its size. Returns the manifest."""
    manifest = read_manifest(location.directory)
    if manifest is None:
        raise ManifestMismatchError(
            f"{location.role} model {location.spec.id} in {location.directory} has no "
            f"{MANIFEST_NAME}. To fix: {FIX_HINT}."
        )
    if manifest.get("model_id") != location.spec.id or manifest.get("revision") != location.spec.revision:
        raise ManifestMismatchError(
            f"{location.role} model in {location.directory} is {manifest.get('model_id')}@"
            f"{manifest.get('revision')}, but config pins {location.spec.id}@{location.spec.revision}. "
            f"To fix: {FIX_HINT}."
        )
    check_required_files(location)
    return manifest


def checksum_mismatch(location: ModelLocation, name: str, actual: str, expected: str,
                      local: bool = False) -> ManifestMismatchError:
    whose = f"its manifest ({LOCAL_NOTE})" if local else "its manifest"
    return ManifestMismatchError(
        f"{location.role} model {location.spec.id}: {name} does not match {whose} "
        f"(sha256 {actual[:12]}…, expected {expected[:12]}…). To fix: {FIX_HINT}."
    )


def verify_manifest(location: ModelLocation, digests: Mapping[str, str] | None = None) -> dict:
    """Recompute every sha256 (offline) and compare with the manifest; return the manifest.

    ``digests``: sha256s by file name that the caller computed while it read the files anyway
    (unpacking a bundle), so they are not read twice; files not in it are hashed here."""
    manifest = check_manifest(location)
    for name, entry in manifest["files"].items():
        actual = (digests or {}).get(name) or sha256_file(location.directory / name)
        if actual != entry["sha256"]:
            raise checksum_mismatch(location, name, actual, entry["sha256"], is_local(manifest))
    return manifest


def manifest_matches(directory: Path, spec: ModelSpec, role: ModelRole) -> bool:
    """True when ``directory`` holds a complete, verified copy of ``spec`` (no network needed)."""
    try:
        verify_manifest(ModelLocation(role, spec, directory, False))
        return True
    except (ManifestMismatchError, ModelIncompleteError, ModelNotFoundError):
        return False


def model_file_names(role: ModelRole) -> list[str]:
    """Every file a model directory of ``role`` may hold besides the manifest: what a download
    asks for and what a bundle may carry."""
    names = [name for alternatives in REQUIRED_FILES[role] for name in alternatives]
    names.extend(OPTIONAL_FILES)
    # Test models built by scripts/make_test_models.py carry a marker; keep it wherever one is
    # served, so that such a model never passes for a real one.
    names.append(TEST_MODEL_MARKER)
    return list(dict.fromkeys(names))


def check_model(location: ModelLocation) -> dict | None:
    """Every sha256 against the manifest, which is returned; a directory without a manifest
    (a model the user placed by hand) can only be checked for its required files: None."""
    if read_manifest(location.directory) is None:
        check_required_files(location)
        return None
    return verify_manifest(location)


def verified_copy(models: ModelsConfig, role: ModelRole) -> Path | None:
    """The directory the service would load for ``role``, if it holds a complete, verified copy
    of the pinned model (files only: no network)."""
    try:
        location = locate_model(models, role)
    except ModelNotFoundError:
        return None
    return location.directory if manifest_matches(location.directory, location.spec, role) else None
