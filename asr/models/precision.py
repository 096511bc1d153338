"""Numeric modes (fp32, bf16, fp16, int8), chosen once per process, and the cached converted
checkpoints that keep start-up fast.

* **fp32**: FunASR's modules untouched: the output is token-identical to FunASR's.
* **int8**: on CPU, dynamic int8 for the Linear layers of the encoder and decoder (``torch.ao``
  quantize_dynamic: the fastest CPU int8 measured here; the timestamp BLSTM gains nothing from
  it and runs in bf16 where the CPU has bf16, see recognize.py); on CUDA,
  torchao ``Int8DynamicActivationInt8WeightConfig`` (``quantize_dynamic`` is CPU-only).
  The decoder's output projection and the CIF predictor stay fp32: they decide which token
  fires and when.
* **bf16** (CPUs with AVX512_BF16/AMX, and CUDA) and **fp16** (CUDA only): encoder and decoder
  weights in that type, the input cast to it (FunASR's own flags forget to cast BiCifParaformer's
  input), the CIF predictor and timestamps in fp32.

Reduced modes also swap FunASR's hand-written attention for ``scaled_dot_product_attention``
(one fused kernel instead of matmul, mask, softmax, mask, matmul).

Converting takes seconds (quantising 225 M parameters: ~4 s on two cores), so the result is
saved under ``storage.cache_dir/converted`` keyed by the source checkpoint, the mode and the
torch version, and later starts load it directly.
"""

from __future__ import annotations

import hashlib
import logging
import os
import types
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from asr.atomic import atomic_file
from asr.errors import ConfigError
from asr.models.files import ModelLocation, read_manifest

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
#: Bump when the conversion changes, so stale caches are not reused.
CONVERTER_VERSION = 5
_QUANTIZED_KEY = "__asr_quantized_modules__"


# ---- choosing a mode ------------------------------------------------------------------------


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_fast_int8() -> bool:
    return bool(_cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"}) and "x86" in torch.backends.quantized.supported_engines


def cpu_has_bf16() -> bool:
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


def resolve_precision(requested: str, device: torch.device) -> tuple[str, str]:
    """The mode to run and why. ``auto`` picks the fastest mode known to be safe on the device."""
    if requested not in ("auto", *PRECISIONS):
        raise ConfigError(f"precision must be auto, {', '.join(PRECISIONS)}; got {requested!r}")
    if device.type == "cuda":
        if requested == "auto":
            if torch.cuda.is_bf16_supported():
                return "bf16", "auto: CUDA device with bf16 (fp16 overflows in FunASR's SANM encoder, issue #1889)"
            return "fp32", "auto: CUDA device without bf16"
        return requested, "configured"
    if requested == "fp16":
        raise ConfigError("precision fp16 needs a CUDA device; on CPU use int8, bf16 or fp32")
    if requested == "bf16" and not cpu_has_bf16():
        raise ConfigError("precision bf16 needs a CPU with AVX512_BF16 or AMX (this one has neither); use int8 or fp32")
    if requested == "int8" and "x86" not in torch.backends.quantized.supported_engines and "fbgemm" not in torch.backends.quantized.supported_engines:
        raise ConfigError("precision int8 needs torch's x86/fbgemm quantized engine, which this build lacks")
    if requested != "auto":
        return requested, "configured"
    if cpu_has_fast_int8():
        return "int8", "auto: CPU with VNNI/AMX int8 (dynamic int8 Linear layers)"
    if cpu_has_bf16():
        return "bf16", "auto: CPU with AVX512_BF16/AMX"
    return "fp32", "auto: this CPU has no fast int8 or bf16"


def select_int8_engine() -> str:
    """The quantized-kernel engine for CPU int8. oneDNN's dynamic int8 Linear measured ~2x faster
    than fbgemm/x86 on an AVX512-VNNI CPU. Packed weights belong to one engine, so this is set
    before anything is quantised or loaded (and is part of the converted-checkpoint key)."""
    engines = torch.backends.quantized.supported_engines
    engine = "onednn" if "onednn" in engines else ("x86" if "x86" in engines else "fbgemm")
    torch.backends.quantized.engine = engine
    return engine


def compute_dtype(precision: str) -> torch.dtype:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


# ---- which modules change -------------------------------------------------------------------


def _converted_parts(module: torch.nn.Module, role: str) -> list[tuple[str, torch.nn.Module]]:
    """(name, submodule) pairs a reduced mode converts."""
    if role == "asr":
        return [(n, getattr(module, n)) for n in ("encoder", "decoder") if getattr(module, n, None) is not None]
    if role == "punc":
        return [("encoder", module.encoder)]
    return []


def _int8_cpu(module: torch.nn.Module, role: str) -> None:
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    for name, part in _converted_parts(module, role):
        spec: dict[Any, Any] = {torch.nn.Linear: default_dynamic_qconfig}
        if name == "decoder":
            spec["output_layer"] = None  # the token decision stays in fp32
        setattr(module, name, quantize_dynamic(part, spec, dtype=torch.qint8))


def _int8_cuda(module: torch.nn.Module, role: str) -> None:
    # Untested here (no GPU): torchao's int8 path for CUDA.
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    for name, part in _converted_parts(module, role):
        quantize_(part, Int8DynamicActivationInt8WeightConfig(),
                  filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear) and not fqn.endswith("output_layer"))


