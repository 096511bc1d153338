"""The web app's queue in front of Ray actors (``asr serve --ray``).

``asr serve --ray`` runs the same web app and HTTP API as ``asr serve``, with the same queue and job
history, but each of the queue's workers is a Ray actor holding one loaded model set, placed by Ray
on any node of the cluster (one GPU each). docs/SCALE_OUT.md says why this is preferred to a Ray
Serve deployment of the API.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import ray

from asr.config import Settings
from asr.errors import AsrError, FatalDeviceError, JobCancelledError
from asr.scaleout.cluster import Plan, connect, first_line, load_warm_pipeline, plan_resources, worker_settings
from asr.service.health import ensure_port_free
from asr.types import TranscribeOptions

logger = logging.getLogger(__name__)


class _EngineWorker:
    """Ray actor behind one of the engine's queue workers: one loaded model set, one job at a time.

    Threaded (max_concurrency=2) so that ``progress`` and ``cancel`` are answered while ``run`` works."""

    def __init__(self, settings_json: str, threads: int, gpus: float):
        from asr.logs import setup_logging

        self.settings = worker_settings(settings_json, threads, gpus)
        setup_logging(self.settings.log_level)
        self.pipeline = load_warm_pipeline(self.settings)
        self.node = ray.get_runtime_context().get_node_id()
        self._state: tuple[str, float] = ("idle", 0.0)
        self._cancel = threading.Event()

    def info(self) -> dict[str, Any]:
        from asr.models.loading import describe
        from asr.scaleout.batch import worker_name

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
            raise AsrError(f"a Ray worker could not load the models: {first_line(e)}") from e

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
