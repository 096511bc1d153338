"""Tests for asr.models.download: ``asr download`` and ``asr verify``.

No model hub is reachable from the machines these tests run on, so the download path is
tested against a local fake ModelScope endpoint (tests/fake_modelscope.py) on 127.0.0.1,
driven by modelscope's REAL ``snapshot_download`` (modelscope 1.40.2 / modelscope_hub 0.5.1).
The fake serves the same API calls the real client makes, records every request, and can
fail, hang or lack a file on demand. Nothing here leaves the loopback interface.
"""

from __future__ import annotations

import hashlib
import json
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from asr.config import Settings
from asr.errors import DownloadError, ManifestMismatchError, ModelIncompleteError
from asr.models.download import DownloadReport, download_models, verify_models
from asr.models.files import (
    MANIFEST_NAME,
    cache_candidates,
    download_target,
    locate_model,
    manifest_matches,
    model_spec,
    verified_copy,
)
from tests.fake_modelscope import FakeModelScope

REVISION = "v2.0.4"
DEFAULT = Settings().models
MODELS = {role: model_spec(DEFAULT, role) for role in ("vad", "asr", "punc")}
FILES = {
    "vad": ("config.yaml", "model.pt", "am.mvn", "configuration.json"),
    "asr": ("config.yaml", "model.pt", "am.mvn", "tokens.json", "configuration.json"),
    "punc": ("config.yaml", "model.pt", "tokens.json", "configuration.json"),
}
#: Generous bound for "fails rather than hangs" on a noisy machine.
HANG_BOUND_S = 60