def _cast(module: torch.nn.Module, role: str, dtype: torch.dtype) -> None:
    if role != "asr":
        return  # punctuation is fed integer ids through FunASR's own loop; it stays fp32
    for _, part in _converted_parts(module, role):
        part.to(dtype)
        # LayerNorm keeps fp32 parameters: FunASR's fp32 masks hand it fp32 inputs at times,
        # and CPU layer_norm takes fp32 or bf16 inputs with fp32 parameters, not the reverse.
        for sub in part.modules():
            if isinstance(sub, torch.nn.LayerNorm):
                sub.float()


# ---- faster attention for reduced modes ---------------------------------------------------------


def _sanm_self_attention(self, x, mask, mask_shfit_chunk=None, mask_att_chunk_encoder=None):
    b, t, _ = x.shape
    q, k, v = torch.split(self.linear_q_k_v(x), self.h * self.d_k, dim=-1)
    fsmn = self.forward_fsmn(v, mask, mask_shfit_chunk)
    heads = [z.reshape(b, t, self.h, self.d_k).transpose(1, 2) for z in (q, k, v)]
    keep = None if mask is None else mask.reshape(b, 1, 1, -1).bool()
    out = F.scaled_dot_product_attention(*heads, attn_mask=keep)
    return self.linear_out(out.transpose(1, 2).reshape(b, t, self.h * self.d_k)) + fsmn


def _cross_attention(self, x, memory, memory_mask, ret_attn=False):
    if ret_attn:
        return type(self).forward(self, x, memory, memory_mask, ret_attn)
    b = x.size(0)
    q = self.linear_q(x).reshape(b, -1, self.h, self.d_k).transpose(1, 2)
    k, v = torch.split(self.linear_k_v(memory), self.h * self.d_k, dim=-1)
    k = k.reshape(b, -1, self.h, self.d_k).transpose(1, 2)
    v = v.reshape(b, -1, self.h, self.d_k).transpose(1, 2)
    keep = None if memory_mask is None else memory_mask.reshape(b, 1, 1, -1).bool()
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    return self.linear_out(out.transpose(1, 2).reshape(b, -1, self.h * self.d_k))


def use_fused_attention(module: torch.nn.Module) -> int:
    """Point FunASR's SANM attention modules at the fused kernel (per instance, not per class,
    so an fp32 model in the same process keeps FunASR's exact arithmetic)."""
    from funasr.models.sanm.attention import MultiHeadedAttentionCrossAtt, MultiHeadedAttentionSANM

    count = 0
    for sub in module.modules():
        if type(sub) is MultiHeadedAttentionSANM:
            sub.forward = types.MethodType(_sanm_self_attention, sub)
            count += 1
        elif type(sub) is MultiHeadedAttentionCrossAtt:
            sub.forward = types.MethodType(_cross_attention, sub)
            count += 1
    return count


# ---- converting, with a cache --------------------------------------------------------------------


def _cache_key(location: ModelLocation, role: str, precision: str, device: torch.device) -> str:
    source = location.directory / "model.pt"
    stat = source.stat()
    manifest = read_manifest(location.directory) or {}
    sha = manifest.get("files", {}).get("model.pt", {}).get("sha256", "")
    parts = [location.spec.id, location.spec.revision, role, precision, device.type, str(stat.st_size),
             str(stat.st_mtime_ns), sha, torch.__version__, torch.backends.quantized.engine, str(CONVERTER_VERSION)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:20]


def _quantized_layout(module: torch.nn.Module) -> dict[str, dict[str, Any]]:
    """Constructor arguments of every dynamically quantised module, to rebuild the skeleton."""
    import torch.ao.nn.quantized.dynamic as nnqd

    layout = {}
    for name, sub in module.named_modules():
        if type(sub) is nnqd.Linear:
            layout[name] = {"type": "Linear", "in": sub.in_features, "out": sub.out_features,
                            "bias": sub.bias() is not None}
    return layout


def _swap_in_skeletons(module: torch.nn.Module, layout: dict[str, dict[str, Any]]) -> None:
    import torch.ao.nn.quantized.dynamic as nnqd

    for name, spec in layout.items():
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        # Only Linear layers are quantised (the timestamp BLSTM stays float). Built 1x1 and resized:
        # the real weights are packed once, by load_state_dict; packing a full-size zero matrix
        # first would double the load time.
        new = nnqd.Linear(1, 1, bias_=spec["bias"], dtype=torch.qint8)
        new.in_features, new.out_features = spec["in"], spec["out"]
        setattr(parent, child, new)


