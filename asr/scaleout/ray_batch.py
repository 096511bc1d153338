"""Batch transcription on Ray Data (``asr batch --ray``).

The driver lists the inputs and decides what is pending (``asr.scaleout.batch``), then Ray Data runs

    from_items(pending) → map(_decode_row)                 read + decode, in tasks (0.5 CPU each)
                        → map_batches(_Transcriber, ...)   an actor pool; each actor holds one loaded
                                                           model set (one GPU each, or N CPU threads)

and the driver consumes the results as they stream out, writing each input's files (atomically) and
its manifest entry. Actors that die are restarted by Ray and their tasks retried (a bounded number of
times); what a worker returns twice is recorded once, and what it never returns is recorded as failed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from asr import faults
from asr.config import Settings
from asr.errors import AsrError, FatalDeviceError
from asr.scaleout.batch import (
    DEFAULT_INLINE_MAX_S,
    BatchInput,
    BatchRun,
    BatchSpec,
    BatchSummary,
    decode_input,
    transcribe_input,
)
from asr.scaleout.cluster import (
    DECODE_CPUS,
    TASK_RETRIES,
    bounded,
    connect,
    first_line,
    load_warm_pipeline,
    plan_resources,
    settings_from,
    worker_settings,
)

logger = logging.getLogger(__name__)

_MAX_BLOCKS = 10_000


def _decode_row(row: dict[str, Any], settings_json: str, inline_max_s: float) -> dict[str, Any]:
    """Ray Data read task: probe and decode one file (or leave a long one to the actor)."""
    item = BatchInput(row["id"], row["path"], int(row["size"]), int(row["mtime_ns"]))
    audio, failure, decode_s = decode_input(item, settings_from(settings_json), inline_max_s)
    return {
        **item.row(),
        "inline": audio is not None,
        "audio": b"" if audio is None else audio.tobytes(),
        "failure": "" if failure is None else json.dumps(failure, ensure_ascii=False),
        "decode_s": float(decode_s),
    }


class _Transcriber:
    """Ray Data actor: one loaded model set, one file per call."""

    def __init__(self, settings_json: str, spec: dict[str, Any], threads: int, gpus: float):
        logging.getLogger("asr").setLevel(logging.WARNING)
        self.settings = worker_settings(settings_json, threads, gpus)
        self.spec = BatchSpec.from_dict(spec)
        self.pipeline = load_warm_pipeline(self.settings)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = []
        for i in range(len(batch["id"])):
            item = BatchInput(str(batch["id"][i]), str(batch["path"][i]), int(batch["size"][i]),
                              int(batch["mtime_ns"][i]))
            faults.strike_worker(item.id)
            if batch["failure"][i]:
                results.append(str(batch["failure"][i]))
                continue
            # a copy: the block's buffer is read-only, and torch wants to own what it wraps
            audio = np.frombuffer(batch["audio"][i], dtype=np.float32).copy() if batch["inline"][i] else None
            try:
                outcome = transcribe_input(self.pipeline, item, self.spec, self.settings, audio,
                                           float(batch["decode_s"][i]))
            except FatalDeviceError as e:
                # The device is unusable for this process: exit, Ray starts a fresh actor and retries.
                logger.critical("fatal device error on %s, restarting this worker: %s", item.id, e)
                logging.shutdown()
                os._exit(70)
            results.append(json.dumps(outcome, ensure_ascii=False))
        return {"result": np.array(results, dtype=object)}


def run_on_ray(
    items: Sequence[BatchInput], out_dir: Path, settings: Settings, spec: BatchSpec, *,
    address: str | None = None, workers: int | None = None, gpus_per_worker: float | None = None,
    cpus_per_worker: float | None = None, inline_max_s: float = DEFAULT_INLINE_MAX_S, progress: bool = True,
    runtime_env: dict[str, Any] | None = None,
) -> BatchSummary:
    """The batch on a Ray cluster (see the module docstring). Inputs and the model cache must be at
    the same paths on every node (a shared filesystem); outputs are written by this process."""
    import ray.data

    connect(address)
    with BatchRun(out_dir, items, spec, progress=progress) as run:
        if run.pending:
            plan = plan_resources(workers, gpus_per_worker, cpus_per_worker, threads=settings.runtime.threads)
            logger.info("Ray batch: %d file(s) pending, %s", len(run.pending), plan.describe())
            settings_json = json.dumps(settings.model_dump(mode="json"))
            context = ray.data.DataContext.get_current()
            saved = (context.enable_progress_bars, context.max_errored_blocks)
            # Our own bar counts files and audio; a block Ray gave up on is recorded as failed, not fatal.
            context.enable_progress_bars, context.max_errored_blocks = False, -1
            if not logger.isEnabledFor(logging.INFO):  # `asr batch` prints its own progress and summary
                logging.getLogger("ray.data").setLevel(logging.WARNING)
            try:
                ds = ray.data.from_items([item.row() for item in run.pending],
                                         override_num_blocks=min(len(run.pending), _MAX_BLOCKS))
                ds = bounded(ds.map, {"max_retries": TASK_RETRIES}, _decode_row,
                              fn_kwargs={"settings_json": settings_json, "inline_max_s": inline_max_s},
                              num_cpus=DECODE_CPUS)
                ds = bounded(
                    ds.map_batches, {"max_restarts": -1, "max_task_retries": TASK_RETRIES},
                    _Transcriber,
                    fn_constructor_kwargs={"settings_json": settings_json, "spec": spec.to_dict(),
                                           "threads": plan.threads, "gpus": plan.gpus_per_worker},
                    batch_size=1, batch_format="numpy",
                    # one file at a time per actor: a file that kills its actor takes no other file with it
                    compute=ray.data.ActorPoolStrategy(size=plan.workers, max_tasks_in_flight_per_actor=1),
                    num_cpus=plan.cpus_per_worker, num_gpus=plan.gpus_per_worker,
                    **({"runtime_env": runtime_env} if runtime_env else {}),
                )
                for row in ds.iter_rows():
                    run.record(json.loads(row["result"]))
            except ray.exceptions.RayError as e:
                raise AsrError(f"the Ray job failed (the manifest keeps what was done; run the same command "
                               f"again to resume): {first_line(e)}") from e
            finally:
                context.enable_progress_bars, context.max_errored_blocks = saved
    return run.summary
