"""The transcript workspace, package side: honest progress, edits kept with the job, history search
and delete, one ZIP of every output, the system's facts.

Real tiny models, real files, real SQLite; the API over real HTTP (its routes only, no UI).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from asr.core.pipeline import Pipeline
from asr.service.engine import OWN_PACE_AFTER, Engine
from asr.service.jobs import JobKind, JobState
from asr.types import TranscribeOptions
from tests.test_engine import engine, gated, make_settings  # noqa: F401  (fixtures)


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
    assert all(v.eta_s is None for v in own_pace if v.progress < OWN_PACE_AFTER)
    assert all(v.eta_s is not None and v.eta_s >= 0 for v in own_pace if OWN_PACE_AFTER <= v.progress < 1)
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


# ---- 2. edits saved with the job, the original kept ----------------------------------------------

#: The jobs table as the first release made it, before edits were kept.
OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    filename TEXT NOT NULL,
    owner TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    options TEXT NOT NULL DEFAULT '{}',
    duration_s REAL,
    error TEXT,
    error_code TEXT,
    timings TEXT,
    result TEXT
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
"""


def small_transcript():
    from asr.types import Sentence, SpeechSegment, TimedToken, Transcript

    tokens = (TimedToken("今", 0, 200), TimedToken("天", 200, 400, "。"))
    return Transcript(
        text="今天。好的。", duration_s=2.0, segments=(SpeechSegment(0, 2000),),
        sentences=(Sentence("今天。", 0, 400, tokens), Sentence("好的。", 1000, 1500,
                                                                (TimedToken("好", 1000, 1200), TimedToken("的", 1200, 1500, "。")))),
    )


def test_a_database_of_the_old_schema_gains_the_edits_and_keeps_its_jobs(tmp_path):
    import json
    import sqlite3

    from asr.service.jobs import JobStore

    path = tmp_path / "jobs.sqlite3"
    original = small_transcript()
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
        db.execute("INSERT INTO jobs (id, kind, state, filename, created_at, finished_at, duration_s, result) "
                   "VALUES ('old', 'transcribe', 'completed', 'old.wav', 1.0, 2.0, 2.0, ?)",
                   (json.dumps({"type": "Transcript", "data": original.to_dict()}, ensure_ascii=False),))
    store = JobStore(path)
    try:
        kept = store.get("old")
        assert kept.result == original and kept.edited is None and not kept.is_edited
        assert kept.current == original
        changed = original.__class__(**{**original.__dict__, "text": "明天。好的。"})
        store.save_edited("old", changed)
    finally:
        store.close()
    reopened = JobStore(path)  # and a database that has the columns already opens as it is
    try:
        again = reopened.get("old")
        assert again.edited == changed and again.is_edited and again.current == changed and again.result == original
        assert reopened.list()[0].is_edited and reopened.list()[0].edited is None  # listings carry no transcripts
    finally:
        reopened.close()


def test_apply_edits_changes_the_text_and_speakers_and_keeps_the_times():
    from asr.core.sentences import join_words
    from asr.service.edits import SentenceEdit, apply_edits

    original = small_transcript()
    edited = apply_edits(original, [SentenceEdit(0, "  明天见。 ", 0)], None, lambda i: f"Speaker {i + 1}")
    first = edited.sentences[0]
    assert first.text == "明天见。" and (first.start_ms, first.end_ms) == (0, 400) and first.speaker == 0
    # the recognised characters' times do not fit new words: the edited sentence has its span only
    assert first.tokens == () and edited.sentences[1] == original.sentences[1]
    assert edited.text == join_words(["明天见。", "好的。"]) and edited.speakers == ("Speaker 1",)
    named = apply_edits(edited, [SentenceEdit(1, speaker=1)], ["Alice", "Bob"], lambda i: f"Speaker {i + 1}")
    assert named.speakers == ("Alice", "Bob") and [s.speaker for s in named.sentences] == [0, 1]
    assert named.text == edited.text  # no text changed, none rebuilt
    same = apply_edits(original, [SentenceEdit(1, "好的。")], None, str)
    assert same.sentences[1].tokens == original.sentences[1].tokens  # unchanged text keeps its times


