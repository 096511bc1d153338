"""Settings: defaults, YAML, ASR_* environment, explicit overrides, and the errors for bad input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from asr.config import CONFIG_ENV, Settings, load_settings
from asr.errors import ConfigError
from tests.conftest import REPO, TEST_CONFIG, TEST_MODELS

PINNED = {
    "asr": "iic/speech_paraformer-large-vad-punc_asr_nat-zh-cn-16k-common-vocab8404-pytorch",
    "vad": "iic/speech_fsmn_vad_zh-cn-16k-common-pytorch",
    "punc": "iic/punc_ct-transformer_zh-cn-common-vocab272727-pytorch",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No ASR_* or MODELSCOPE_CACHE from the caller's shell, and a CWD without config.yaml."""
    for name in list(os.environ):
        if name.upper().startswith("ASR_") or name == "MODELSCOPE_CACHE":
            monkeypatch.delenv(name)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def config_error(*args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(*args, **kwargs)
    return str(info.value)


# ---- defaults -----------------------------------------------------------------------------


def test_no_file_gives_the_defaults():
    settings = load_settings()
    assert settings == Settings()
    for role, model_id in PINNED.items():
        spec = getattr(settings.models, role)
        assert (spec.id, spec.revision, spec.path) == (model_id, "v2.0.4", None)
    assert settings.models.profile == "vad+asr+punc"
    assert settings.models.cache_dir is None
    assert settings.runtime.device == "auto" and settings.runtime.precision == "auto"
    assert settings.output.max_cue_ms == 7000 and settings.output.max_cue_chars == 40
    assert settings.log_level == "INFO"


def test_cwd_config_yaml_is_read_when_no_file_is_named(clean_env):
    write_yaml(clean_env / "config.yaml", "runtime:\n  device: cpu\n")
    assert load_settings().runtime.device == "cpu"


def test_asr_config_env_selects_the_file(monkeypatch, tmp_path, clean_env):
    write_yaml(clean_env / "config.yaml", "runtime:\n  device: cuda\n")  # must lose to ASR_CONFIG
    chosen = write_yaml(tmp_path / "chosen.yaml", "runtime:\n  device: cpu\n")
    monkeypatch.setenv(CONFIG_ENV, str(chosen))
    assert load_settings().runtime.device == "cpu"
    # an explicit file still beats ASR_CONFIG
    other = write_yaml(tmp_path / "other.yaml", "runtime:\n  device: cuda:1\n")
    assert load_settings(other).runtime.device == "cuda:1"


def test_repo_config_yaml_equals_the_defaults():
    """The documented config.yaml and the code's defaults must never drift apart."""
    defaults = Settings()
    # The file spells the storage paths with ~, which reading a file expands (state_path() and
    # cache_path() expand the defaults the same way).
    storage = defaults.storage.model_copy(
        update={"state_dir": defaults.storage.state_path(), "cache_dir": defaults.storage.cache_path()}
    )
    assert load_settings(REPO / "config.yaml") == defaults.model_copy(update={"storage": storage})


def _setting_names(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every setting as a dotted name (models.asr.id, server.port, ...), sections recursed into."""
    names: list[str] = []
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            names.extend(_setting_names(field.annotation, f"{prefix}{name}."))
        else:
            names.append(f"{prefix}{name}")
    return names


def test_repo_config_yaml_documents_every_setting():
    """The README promises that config.yaml documents every setting: a new field must be added
    there (with its default and a comment), or this fails naming it."""
    documented = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))

    def present(name: str) -> bool:
        section = documented
        for part in name.split("."):
            if not isinstance(section, dict) or part not in section:
                return False
            section = section[part]
        return True

    names = _setting_names(Settings)
    assert {"server.port", "queue.max_size", "storage.state_dir", "models.asr.path"} <= set(names)
    assert [name for name in names if not present(name)] == []


def test_test_models_config_points_at_the_repo_cache():
    settings = load_settings(TEST_CONFIG)
    assert settings.models.cache_dir == TEST_MODELS.resolve()
    assert settings.models.resolved_cache_dir() == TEST_MODELS.resolve()
    # everything else is the production default: same pinned ids and revisions
    assert settings.models.asr == Settings().models.asr
    assert settings.model_copy(update={"models": Settings().models}) == Settings()


# ---- YAML ---------------------------------------------------------------------------------


def test_yaml_values_load(tmp_path):
    path = write_yaml(
        tmp_path / "c.yaml",
        """
models:
  profile: asr+punc
  asr:
    id: someone/other-model
    revision: v9
runtime:
  device: cuda:1
  precision: bf16
  threads: 3
vad:
  max_segment_ms: 20000
  max_end_silence_ms: 800
output:
  max_cue_ms: 5000
  max_cue_chars: 20
log_level: DEBUG
""",
    )
    s = load_settings(path)
    assert s.models.profile == "asr+punc"
    assert (s.models.asr.id, s.models.asr.revision) == ("someone/other-model", "v9")
    assert s.models.vad == Settings().models.vad  # untouched siblings keep their defaults
    assert (s.runtime.device, s.runtime.precision, s.runtime.threads) == ("cuda:1", "bf16", 3)
    assert (s.vad.max_segment_ms, s.vad.max_end_silence_ms) == (20000, 800)
    assert (s.output.max_cue_ms, s.output.max_cue_chars) == (5000, 20)
    assert s.log_level == "DEBUG"


def test_empty_file_and_empty_section_mean_defaults(tmp_path):
    assert load_settings(write_yaml(tmp_path / "empty.yaml", "")) == Settings()
    commented = write_yaml(tmp_path / "commented.yaml", "vad:\n  # max_segment_ms: 20000\nruntime:\n")
    assert load_settings(commented) == Settings()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("bogus: 1\n", "bogus"),
        ("vad:\n  bogus: 1\n", "vad.bogus"),
        ("models:\n  asr:\n    id: x\n    revision: y\n    sha: z\n", "models.asr.sha"),
        ("runtime:\n  devcie: cpu\n", "runtime.devcie"),  # a typo is an error, not ignored
    ],
)
def test_unknown_key_names_the_key_and_the_file(tmp_path, text, key):
    path = write_yaml(tmp_path / "typo.yaml", text)
    message = config_error(path)
    assert key in message and str(path) in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("runtime: [unclosed\n", "not valid YAML"),
        ("models:\n  profile: vad\n bad-indent: 1\n", "not valid YAML"),
        ("- a\n- b\n", "must be a mapping"),
        ("just a string\n", "must be a mapping"),
        ("1: 2\n", "keys must be names"),
    ],
)
def test_malformed_file_is_a_config_error(tmp_path, text, expected):
    path = write_yaml(tmp_path / "bad.yaml", text)
    message = config_error(path)
    assert expected in message and str(path) in message


def test_unreadable_files_are_config_errors(tmp_path):
    missing = tmp_path / "nope.yaml"
    assert "not found" in config_error(missing) and str(missing) in config_error(missing)
    assert str(tmp_path) in config_error(tmp_path)  # a directory
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage")
    assert "UTF-8" in config_error(binary) and str(binary) in config_error(binary)


@pytest.mark.parametrize(
    ("text", "field", "detail"),
    [
        ("runtime:\n  device: gpu\n", "runtime.device", "cuda"),
        ("runtime:\n  device: cuda:x\n", "runtime.device", "cuda"),
        ("runtime:\n  precision: fp8\n", "runtime.precision", "bf16"),
        ("runtime:\n  threads: 0\n", "runtime.threads", "1"),
        ("vad:\n  max_segment_ms: 10\n", "vad.max_segment_ms", "1000"),
        ("models:\n  profile: foo\n", "models.profile", "vad+asr+punc"),
        ("output:\n  max_cue_chars: 2\n", "output.max_cue_chars", "4"),
        ("log_level: LOUD\n", "log_level", "DEBUG"),
    ],
)
def test_invalid_values_name_the_field(tmp_path, text, field, detail):
    path = write_yaml(tmp_path / "invalid.yaml", text)
    message = config_error(path)
    assert f"{field}:" in message and detail in message and str(path) in message


# ---- environment and overrides ------------------------------------------------------------


def test_env_beats_yaml_and_overrides_beat_env(monkeypatch, tmp_path):
    path = write_yaml(tmp_path / "c.yaml", "runtime:\n  device: cuda\n  threads: 2\nvad:\n  max_segment_ms: 20000\n")
    assert load_settings(path).runtime.device == "cuda"
    monkeypatch.setenv("ASR_RUNTIME__DEVICE", "cpu")
    monkeypatch.setenv("ASR_VAD__MAX_END_SILENCE_MS", "700")
    s = load_settings(path)
    assert s.runtime.device == "cpu"
    assert s.runtime.threads == 2 and s.vad.max_segment_ms == 20000  # merged, not replaced
    assert s.vad.max_end_silence_ms == 700
    s = load_settings(path, runtime={"device": "cuda:0"})
    assert s.runtime.device == "cuda:0" and s.runtime.threads == 2
    assert s.vad.max_end_silence_ms == 700


def test_env_alone_without_a_file(monkeypatch):
    monkeypatch.setenv("ASR_MODELS__PROFILE", "vad")
    monkeypatch.setenv("ASR_LOG_LEVEL", "WARNING")
    s = load_settings()
    assert s.models.profile == "vad" and s.log_level == "WARNING"


def test_unknown_or_invalid_env_key_is_a_config_error(monkeypatch, tmp_path):
    path = write_yaml(tmp_path / "c.yaml", "")
    monkeypatch.setenv("ASR_VAD__BOGUS", "1")
    message = config_error(path)
    assert "vad.bogus" in message and "ASR_" in message
    monkeypatch.delenv("ASR_VAD__BOGUS")
    monkeypatch.setenv("ASR_RUNTIME__DEVICE", "gpu")
    assert "runtime.device" in config_error(path)


def test_invalid_override_is_a_config_error(tmp_path):
    assert "runtime.device" in config_error(write_yaml(tmp_path / "c.yaml", ""), runtime={"device": "tpu"})


# ---- paths --------------------------------------------------------------------------------


def test_relative_cache_dir_is_relative_to_the_yaml_file(tmp_path, clean_env):
    conf_dir = tmp_path / "etc" / "asr"
    conf_dir.mkdir(parents=True)
    path = write_yaml(
        conf_dir / "config.yaml",
        "models:\n  cache_dir: ../models\n  asr:\n    id: a/b\n    revision: r\n    path: local/asr\n",
    )
    s = load_settings(path)
    assert s.models.cache_dir == (tmp_path / "etc" / "models").resolve()
    assert s.models.asr.path == (conf_dir / "local" / "asr").resolve()
    assert not str(s.models.cache_dir).startswith(str(clean_env))
    # also when the file itself is named relative to the CWD
    assert load_settings(Path("..") / "etc" / "asr" / "config.yaml").models.cache_dir == s.models.cache_dir


def test_absolute_and_home_paths_are_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = write_yaml(tmp_path / "c.yaml", f"models:\n  cache_dir: {tmp_path / 'abs'}\n")
    assert load_settings(path).models.cache_dir == tmp_path / "abs"
    path = write_yaml(tmp_path / "c.yaml", "models:\n  cache_dir: ~/models\n")
    assert load_settings(path).models.cache_dir == tmp_path / "home" / "models"
    monkeypatch.setenv("ASR_MODELS__CACHE_DIR", "~/env-models")
    assert load_settings(path).models.cache_dir == tmp_path / "home" / "env-models"


def test_modelscope_cache_is_used_when_cache_dir_is_empty(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert load_settings().models.resolved_cache_dir() == tmp_path / "home" / ".cache" / "modelscope"
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    assert load_settings().models.resolved_cache_dir() == tmp_path / "ms"
    # "empty" in YAML or in the environment means unset, never "the current directory"
    for text in ("models:\n  cache_dir:\n", 'models:\n  cache_dir: ""\n'):
        path = write_yaml(tmp_path / "c.yaml", text)
        assert load_settings(path).models.resolved_cache_dir() == tmp_path / "ms"
    monkeypatch.setenv("ASR_MODELS__CACHE_DIR", "")
    assert load_settings().models.resolved_cache_dir() == tmp_path / "ms"
    # a configured cache_dir wins over MODELSCOPE_CACHE
    monkeypatch.setenv("ASR_MODELS__CACHE_DIR", str(tmp_path / "mine"))
    assert load_settings().models.resolved_cache_dir() == tmp_path / "mine"


def test_settings_are_frozen():
    settings = load_settings()
    with pytest.raises(ValidationError):
        settings.runtime.device = "cpu"  # type: ignore[misc]
