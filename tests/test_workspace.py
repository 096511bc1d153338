"""The transcript workspace, package side: honest progress, edits kept with the job, history search
and delete, one ZIP of every output, the system's facts.

Real tiny models, real files, real SQLite; the API over real HTTP (its routes only, no UI).
"""

from __future__ import annotations

import threading

import pytest

from asr.core.pipeline import Pipeline
from asr.service.engine import Engine
from asr.service.jobs import JobKind, JobState
from asr.types import TranscribeOptions
from tests.test_engine import GatedPipeline, make_settings


class WatchedPipeline:
    """The real pipeline; after each progress report the test records the engine's view of the job,
    so that every step a client could have polled is seen, without polling."""

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.models = pipeline.models
        self.engine: Engine | None = None
        self.seen: dict[str, list] = {}

    def warm_up(self):
        self.pipeline.warm_up()

    def _watched(self, job_id, progress):
        views = self.seen.setdefault(job_id, [])

        def report(stage, fraction):
            progress(stage, fraction)
            views.append(self.engine.get(job_id))

        return report

    def transcribe(self, path, options=TranscribeOptions(), progress=None, name=None):
        return self.pipeline.transcribe(path, options, progress=self._watched(path.parent.name, progress), name=name)

    def detect_speech(self, path, progress=None, name=None):
        return self.pipeline.detect_speech(path, progress=self._watched(path.parent.name, progress), name=name)


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


@pytest.fixture
def watched_engine(settings, models, tmp_path):
    """One segment per batch, so that recognition reports several steps even on a short file."""
    s = make_settings(settings, tmp_path, max_size=2)
    s = s.model_copy(update={"asr": s.asr.model_copy(update={"max_batch_size": 1})})
    watched = WatchedPipeline(Pipeline(models, s))
    engine = Engine(s, pipeline_factory=lambda _: watched)
    watched.engine = engine
    engine.start()
    yield engine, watched
    engine.stop()
    engine.store.close()


class HeldStart:
    """Holds the worker between taking a job and recording its start (a slow disk's fsync,
    stretched) until ``go`` is set; at each start, what the engine says of the ``watch``ed jobs."""

    def __init__(self, engine, monkeypatch):
        self.engine = engine
        self.taken, self.go = threading.Event(), threading.Event()
        self.watch: list[str] = []
        self.at_start: list[dict] = []
        self._record_start = engine.store.mark_running
        monkeypatch.setattr(engine.store, "mark_running", self._mark_running)

    def _mark_running(self, job_id):
        self.at_start.append({i: self.engine.get(i) for i in self.watch})
        self.taken.set()
        assert self.go.wait(60), "test never let the job start"
        return self._record_start(job_id)


# ---- 1. honest progress ------------------------------------------------------------------------


#: What a job goes through, in order (the issue's): the engine's two, then the pipeline's.
ORDER = ("queued", "starting", "decode", "vad", "asr", "punc", "spk", "itn", "done")


def _rank(stage):
    return ORDER.index(stage)


