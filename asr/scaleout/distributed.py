"""Scale-out on Ray: batch transcription with Ray Data, and the web app's queue in front of Ray actors.

The only module of the package that imports Ray (``pip install .[ray]``); nothing in the core
service imports this module.

**Batch** (:func:`run_on_ray`): the driver lists the inputs and decides what is pending
(``asr.scaleout.batch``), then Ray Data runs

    from_items(pending) → map(_decode_row)                 read + decode, in tasks (0.5 CPU each)
                        → map_batches(_Transcriber, ...)   an actor pool; each actor holds one loaded
                                                           model set (one GPU each, or N CPU threads)

and the driver consumes the results as they stream out, writing each input's files (atomically) and
its manifest entry. Actors that die are restarted by Ray and their tasks retried (a bounded number of
times); what a worker returns twice is recorded once, and what it never returns is recorded as failed.

**Online** (:func:`serve`): ``asr serve --ray`` runs the same web app and HTTP API as ``asr serve``,
with the same queue and job history, but each of the queue's workers is a Ray actor holding one
loaded model set, placed by Ray on any node of the cluster (one GPU each). docs/SCALE_OUT.md says why
this is preferred to a Ray Serve deployment of the API.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import threading
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import ray

from asr.scaleout.batch import (
    DEFAULT_INLINE_MAX_S,
    BatchInput,
    BatchRun,
    BatchSpec,
    BatchSummary,
    decode_input,
    transcribe_input,
)
from asr.config import Settings
from asr.errors import AsrError, ConfigError, FatalDeviceError, JobCancelledError
from asr.service.health import ensure_port_free
from asr.types import TranscribeOptions

logger = logging.getLogger(__name__)

#: CPUs one decode task asks Ray for. The actors must leave at least this much of the cluster
#: free, or no decode task is ever scheduled and the pipeline waits forever.
DECODE_CPUS = 0.5
#: How often Ray retries a file whose worker died while processing it (on a restarted worker).
TASK_RETRIES = 2
#: Test hook: "ID=MARKER_FILE" makes the worker that first gets input ID exit abruptly (as a
#: segfault or the OOM killer would), once: it creates MARKER_FILE first ("ID=": every time).
CRASH_HOOK_ENV = "ASR_TEST_CRASH_ONCE"
_MAX_BLOCKS = 10_000


# ---- connecting and planning ------------------------------------------------------------------------


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
            from asr.scaleout.batch import default_cpus_per_worker

            cpus_per_worker = default_cpus_per_worker(total_cpus, workers, decode_cpus)
    if cpus_per_worker <= 0 or workers * cpus_per_worker + decode_cpus > total_cpus + 1e-9:
        decoding = f" + {decode_cpus:g} CPU for decoding" if decode_cpus else ""
        raise ConfigError(
            f"{workers} worker(s) × {cpus_per_worker:g} CPU{decoding} do not fit in the cluster's {total_cpus:g} "
            "CPUs; use fewer --workers or a smaller --cpus-per-worker"
        )
    return Plan(workers, gpus_per_worker, cpus_per_worker, threads or max(1, math.ceil(cpus_per_worker)))


@lru_cache(maxsize=4)
def _settings_from(settings_json: str) -> Settings:
    return Settings(**json.loads(settings_json))


def _worker_settings(settings_json: str, threads: int, gpus: float) -> Settings:
    """The driver's settings, with this actor's CPU threads (and the CPU when it got no GPU)."""
    settings = _settings_from(settings_json)
    runtime: dict[str, Any] = {}
    if settings.runtime.threads is None:
        runtime["threads"] = threads
    if not gpus and settings.runtime.device == "auto":
        runtime["device"] = "cpu"
    if runtime:
        settings = settings.model_copy(update={"runtime": settings.runtime.model_copy(update=runtime)})
    return settings


def _load_pipeline(settings: Settings):
    from asr.models.loading import load_models
    from asr.core.pipeline import Pipeline

    pipeline = Pipeline(load_models(settings), settings)
    pipeline.warm_up()
    return pipeline


# ---- batch ---------------------------------------------------------------------------------------------


def _decode_row(row: dict[str, Any], settings_json: str, inline_max_s: float) -> dict[str, Any]:
    """Ray Data read task: probe and decode one file (or leave a long one to the actor)."""
    item = BatchInput(row["id"], row["path"], int(row["size"]), int(row["mtime_ns"]))
    audio, failure, decode_s = decode_input(item, _settings_from(settings_json), inline_max_s)
    return {
        **item.row(),
        "inline": audio is not None,
        "audio": b"" if audio is None else audio.tobytes(),
        "failure": "" if failure is None else json.dumps(failure, ensure_ascii=False),
        "decode_s": float(decode_s),
    }


def _crash_hook(item_id: str) -> None:
    spec = os.environ.get(CRASH_HOOK_ENV)
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
    logger.error("test hook %s: exiting abruptly on %s", CRASH_HOOK_ENV, item_id)
    os._exit(1)


class _Transcriber:
    """Ray Data actor: one loaded model set, one file per call."""

    def __init__(self, settings_json: str, spec: dict[str, Any], threads: int, gpus: float):
        logging.getLogger("asr").setLevel(logging.WARNING)
        self.settings = _worker_settings(settings_json, threads, gpus)
        self.spec = BatchSpec(tuple(spec["formats"]), spec["punctuate"], spec["config_key"])
        self.pipeline = _load_pipeline(self.settings)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = []
        for i in range(len(batch["id"])):
            item = BatchInput(str(batch["id"][i]), str(batch["path"][i]), int(batch["size"][i]),
                              int(batch["mtime_ns"][i]))
            _crash_hook(item.id)
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
                ds = _bounded(ds.map, {"max_retries": TASK_RETRIES}, _decode_row,
                              fn_kwargs={"settings_json": settings_json, "inline_max_s": inline_max_s},
                              num_cpus=DECODE_CPUS)
                ds = _bounded(
                    ds.map_batches, {"max_restarts": -1, "max_task_retries": TASK_RETRIES},
                    _Transcriber,
                    fn_constructor_kwargs={"settings_json": settings_json, "spec": asdict(spec),
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
                               f"again to resume): {_first_line(e)}") from e
            finally:
                context.enable_progress_bars, context.max_errored_blocks = saved
    return run.summary


def _bounded(method, retry_args: dict[str, Any], *args, **kwargs):
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


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line and not line.startswith(("File ", "Traceback"))]
    return (errors[-1] if errors else lines[-1] if lines else type(error).__name__)[:500]


# ---- online: the web app's queue in front of Ray actors ------------------------------------------------


class _EngineWorker:
    """Ray actor behind one of the engine's queue workers: one loaded model set, one job at a time.

    Threaded (max_concurrency=2) so that ``progress`` and ``cancel`` are answered while ``run`` works."""

    def __init__(self, settings_json: str, threads: int, gpus: float):
        from asr.logs import setup_logging

        self.settings = _worker_settings(settings_json, threads, gpus)
        setup_logging(self.settings.log_level)
        self.pipeline = _load_pipeline(self.settings)
        self.node = ray.get_runtime_context().get_node_id()
        self._state: tuple[str, float] = ("idle", 0.0)
        self._cancel = threading.Event()

    def info(self) -> dict[str, Any]:
        from asr.scaleout.batch import worker_name
        from asr.models.loading import describe

        return {"describe": describe(self.pipeline.models), "node": self.node, "worker": worker_name()}

    def run(self, kind: str, path: str, node: str, data: bytes | None, options: dict[str, Any], name: str | None):
        """("ok", result) | ("error", class name, message) | ("need_data",) when the file is not here."""
        if data is None and (node != self.node or not os.path.isfile(path)):
            return ("need_data",)
        self._cancel.clear()
        self._state = ("starting", 0.0)
        tmp = None
        try:
            source = path
            if data is not None:
                fd, tmp = tempfile.mkstemp(prefix="asr-ray-", suffix=Path(path).suffix[:9])
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                source = tmp

            def progress(stage: str, fraction: float) -> None:
                if self._cancel.is_set():
                    raise JobCancelledError("cancelled while running")
                self._state = (stage, fraction)

            if kind == "vad":
                result = self.pipeline.detect_speech(source, progress=progress, name=name)
            else:
                result = self.pipeline.transcribe(source, TranscribeOptions(**options), progress=progress, name=name)
            return ("ok", result)
        except AsrError as e:
            return ("error", type(e).__name__, str(e))
        finally:
            self._state = ("idle", 0.0)
            if tmp is not None:
                os.unlink(tmp)

    def progress(self) -> tuple[str, float]:
        return self._state

    def cancel(self) -> None:
        self._cancel.set()


class _ModelsView:
    """What ``asr.models.loading.describe`` reads from a ModelSet, rebuilt from a remote actor's describe()."""

    def __init__(self, info: dict[str, Any] | None):
        info = info or {}
        self.device = f"{info.get('device', 'starting')} (Ray actor)"
        self.precision = info.get("precision", "…")
        self.precision_reason = info.get("precision_reason", "")
        self.load_seconds = info.get("load_seconds", 0.0)
        self.uses_test_models = info.get("test_models", False)
        self._models = [
            SimpleNamespace(
                role=role, config={"model": m["class"]}, parameters=int(m["parameters_m"] * 1e6),
                location=SimpleNamespace(spec=SimpleNamespace(id=m["id"], revision=m["revision"]),
                                         directory=m["path"], is_test_model=m["random_weights"]),
            )
            for role, m in info.get("models", {}).items()
        ]

    def models(self) -> list[Any]:
        return self._models


