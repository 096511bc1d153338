"""Offline bundles: ``asr bundle`` and ``asr install-bundle`` on the tiny test models, with real
tar files, including tampered and hostile ones. After every refusal the target cache must be
exactly as before: nothing half-installed, nothing written outside it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from asr.config import load_settings
from asr.models.bundle import BUNDLE_MANIFEST, BundleError, install_bundle
from asr.models.files import MANIFEST_NAME, TEST_MODEL_MARKER

ASR_DIR = "models/iic--speech_paraformer-large-vad-punc_asr_nat-zh-cn-16k-common-vocab8404-pytorch/snapshots/v2.0.4"


def run_asr(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASR_", "MODELSCOPE_"))}
    return subprocess.run([sys.executable, "-m", "asr", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def config(path: Path, cache_dir: Path, extra: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"models:\n  cache_dir: {cache_dir}\n{extra}", encoding="utf-8")
    return path


def tree(root: Path) -> dict[str, str]:
    """Every file under root with its sha256 (empty directories show up as "dir")."""
    if not root.exists():
        return {}
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir():
            if not any(path.iterdir()):
                out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def made(tmp_path_factory, test_models) -> tuple[Path, str]:
    """A bundle of the three test models, made by the CLI; (path, sha256 it printed)."""
    work = tmp_path_factory.mktemp("bundle")
    result = run_asr("bundle", "--config", config(work / "src.yaml", test_models), "--out", "asr-models.tar",
                     cwd=work)
    assert result.returncode == 0, result.stderr
    sha = re.search(r"^sha256 ([0-9a-f]{64})$", result.stdout, re.M)
    assert sha, result.stdout
    bundle = work / "asr-models.tar"
    assert hashlib.sha256(bundle.read_bytes()).hexdigest() == sha.group(1)
    return bundle, sha.group(1)


@pytest.fixture
def target(tmp_path) -> tuple[Path, Path]:
    """An empty model cache on the "offline machine", and its config."""
    cache = tmp_path / "offline" / "models-cache"
    return cache, config(tmp_path / "offline" / "config.yaml", cache)


def settings_for(config_path: Path):
    return load_settings(config_path)


def rewrite(source: Path, out: Path, *, edit: Callable[[tarfile.TarInfo, bytes], bytes | None] | None = None,
            extra: list[tuple[tarfile.TarInfo, bytes | None]] = (), replace: dict[str, tarfile.TarInfo] | None = None,
            gz: bool = False) -> Path:
    """Copy a bundle entry by entry: ``edit`` may change a body (None drops the entry),
    ``replace`` swaps an entry for another header, ``extra`` entries are appended."""
    with tarfile.open(source) as src, tarfile.open(out, "w:gz" if gz else "w", format=tarfile.PAX_FORMAT) as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if replace and member.name in replace:
                dst.addfile(replace[member.name])
                continue
            if edit is not None:
                data = edit(member, data)
                if data is None:
                    continue
            info = tarfile.TarInfo(member.name)
            info.size, info.mode = len(data), 0o644
            dst.addfile(info, io.BytesIO(data))
        for info, data in extra:
            dst.addfile(info, io.BytesIO(data) if data is not None else None)
    return out


def flip(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


def entry(name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE,
          link: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


def assert_refused(settings, bundle: Path, cache: Path, match: str) -> BundleError:
    before = tree(cache)
    with pytest.raises(BundleError, match=match) as caught:
        install_bundle(settings, bundle)
    assert "Nothing was installed" in str(caught.value) or "--sha256" in str(caught.value)
    assert tree(cache) == before, "a refused bundle changed the cache"
    return caught.value


# ---- the round trip ---------------------------------------------------------------------------


def test_round_trip_through_the_cli(made, target, test_models, tmp_path):
    bundle, sha = made
    cache, cfg = target
    result = run_asr("install-bundle", "--config", cfg, bundle, "--sha256", sha, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(" installed -> ") == 3, result.stdout
    # the installed models are the source models, file for file (marker included); the test cache also
    # holds the meetings models (SeACo, CAM++), which this profile does not bundle
    installed = sorted(p.name for p in (cache / "models").iterdir())
    assert len(installed) == 3
    assert all(tree(cache / "models" / name) == tree(test_models / "models" / name) for name in installed)
    verify = run_asr("verify", "--config", cfg, cwd=tmp_path)
    assert verify.returncode == 0 and verify.stdout.count(" ok (") == 3, verify.stderr
    info = json.loads(run_asr("info", "--json", "--config", cfg, cwd=tmp_path).stdout)
    assert info["models"]["asr"]["random_weights"] is True, "the test-model marker must survive the trip"
    mode = (cache / ASR_DIR / "model.pt").stat().st_mode & 0o777
    assert mode == 0o644, "models must be readable by the service's own (dynamic) user"
    again = run_asr("install-bundle", "--config", cfg, bundle, cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.count("already installed (identical)") == 3, again.stdout


def test_gzip_bundle_round_trip(test_models, target, tmp_path):
    _, cfg = target
    made = run_asr("bundle", "--config", config(tmp_path / "src.yaml", test_models), "--out", "m.tar.gz",
                   cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    with open(tmp_path / "m.tar.gz", "rb") as f:
        assert f.read(2) == b"\x1f\x8b"
    installed = run_asr("install-bundle", "--config", cfg, tmp_path / "m.tar.gz", cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    assert run_asr("verify", "--config", cfg, cwd=tmp_path).returncode == 0


def test_a_bundle_of_one_profile(test_models, tmp_path):
    """A VAD-only bundle installs where the profile is vad, and is refused where asr and punc are
    needed and absent (the service could not start on it)."""
    src = config(tmp_path / "src.yaml", test_models, "  profile: vad\n")
    assert run_asr("bundle", "--config", src, "--out", "vad.tar", cwd=tmp_path).returncode == 0
    full_cache = tmp_path / "full"
    assert_refused(settings_for(config(tmp_path / "full.yaml", full_cache)), tmp_path / "vad.tar", full_cache,
                   "needs the asr, punc model")
    vad_cache = tmp_path / "vad-only"
    reports = install_bundle(settings_for(config(tmp_path / "vad.yaml", vad_cache, "  profile: vad\n")),
                             tmp_path / "vad.tar")
    assert [(r.role, r.installed) for r in reports] == [("vad", True)]


def test_an_incomplete_copy_is_replaced(made, target):
    bundle, _ = made
    cache, cfg = target
    broken = cache / ASR_DIR
    broken.mkdir(parents=True)
    (broken / "config.yaml").write_text("half a download\n")
    reports = install_bundle(settings_for(cfg), bundle)
    assert all(r.installed for r in reports)
    assert (broken / MANIFEST_NAME).is_file() and (broken / "config.yaml").read_text() != "half a download\n"
    assert not [p for p in broken.parent.iterdir() if p.name.startswith(".")], "staging or replaced copies left"


# ---- refusals -----------------------------------------------------------------------------------


def test_a_tampered_file_is_refused_with_a_clear_error(made, target, tmp_path):
    bundle, _ = made
    cache, cfg = target
    tampered = rewrite(bundle, tmp_path / "tampered.tar",
                       edit=lambda m, d: flip(d) if m.name == f"{ASR_DIR}/model.pt" else d)
    result = run_asr("install-bundle", "--config", cfg, tampered, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "model.pt does not match its checksum in the bundle" in result.stderr
    assert "damaged or was altered" in result.stderr and "Nothing was installed" in result.stderr
    # the VAD model came first in the archive and was fine: it must not be left installed either
    assert tree(cache) == {}


def test_a_rewritten_bundle_manifest_is_caught_by_the_model_manifest(made, target, tmp_path):
    """Someone alters a weight file and fixes up asr-bundle.json to match: the model's own
    .asr-manifest.json still disagrees."""
    bundle, _ = made
    cache, cfg = target
    with tarfile.open(bundle) as tar:
        weights = flip(tar.extractfile(f"{ASR_DIR}/model.pt").read())
        manifest = json.loads(tar.extractfile(BUNDLE_MANIFEST).read())
    for model in manifest["models"]:
        if model["role"] == "asr":
            model["files"]["model.pt"]["sha256"] = hashlib.sha256(weights).hexdigest()

    def edit(member, data):
        if member.name == BUNDLE_MANIFEST:
            return json.dumps(manifest).encode()
        return weights if member.name == f"{ASR_DIR}/model.pt" else data

    forged = rewrite(bundle, tmp_path / "forged.tar", edit=edit)
    assert_refused(settings_for(cfg), forged, cache, f"does not match its own {re.escape(MANIFEST_NAME)}")


def test_a_bundle_manifest_announcing_a_foreign_file_is_refused(made, target, tmp_path):
    """Only the names a model directory of that role holds may be announced, so a bundle can
    never place, say, a Python file beside the weights, even with a matching checksum."""
    bundle, _ = made
    cache, cfg = target
    payload = b"import os\n"
    with tarfile.open(bundle) as tar:
        manifest = json.loads(tar.extractfile(BUNDLE_MANIFEST).read())
    for model in manifest["models"]:
        if model["role"] == "vad":
            model["files"]["helper.py"] = {"sha256": hashlib.sha256(payload).hexdigest(), "size": len(payload)}
            directory = model["directory"]
    forged = rewrite(bundle, tmp_path / "foreign.tar",
                     edit=lambda m, d: json.dumps(manifest).encode() if m.name == BUNDLE_MANIFEST else d,
                     extra=[entry(f"{directory}/helper.py", payload)])
    assert_refused(settings_for(cfg), forged, cache, "lists the file 'helper.py', which no vad model directory holds")


def test_the_expected_sha256_is_checked_first(made, target):
    bundle, sha = made
    cache, cfg = target
    with pytest.raises(BundleError, match="its sha256 is .* not the expected 0{64}"):
        install_bundle(settings_for(cfg), bundle, "0" * 64)
    with pytest.raises(BundleError, match="64 hexadecimal digits"):
        install_bundle(settings_for(cfg), bundle, "abc")
    assert tree(cache) == {}
    install_bundle(settings_for(cfg), bundle, sha.upper())  # case does not matter


@pytest.mark.parametrize("hostile, match", [
    (entry("../escape.txt"), "points outside the bundle"),
    (entry("/tmp/asr-bundle-test-escape.txt"), "points outside the bundle"),
    (entry(f"{ASR_DIR}/../../../../../escape.txt"), "points outside the bundle"),
    (entry(f"{ASR_DIR}/extra.py", b"import os"), "not announced by"),
    (entry("models/evil", kind=tarfile.SYMTYPE, link="/etc"), "is a symbolic link"),
    (entry("models/hard", kind=tarfile.LNKTYPE, link=f"{ASR_DIR}/model.pt"), "is a hard link"),
    (entry("models/dev", kind=tarfile.CHRTYPE), "is a device or special file"),
    (entry("models/fifo", kind=tarfile.FIFOTYPE), "is a device or special file"),
    (entry("models/dir", kind=tarfile.DIRTYPE), "is a directory"),
], ids=["dotdot", "absolute", "nested-dotdot", "unannounced", "symlink", "hardlink", "device", "fifo", "directory"])
def test_hostile_entries_are_refused_before_anything_is_written(made, target, tmp_path, hostile, match):
    bundle, _ = made
    cache, cfg = target
    evil = rewrite(bundle, tmp_path / "evil.tar", extra=[hostile])
    absolute = Path("/tmp/asr-bundle-test-escape.txt")
    existed = absolute.exists()
    assert_refused(settings_for(cfg), evil, cache, match)
    assert not list(tmp_path.rglob("escape.txt")) and absolute.exists() == existed


def test_a_symlink_in_place_of_a_model_file_is_refused(made, target, tmp_path):
    bundle, _ = made
    cache, cfg = target
    link = tarfile.TarInfo(f"{ASR_DIR}/model.pt")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    evil = rewrite(bundle, tmp_path / "link.tar", replace={f"{ASR_DIR}/model.pt": link})
    assert_refused(settings_for(cfg), evil, cache, "is a symbolic link")


def test_missing_and_duplicate_entries_are_refused(made, target, tmp_path):
    bundle, _ = made
    cache, cfg = target
    missing = rewrite(bundle, tmp_path / "missing.tar",
                      edit=lambda m, d: None if m.name == f"{ASR_DIR}/tokens.json" else d)
    assert_refused(settings_for(cfg), missing, cache, "tokens.json, which the archive lacks")
    with tarfile.open(bundle) as tar:
        body = tar.extractfile(f"{ASR_DIR}/am.mvn").read()
    twice = rewrite(bundle, tmp_path / "twice.tar", extra=[entry(f"{ASR_DIR}/am.mvn", body)])
    assert_refused(settings_for(cfg), twice, cache, "appears twice")


def test_files_that_are_not_bundles_are_refused(made, target, tmp_path):
    bundle, _ = made
    cache, cfg = target
    settings = settings_for(cfg)
    noise = tmp_path / "noise.tar"
    noise.write_bytes(os.urandom(4096))
    assert_refused(settings, noise, cache, "not a tar archive")
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(bundle.read_bytes()[: bundle.stat().st_size // 2])
    assert_refused(settings, truncated, cache, "damaged or truncated")
    other = tmp_path / "other.tar"
    with tarfile.open(other, "w") as tar:
        info, data = entry("README.md", b"# not models\n")
        tar.addfile(info, io.BytesIO(data))
    assert_refused(settings, other, cache, "not an asr model bundle")
    empty = tmp_path / "empty.tar"
    tarfile.open(empty, "w").close()
    assert_refused(settings, empty, cache, "the archive is empty")
    with pytest.raises(BundleError, match="no such bundle file"):
        install_bundle(settings, tmp_path / "nowhere.tar")
    with pytest.raises(BundleError, match="is a directory"):
        install_bundle(settings, tmp_path)


def test_a_bundle_of_other_pins_is_refused(made, tmp_path):
    bundle, _ = made
    cache = tmp_path / "cache"
    cfg = config(tmp_path / "pins.yaml", cache,
                 "  asr:\n    id: iic/speech_paraformer-large-vad-punc_asr_nat-zh-cn-16k-common-vocab8404-pytorch\n"
                 "    revision: v2.0.5\n")
    error = assert_refused(settings_for(cfg), bundle, cache, "but the config pins")
    assert "v2.0.4" in str(error) and "v2.0.5" in str(error)


def test_a_failed_install_keeps_the_models_already_there(made, target, tmp_path):
    bundle, _ = made
    cache, cfg = target
    install_bundle(settings_for(cfg), bundle)
    before = tree(cache)
    tampered = rewrite(bundle, tmp_path / "tampered.tar",
                       edit=lambda m, d: flip(d) if m.name.endswith("/model.pt") and "/iic--punc" in m.name else d)
    assert_refused(settings_for(cfg), tampered, cache, "does not match its checksum")
    assert tree(cache) == before


# ---- making a bundle --------------------------------------------------------------------------


def test_bundle_refuses_missing_or_damaged_models(test_models, tmp_path):
    missing = run_asr("bundle", "--config", config(tmp_path / "none.yaml", tmp_path / "empty"), "--out", "x.tar",
                      cwd=tmp_path)
    assert missing.returncode == 2 and "not found" in missing.stderr and "Traceback" not in missing.stderr
    assert not (tmp_path / "x.tar").exists()
    damaged = tmp_path / "damaged"
    shutil.copytree(test_models / "models", damaged / "models")
    weights = next((damaged / "models").glob("iic--punc*/snapshots/*/model.pt"))
    weights.write_bytes(flip(weights.read_bytes()))
    result = run_asr("bundle", "--config", config(tmp_path / "damaged.yaml", damaged), "--out", "y.tar",
                     cwd=tmp_path)
    assert result.returncode == 2 and "does not match its manifest" in result.stderr, result.stderr
    assert not (tmp_path / "y.tar").exists() and not list(tmp_path.glob(".y.tar*"))


def test_bundle_holds_exactly_the_model_files_and_manifests(made):
    bundle, _ = made
    with tarfile.open(bundle) as tar:
        members = tar.getmembers()
        manifest = json.loads(tar.extractfile(BUNDLE_MANIFEST).read())
    assert members[0].name == BUNDLE_MANIFEST
    assert all(m.isreg() and m.uid == 0 and m.uname == "" for m in members)
    names = {m.name for m in members[1:]}
    announced = {f"{model['directory']}/{name}" for model in manifest["models"] for name in model["files"]}
    assert names == announced
    assert f"{ASR_DIR}/{TEST_MODEL_MARKER}" in names and f"{ASR_DIR}/{MANIFEST_NAME}" in names
    assert [m["role"] for m in manifest["models"]] == ["vad", "asr", "punc"]


# ---- models without our manifest ----------------------------------------------------------------

ASR_ID = "iic/speech_paraformer-large-vad-punc_asr_nat-zh-cn-16k-common-vocab8404-pytorch"
PUNC_ID = "iic/punc_ct-transformer_zh-cn-common-vocab272727-pytorch"
LOCAL_NOTE_TEXT = "checksums computed locally, not from the hub"


def without_manifests(test_models: Path, root: Path) -> tuple[Path, Path]:
    """A cache whose punc model sits in modelscope's older layout without our manifest (as FunASR's
    own download leaves it), and an asr model copied by hand to its own directory; (cache, asr dir)."""
    cache = root / "cache"
    shutil.copytree(test_models / "models", cache / "models")
    punc = next((cache / "models").glob("iic--punc*/snapshots/*"))
    legacy = cache / "models" / PUNC_ID
    legacy.parent.mkdir(parents=True)
    punc.rename(legacy)
    (legacy / MANIFEST_NAME).unlink()
    shutil.rmtree(cache / "models" / f"iic--{PUNC_ID.split('/')[1]}")
    by_hand = root / "hand-copied-asr"
    shutil.copytree(cache / ASR_DIR, by_hand)
    (by_hand / MANIFEST_NAME).unlink()
    shutil.rmtree(cache / ASR_DIR)
    return cache, by_hand


def test_models_without_a_manifest_are_bundled_with_local_checksums(test_models, target, tmp_path):
    cache, by_hand = without_manifests(test_models, tmp_path / "src")
    src = config(tmp_path / "src.yaml", cache, f"  asr:\n    id: {ASR_ID}\n"
                                                f"    revision: v2.0.4\n    path: {by_hand}\n")
    before = tree(tmp_path / "src")
    made = run_asr("bundle", "--config", src, "--out", "local.tar", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert re.search(r"^bundled with locally computed checksums .*: asr, punc;", made.stdout, re.M), made.stdout
    assert made.stdout.count(LOCAL_NOTE_TEXT) == 2, made.stdout  # the asr and punc lines, not vad
    assert tree(tmp_path / "src") == before, "bundling must not write into the model directories"
    with tarfile.open(tmp_path / "local.tar") as tar:
        sources = {m["role"]: m.get("source") for m in json.loads(tar.extractfile(BUNDLE_MANIFEST).read())["models"]}
        own = json.loads(tar.extractfile(f"{ASR_DIR}/{MANIFEST_NAME}").read())
    assert sources == {"vad": None, "asr": "local", "punc": "local"}
    assert own["source"] == "local" and own["model_id"] == ASR_ID

    installed_cache, cfg = target
    installed = run_asr("install-bundle", "--config", cfg, tmp_path / "local.tar", cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout.count(" installed -> ") == 3 and installed.stdout.count(LOCAL_NOTE_TEXT) == 2
    verify = run_asr("verify", "--config", cfg, cwd=tmp_path)
    assert verify.returncode == 0 and verify.stdout.count(" ok (") == 3, verify.stderr
    assert re.search(rf"^asr: .* ok \(\d+ files; {LOCAL_NOTE_TEXT}\)$", verify.stdout, re.M), verify.stdout
    assert LOCAL_NOTE_TEXT not in next(line for line in verify.stdout.splitlines() if line.startswith("vad:"))

    weights = installed_cache / ASR_DIR / "model.pt"
    weights.write_bytes(flip(weights.read_bytes()))  # same size: only the checksum can tell
    altered = run_asr("verify", "--config", cfg, cwd=tmp_path)
    assert altered.returncode == 2 and "Traceback" not in altered.stderr, altered.stderr
    assert f"model.pt does not match its manifest ({LOCAL_NOTE_TEXT})" in altered.stderr


def test_a_model_without_a_manifest_missing_a_required_file_is_refused(test_models, tmp_path):
    cache, by_hand = without_manifests(test_models, tmp_path / "src")
    (by_hand / "am.mvn").unlink()
    src = config(tmp_path / "src.yaml", cache, f"  asr:\n    id: {ASR_ID}\n"
                                                f"    revision: v2.0.4\n    path: {by_hand}\n")
    result = run_asr("bundle", "--config", src, "--out", "x.tar", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "cannot bundle the asr model iic/speech_paraformer-large" in result.stderr
    assert f"{by_hand} has no {MANIFEST_NAME} and lacks am.mvn" in result.stderr
    assert "copy the whole model directory there again" in result.stderr and "asr download" in result.stderr
    assert not (tmp_path / "x.tar").exists() and not list(tmp_path.glob(".x.tar*"))
