"""Build the pinned FunASR models from local directories, once, with no network.

We construct FunASR's own model classes from each directory's ``config.yaml`` instead of
going through ``AutoModel``: no hub look-up, no update check, no remote code, and no
random initialisation (modules are built with their weights left unfilled, and the
checkpoint is memory-mapped and assigned in place). A checkpoint that does not cover every parameter
is an error, never a silently untrained model.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from asr.config import Settings
from asr.errors import ConfigError, ModelError, ModelIncompleteError
from asr.models.files import CHECKPOINT_NAMES, FIX_HINT, ModelLocation, ModelRole, locate_all
from asr.models.funasr_import import import_registered, registry
from asr.models.precision import is_retry, load_converted, resolve_precision, select_int8_engine, use_fused_attention

logger = logging.getLogger(__name__)

#: Fields of config.yaml that name registry classes to import.
_CLASS_FIELDS = ("model", "encoder", "decoder", "predictor", "frontend", "tokenizer")
#: Sub-module sections passed to the model class next to model_conf.
_MODULE_SECTIONS = ("encoder", "encoder_conf", "decoder", "decoder_conf", "predictor", "predictor_conf",
                    "seaco_decoder", "seaco_decoder_conf")


@dataclass
class LoadedModel:
    """One model ready for inference. Not thread-safe: one worker owns a ModelSet."""

    role: ModelRole
    location: ModelLocation
    module: torch.nn.Module
    config: dict[str, Any]
    frontend: Any = None
    tokenizer: Any = None
    parameters: int = 0
    """Parameter count of the architecture (before any quantisation packs them away)."""


@dataclass
class ModelSet:
    """Everything one worker needs, loaded once."""

    device: torch.device
    precision: str
    precision_reason: str = ""
    asr: LoadedModel | None = None
    vad: LoadedModel | None = None
    punc: LoadedModel | None = None
    spk: LoadedModel | None = None
    """CAM++ speaker embeddings (the ``+spk`` profile)."""
    online: LoadedModel | None = None
    """The streaming Paraformer, for live captions (the ``+live`` profile); always fp32 for now."""
    load_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def uses_test_models(self) -> bool:
        return any(m.location.is_test_model for m in self.models())

    def models(self) -> list[LoadedModel]:
        return [m for m in (self.vad, self.asr, self.punc, self.spk, self.online) if m is not None]


def resolve_device(setting: str) -> torch.device:
    """``auto`` is cuda:0 when a GPU is visible, else the CPU; asking for CUDA without one is an error."""
    if setting == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if setting.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"runtime.device is {setting!r} but this machine has no usable CUDA device "
                "(torch.cuda.is_available() is False); set runtime.device to auto or cpu"
            )
        device = torch.device("cuda:0" if setting == "cuda" else setting)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"runtime.device {setting!r}: only {torch.cuda.device_count()} CUDA device(s)")
        return device
    return torch.device("cpu")


def configure_threads(settings: Settings) -> int:
    """Set torch's CPU thread count once for the process (FunASR would reset it to 4 per call)."""
    threads = settings.runtime.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    return threads


def _read_config(location: ModelLocation) -> dict[str, Any]:
    path = location.directory / "config.yaml"
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ModelError(f"{location.role} model {location.spec.id}: cannot read {path}: {e}") from None
    if not isinstance(config, dict) or "model" not in config:
        raise ModelError(
            f"{location.role} model {location.spec.id}: {path} has no 'model:' entry; it is not a "
            f"FunASR 1.x model directory (pin a v2.x revision). To fix: {FIX_HINT}."
        )
    return config


def _token_file(directory: Path) -> Path | None:
    for name in ("tokens.json", "tokens.txt"):
        if (directory / name).is_file():
            return directory / name
    return None


