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
    "build_pipeline",
    "load_models",
    "load_settings",
]

_EXPORTS = {
    "Pipeline": "asr.core.pipeline",
    "build_pipeline": "asr.core.pipeline",
    "Settings": "asr.config",
    "load_settings": "asr.config",
    "Transcript": "asr.types",
    "TranscribeOptions": "asr.types",
    "VadResult": "asr.types",
    "WRITERS": "asr.core.writers",
    "load_models": "asr.models.loading",
}

if TYPE_CHECKING:
    from asr.config import Settings, load_settings
    from asr.core.pipeline import Pipeline, build_pipeline
    from asr.core.writers import WRITERS
    from asr.models.loading import load_models
    from asr.types import TranscribeOptions, Transcript, VadResult


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'asr' has no attribute {name!r}")
