"""Offline Chinese speech recognition on FunASR's Paraformer-large, FSMN-VAD and CT-Transformer.

The public names load lazily, so ``import asr`` stays cheap (no torch, no FunASR).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Pipeline",
    "Settings",
    "Transcript",
    "TranscribeOptions",
    "VadResult",
    "WRITERS",
    "load_models",
    "load_settings",
]

_EXPORTS = {
    "Pipeline": "asr.pipeline",
    "Settings": "asr.config",
    "load_settings": "asr.config",
    "Transcript": "asr.types",
    "TranscribeOptions": "asr.types",
    "VadResult": "asr.types",
    "WRITERS": "asr.writers",
    "load_models": "asr.loading",
}

if TYPE_CHECKING:
    from asr.config import Settings, load_settings
    from asr.loading import load_models
    from asr.pipeline import Pipeline
    from asr.types import TranscribeOptions, Transcript, VadResult
    from asr.writers import WRITERS


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'asr' has no attribute {name!r}")