class RayPipeline:
    """Stands in for a :class:`~asr.core.pipeline.Pipeline` in the engine: the work happens in a Ray actor.

    The engine's worker thread blocks in ``transcribe`` as it would on a local pipeline; meanwhile
    the actor's progress is polled into the engine's callback, and a cancellation is passed on."""

    POLL_S = 0.25

    def __init__(self, actor: Any):
        self._actor = actor
        self._info_ref = actor.info.remote()
        self._info: dict[str, Any] | None = None
        self._node = ray.get_runtime_context().get_node_id()

    @property
    def models(self) -> _ModelsView:
        if self._info is None:
            ready, _ = ray.wait([self._info_ref], timeout=0)
            if not ready:
                return _ModelsView(None)
            self._info = ray.get(self._info_ref)
        return _ModelsView(self._info["describe"])

    def warm_up(self) -> None:
        """The actor loads and warms up its models when it starts: wait for that."""
        try:
            self._info = ray.get(self._info_ref)
        except ray.exceptions.RayError as e:
            raise AsrError(f"a Ray worker could not load the models: {_first_line(e)}") from e

    def transcribe(self, source, options: TranscribeOptions = TranscribeOptions(), progress=None, name=None):
        return self._call("transcribe", source, asdict(options), progress, name)

    def detect_speech(self, source, progress=None, name=None):
        return self._call("vad", source, {}, progress, name)

    def _call(self, kind: str, source, options: dict[str, Any], progress, name):
        if not isinstance(source, (str, os.PathLike)):
            raise TypeError("a Ray worker takes a file path")
        path = os.path.abspath(os.fspath(source))
        reply = self._run(kind, path, None, options, progress, name)
        if reply[0] == "need_data":  # the actor is on another node: send the file itself
            reply = self._run(kind, path, ray.put(Path(path).read_bytes()), options, progress, name)
        if reply[0] == "ok":
            return reply[1]
        import asr.errors

        _, class_name, message = reply
        error_class = getattr(asr.errors, class_name, AsrError)
        if error_class is FatalDeviceError:
            ray.kill(self._actor, no_restart=False)  # a fresh process gets a fresh device context
            raise AsrError(f"the worker's device failed (the worker is being restarted): {message}")
        raise error_class(message)

    def _run(self, kind, path, data, options, progress, name):
        ref = self._actor.run.remote(kind, path, self._node, data, options, name)
        try:
            while not ray.wait([ref], timeout=self.POLL_S)[0]:
                if progress is None:
                    continue
                stage, fraction = ray.get(self._actor.progress.remote())
                if stage == "idle":
                    continue
                try:
                    progress(stage, fraction)
                except JobCancelledError:
                    self._actor.cancel.remote()
                    ray.wait([ref], timeout=60)  # let the actor stop before it gets the next job
                    raise
            return ray.get(ref)
        except ray.exceptions.RayActorError as e:
            raise AsrError("the Ray worker running this job died (Ray is restarting it); submit the file again") \
                from e