def _content(role: str, name: str, revision: str) -> bytes:
    seed = f"{role}/{name}@{revision}".encode()
    return hashlib.sha256(seed).digest() * (64 if name == "model.pt" else 4)


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three small fake repositories, each at the pinned revision and at ``master``."""
    root = tmp_path_factory.mktemp("hub")
    for role, spec in MODELS.items():
        for revision in (REVISION, "master"):
            directory = download_target(root, spec.model_copy(update={"revision": revision}))
            directory.mkdir(parents=True)
            for name in (*FILES[role], "README.md"):
                (directory / name).write_bytes(_content(role, name, revision))
            (directory / "example").mkdir()
            (directory / "example" / "asr_example.wav").write_bytes(b"RIFF....")
    return root


@pytest.fixture
def hub(hub_root: Path):
    with FakeModelScope(hub_root) as server:
        yield server


@pytest.fixture(autouse=True)
def isolated_modelscope(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep modelscope away from the real home directory, credentials and endpoint."""
    monkeypatch.delenv("MODELSCOPE_ENDPOINT", raising=False)
    monkeypatch.delenv("MODELSCOPE_DOMAIN", raising=False)
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "")
    monkeypatch.setenv("MODELSCOPE_HOME", str(tmp_path / "ms-home"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms-default-cache"))
    import modelscope_hub.config

    # modelscope_hub keeps one process-wide config (home dir, token); rebuild it per test.
    monkeypatch.setattr(modelscope_hub.config, "_default_config", None)


def make_settings(tmp_path: Path, endpoint: str | None, **download) -> Settings:
    return Settings(
        models={"cache_dir": tmp_path / "cache", "profile": download.pop("profile", "asr")},
        download={"endpoint": endpoint, "timeout_s": 5, "retries": 0, **download},
    )


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def file_requests(hub: FakeModelScope) -> list[str]:
    return [r.param("FilePath") for r in hub.recorded() if r.path.endswith("/repo")]


def assert_downloaded(settings: Settings, role: str) -> Path:
    spec = model_spec(settings.models, role)
    target = download_target(settings.models.resolved_cache_dir(), spec)
    manifest = json.loads((target / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["model_id"] == spec.id and manifest["revision"] == REVISION
    assert sorted(manifest["files"]) == sorted(FILES[role])
    for name in FILES[role]:
        expected = _content(role, name, REVISION)  # the pinned revision, not master
        assert (target / name).read_bytes() == expected
        assert manifest["files"][name] == {
            "sha256": hashlib.sha256(expected).hexdigest(), "size": len(expected),
        }
    assert not (target / "README.md").exists() and not (target / "example").exists()
    assert locate_model(settings.models, role).directory == target
    return target


# ---- 1. fresh download ----------------------------------------------------------------------


def test_fresh_download_through_settings_endpoint(tmp_path: Path, hub: FakeModelScope) -> None:
    settings = make_settings(tmp_path, hub.endpoint, profile="vad+asr+punc")

    reports = download_models(settings)

    assert [(r.role, r.downloaded) for r in reports] == [("vad", True), ("asr", True), ("punc", True)]
    for report in reports:
        assert isinstance(report, DownloadReport)
        assert report.revision == REVISION
        assert report.directory == assert_downloaded(settings, report.role)
    assert [m["role"] for m in verify_models(settings)] == ["vad", "asr", "punc"]

    seen = hub.recorded()
    revisions = {r.param("Revision") for r in seen if r.param("Revision") is not None}
    assert revisions == {REVISION}
    for spec in MODELS.values():
        listing = [r for r in seen if r.path == f"/api/v1/models/{spec.id}/repo/files"]
        assert len(listing) == 1 and listing[0].param("Recursive") == "True"
    assert "README.md" not in file_requests(hub)
    assert all(r.method in ("GET", "HEAD") for r in seen)


def test_fresh_download_through_env_endpoint(
    tmp_path: Path, hub: FakeModelScope, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", hub.endpoint)
    settings = make_settings(tmp_path, None)

    [report] = download_models(settings)

    assert report.downloaded and report.directory == assert_downloaded(settings, "asr")
    verify_models(settings)
    assert sorted(file_requests(hub)) == sorted(FILES["asr"])
    assert {r.param("Revision") for r in hub.recorded() if r.param("Revision")} == {REVISION}


# ---- 2. second call: no network --------------------------------------------------------------


def test_second_call_is_offline(tmp_path: Path, hub: FakeModelScope, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path, hub.endpoint, profile="vad+asr+punc")
    download_models(settings)
    hub.clear_requests()

    def no_network(*args, **kwargs):
        raise AssertionError("network access on the no-op path")

    with monkeypatch.context() as guard:
        guard.setattr(socket.socket, "connect", no_network)
        guard.setattr(socket.socket, "connect_ex", no_network)
        guard.setattr(socket, "create_connection", no_network)
        # Not even importing modelscope (it imports torch, and could phone home on import).
        for name in [n for n in sys.modules if n.split(".")[0] in ("modelscope", "modelscope_hub")]:
            guard.setitem(sys.modules, name, None)
        guard.setitem(sys.modules, "modelscope", None)
        reports = download_models(settings)

    assert [r.downloaded for r in reports] == [False, False, False]
    assert [r.directory for r in reports] == [
        download_target(settings.models.resolved_cache_dir(), model_spec(settings.models, r.role))
        for r in reports
    ]
    assert hub.recorded() == []


def test_explicit_path_is_only_checked(tmp_path: Path, hub: FakeModelScope, hub_root: Path) -> None:
    local = download_target(hub_root, MODELS["asr"])
    settings = Settings(
        models={"cache_dir": tmp_path / "cache", "profile": "asr",
                "asr": {"id": MODELS["asr"].id, "revision": REVISION, "path": local}},
        download={"endpoint": hub.endpoint, "retries": 0},
    )

    [report] = download_models(settings)

    assert (report.downloaded, report.directory) == (False, local)
    assert hub.recorded() == []
    assert not (local / MANIFEST_NAME).exists()  # never written into


# ---- 3. retries -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["500", "disconnect"])
def test_retries_until_success(tmp_path: Path, hub: FakeModelScope, mode: str) -> None:
    hub.fail_next(2, mode)
    sleeps = Sleeps()
    settings = make_settings(tmp_path, hub.endpoint, retries=3)

    [report] = download_models(settings, backoff_s=0.5, sleep=sleeps)

    assert report.downloaded
    assert_downloaded(settings, "asr")
    assert sleeps == [0.5, 1.0]  # exponential back-off between the three attempts
    listings = [r for r in hub.recorded() if r.path.endswith("/repo/files")]
    assert len(listings) == 3


def test_no_retries_fails_with_download_error(tmp_path: Path, hub: FakeModelScope) -> None:
    hub.fail_next(2, "500")
    sleeps = Sleeps()
    settings = make_settings(tmp_path, hub.endpoint, retries=0)

    with pytest.raises(DownloadError) as info:
        download_models(settings, sleep=sleeps)

    message = str(info.value)
    assert MODELS["asr"].id in message and REVISION in message
    assert hub.endpoint in message
    assert "MODELSCOPE_ENDPOINT" in message and "asr install-bundle" in message
    assert sleeps == []
    assert len(hub.recorded()) == 1  # modelscope's own retries are off: ours are the only ones
    target = download_target(settings.models.resolved_cache_dir(), MODELS["asr"])
    assert not (target / MANIFEST_NAME).exists()


def test_unreachable_endpoint_names_it(tmp_path: Path) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    settings = make_settings(tmp_path, endpoint, retries=1)

    with pytest.raises(DownloadError, match="after 2 attempt") as info:
        download_models(settings, sleep=Sleeps())

    assert endpoint in str(info.value) and MODELS["asr"].id in str(info.value)


def test_unresolvable_host_fails_at_once_with_the_whole_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No DNS (or a mistyped endpoint): one attempt, not retries that each wait out the resolver,
    and a message that names the host and keeps the resolver's words (they used to be cut off)."""
    host = "asr-test.invalid"  # RFC 2606: .invalid never resolves
    with pytest.raises(socket.gaierror) as resolver:
        socket.getaddrinfo(host, 80)
    settings = make_settings(tmp_path, f"http://{host}", retries=3)
    sleeps = Sleeps()

    with caplog.at_level("WARNING", logger="asr.models.download"), pytest.raises(DownloadError) as info:
        download_models(settings, sleep=sleeps)

    message = str(info.value)
    assert "(not retried)" in message and sleeps == []
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]
    assert f"the host name '{host}' could not be resolved" in message
    assert str(resolver.value) in message  # the resolver's own words, whole
    assert f"Failed to resolve '{host}'" in message
    assert "DNS" in message and "MODELSCOPE_ENDPOINT" in message and "download.endpoint" in message
    assert message.endswith("install an offline bundle with `asr install-bundle FILE`.")


# ---- 4. timeout -------------------------------------------------------------------------------


def test_hanging_server_times_out(tmp_path: Path, hub: FakeModelScope) -> None:
    hub.hang()
    settings = make_settings(tmp_path, hub.endpoint, timeout_s=1, retries=1)
    outcome: dict[str, BaseException | None] = {}

    def run() -> None:
        try:
            download_models(settings, sleep=Sleeps())
            outcome["error"] = None
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = error

    worker = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(HANG_BOUND_S)
    hub.release()
    assert not worker.is_alive(), f"download still hanging after {HANG_BOUND_S} s"
    assert isinstance(outcome["error"], DownloadError), outcome["error"]
    message = str(outcome["error"])
    assert MODELS["asr"].id in message and hub.endpoint in message
    assert "after 2 attempt" in message
    assert time.monotonic() - started < HANG_BOUND_S


def test_timeout_settings_are_restored(tmp_path: Path, hub: FakeModelScope) -> None:
    import modelscope_hub._download
    import modelscope_hub._legacy_api
    import modelscope_hub.constants as constants

    before = (constants.API_TIMEOUT, modelscope_hub._legacy_api.DOWNLOAD_TIMEOUT,
              modelscope_hub._download.DOWNLOAD_RETRY_TIMES)
    download_models(make_settings(tmp_path, hub.endpoint, timeout_s=1))
    after = (constants.API_TIMEOUT, modelscope_hub._legacy_api.DOWNLOAD_TIMEOUT,
             modelscope_hub._download.DOWNLOAD_RETRY_TIMES)
    assert after == before


# ---- 5. incomplete repository -----------------------------------------------------------------


def test_missing_file_is_incomplete_and_writes_no_manifest(tmp_path: Path, hub: FakeModelScope) -> None:
    hub.missing_files = {"model.pt"}
    settings = make_settings(tmp_path, hub.endpoint, retries=2)
    spec = MODELS["asr"]
    target = download_target(settings.models.resolved_cache_dir(), spec)

    with pytest.raises(ModelIncompleteError, match=r"model\.pt") as info:
        download_models(settings, sleep=Sleeps())

    assert spec.id in str(info.value)
    assert not (target / MANIFEST_NAME).exists()
    assert not manifest_matches(target, spec, "asr")

    # The next run still sees the model as missing, and completes it once the file is there.
    hub.missing_files = set()
    hub.clear_requests()
    [report] = download_models(settings)
    assert report.downloaded
    assert_downloaded(settings, "asr")
    assert file_requests(hub) == ["model.pt"]  # the files already fetched were kept


def test_listed_but_missing_file_is_a_download_error(tmp_path: Path, hub: FakeModelScope) -> None:
    hub.missing_files = {"model.pt"}
    hub.list_missing = True  # listed, but the file itself answers 404
    sleeps = Sleeps()
    settings = make_settings(tmp_path, hub.endpoint, retries=3)

    with pytest.raises(DownloadError, match=r"model\.pt") as info:
        download_models(settings, sleep=sleeps)

    assert MODELS["asr"].id in str(info.value) and hub.endpoint in str(info.value)
    assert sleeps == []  # a 404 is not retried
    target = download_target(settings.models.resolved_cache_dir(), MODELS["asr"])
    assert not (target / MANIFEST_NAME).exists()


def test_unknown_revision_is_not_retried(tmp_path: Path, hub: FakeModelScope) -> None:
    settings = Settings(
        models={"cache_dir": tmp_path / "cache", "profile": "asr",
                "asr": {"id": MODELS["asr"].id, "revision": "v9.9.9"}},
        download={"endpoint": hub.endpoint, "retries": 3},
    )
    sleeps = Sleeps()

    with pytest.raises(DownloadError, match="v9.9.9") as info:
        download_models(settings, sleep=sleeps)

    assert "revision" in str(info.value) and sleeps == []


# ---- 6. verify --------------------------------------------------------------------------------


@pytest.mark.parametrize("list_sha256", [True, False], ids=["listing-with-sha256", "without"])
def test_verify_detects_a_corrupted_file_and_download_repairs_it(
    tmp_path: Path, hub: FakeModelScope, list_sha256: bool
) -> None:
    # Without Sha256 in the listing modelscope would keep a same-size cached file; the
    # old manifest is what tells the downloader to fetch it again.
    hub.list_sha256 = list_sha256
    settings = make_settings(tmp_path, hub.endpoint)
    [report] = download_models(settings)
    model = report.directory / "model.pt"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, one bit different
    model.write_bytes(bytes(data))

    with pytest.raises(ManifestMismatchError, match=r"model\.pt"):
        verify_models(settings)

    hub.clear_requests()
    [again] = download_models(settings)
    assert again.downloaded
    assert file_requests(hub) == ["model.pt"]
    assert_downloaded(settings, "asr")
    verify_models(settings)


# ---- legacy cache layouts ---------------------------------------------------------------------


def test_legacy_cache_layout_is_linked_into_the_download_target(
    tmp_path: Path, hub: FakeModelScope
) -> None:
    settings = make_settings(tmp_path, hub.endpoint)
    spec = MODELS["asr"]
    cache = settings.models.resolved_cache_dir()
    legacy = cache_candidates(cache, spec)[1]  # {cache}/models/{owner}/{name with ___}
    legacy.mkdir(parents=True)
    (legacy / "config.yaml").write_bytes(b"an older revision's config\n")

    [report] = download_models(settings)

    target = download_target(cache, spec)
    assert report.directory == target
    assert_downloaded(settings, "asr")
    assert (legacy / "config.yaml").read_bytes() == _content("asr", "config.yaml", REVISION)
    verify_models(settings)


# ---- the meetings models ---------------------------------------------------------------------


def _hub_with(root: Path, specs: dict, files: dict) -> Path:
    """A fake hub's tree holding ``files[role]`` (and a README) for each role's pinned spec."""
    for role, spec in specs.items():
        directory = download_target(root, spec)
        directory.mkdir(parents=True)
        for name in (*files[role], "README.md"):
            (directory / name).write_bytes(_content(role, name, spec.revision))
    return root


def test_meetings_models_download_only_where_config_enables_them(tmp_path: Path) -> None:
    """SeACo replaces the ASR model, CAM++ comes with the +spk profile; the plain ASR model is not fetched."""
    specs = {"vad": DEFAULT.vad, "asr": DEFAULT.seaco, "punc": DEFAULT.punc, "spk": DEFAULT.spk}
    files = {**FILES, "asr": (*FILES["asr"], "seg_dict"),
             "spk": ("config.yaml", "campplus_cn_common.bin", "configuration.json")}
    root = _hub_with(tmp_path / "hub", specs, files)
    settings = Settings(
        models={"cache_dir": tmp_path / "cache", "profile": "vad+asr+punc+spk", "asr_model": "seaco"},
        download={"timeout_s": 5, "retries": 0},
    )
    with FakeModelScope(root) as hub:
        settings = settings.model_copy(update={"download": settings.download.model_copy(
            update={"endpoint": hub.endpoint})})
        reports = download_models(settings)
        listed = {r.path for r in hub.recorded() if r.path.endswith("/repo/files")}
    assert [r.role for r in reports] == ["vad", "asr", "punc", "spk"] and all(r.downloaded for r in reports)
    assert f"/api/v1/models/{DEFAULT.asr.id}/repo/files" not in listed  # the BiCif model is not this deployment's
    for role, spec in specs.items():
        target = download_target(settings.models.resolved_cache_dir(), spec)
        manifest = json.loads((target / MANIFEST_NAME).read_text(encoding="utf-8"))
        assert manifest["model_id"] == spec.id and sorted(manifest["files"]) == sorted(files[role])
        assert locate_model(settings.models, role).directory == target
    assert [m["role"] for m in verify_models(settings)] == ["vad", "asr", "punc", "spk"]


# ---- the streaming model (live captions) -----------------------------------------------------


def test_streaming_model_downloads_only_with_the_live_profile(tmp_path: Path) -> None:
    """The +live profile fetches the streaming Paraformer besides vad, asr and punc; the default
    profile, from the same hub, does not ask for it."""
    specs = {**MODELS, "online": DEFAULT.online}
    files = {**FILES, "online": ("config.yaml", "model.pt", "am.mvn", "tokens.json", "configuration.json")}
    root = _hub_with(tmp_path / "hub", specs, files)
    online_listing = f"/api/v1/models/{DEFAULT.online.id}/repo/files"
    with FakeModelScope(root) as hub:
        default = make_settings(tmp_path / "default", hub.endpoint, profile="vad+asr+punc")
        assert [r.role for r in download_models(default)] == ["vad", "asr", "punc"]
        assert online_listing not in {r.path for r in hub.recorded()}
        assert verified_copy(default.models, "online") is None

        live = make_settings(tmp_path / "live", hub.endpoint, profile="vad+asr+punc+live")
        reports = download_models(live)
        listed = {r.path for r in hub.recorded() if r.path.endswith("/repo/files")}
    assert [r.role for r in reports] == ["vad", "asr", "punc", "online"] and all(r.downloaded for r in reports)
    assert online_listing in listed
    target = download_target(live.models.resolved_cache_dir(), DEFAULT.online)
    manifest = json.loads((target / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["model_id"] == DEFAULT.online.id and manifest["revision"] == "v2.0.4"
    assert manifest["role"] == "online" and sorted(manifest["files"]) == sorted(files["online"])
    for name in files["online"]:
        assert (target / name).read_bytes() == _content("online", name, "v2.0.4")
    assert not (target / "README.md").exists()
    assert locate_model(live.models, "online").directory == target
    assert [m["role"] for m in verify_models(live)] == ["vad", "asr", "punc", "online"]