def test_the_reported_stage_never_goes_back_while_vad_runs_ahead_of_recognition():
    """The calls the pipeline makes on a long file: VAD's next segments arrive between two rounds
    of recognition. What the user is told must not jump back to VAD."""
    from asr.core.pipeline import _Progress

    seen = []
    report = _Progress(lambda stage, fraction: seen.append((stage, fraction)), expected_s=600)
    calls = [("decode", 0), ("vad", 0), ("vad", 0), ("asr", 0), ("asr", 60_000), ("asr", 240_000),
             ("vad", 250_000), ("vad", 250_000), ("asr", 250_000), ("asr", 590_000), ("punc", None),
             ("spk", None), ("itn", None)]
    for stage, done_ms in calls:
        report(stage, done_ms)
    report.done()
    stages = [stage for stage, _ in seen]
    assert stages == ["decode", "vad", "vad", "asr", "asr", "asr", "asr", "asr", "asr", "asr", "punc", "spk",
                      "itn", "done"]
    fractions = [fraction for _, fraction in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_a_real_job_moves_only_forward_in_fine_steps_with_names_for_every_stage(watched_engine, speech_wav):
    engine, watched = watched_engine
    job = engine.submit(speech_wav, "talk.wav")
    record = engine.wait(job.id, timeout=120)
    assert record.state is JobState.COMPLETED
    views = watched.seen[job.id]
    stages = [v.stage for v in views]
    assert [_rank(s) for s in stages] == sorted(_rank(s) for s in stages)
    progress = [v.progress for v in views]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert all(v.state is JobState.RUNNING and v.queue_position is None for v in views)
    # one report per batch (here one per segment), not one per round of recognition
    during_asr = {v.progress for v in views if v.stage == "asr"}
    assert len(during_asr) > len(record.result.segments)
    from asr.service.stages import STAGE_NAMES, stage_name
    from asr.types import STAGES

    assert ORDER[2:] == STAGES and set(ORDER) == set(STAGE_NAMES)
    assert set(stages) <= set(STAGE_NAMES)
    assert (stage_name("asr"), stage_name("asr", "zh")) == ("recognition", "识别")
    assert (stage_name("vad"), stage_name("vad", "zh")) == ("VAD", "语音检测")


def test_the_time_left_comes_from_the_measured_rtf(watched_engine, speech_wav):
    engine, watched = watched_engine
    assert engine.recent_rtf() is None
    first = engine.wait(engine.submit(speech_wav, "first.wav").id, timeout=120)
    # before any job has finished, the job's own pace, once it has one
    own_pace = watched.seen[first.id]
    assert all(v.eta_s is None for v in own_pace if v.progress == 0)
    assert all(v.eta_s is not None and v.eta_s >= 0 for v in own_pace if 0 < v.progress < 1)
    assert engine.recent_rtf() == pytest.approx(first.rtf)
    assert engine.recent_rtf(JobKind.VAD) is None  # per kind: a VAD job is far quicker
    second = engine.wait(engine.submit(speech_wav, "second.wav").id, timeout=120)
    for view in watched.seen[second.id]:
        expected = (1 - view.progress) * first.duration_s * first.rtf
        assert view.eta_s == pytest.approx(expected, rel=1e-3, abs=0.051)  # rounded to 0.1 s
    assert second.eta_s is None  # finished: nothing left to estimate


def test_a_job_for_an_idle_worker_never_shows_a_queue_place(engine, speech_wav, monkeypatch):
    held = HeldStart(engine, monkeypatch)
    job = engine.submit(speech_wav, "first.wav")
    # not started yet (the state says so, as before), but not waiting behind anything either
    assert job.queue_position is None and job.state is JobState.QUEUED and job.stage == "starting"
    assert held.taken.wait(60)
    now = engine.get(job.id)  # the worker has it; the history has not recorded its start yet
    assert now.stage == "starting" and now.queue_position is None
    # jobs that do wait behind it are numbered, in the listing as in get()
    behind = [engine.submit(speech_wav, f"behind{i}.wav").id for i in range(2)]
    assert [engine.get(i).queue_position for i in behind] == [1, 2]
    assert all(engine.get(i).stage == "queued" and engine.get(i).eta_s is None for i in behind)
    listed = {r.id: r for r in engine.jobs()}
    assert [listed[i].queue_position for i in behind] == [1, 2] and listed[job.id].queue_position is None
    held.watch = behind
    held.go.set()
    assert [engine.wait(i, timeout=120).state for i in (job.id, *behind)] == [JobState.COMPLETED] * 3
    # as each one was taken: it had no place any more, and the one behind it moved up
    taken_second, taken_third = held.at_start[1:]
    assert taken_second[behind[0]].stage == "starting" and taken_second[behind[0]].queue_position is None
    assert taken_second[behind[1]].queue_position == 1
    assert taken_third[behind[1]].stage == "starting" and taken_third[behind[1]].queue_position is None


def test_a_job_cancelled_as_its_worker_takes_it_ends_cancelled(engine, speech_wav, monkeypatch):
    held = HeldStart(engine, monkeypatch)
    job = engine.submit(speech_wav, "changed-my-mind.wav")
    assert held.taken.wait(60)
    engine.cancel(job.id)
    held.go.set()
    record = engine.wait(job.id, timeout=120)
    assert record.state is JobState.CANCELLED and engine.store.get(job.id).state is JobState.CANCELLED
