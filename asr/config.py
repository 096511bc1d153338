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

Profile = Literal["vad", "asr", "asr+punc", "vad+asr+punc", "vad+asr+punc+spk", "vad+asr+punc+live"]
#: The one ASR model a deployment runs: the BiCif Paraformer-large, or SeACo-Paraformer (hotwords).
AsrModelChoice = Literal["paraformer", "seaco"]
Precision = Literal["auto", "fp32", "bf16", "fp16", "int8"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _optional_path(value: Any) -> Any:
    """``""`` means "not set" (as ``null`` does), and ``~`` is the user's home directory."""
    if isinstance(value, str):
        value = value.strip()
        return os.path.expanduser(value) if value else None
    if isinstance(value, Path):
        return value.expanduser()
    return value


class ModelSpec(_Section):
    """One pinned model: a ModelScope id and revision, or a local directory."""

    id: str
    """ModelScope model id, e.g. ``iic/speech_fsmn_vad_zh-cn-16k-common-pytorch``."""
    revision: str
    """Pinned revision (tag or commit); never a moving branch in production."""
    path: Path | None = None
    """A local model directory. When set it wins over the cache and no hub is consulted."""

    _check_path = field_validator("path", mode="before")(_optional_path)


class ModelsConfig(_Section):
    cache_dir: Path | None = None
    """Cache root laid out as ModelScope lays it out. Empty: $MODELSCOPE_CACHE, else ~/.cache/modelscope."""
    profile: Profile = "vad+asr+punc"
    """Which models a deployment loads: ``vad`` (the VAD-only service), ``asr``, ``asr+punc``, ``vad+asr+punc``,
    ``vad+asr+punc+spk`` (adds CAM++ for speaker labels) or ``vad+asr+punc+live`` (adds the streaming
    Paraformer, for live captions)."""
    asr_model: AsrModelChoice = "paraformer"
    """The ASR model: ``paraformer`` (models.asr, the default) or ``seaco`` (models.seaco: hotwords)."""
    asr: ModelSpec = ModelSpec(
        id="iic/speech_paraformer-large-vad-punc_asr_nat-zh-cn-16k-common-vocab8404-pytorch",
        revision="v2.0.4",
    )
    vad: ModelSpec = ModelSpec(id="iic/speech_fsmn_vad_zh-cn-16k-common-pytorch", revision="v2.0.4")
    punc: ModelSpec = ModelSpec(
        id="iic/punc_ct-transformer_zh-cn-common-vocab272727-pytorch", revision="v2.0.4"
    )
    seaco: ModelSpec = ModelSpec(
        id="iic/speech_seaco_paraformer_large_asr_nat-zh-cn-16k-common-vocab8404-pytorch", revision="v2.0.4"
    )
    """SeACo-Paraformer: a BiCif Paraformer with a bias encoder, for hotwords (``asr_model: seaco``)."""
    spk: ModelSpec = ModelSpec(id="iic/speech_campplus_sv_zh-cn_16k-common", revision="v2.0.2")
    """CAM++ speaker embeddings, for speaker labels (the ``+spk`` profile)."""
    online: ModelSpec = ModelSpec(
        id="iic/speech_paraformer-large_asr_nat-zh-cn-16k-common-vocab8404-online", revision="v2.0.4"
    )
    """The streaming Paraformer (ParaformerStreaming), for live captions (the ``+live`` profile)."""

    _check_cache_dir = field_validator("cache_dir", mode="before")(_optional_path)

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
    batch_frames: int | None = Field(None, ge=100)
    """Padded-frame budget of one ASR batch (60 ms frames). Empty: 1000 on CPU (measured fastest),
    8000 on CUDA; lower it if a GPU runs out of memory."""
    max_batch_size: int = Field(32, ge=1)
    """Upper bound on segments in one batch, whatever the frame budget."""


class SpeakersConfig(_Section):
    max_speakers: int = Field(16, ge=2, le=64)
    """Most speakers a request may ask for, and the clustering's upper bound when it decides alone."""
    label: str = "Speaker {n}"
    """Display name of speaker n (1-based) in subtitles and text, e.g. ``说话人 {n}``."""

    @field_validator("label")
    @classmethod
    def _check_label(cls, value: str) -> str:
        if "{n}" not in value:
            raise ValueError("label must contain {n}, the speaker's number")
        return value


class HotwordsConfig(_Section):
    file: Path | None = None
    """Hotwords for every request, one per line (UTF-8); a request's own hotwords are added to them."""
    max_count: int = Field(200, ge=1, le=2000)
    """Most hotwords one request may use, the deployment's file included."""
    max_chars: int = Field(16, ge=1, le=64)
    """Longest hotword, in characters."""

    _check_file = field_validator("file", mode="before")(_optional_path)


class TextConfig(_Section):
    itn: bool = True
    """Inverse text normalisation (一百二十三 → 123) when a request does not say; FunASR's runtime defaults it on."""


class AudioConfig(_Section):
    max_duration_s: float = Field(4 * 3600, gt=0)
    """Longest audio accepted; longer files are refused before decoding."""
    max_file_mb: float = Field(2048, gt=0)
    """Largest upload accepted, in MiB."""
    max_request_mb: float = Field(4096, gt=0)
    """Most bytes one request may upload, all its files together (the UI sends several at once), in MiB."""
    isolate_decoder: bool = True
    """Probe and decode in a child process with the limits below (a crash there fails one job only)."""
    decode_timeout_s: float = Field(900, gt=0)
    """Wall-clock limit for decoding one file."""
    decode_stall_s: float = Field(60, gt=0)
    """The decoder is stopped when it produces nothing for this long."""
    decoder_memory_mb: int = Field(2048, ge=256)
    """Address-space limit of the decoder process."""


class OutputConfig(_Section):
    max_cue_ms: int = Field(7000, ge=500)
    """Longest subtitle cue; longer sentences are split at a comma or between characters."""
    max_cue_chars: int = Field(40, ge=4)
    """Most characters in one subtitle cue."""


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    """Bind address. Keep loopback and reach it through an SSH tunnel (ssh -L 6006:127.0.0.1:6006 host)."""
    port: int = Field(6006, ge=1, le=65535)
    auth: list[str] = []
    """Optional logins as "user:password" (or set ASR_SERVER__AUTH='["user:pw"]'); empty: no login."""
    allowed_hosts: list[str] = []
    """Host names (or host:port) the service answers to, besides the loopback names and ``host``;
    any other Host header is refused (403), which stops DNS rebinding. Add the name users browse to
    when it is not localhost, e.g. a reverse proxy's asr.example.org."""
    allowed_origins: list[str] = []
    """Extra browser origins the API accepts (e.g. a reverse proxy's https://asr.example.org);
    same-origin requests and non-browser clients are always accepted."""
    root_path: str = ""
    """Set when a reverse proxy serves the app under a sub-path, e.g. /asr."""
    ui_path: Path | None = None
    """The web UI (this release's app.py) for ``asr serve``. Empty: the app.py beside the package, as in
    a checkout or an editable install; a regular install names it, e.g. /opt/asr/src/app.py."""
    delete_cache_s: tuple[int, int] = (3600, 24 * 3600)
    """Gradio's temp-file sweep: (every N s, files older than M s); M must exceed the longest wait + run."""
    metrics: bool = True
    """Serve Prometheus metrics at /metrics (behind the same logins as the API when ``auth`` is set)."""
    health_timeout_s: float = Field(5.0, gt=0, le=300)
    """How long each probe of the health check behind the systemd watchdog (the job database's
    write lock, the server's own /readyz) may wait before the check counts as failed."""

    login_max_failures: int = Field(5, ge=1, le=1000)
    """Failed logins (per user and per client address) before each further try must wait."""
    login_max_wait_s: float = Field(300, gt=0)
    """The longest wait the login back-off imposes (it doubles with every failure past the limit)."""

    _check_ui_path = field_validator("ui_path", mode="before")(_optional_path)

    @field_validator("auth")
    @classmethod
    def _check_auth(cls, value: list[str]) -> list[str]:
        for entry in value:
            user, sep, password = entry.partition(":")
            if not sep or not user or not password:
                raise ValueError('each auth entry must look like "user:password"')
        return value


class QueueConfig(_Section):
    max_size: int = Field(8, ge=1, le=1000)
    """Jobs that may wait; one more is refused at once with "busy: N jobs waiting"."""
    workers: int = Field(1, ge=1, le=16)
    """Workers, each owning one loaded model set (FunASR models are not re-entrant)."""


class LiveConfig(_Section):
    """Live captions over WebSocket (the ``vad+asr+punc+live`` profile)."""

    max_streams: int = Field(4, ge=1, le=256)
    """Live streams at once; one more is refused at once, with "busy"."""
    idle_timeout_s: float = Field(30, gt=0)
    """A stream that sends nothing for this long is closed."""
    max_frame_kb: int = Field(256, ge=2, le=16384)
    """Largest audio frame a client may send (FunASR's clients send 60 ms: 2 KB at 16 kHz)."""
    threads: int | None = Field(1, ge=1)
    """Torch threads of the thread that runs the streaming model for every stream (empty: runtime.threads).
    One: with the second passes' thread beside it, each has a core, and none spins waiting for the other
    (two streams on 2 cores: the same partial latency at 0.6 CPU-s per stream-second, against 1.07 with two)."""
    final_threads: int = Field(1, ge=1)
    """Torch threads of the thread that runs the second passes."""
    max_backlog_s: float = Field(10, gt=0, le=600)
    """Audio a stream may have waiting for the service (a file sent faster than real time, or a service that
    falls behind); past it the service stops reading from that stream until it catches up."""


class StorageConfig(_Section):
    state_dir: Path = Path("~/.local/state/asr-service")
    """SQLite job history and results (systemd: StateDirectory)."""
    cache_dir: Path = Path("~/.cache/asr-service")
    """Uploads in flight, per-job temp dirs and Gradio's temp files (systemd: CacheDirectory)."""
    keep_jobs: int = Field(5000, ge=1)
    """History keeps at most this many finished jobs; older ones are deleted."""
    keep_days: float = Field(90, gt=0)
    """History deletes finished jobs older than this."""
    max_uploads_mb: float = Field(8192, gt=0)
    """Most space uploads may take at once (UI uploads kept for their jobs plus requests still
    streaming in), in MiB; an upload that would pass it is refused with 413."""
    ui_upload_ttl_s: float = Field(900, gt=0)
    """A UI upload is removed once its job has its own copy, or after this many seconds unused."""

    def state_path(self) -> Path:
        return self.state_dir.expanduser()

    def cache_path(self) -> Path:
        return self.cache_dir.expanduser()


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
    speakers: SpeakersConfig = SpeakersConfig()
    hotwords: HotwordsConfig = HotwordsConfig()
    text: TextConfig = TextConfig()
    server: ServerConfig = ServerConfig()
    queue: QueueConfig = QueueConfig()
    live: LiveConfig = LiveConfig()
    storage: StorageConfig = StorageConfig()
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


_PATH_KEYS = {"cache_dir", "path", "state_dir", "ui_path", "file"}


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
        except OSError as e:  # a directory, no permission, ...
            raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"config file {path} is not UTF-8 text: {e}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must be a mapping of sections")
        bad_keys = [k for k in raw if not isinstance(k, str)]
        if bad_keys:
            raise ConfigError(f"config file {path}: keys must be names, not {bad_keys!r}")
        # A section whose keys are all commented out reads as null: it means "all defaults".
        raw = {k: v for k, v in raw.items() if not (v is None and k in _SECTIONS)}
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


#: Top-level keys that hold a section (a mapping), not a single value.
_SECTIONS = frozenset(
    name for name, f in Settings.model_fields.items()
    if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)
)


def _deep_merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value