def _load_quantized_state(module: torch.nn.Module, state: dict[str, Any], layout: dict[str, dict[str, Any]]) -> None:
    """``module.load_state_dict(state, strict=True)``, with the quantised layers loaded side by side.

    Loading a quantised Linear packs its int8 weight into the kernel's layout, and that packing is
    most of an int8 start (~4 s for Paraformer-large's 300 layers on two cores). One pack uses two
    OpenMP threads badly (slower than one here), but it releases the GIL, so one thread per CPU,
    each packing with one OpenMP thread, does the same work in a fraction of the time."""
    metadata = getattr(state, "_metadata", {})
    parts: dict[str, OrderedDict[str, Any]] = {}
    for name in layout:
        prefix = name + "."
        part = OrderedDict((k[len(prefix):], state.pop(k)) for k in [k for k in state if k.startswith(prefix)])
        # Quantised modules read their format version from the metadata: keep it per part.
        part._metadata = OrderedDict(  # type: ignore[attr-defined]
            (k[len(prefix):] if k != name else "", v) for k, v in metadata.items() if k == name or k.startswith(prefix)
        )
        parts[name] = part

    def load_part(name: str) -> None:
        module.get_submodule(name).load_state_dict(parts[name], strict=True, assign=True)

    workers = max(1, min(len(os.sched_getaffinity(0)), len(parts)))
    with ThreadPoolExecutor(workers, thread_name_prefix="int8-pack", initializer=torch.set_num_threads,
                            initargs=(1,)) as pool:
        list(pool.map(load_part, parts))  # list(): re-raises the first error
    # The rest strictly, with the loaded layers passed over (they would look for their keys again).
    loaded = [sub for name in parts for sub in module.get_submodule(name).modules()]
    for sub in loaded:
        sub._load_from_state_dict = lambda *args, **kwargs: None
    try:
        module.load_state_dict(state, strict=True, assign=True)
    finally:
        for sub in loaded:
            del sub._load_from_state_dict


def _save(path: Path, state: dict[str, Any]) -> None:
    try:
        with atomic_file(path) as f:
            torch.save(state, f)
        logger.info("saved the converted checkpoint to %s", path)
    except OSError as e:  # read-only or full disk: we still run, the next start converts again
        logger.warning("could not cache the converted checkpoint in %s: %s", path.parent, e)


def _hide_torch_quantized_notices() -> None:
    """torch 2.13 deprecates its quantized tensors (qint8 & co., pytorch issue 184982) in favour of
    torchao, and says so from inside torch on every start that runs CPU int8: when quantize_dynamic
    packs the weights (torch.ao.nn.quantized), and when a cached int8 checkpoint is unpickled
    (torch._utils, which trips torch's TypedStorage notice there too). Our calls cannot avoid them
    short of moving CPU int8 to torchao, a change with its own speed measurements; until then they
    are only noise in every log. Only these messages from torch's own modules are hidden. Set
    process-wide rather than in warnings.catch_warnings, which is not thread-safe (the models load
    in worker threads); set at each int8 load, not at import, so that an import inside someone
    else's catch_warnings cannot lose them. filterwarnings drops an identical filter first, so
    repeating it adds nothing."""
    warnings.filterwarnings(
        "ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor "
        r"creation functions .* are deprecated", category=UserWarning, module=r"torch\.",
    )
    warnings.filterwarnings("ignore", message=r"TypedStorage is deprecated", category=UserWarning,
                            module=r"torch\._utils")


def load_converted(
    module: torch.nn.Module,
    location: ModelLocation,
    precision: str,
    device: torch.device,
    cache_dir: Path | None,
    load_fp32: Callable[[torch.nn.Module], None],
) -> torch.nn.Module:
    """Give ``module`` (built with unfilled weights) its weights in ``precision``: from the converted
    cache when there is one, else by loading fp32, converting and caching the result."""
    role = location.role
    if precision == "fp32" or role not in ("asr", "punc") or (role == "punc" and precision != "int8"):
        load_fp32(module)
        return module
    if precision == "int8":
        _hide_torch_quantized_notices()
    path = cache_dir / f"{role}-{precision}-{_cache_key(location, role, precision, device)}.pt" if cache_dir else None
    if path is not None and path.is_file():
        try:
            state = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
            layout = state.pop(_QUANTIZED_KEY, {})
            _swap_in_skeletons(module, layout)
            _load_quantized_state(module, state, layout)
            logger.info("%s model: loaded the cached %s checkpoint %s", role, precision, path.name)
            return module
        except Exception as e:  # a damaged or foreign cache: rebuild it
            logger.warning("ignoring the converted checkpoint %s (%s); converting again", path, e)
            path.unlink(missing_ok=True)
            raise _RetryFromScratch() from e
    load_fp32(module)
    if precision == "int8":
        (_int8_cuda if device.type == "cuda" else _int8_cpu)(module, role)
    else:
        _cast(module, role, compute_dtype(precision))
    if path is not None and device.type == "cpu":
        state = module.state_dict()  # keeps its _metadata: quantized modules need their version
        state[_QUANTIZED_KEY] = _quantized_layout(module)
        _save(path, state)
    return module


class _RetryFromScratch(Exception):
    """The cached checkpoint was unusable after the module was partly changed: build again."""


def is_retry(error: BaseException) -> bool:
    return isinstance(error, _RetryFromScratch)
