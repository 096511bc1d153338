"""The engine service with the real tiny models, real files and real SQLite.

A "gate" holds the single worker before it starts a job, so that queue states can be
observed without timing races; the job itself then runs the real pipeline.
"""

from __future__ import annotations

import sqlite3
import threading

import pytest

from asr.errors import EngineBusyError, EngineNotReadyError, NotAudioError
from asr.service.engine import DB_NAME, Engine
from asr.service.jobs import JobKind, JobState
from asr.types import TranscribeOptions


class GatedPipeline:
    """The real pipeline, but each job waits for the test to open the gate."""

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.models = pipeline.models
        self.gate = threading.Event()
        self.gate.set()
        self.started: list[str] = []

    def warm_up(self):
        self.pipeline.warm_up()

    def _wait(self, path):
        self.started.append(path.parent.name)
        assert self.gate.wait(60), "test gate never opened"

    def transcribe(self, path, options=TranscribeOptions(), progress=None, name=None):
        self._wait(path)
        return self.pipeline.transcribe(path, options, progress=progress, name=name)

    def detect_speech(self, path, progress=None, name=None):
        self._wait(path)
        return self.pipeline.detect_speech(path, progress=progress, name=name)


def make_settings(settings, tmp_path, **queue):
    return settings.model_copy(update={
        "storage": settings.storage.model_copy(update={"state_dir": tmp_path / "state", "cache_dir": tmp_path / "cache"}),
        "queue": settings.queue.model_copy(update=queue),
    })


@pytest.fixture
def gated(pipeline):
    return GatedPipeline(pipeline)


@pytest.fixture
def engine(settings, tmp_path, gated):
    engine = Engine(make_settings(settings, tmp_path, max_size=2), pipeline_factory=lambda s: gated)
    engine.start()
    yield engine
    gated.gate.set()
    engine.stop()
    engine.store.close()


def test_submit_before_start_is_refused(settings, tmp_path, speech_wav, gated):
    engine = Engine(make_settings(settings, tmp_path), pipeline_factory=lambda s: gated)
    with pytest.raises(EngineNotReadyError):
        engine.submit(speech_wav, "a.wav")


def test_jobs_run_in_order_and_results_are_stored(engine, gated, speech_wav):
    gated.gate.clear()
    ids = [engine.submit(speech_wav, f"file{i}.wav").id for i in range(3)]
    assert [engine.get(i).queue_position for i in ids[1:]] == [1, 2]
    gated.gate.set()
    records = [engine.wait(i, timeout=120) for i in ids]
    assert [r.state for r in records] == [JobState.COMPLETED] * 3
    assert gated.started == ids
    assert [r.started_at for r in records] == sorted(r.started_at for r in records)
    first = records[0]
    assert first.result.text and first.result.sentences and first.rtf > 0
    assert first.filename == "file0.wav" and first.duration_s == pytest.approx(first.result.duration_s)
    # the per-job upload copies are gone
    assert list((engine.settings.storage.cache_path() / "jobs").iterdir()) == []


def test_a_full_queue_refuses_at_once(engine, gated, speech_wav):
    gated.gate.clear()
    running = engine.submit(speech_wav, "running.wav")
    while not gated.started:  # the worker has taken it
        threading.Event().wait(0.01)
    waiting = [engine.submit(speech_wav, f"w{i}.wav") for i in range(2)]
    with pytest.raises(EngineBusyError, match="busy: 2 jobs waiting"):
        engine.submit(speech_wav, "one-too-many.wav")
    assert engine.status()["queue_waiting"] == 2
    gated.gate.set()
    for job in [running, *waiting]:
        assert engine.wait(job.id, timeout=120).state is JobState.COMPLETED


def test_cancel_a_queued_job(engine, gated, speech_wav):
    gated.gate.clear()
    first = engine.submit(speech_wav, "first.wav")
    second = engine.submit(speech_wav, "second.wav")
    cancelled = engine.cancel(second.id)
    assert cancelled.state is JobState.CANCELLED
    gated.gate.set()
    assert engine.wait(first.id, timeout=120).state is JobState.COMPLETED
    assert second.id not in gated.started
    assert engine.get(second.id).state is JobState.CANCELLED


