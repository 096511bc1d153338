"""Fault injection for the reliability tests, at named points that production code calls.

Nothing happens unless a test sets the point's environment variable; each point raises (or does)
exactly what the real fault would, so that everything around it runs for real.

| point (caller) | variable | faults |
|---|---|---|
| an ASR batch (asr.core.pipeline) | ``ASR_FAULT_INJECT`` | ``oom`` (batches of 2+), ``oom-always``, ``device-error`` |
| the decoder child (asr.core.decode_worker) | ``ASR_DECODER_FAULT`` | ``hang``, ``crash``, ``oom`` |
| a Ray batch worker, per input (asr.scaleout.ray_batch) | ``ASR_TEST_CRASH_ONCE`` | ``ID=MARKER``: exit abruptly on input ID, once (``ID=``: every time) |
"""

from __future__ import annotations

import logging
import os
import time

logger = logging.getLogger(__name__)

BATCH_ENV = "ASR_FAULT_INJECT"
DECODER_ENV = "ASR_DECODER_FAULT"
WORKER_CRASH_ENV = "ASR_TEST_CRASH_ONCE"


def batch_fault() -> str:
    """The fault set for ASR batches (read once, when a pipeline is built), or ""."""
    return os.environ.get(BATCH_ENV, "")


def strike_batch(fault: str, batch_size: int) -> None:
    """Raise what torch raises for ``fault`` on a batch of ``batch_size`` segments."""
    if not fault:
        return
    import torch

    if fault == "device-error":
        raise RuntimeError("CUDA error: an illegal memory access was encountered (injected)")
    if fault == "oom-always" or (fault == "oom" and batch_size > 1):
        raise torch.OutOfMemoryError(f"injected: out of memory on a batch of {batch_size}")


def strike_decoder() -> None:
    """In the decoder child: hang, crash or exhaust memory as a hostile file can make FFmpeg do."""
    fault = os.environ.get(DECODER_ENV, "")
    if fault == "hang":
        time.sleep(3600)
    elif fault == "crash":
        os.abort()
    elif fault == "oom":
        blocks = []
        while True:
            blocks.append(bytearray(256 * 1024 * 1024))


def strike_worker(item_id: str) -> None:
    """In a Ray batch worker: exit abruptly on the named input, as a segfault or the OOM killer would."""
    spec = os.environ.get(WORKER_CRASH_ENV)
    if not spec:
        return
    target, _, marker = spec.partition("=")
    if target != item_id:
        return
    if marker:  # without a marker file: every time
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    logger.error("fault %s: exiting abruptly on %s", WORKER_CRASH_ENV, item_id)
    os._exit(1)