class RayPipelineFactory:
    """The engine's ``pipeline_factory``: each call starts one engine actor on the cluster."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.actors: list[Any] = []

    def __call__(self, settings: Settings) -> RayPipeline:
        actor_class = ray.remote(
            num_cpus=self.plan.cpus_per_worker, num_gpus=self.plan.gpus_per_worker,
            max_restarts=-1, max_task_retries=0, max_concurrency=2,
        )(_EngineWorker)
        settings_json = json.dumps(settings.model_dump(mode="json"))
        actor = actor_class.remote(settings_json, self.plan.threads, self.plan.gpus_per_worker)
        self.actors.append(actor)
        return RayPipeline(actor)

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors.clear()


def ray_engine(settings: Settings, plan: Plan):
    """An :class:`~asr.service.engine.Engine` whose workers are Ray actors (one per ``plan.workers``)."""
    from asr.service.engine import Engine

    settings = settings.model_copy(update={"queue": settings.queue.model_copy(update={"workers": plan.workers})})
    factory = RayPipelineFactory(plan)
    return Engine(settings, pipeline_factory=factory), factory, settings


def serve(settings: Settings, *, address: str | None = None, workers: int | None = None,
          gpus_per_worker: float | None = None, cpus_per_worker: float | None = None) -> int:
    """``asr serve --ray``: the web app and API of ``asr serve`` on this machine, its queue's workers on Ray."""
    from asr.service.notify import Notifier
    from asr.service.server import load_ui
    from asr.service.server import serve as serve_locally

    ui = load_ui(settings)  # before Ray starts: a missing UI is a config error, found at once
    notifier = Notifier.from_environment()  # read first: it also hides NOTIFY_SOCKET from children
    ensure_port_free(settings.server.host, settings.server.port)  # before Ray and the actors start
    connect(address)
    plan = plan_resources(workers, gpus_per_worker, cpus_per_worker, decode_cpus=0.0,
                          threads=settings.runtime.threads)
    notifier.status(f"starting {plan.workers} engine actor(s) on Ray")
    engine, factory, settings = ray_engine(settings, plan)
    logger.info("engine on Ray: %s", plan.describe())
    # uvicorn re-raises SIGTERM after its shutdown, to the previous handler: Ray's, which exits at
    # once; the server installs a no-op handler first, so the stop stays clean.
    return serve_locally(settings, ui, engine=engine, notifier=notifier, on_stop=factory.shutdown)