def _build_tokenizer(config: dict[str, Any], location: ModelLocation) -> Any:
    tokens = _token_file(location.directory)
    if config.get("tokenizer") is None or tokens is None:
        return None
    conf = copy.deepcopy(config.get("tokenizer_conf") or {})
    conf["token_list"] = str(tokens)
    seg_dict = location.directory / "seg_dict"
    if seg_dict.is_file():
        conf["seg_dict"] = str(seg_dict)
    return registry().tokenizer_classes[config["tokenizer"]](**conf)


def _build_frontend(config: dict[str, Any], location: ModelLocation) -> Any:
    if config.get("frontend") is None:
        return None
    conf = copy.deepcopy(config.get("frontend_conf") or {})
    cmvn = location.directory / "am.mvn"
    if cmvn.is_file():
        conf["cmvn_file"] = str(cmvn)
    # Dither adds random noise to features: useful in training, only nondeterminism at inference.
    conf["dither"] = 0.0
    return registry().frontend_classes[config["frontend"]](**conf)


def _model_kwargs(config: dict[str, Any], tokenizer: Any, frontend: Any, extra: dict[str, Any]) -> dict[str, Any]:
    kwargs = copy.deepcopy(config.get("model_conf") or {})
    for key in _MODULE_SECTIONS:
        if key in config:
            kwargs[key] = copy.deepcopy(config[key])
    # Training-only augmentation: never built for inference.
    kwargs.pop("specaug", None)
    if tokenizer is not None:
        kwargs["vocab_size"] = len(tokenizer.token_list)
    if frontend is not None and hasattr(frontend, "output_size"):
        kwargs["input_size"] = frontend.output_size()
    kwargs.update(extra)
    return kwargs


@contextlib.contextmanager
def _no_random_init() -> Iterator[None]:
    """Build modules without filling their weights: the checkpoint replaces every one of them
    (strictly checked), so random initialisation of 225 M parameters (~4 s) is wasted work.
    Uninitialised CPU tensors cost nothing until touched, and unlike the meta device this needs
    no lazy import of torch's meta kernels (~1 s on first use)."""
    names = [n for n in dir(torch.nn.init) if n.endswith("_") and not n.startswith("_")]
    saved = {n: getattr(torch.nn.init, n) for n in names}
    for name in names:
        setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(torch.nn.init, name, function)


def _unwrap_checkpoint(state: Any) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_weights(module: torch.nn.Module, location: ModelLocation) -> None:
    path = location.directory / CHECKPOINT_NAMES[location.role]
    try:
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as e:  # a truncated or foreign file; torch raises many types
        raise ModelIncompleteError(
            f"{location.role} model {location.spec.id}: {path} cannot be read ({e}). To fix: {FIX_HINT}."
        ) from None
    state = _unwrap_checkpoint(state)
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or wrong:
        detail = f"missing {missing[:5]}" if missing else f"shape mismatch in {wrong[:5]}"
        raise ModelIncompleteError(
            f"{location.role} model {location.spec.id}: {path.name} does not match config.yaml "
            f"({detail}{' ...' if len(missing) + len(wrong) > 5 else ''}). Refusing to run a partly "
            f"untrained model. To fix: {FIX_HINT}."
        )
    unused = [k for k in state if k not in expected]
    if unused:
        logger.debug("%s: %d checkpoint entries not used at inference", location.role, len(unused))
    module.load_state_dict({k: state[k] for k in expected}, strict=True, assign=True)