BAD_EDITS = [
    ({"sentences": [{"index": 99, "text": "x"}]}, "sentence 99 does not exist: the transcript's sentences are 0 to"),
    ({"sentences": [{"index": -1, "text": "x"}]}, "sentence -1 does not exist"),
    ({"sentences": [{"index": 0, "text": "   "}]}, "sentence 0: the text is empty"),
    ({"sentences": [{"index": 0, "text": "x" * 2001}]}, "sentence 0: the text has 2001 characters, more than the 2000"),
    ({"sentences": [{"index": 0, "text": "第一行\n第二行"}]}, "sentence 0: the text contains a control character (U+000A)"),
    ({"sentences": [{"index": 0, "speaker": 5}]}, "sentence 0: speaker 5 does not exist"),
    ({"sentences": [{"index": 0, "text": "a"}, {"index": 0, "text": "b"}]}, "sentence 0 is edited twice"),
    ({"sentences": [{"index": 0, "speaker": 0}], "speakers": [""]}, "speaker 0: the name is empty"),
    ({"sentences": [{"index": 0, "speaker": 0}], "speakers": ["n" * 41]}, "speaker 0: the name has 41 characters"),
    ({"speakers": ["Alice"]}, "1 speaker names for 0 speakers"),
    ({}, "the edit changes nothing"),
]


def _edits(body):
    from asr.service.edits import SentenceEdit

    return [SentenceEdit(e["index"], e.get("text"), e.get("speaker")) for e in body.get("sentences", [])]


@pytest.fixture(scope="module")
def api(settings, pipeline, tmp_path_factory):
    """The HTTP API's routes (no UI) over real HTTP, on an engine with the real pipeline."""
    import time

    import uvicorn

    from asr.service.api import create_api
    from tests.test_api import free_port

    s = make_settings(settings, tmp_path_factory.mktemp("api"), max_size=4)
    engine = Engine(s, pipeline_factory=lambda _: pipeline)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_api(engine, s), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    engine.start()
    yield engine, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    engine.stop()
    engine.store.close()


def finished_job(engine, speech_wav, name="talk.wav", **kwargs):
    record = engine.wait(engine.submit(speech_wav, name, **kwargs).id, timeout=120)
    assert record.state is JobState.COMPLETED
    return record


def test_edits_are_saved_with_the_job_and_exported_and_the_original_is_kept(api, speech_wav):
    import httpx

    from asr.core.writers import render

    engine, url = api
    job = finished_job(engine, speech_wav)
    original = job.result
    assert len(original.sentences) >= 2
    response = httpx.patch(f"{url}/v1/jobs/{job.id}/transcript", json={
        "sentences": [{"index": 0, "text": "大家好，会议开始。", "speaker": 0}, {"index": 1, "speaker": 1}],
        "speakers": ["Alice", "Bob"],
    })
    assert response.status_code == 200, response.text
    status = response.json()
    assert status["edited"] is True and status["edited_at"] >= job.finished_at and status["id"] == job.id
    # kept in the history: what a restarted service or a reopened job reads
    stored = engine.store.get(job.id)
    assert stored.result == original and stored.edited.sentences[0].text == "大家好，会议开始。"
    assert stored.edited.speakers == ("Alice", "Bob") and stored.current == stored.edited
    assert (stored.edited.sentences[0].start_ms, stored.edited.sentences[0].end_ms) == \
        (original.sentences[0].start_ms, original.sentences[0].end_ms)
    assert [r for r in engine.jobs() if r.id == job.id][0].is_edited
    srt = httpx.get(f"{url}/v1/jobs/{job.id}/result", params={"format": "srt"}).text
    assert "Alice: 大家好，会议开始。" in srt and "Bob: " in srt
    assert srt == render(stored.edited, "srt", engine.settings.output).body.decode()
    full = httpx.get(f"{url}/v1/jobs/{job.id}/result").json()
    assert full["sentences"][0]["text"] == "大家好，会议开始。" and full["speakers"] == ["Alice", "Bob"]
    first = httpx.get(f"{url}/v1/jobs/{job.id}/result", params={"format": "srt", "original": "true"}).text
    assert first == render(original, "srt", engine.settings.output).body.decode() and "Alice" not in first
    # later edits build on the earlier ones
    engine.edit_transcript(job.id, [], ["Alice Chen"])
    assert engine.get(job.id).current.speakers == ("Alice Chen", "Bob")
    reverted = httpx.delete(f"{url}/v1/jobs/{job.id}/transcript/edits")
    assert reverted.status_code == 200 and reverted.json()["edited"] is False
    assert engine.get(job.id).current == original and engine.get(job.id).edited is None


