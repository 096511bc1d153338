"""Prometheus metrics of the engine, served at ``GET /metrics``.

Two kinds of numbers:

* read at scrape time from the engine and its SQLite history (readiness, queue depth, workers,
  jobs by state, model load and warm-up time, live streams and their batching), so they are never stale;
* observed once per finished job through ``Engine.listeners`` (outcomes, audio seconds, RTF,
  per-stage and queue-wait latency histograms).

Each ServiceMetrics has a registry of its own, not prometheus_client's global one, so that
several engines in one process (tests) do not collide.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from asr.service.jobs import JobRecord, JobState

logger = logging.getLogger(__name__)

#: Stages of StageTimings observed per job (a stage that did not run is not observed).
STAGES = ("decode", "vad", "asr", "punc", "total")
_RTF_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
_SECONDS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)


class _EngineState(Collector):
    """Gauges read from the engine when Prometheus scrapes."""

    def __init__(self, engine: Any):
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        engine = self.engine
        status = engine.status()
        yield GaugeMetricFamily("asr_ready", "1 once the models are loaded and warmed, else 0",
                                value=1 if status["ready"] else 0)
        yield GaugeMetricFamily("asr_queue_depth", "Jobs waiting for a worker", value=status["queue_waiting"])
        yield GaugeMetricFamily("asr_queue_capacity", "Jobs that may wait before submits are refused (busy)",
                                value=status["queue_max_size"])
        workers = GaugeMetricFamily("asr_workers", "Worker threads by state", labels=["state"])
        states: dict[str, int] = {"idle": 0, "busy": 0}
        for worker in status["workers"]:
            states[worker["state"]] = states.get(worker["state"], 0) + 1
        for state, count in sorted(states.items()):
            workers.add_metric([state], count)
        yield workers
        jobs = GaugeMetricFamily("asr_jobs", "Jobs in the history by state", labels=["state"])
        counts = engine.store.counts()
        for state in JobState:
            jobs.add_metric([state.value], counts.get(state.value, 0))
        yield jobs
        yield GaugeMetricFamily("asr_model_load_seconds", "Time the models took to load at start",
                                value=engine.load_seconds)
        yield GaugeMetricFamily("asr_model_warmup_seconds", "Time the warm-up decode took at start",
                                value=engine.warmup_seconds)
        live = getattr(engine, "live", None)
        if live is not None:
            yield GaugeMetricFamily("asr_live_streams", "Live caption streams open now", value=live.streams)
            passes = CounterMetricFamily("asr_live_passes", "Passes of the streaming model, by how many streams "
                                         "each carried (the batching live streams get)", labels=["streams"])
            for streams, count in sorted(live.passes().items()):
                passes.add_metric([str(streams)], count)
            yield passes


class ServiceMetrics:
    """The metrics of one engine; ``render()`` is the body of ``GET /metrics``."""

    def __init__(self, engine: Any):
        self.registry = CollectorRegistry()
        self.registry.register(_EngineState(engine))
        ProcessCollector(registry=self.registry)  # RSS, CPU, open files: the soak-test numbers
        self.finished = Counter("asr_jobs_finished_total", "Jobs that ran and finished, by kind and outcome",
                                ["kind", "outcome"], registry=self.registry)
        self.failures = Counter("asr_job_errors_total", "Failed or interrupted jobs by error code",
                                ["code"], registry=self.registry)
        self.audio = Counter("asr_audio_seconds_total", "Seconds of audio in completed jobs",
                             ["kind"], registry=self.registry)
        self.rtf = Histogram("asr_job_rtf", "Real-time factor of completed jobs (processing s / audio s)",
                             ["kind"], buckets=_RTF_BUCKETS, registry=self.registry)
        self.stages = Histogram("asr_stage_seconds", "Wall seconds per pipeline stage of completed jobs",
                                ["kind", "stage"], buckets=_SECONDS_BUCKETS, registry=self.registry)
        self.queue_wait = Histogram("asr_job_queue_wait_seconds", "Seconds a job waited before a worker took it",
                                    ["kind"], buckets=_SECONDS_BUCKETS, registry=self.registry)
        engine.listeners.append(self.observe)

    def observe(self, job_id: str, record: JobRecord) -> None:
        """Engine listener: called when a job starts and when it finishes; counts the finish."""
        if not record.state.finished:
            return
        kind = record.kind.value
        self.finished.labels(kind, record.state.value).inc()
        if record.started_at is not None:
            self.queue_wait.labels(kind).observe(max(0.0, record.started_at - record.created_at))
        if record.state is not JobState.COMPLETED:
            if record.state in (JobState.FAILED, JobState.INTERRUPTED):
                self.failures.labels(record.error_code or "unknown").inc()
            return
        if record.duration_s:
            self.audio.labels(kind).inc(record.duration_s)
        if record.rtf is not None:
            self.rtf.labels(kind).observe(record.rtf)
        if record.timings is not None:
            for stage in STAGES:
                seconds = getattr(record.timings, f"{stage}_s")
                if seconds > 0:
                    self.stages.labels(kind, stage).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """(body, content type) in the Prometheus text format."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