def test_cancel_a_running_job_stops_it_at_the_next_stage(engine, gated, speech_wav):
    gated.gate.clear()
    job = engine.submit(speech_wav, "long.wav")
    while not gated.started:
        threading.Event().wait(0.01)
    engine.cancel(job.id)
    gated.gate.set()
    assert engine.wait(job.id, timeout=120).state is JobState.CANCELLED


def test_a_failed_job_does_not_stop_the_next(engine, gated, speech_wav, tmp_path):
    gated.gate.clear()
    bad = engine.submit(speech_wav, "becomes-corrupt.wav")
    good = engine.submit(speech_wav, "good.wav")
    # the upload copy is damaged after it passed the probe (e.g. a failing disk)
    job_input = next((engine.settings.storage.cache_path() / "jobs" / bad.id).iterdir())
    job_input.write_bytes(b"%PDF-1.4 not audio any more")
    gated.gate.set()
    failed = engine.wait(bad.id, timeout=120)
    assert failed.state is JobState.FAILED and "PDF" in failed.error and failed.error_code == "not_audio"
    assert failed.error.startswith("becomes-corrupt.wav:")  # the user's name, not the server's path
    assert engine.wait(good.id, timeout=120).state is JobState.COMPLETED


def test_bad_audio_is_refused_before_it_is_queued(engine, tmp_path, speech_wav):
    fake = tmp_path / "slides.wav"
    fake.write_bytes(b"%PDF-1.7\n" + b"x" * 2000)
    for _ in range(engine.settings.queue.max_size + 1):  # a refused file gives its place back
        with pytest.raises(NotAudioError, match="PDF"):
            engine.submit(fake, "slides.wav")
    assert engine.jobs() == []
    assert engine.wait(engine.submit(speech_wav, "good.wav").id, timeout=120).state is JobState.COMPLETED


def test_vad_jobs(engine, speech_wav):
    job = engine.submit(speech_wav, "speech.wav", kind=JobKind.VAD)
    record = engine.wait(job.id, timeout=120)
    assert record.state is JobState.COMPLETED and len(record.result.segments) >= 3


def test_crash_leaves_interrupted_jobs_and_results_survive_a_restart(settings, tmp_path, pipeline, speech_wav):
    first_run = GatedPipeline(pipeline)
    s = make_settings(settings, tmp_path, max_size=4)
    engine = Engine(s, pipeline_factory=lambda _: first_run)
    engine.start()
    done = engine.wait(engine.submit(speech_wav, "done.wav").id, timeout=120)
    assert done.state is JobState.COMPLETED
    first_run.gate.clear()
    running = engine.submit(speech_wav, "running.wav")
    queued = engine.submit(speech_wav, "queued.wav")
    while not first_run.started or first_run.started[-1] != running.id:
        threading.Event().wait(0.01)
    # "crash": the process is gone without stopping anything; a new one starts on the same dirs
    restarted = Engine(s, pipeline_factory=lambda _: GatedPipeline(pipeline))
    restarted.start()
    try:
        assert restarted.get(running.id).state is JobState.INTERRUPTED
        assert restarted.get(queued.id).state is JobState.INTERRUPTED
        assert "submit it again" in restarted.get(queued.id).error
        survivor = restarted.get(done.id)
        assert survivor.state is JobState.COMPLETED and survivor.result == done.result
        assert not any((s.storage.cache_path() / "jobs").iterdir())  # leftovers swept
        with sqlite3.connect(s.storage.state_path() / DB_NAME) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        first_run.gate.set()
        engine.stop()
        restarted.stop()


def test_history_is_pruned_to_the_retention_limit(settings, tmp_path, pipeline, speech_wav):
    s = make_settings(settings, tmp_path)
    s = s.model_copy(update={"storage": s.storage.model_copy(update={"keep_jobs": 2})})
    engine = Engine(s, pipeline_factory=lambda _: pipeline)
    engine.start()
    try:
        ids = [engine.wait(engine.submit(speech_wav, f"{i}.wav").id, timeout=120).id for i in range(4)]
        assert [r.id for r in engine.jobs()] == ids[:1:-1]
    finally:
        engine.stop()
