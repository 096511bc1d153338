"""Typed settings: ``config.yaml`` plus ``ASR_*`` environment overrides, read once, passed in.

Precedence, highest first: explicit overrides (CLI flags), environment variables
(``ASR_SECTION__FIELD``, e.g. ``ASR_RUNTIME__DEVICE=cpu``), the YAML file, the defaults
below. Unknown keys are rejected so that a typo is an error, not a silently ignored
setting. Relative paths in the YAML file are taken relative to that file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from asr.errors import ConfigError

#: Environment variable naming the config file when ``--config`` is not given.
CONFIG_ENV = "ASR_CONFIG"

Profile = Literal["vad", "asr", "asr+punc", "vad+asr+punc"]
Precision = Literal["auto", "fp32", "bf16", "fp16", "int8"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Section):
    """One pinned model: a ModelScope id and revision, or a local directory."""

    id: str
    """ModelScope model id, e.g. ``iic/speech_fsmn_vad_zh-cn-16k-common-pytorch``."""
    revision: str
    """Pinned revision (tag or commit); never a moving branch in production."""
    path: Path | None = None
    """A local model directory. When set it wins over the cache and no hub is consulted."""


class ModelsConfig(_Section):
    cache_dir: Path | None = None
    """Cache root laid out as ModelScope lays it out. Empty: $MODELSCOPE_CACHE, else ~/.cache/modelscope."""
    profile: Profile = "vad+asr+punc"
    """Which models a deployment loads: ``vad`` (the VAD-only service), ``asr``, ``asr+punc`` or ``vad+asr+punc``."""
    asr: ModelSpec = ModelSpec(
        id="iic/speech_paraformer-large-vad-punc_asr_nat-zh-cn-16k-common-vocab8404-pytorch",
        revision="v2.0.4",
    )
    vad: ModelSpec = ModelSpec(id="iic/speech_fsmn_vad_zh-cn-16k-common-pytorch", revision="v2.0.4")
    punc: ModelSpec = ModelSpec(
        id="iic/punc_ct-transformer_zh-cn-common-vocab272727-pytorch", revision="v2.0.4"
    )

    def resolved_cache_dir(self) -> Path:
        if self.cache_dir is not None:
            return self.cache_dir
        env = os.environ.get("MODELSCOPE_CACHE")
        if env:
            return Path(env).expanduser()
        return Path.home() / ".cache" / "modelscope"


class DownloadConfig(_Section):
    endpoint: str | None = None
    """ModelScope endpoint or mirror. Empty: $MODELSCOPE_ENDPOINT, else ModelScope's default."""
    timeout_s: float = Field(60.0, gt=0)
    """Per-request network timeout for downloads."""
    retries: int = Field(3, ge=0, le=20)
    """How many times a failed download is retried (with back-off) before giving up."""


class RuntimeConfig(_Section):
    device: str = "auto"
    """``auto`` (cuda:0 when present, else cpu), ``cpu``, ``cuda`` or ``cuda:N``."""
    precision: Precision = "auto"
    """Numeric mode; ``auto`` picks the fastest mode known to be safe on the device."""
    threads: int | None = Field(None, ge=1)
    """Torch intra-op threads on CPU. Empty: the number of CPUs this process may use."""

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if value in ("auto", "cpu", "cuda") or (
            value.startswith("cuda:") and value[5:].isdigit()
        ):
            return value
        raise ValueError("device must be auto, cpu, cuda or cuda:N")


class VadConfig(_Section):
    max_segment_ms: int = Field(30000, ge=1000, le=60000)
    """Longest speech segment FSMN-VAD may emit; longer speech is cut. 30 s keeps batches small."""
    max_end_silence_ms: int | None = Field(None, ge=50, le=6000)
    """Silence that ends a segment. Empty: FunASR's dynamic schedule (shrinks as speech runs on)."""


class AsrConfig(_Section):
    batch_frames: int = Field(6000, ge=100)
    """Padded-frame budget of one ASR batch (60 ms frames: 6000 frames = 6 minutes of audio)."""
    max_batch_size: int = Field(32, ge=1)
    """Upper bound on segments in one batch, whatever the frame budget."""


class AudioConfig(_Section):
    max_duration_s: float = Field(4 * 3600, gt=0)
    """Longest audio accepted; longer files are refused before decoding."""
    max_file_mb: float = Field(2048, gt=0)
    """Largest upload accepted, in MiB."""


class OutputConfig(_Section):
    max_cue_ms: int = Field(7000, ge=500)
    """Longest subtitle cue; longer sentences are split at a comma or between characters."""
    max_cue_chars: int = Field(40, ge=4)
    """Most characters in one subtitle cue."""


class Settings(BaseSettings):
    """Everything the service reads from configuration."""

    model_config = SettingsConfigDict(
        env_prefix="ASR_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    models: ModelsConfig = ModelsConfig()
    download: DownloadConfig = DownloadConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    vad: VadConfig = VadConfig()
    asr: AsrConfig = AsrConfig()
    audio: AudioConfig = AudioConfig()
    output: OutputConfig = OutputConfig()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings merges YAML, environment and overrides itself, in that order, so that
        # explicit overrides can beat the environment; the class only validates the result.
        return (init_settings,)


def _absolutise(data: Any, base: Path, key: str = "") -> Any:
    """Make path-like YAML values relative to the YAML file, not to the working directory."""
    if isinstance(data, dict):
        return {k: _absolutise(v, base, k) for k, v in data.items()}
    if isinstance(data, str) and key in _PATH_KEYS and data and not os.path.isabs(data):
        return str((base / os.path.expanduser(data)).resolve())
    return data


_PATH_KEYS = {"cache_dir", "path", "state_dir", "temp_dir"}


def find_config_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to read: the explicit one, else $ASR_CONFIG, else ./config.yaml if present."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    default = Path("config.yaml")
    return default if default.is_file() else None


def load_settings(config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read the settings once. Raises ConfigError naming the file and the bad key.

    ``overrides`` (nested dicts, e.g. ``runtime={"device": "cpu"}``) win over everything.
    """
    path = find_config_file(config_file)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must be a mapping of sections")
        data = _absolutise(raw, path.resolve().parent)
    try:
        _deep_merge(data, EnvSettingsSource(Settings)())
        _deep_merge(data, overrides)
        return Settings(**data)
    except ValidationError as e:
        where = f"config file {path}" if path else "configuration"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"invalid {where} (or ASR_* environment): {problems}") from None


def _deep_merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value
