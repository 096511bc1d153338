"""Offline Chinese speech recognition on FunASR's Paraformer-large, FSMN-VAD and CT-Transformer.

The public names load lazily, so ``import asr`` stays cheap (no torch, no FunASR).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# Torch's CPU threads are GNU OpenMP's, which spin 300 000 times at every barrier before they sleep.
# On a CPU that other processes keep busy, the spinning thread holds the core that the thread it
# waits for needs: a 60 s transcription took 20x its quiet time with two busy processes on two
# cores. 1 000 spins keep the quiet speed and bring that down to about 2x (docs/BENCHMARKS.md,
# "On a busy CPU"). libgomp reads this once, when torch loads it, so it is set here, before
# anything in the package imports torch; child processes inherit it. A value already set wins.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")

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
