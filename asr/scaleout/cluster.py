"""Ray, the cluster side: joining one, planning what each engine actor asks for, and what every
actor does first (its settings, its loaded pipeline). Shared by the batch and the online service."""

from __future__ import annotations

import json
import logging
import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import ray

from asr.config import Settings
from asr.core.pipeline import build_pipeline
from asr.errors import ConfigError

logger = logging.getLogger(__name__)

#: CPUs one decode task asks Ray for. The actors must leave at least this much of the cluster
#: free, or no decode task is ever scheduled and the pipeline waits forever.
DECODE_CPUS = 0.5
#: How often Ray retries a file whose worker died while processing it (on a restarted worker).
TASK_RETRIES = 2


def connect(address: str | None = None) -> None:
    """Join a Ray cluster: ``None``/``auto`` an existing one (``ray start --head`` on this machine, or
    $RAY_ADDRESS), ``HOST:PORT`` or ``ray://...`` that one, ``local`` a private instance of this
    process. Does nothing when this process is already connected."""
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING}
    if address == "local":
        kwargs["include_dashboard"] = False
    try:
        ray.init(address=address or "auto", **kwargs)
    except ConnectionError as e:
        raise ConfigError(f"cannot reach a Ray cluster at {address or 'auto'}: {e}. Start one with "
                          "`ray start --head`, pass --ray HOST:6379, or --ray local for one on this machine") from None


@dataclass(frozen=True)
class Plan:
    """How many engine actors, and what each asks Ray for."""

    workers: int
    gpus_per_worker: float
    cpus_per_worker: float
    threads: int  # torch CPU threads in each actor

    def describe(self) -> str:
        device = f"{self.gpus_per_worker:g} GPU + " if self.gpus_per_worker else ""
        return f"{self.workers} worker(s), each {device}{self.cpus_per_worker:g} CPU ({self.threads} torch threads)"


def plan_resources(
    workers: int | None = None, gpus_per_worker: float | None = None, cpus_per_worker: float | None = None,
    *, decode_cpus: float = DECODE_CPUS, threads: int | None = None,
) -> Plan:
    """Fill in what was not given from the cluster's resources, and refuse a plan that cannot run."""
    resources = ray.cluster_resources()
    total_cpus, total_gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if total_gpus >= 1 else 0.0
    if gpus_per_worker < 0 or (gpus_per_worker and gpus_per_worker > total_gpus):
        raise ConfigError(f"--gpus-per-worker {gpus_per_worker:g}: the cluster has {total_gpus:g} GPU(s)")
    if workers is None:
        workers = max(1, int(total_gpus // gpus_per_worker)) if gpus_per_worker else max(1, int(total_cpus) // 4)
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    if cpus_per_worker is None:
        if gpus_per_worker:
            cpus_per_worker = min(1.0, (total_cpus - decode_cpus) / workers)
        else:
            cpus_per_worker = default_cpus_per_worker(total_cpus, workers, decode_cpus)
    if cpus_per_worker <= 0 or workers * cpus_per_worker + decode_cpus > total_cpus + 1e-9:
        decoding = f" + {decode_cpus:g} CPU for decoding" if decode_cpus else ""
        raise ConfigError(
            f"{workers} worker(s) × {cpus_per_worker:g} CPU{decoding} do not fit in the cluster's {total_cpus:g} "
            "CPUs; use fewer --workers or a smaller --cpus-per-worker"
        )
    return Plan(workers, gpus_per_worker, cpus_per_worker, threads or max(1, math.ceil(cpus_per_worker)))


@lru_cache(maxsize=4)
def settings_from(settings_json: str) -> Settings:
    return Settings(**json.loads(settings_json))


def worker_settings(settings_json: str, threads: int, gpus: float) -> Settings:
    """The driver's settings, with this actor's CPU threads (and the CPU when it got no GPU)."""
    settings = settings_from(settings_json)
    runtime: dict[str, Any] = {}
    if settings.runtime.threads is None:
        runtime["threads"] = threads
    if not gpus and settings.runtime.device == "auto":
        runtime["device"] = "cpu"
    if runtime:
        settings = settings.model_copy(update={"runtime": settings.runtime.model_copy(update=runtime)})
    return settings


def load_warm_pipeline(settings: Settings):
    pipeline = build_pipeline(settings)
    pipeline.warm_up()
    return pipeline



def default_cpus_per_worker(total_cpus: float, workers: int, decode_cpus: float) -> float:
    """CPU-only: the cluster's CPUs, less a share for the decode tasks, split between the workers."""
    share = (total_cpus - decode_cpus) / max(1, workers)
    return math.floor(share * 4) / 4  # quarters, so that the sum stays below the total


def bounded(method, retry_args: dict[str, Any], *args, **kwargs):
    """``method(*args, **kwargs, **retry_args)``: Ray Data retries a task whose worker died forever by
    default, so a file that kills its worker every time would never let the batch end. Ray 2.5x
    deprecates passing these; a Ray that refuses them gets its own (unbounded) retries."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return method(*args, **kwargs, **retry_args)
        except TypeError:
            logger.warning("this Ray does not take %s: a worker that dies is retried without limit", retry_args)
            return method(*args, **kwargs)


def first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line and not line.startswith(("File ", "Traceback"))]
    return (errors[-1] if errors else lines[-1] if lines else type(error).__name__)[:500]