def _build(
    location: ModelLocation,
    extra: dict[str, Any] | None = None,
    precision: str = "fp32",
    device: torch.device = torch.device("cpu"),
    convert_cache: Path | None = None,
) -> LoadedModel:
    config = _read_config(location)
    import_registered(*(config.get(f) for f in _CLASS_FIELDS if isinstance(config.get(f), str)))
    classes = registry().model_classes
    if config["model"] not in classes:
        raise ModelError(
            f"{location.role} model {location.spec.id}: FunASR {config['model']!r} is not available in "
            "this FunASR version; upgrade funasr or pin a model it supports"
        )
    tokenizer = _build_tokenizer(config, location)
    frontend = _build_frontend(config, location)
    kwargs = _model_kwargs(config, tokenizer, frontend, extra or {})
    jieba_dict = location.directory / "jieba_usr_dict"
    if jieba_dict.is_file():
        kwargs["jieba_usr_dict"] = str(jieba_dict)
    def build_uninitialised() -> torch.nn.Module:
        with _no_random_init():
            return classes[config["model"]](**kwargs)

    def load_fp32(m: torch.nn.Module) -> None:
        _load_weights(m, location)

    skeleton = build_uninitialised()
    parameters = sum(p.numel() for p in skeleton.parameters())
    try:
        module = load_converted(skeleton, location, precision, device, convert_cache, load_fp32)
    except Exception as e:
        if not is_retry(e):
            raise
        module = load_converted(build_uninitialised(), location, precision, device, convert_cache, load_fp32)
    if precision != "fp32" and location.role in ("asr", "punc"):
        use_fused_attention(module)
    module.eval()
    if location.is_test_model:
        logger.warning(
            "%s model in %s has RANDOM WEIGHTS (a test model): its output is meaningless",
            location.role, location.directory,
        )
    return LoadedModel(location.role, location, module, config, frontend, tokenizer, parameters)


def load_models(settings: Settings, device: torch.device | None = None) -> ModelSet:
    """Locate, check and load every model of the configured profile."""
    started = time.perf_counter()
    locations = locate_all(settings)  # fails fast, before any slow work
    device = device or resolve_device(settings.runtime.device)
    precision, why = resolve_precision(settings.runtime.precision, device)
    if precision == "int8" and device.type == "cpu":
        why += f"; quantized engine {select_int8_engine()}"
    convert_cache = settings.storage.cache_path() / "converted"
    configure_threads(settings)
    vad_extra = {"max_single_segment_time": settings.vad.max_segment_ms}
    if settings.vad.max_end_silence_ms is not None:
        vad_extra["max_end_silence_time"] = settings.vad.max_end_silence_ms
    loaded: dict[str, LoadedModel] = {}
    for role, location in locations.items():
        t0 = time.perf_counter()
        model = _build(location, vad_extra if role == "vad" else None, precision, device, convert_cache)
        # VAD stays on the CPU: the FSMN is 0.4 M parameters driven by a per-frame Python loop,
        # so a GPU would only add transfers. The streaming Paraformer goes where the ASR model goes,
        # in fp32 whatever the precision (load_converted converts only the asr and punc roles).
        model.module.to(device if role != "vad" else torch.device("cpu"))
        loaded[role] = model
        logger.info(
            "loaded %s model %s@%s (%.1f M params) from %s in %.2f s",
            role, location.spec.id, location.spec.revision, model.parameters / 1e6,
            location.directory, time.perf_counter() - t0,
        )
    models = ModelSet(
        device=device,
        precision=precision,
        precision_reason=why,
        asr=loaded.get("asr"),
        vad=loaded.get("vad"),
        punc=loaded.get("punc"),
        spk=loaded.get("spk"),
        online=loaded.get("online"),
        load_seconds=time.perf_counter() - started,
    )
    logger.info("models ready on %s, precision %s (%s), in %.2f s", device, precision, why, models.load_seconds)
    return models


def describe(models: ModelSet) -> dict[str, Any]:
    """What `asr info` and the System tab show."""
    return {
        "device": str(models.device),
        "precision": models.precision,
        "precision_reason": models.precision_reason,
        "load_seconds": round(models.load_seconds, 3),
        "test_models": models.uses_test_models,
        "models": {
            m.role: {
                "id": m.location.spec.id,
                "revision": m.location.spec.revision,
                "path": str(m.location.directory),
                "class": m.config["model"],
                "parameters_m": round(m.parameters / 1e6, 2),
                "random_weights": m.location.is_test_model,
            }
            for m in models.models()
        },
    }