@pytest.fixture(scope="module")
def untouched_job(api, speech_wav):
    """One finished transcript for every bad edit: a refused edit changes nothing."""
    return finished_job(api[0], speech_wav, "edits.wav")


@pytest.mark.parametrize("body, message", BAD_EDITS)
def test_a_bad_edit_gets_the_same_specific_message_from_the_engine_and_the_api(api, untouched_job, body, message):
    import httpx

    from asr.errors import EditError

    engine, url = api
    job = untouched_job
    with pytest.raises(EditError) as raised:
        engine.edit_transcript(job.id, _edits(body), body.get("speakers"))
    assert message in str(raised.value)
    response = httpx.patch(f"{url}/v1/jobs/{job.id}/transcript", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "bad_edit" and error["message"] == str(raised.value)
    assert not engine.get(job.id).is_edited


def test_only_a_finished_transcript_of_ones_own_can_be_edited(api, speech_wav):
    import httpx

    from asr.errors import EditError, JobNotFoundError

    engine, url = api
    vad = finished_job(engine, speech_wav, "segments.wav", kind=JobKind.VAD)
    with pytest.raises(EditError, match="is a VAD job"):
        engine.edit_transcript(vad.id, _edits({"sentences": [{"index": 0, "text": "x"}]}))
    mine = finished_job(engine, speech_wav, "mine.wav", owner="alice")
    with pytest.raises(JobNotFoundError, match=f"no job with id '{mine.id}'"):
        engine.edit_transcript(mine.id, _edits({"sentences": [{"index": 0, "text": "x"}]}), owner="bob")
    assert engine.edit_transcript(mine.id, _edits({"sentences": [{"index": 0, "text": "x"}]}), owner="alice").is_edited
    missing = httpx.patch(f"{url}/v1/jobs/nope/transcript", json={"sentences": [{"index": 0, "text": "x"}]})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "job_not_found"
    malformed = httpx.patch(f"{url}/v1/jobs/{mine.id}/transcript", json={"sentences": [{"text": "no index"}]})
    assert malformed.status_code == 422 and "index" in malformed.json()["error"]["message"]
    too_big = httpx.patch(f"{url}/v1/jobs/{mine.id}/transcript", content=b"[" * (9 << 20),
                          headers={"content-type": "application/json"})
    assert too_big.status_code == 413


# ---- 3. history: search, delete, job type ----------------------------------------------------------


def test_the_history_is_searched_by_file_name_or_current_text_literally(api, speech_wav):
    import httpx

    engine, url = api
    meeting = finished_job(engine, speech_wav, "Weekly_MEETING 100%.wav")
    other = finished_job(engine, speech_wav, "Weekly-meeting 1000.wav")
    segments = finished_job(engine, speech_wav, "weekly_meeting segments.wav", kind=JobKind.VAD)

    def found(query, **kwargs):
        return {r.id for r in engine.jobs(limit=500, query=query, **kwargs)}

    assert found("weekly_meeting") == {meeting.id, segments.id}  # case-insensitive; "_" is no wildcard
    assert found("100%") == {meeting.id}  # nor is "%"
    assert {meeting.id, other.id} <= found("WEEKLY") and found("  ") >= {meeting.id, other.id, segments.id}
    # the text searched is the current one: an edit's words find the job, the words it replaced do not
    replaced = meeting.result.sentences[0].text
    engine.edit_transcript(meeting.id, _edits({"sentences": [{"index": 0, "text": "预算审批第三季度"}]}))
    assert found("预算审批") == {meeting.id}
    current = engine.get(meeting.id).current.text
    assert (meeting.id in found(replaced)) == (replaced.lower() in current.lower())
    assert other.id in found(replaced)  # the same words, not edited
    listed = httpx.get(f"{url}/v1/jobs", params={"q": "预算审批"}).json()["data"]
    assert [j["id"] for j in listed] == [meeting.id] and listed[0]["edited"] is True
    from asr.service.stages import kind_name

    assert listed[0]["kind"] == "transcribe" and kind_name("vad", "zh") == "语音检测"
    too_long = httpx.get(f"{url}/v1/jobs", params={"q": "x" * 201})
    assert too_long.status_code == 400 and "more than the 200" in too_long.json()["error"]["message"]


def test_a_finished_job_is_deleted_with_its_files_and_an_active_one_is_refused(api, speech_wav, tmp_path, monkeypatch):
    import httpx

    from asr.errors import JobNotFoundError

    engine, url = api
    downloads = tmp_path / "results"
    monkeypatch.setattr(engine, "result_dirs", [downloads])
    done, kept = finished_job(engine, speech_wav, "delete-me.wav"), finished_job(engine, speech_wav, "keep-me.wav")
    for job in (done, kept):
        (downloads / job.id).mkdir(parents=True)
        (downloads / job.id / "talk.srt").write_text("1\n", encoding="utf-8")
    # a plain DELETE still only cancels, as clients expect
    plain = httpx.delete(f"{url}/v1/jobs/{done.id}")
    assert plain.status_code == 409 and plain.json()["error"]["code"] == "already_finished"
    response = httpx.delete(f"{url}/v1/jobs/{done.id}", params={"purge": "true"})
    assert response.status_code == 200 and response.json() == {"id": done.id, "object": "asr.job.deleted",
                                                                "deleted": True}
    with pytest.raises(JobNotFoundError):
        engine.get(done.id)
    assert not (downloads / done.id).exists() and (downloads / kept.id / "talk.srt").exists()
    assert httpx.delete(f"{url}/v1/jobs/{done.id}", params={"purge": "true"}).status_code == 404
    assert done.id not in {r.id for r in engine.jobs(limit=500)}
    with pytest.raises(JobNotFoundError):
        engine.delete_job(kept.id, owner="someone-else")
    # an active job: cancel first
    held = HeldStart(engine, monkeypatch)
    active = engine.submit(speech_wav, "still-running.wav")
    assert held.taken.wait(60)
    try:
        from asr.errors import JobActiveError

        with pytest.raises(JobActiveError, match="cancel it first"):
            engine.delete_job(active.id)
        refused = httpx.delete(f"{url}/v1/jobs/{active.id}", params={"purge": "true"})
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "job_active"
    finally:
        held.go.set()
    assert engine.wait(active.id, timeout=120).state is JobState.COMPLETED
    engine.delete_job(active.id)


def test_the_server_tells_the_engine_where_the_ui_keeps_a_jobs_downloads(settings, tmp_path):
    import gradio as gr

    from asr.service.server import create_app

    s = make_settings(settings, tmp_path)
    engine = Engine(s)
    seen = []

    def ui(engine, settings, registry):
        seen.append(registry)
        return gr.Blocks()

    create_app(s, ui, engine)
    from asr.service.media import media_root

    assert engine.result_dirs == [seen[0].results_dir, media_root(s)]  # downloads, and playback audio
    engine.store.close()


# ---- 4. one ZIP of every output ---------------------------------------------------------------------


def test_one_zip_holds_every_result_in_every_format_under_unique_safe_names(settings):
    import io
    import zipfile

    from asr.core.writers import render, render_zip
    from asr.errors import RequestError
    from asr.types import SpeechSegment, VadResult

    transcript = small_transcript()
    segments = VadResult(segments=(SpeechSegment(0, 400),), duration_s=2.0)
    rendered = render_zip(
        [("audio", transcript), ("audio", transcript), ("AUDIO", transcript), ("../../etc/会议\x00记录", transcript),
         ("audio", segments), (".hidden", transcript)],
        ["srt", "txt", "csv"], settings.output, name="batch",
    )
    assert rendered.media_type == "application/zip" and rendered.filename == "batch.zip"
    archive = zipfile.ZipFile(io.BytesIO(rendered.body))
    assert archive.testzip() is None
    names = archive.namelist()
    assert names == [
        "audio.srt", "audio.txt", "audio (2).srt", "audio (2).txt", "AUDIO (3).srt", "AUDIO (3).txt",
        "_.._etc_会议_记录.srt", "_.._etc_会议_记录.txt",
        "audio.vad.txt", "audio.vad.csv",  # a VAD table has txt and csv, no srt: a name of its own
        "hidden.srt", "hidden.txt",
    ]
    assert len({n.casefold() for n in names}) == len(names) and not any("/" in n or "\\" in n for n in names)
    assert archive.read("audio (2).srt") == render(transcript, "srt", settings.output).body
    assert archive.read("audio.vad.csv") == render(segments, "csv", settings.output).body
    every = zipfile.ZipFile(io.BytesIO(render_zip([("a", transcript)], None, settings.output).body)).namelist()
    assert every == ["a.txt", "a.srt", "a.vtt", "a.json", "a.tsv"]
    with pytest.raises(RequestError, match="unknown format docx"):
        render_zip([("a", transcript)], ["docx"], settings.output)


def test_a_jobs_result_as_one_zip_from_the_api(api, speech_wav):
    import io
    import zipfile

    import httpx

    engine, url = api
    job = finished_job(engine, speech_wav, "会议 01.wav")
    engine.edit_transcript(job.id, _edits({"sentences": [{"index": 0, "text": "改过的第一句。"}]}))
    response = httpx.get(f"{url}/v1/jobs/{job.id}/result", params={"format": "zip"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert "filename*=UTF-8''%E4%BC%9A%E8%AE%AE%2001.zip" in response.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(archive.namelist()) == sorted(f"会议 01.{f}" for f in ("txt", "srt", "vtt", "json", "tsv"))
    assert "改过的第一句。" in archive.read("会议 01.srt").decode()  # the edited version


# ---- 5. system facts ---------------------------------------------------------------------------------


def test_the_status_has_the_facts_of_the_service_and_its_machine(api, speech_wav, settings, tmp_path):
    import importlib.metadata
    import os

    import httpx

    engine, url = api
    status = engine.status()
    assert status["version"] == importlib.metadata.version("asr-service")
    assert status["uptime_s"] >= 0 and status["logins_on"] is False
    counts = engine.store.counts()
    assert status["jobs_completed"] == counts.get("completed", 0) and status["jobs_failed"] == counts.get("failed", 0)
    assert status["jobs_by_state"]["completed"] == status["jobs_completed"]
    finished_job(engine, speech_wav, "one-more.wav")
    assert engine.status()["jobs_completed"] == status["jobs_completed"] + 1
    cpu = status["cpu"]
    assert cpu["count"] == os.cpu_count() and 1 <= cpu["usable"] <= cpu["count"] and len(cpu["load"]) == 3
    assert cpu["process_percent"] >= 0 and cpu["process_seconds"] > 0
    memory = status["memory"]
    assert 0 < memory["available_bytes"] <= memory["total_bytes"]
    assert 0 < memory["process_rss_bytes"] < memory["total_bytes"]
    assert status["gpu"] is None  # on CPU
    for place in ("state_dir", "cache_dir"):
        assert 0 <= status["disk"][place]["free_bytes"] <= status["disk"][place]["total_bytes"]
    served = httpx.get(f"{url}/v1/system").json()
    assert served["version"] == status["version"] and served["models"] == status["models"]
    assert set(served) >= {"uptime_s", "jobs_completed", "jobs_failed", "cpu", "memory", "gpu", "disk", "logins_on"}
    with_logins = Engine(make_settings(settings, tmp_path).model_copy(update={
        "server": settings.server.model_copy(update={"auth": ["alice:secret"]})}))
    try:
        assert with_logins.status()["logins_on"] is True
    finally:
        with_logins.store.close()


# ---- playback audio (asr.service.media and its route) ---------------------------------------------------


def test_playback_audio_is_the_decoded_samples_as_flac(settings, speech_wav, tmp_path):
    import soundfile as sf

    from asr.core.audio import load_audio
    from asr.service.media import write_playback

    path = write_playback(speech_wav, tmp_path / "job", settings.audio, "talk.wav")
    played, rate = sf.read(path, dtype="float32")
    assert sf.info(path).format == "FLAC" and rate == 16000
    decoded = load_audio(speech_wav)
    assert played.shape == decoded.shape  # so a sentence's start seeks to the audio it came from
    assert abs(played - decoded).max() <= 1 / 32768 + 1e-6  # 16-bit
    assert [p.name for p in (tmp_path / "job").iterdir()] == ["playback.flac"]


def test_a_file_that_does_not_decode_leaves_no_playback(settings, tmp_path):
    from asr.errors import AudioError
    from asr.service.media import write_playback

    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF" + b"\0" * 100)
    with pytest.raises(AudioError):
        write_playback(bad, tmp_path / "job", settings.audio, "bad.wav")
    assert list((tmp_path / "job").iterdir()) == []


def test_playback_of_deleted_jobs_is_removed_at_start(tmp_path):
    from asr.service.media import remove_orphans

    for job in ("kept", "gone"):
        (tmp_path / job).mkdir()
        (tmp_path / job / "playback.flac").write_bytes(b"x")
    assert remove_orphans(tmp_path, lambda job_id: job_id == "kept") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["kept"]


def test_playback_route_serves_ranges_to_the_jobs_owner_only(settings, tmp_path, pipeline, speech_wav):
    """Over real HTTP, with a real job. The user comes from a header here instead of Gradio's login cookie
    (the server passes the cookie's user in the same place); the browser tests use the real page."""
    import time

    import httpx
    import uvicorn

    from asr.service.api import create_api
    from asr.service.media import write_playback
    from asr.service.uploads import add_playback_route
    from tests.test_api import free_port

    engine = Engine(make_settings(settings, tmp_path), pipeline_factory=lambda s: pipeline)
    engine.start()
    try:
        job = engine.wait(engine.submit(speech_wav, "talk.wav", owner="alice").id, timeout=120)
        media = tmp_path / "media"
        write_playback(speech_wav, media / job.id, settings.audio, "talk.wav")
        app = create_api(engine, engine.settings)  # the API's error envelope, as in the server
        add_playback_route(app, engine, media, lambda request: request.headers.get("x-user"), logins_on=True)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        try:
            get = lambda user, job_id=job.id, **h: httpx.get(  # noqa: E731
                f"{url}/ui/media/{job_id}", headers={**({"x-user": user} if user else {}), **h}, trust_env=False)
            part = get("alice", Range="bytes=0-99")
            assert part.status_code == 206 and len(part.content) == 100 and part.headers["content-type"] == "audio/flac"
            assert get("alice").content == (media / job.id / "playback.flac").read_bytes()
            other = get("bob")  # someone else's job: as if there were none
            assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
            assert get("alice", job_id="0" * 32).status_code == 404
            assert get("alice", job_id="..%2F..%2Fetc").status_code == 404
            assert get(None).status_code == 401
        finally:
            server.should_exit = True
            thread.join(10)
    finally:
        engine.stop()


def test_the_workspace_calls_from_the_page_check_whose_job_it_is(settings, tmp_path, pipeline, speech_wav):
    """The page's own calls (Gradio's component_server: save an edit, rename, cancel) bypass the queue, so each
    checks the signed-in user: bob cannot edit or cancel alice's job; alice can edit hers."""
    import httpx

    from tests.test_api import Server

    s = make_settings(settings, tmp_path)
    s = s.model_copy(update={"server": s.server.model_copy(update={"auth": ["alice:alice-pass", "bob:bob-pass"]})})
    engine = Engine(s, pipeline_factory=lambda _: pipeline)
    with Server(s, engine) as srv:
        engine.start()
        job = engine.wait(engine.submit(speech_wav, "alice.wav", owner="alice").id, timeout=120)
        assert job.state is JobState.COMPLETED

        def signed_in(user: str) -> httpx.Client:
            client = httpx.Client(base_url=srv.url, trust_env=False, timeout=60)
            assert client.post("/login", data={"username": user, "password": f"{user}-pass"}).status_code == 200
            return client

        def call(client: httpx.Client, fn: str, data: list) -> dict:
            config = client.get("/config").json()
            board = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "workspace")
            answer = client.post("/gradio_api/component_server", json={
                "data": data, "component_id": board["id"], "fn_name": fn, "session_hash": "probe"})
            assert answer.status_code == 200, answer.text[:300]
            return answer.json()

        bob, alice = signed_in("bob"), signed_in("alice")
        assert "error" in call(bob, "save_sentence", [job.id, 0, "bob was here", None])
        assert "error" in call(bob, "rename_speaker", [job.id, 0, "Bob"])
        assert engine.get(job.id).edited is None
        assert call(alice, "save_sentence", [job.id, 0, "爱丽丝改的。", None]) == {"text": "爱丽丝改的。"}
        assert engine.get(job.id).current.sentences[0].text == "爱丽丝改的。"
        assert "error" in call(alice, "save_sentence", [job.id, 99999, "no such sentence", None])
        assert call(alice, "save_sentence", ["not", "enough"]) == {"error": call(alice, "save_sentence", [1])["error"]}
        anonymous = httpx.Client(base_url=srv.url, trust_env=False)
        assert anonymous.post("/gradio_api/component_server", json={
            "data": [job.id, 0, "x", None], "component_id": 1, "fn_name": "save_sentence",
            "session_hash": "probe"}).status_code in (401, 403)


def test_the_ui_text_has_no_unk_as_the_sentences_and_subtitles_have_none():
    """FunASR's text keeps <unk> where a token is unknown; the Text box showed it, the sentences did not."""
    from app import clean_text, sentences_text, transcript_text
    from asr.types import Sentence, Transcript

    sentences = (Sentence("我们<unk>开会。", 0, 900), Sentence("<unk>", 900, 1000), Sentence("好的。", 1000, 1500))
    transcript = Transcript(text="我们<unk>开会。<unk>好的。", sentences=sentences, segments=(), duration_s=1.5)
    assert transcript_text(transcript) == "我们开会。好的。"
    assert "<unk>" not in sentences_text(transcript)
    assert clean_text("the <unk> budget") == "the budget"


def test_a_batch_from_the_ui_gets_one_zip_of_every_file(settings, tmp_path, pipeline, speech_wav):
    import zipfile

    from tests.gradio_events import file_data, run_event
    from tests.gradio_events import upload as ui_upload
    from tests.test_api import Server

    s = make_settings(settings, tmp_path)
    engine = Engine(s, pipeline_factory=lambda _: pipeline)
    with Server(s, engine) as srv:
        engine.start()
        files = [file_data(ui_upload(srv.url, speech_wav, name)) for name in ("one.wav", "two.wav")]
        outcome = run_event(srv.url, "transcribe", [files, None, True, ["srt", "txt"], True, False, 0, ""])
        assert outcome.success, outcome
        downloads = [d["path"] if isinstance(d, dict) else d for d in outcome.output[3]]
        assert sorted(Path(p).name for p in downloads) == ["one.srt", "one.txt", "transcripts.zip", "two.srt",
                                                           "two.txt"]
        archive = next(p for p in downloads if p.endswith(".zip"))
        assert sorted(zipfile.ZipFile(archive).namelist()) == ["one.srt", "one.txt", "two.srt", "two.txt"]
