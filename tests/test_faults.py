"""Faults: out of memory in a batch, a fatal device error, kill -9 mid-job, a full disk.

Device failures cannot happen on demand on a CPU, so the pipeline's fault hook
(``ASR_FAULT_INJECT``) raises exactly what torch raises; everything around it is real:
the server process, its exit code, SQLite, the restart.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from asr.errors import OutOfMemoryError
from asr.service.engine import DB_NAME, Engine
from asr.service.jobs import JobState
from tests.conftest import TEST_MODELS, with_pauses
from tests.server import REPO, free_port, start_server, stop_server, write_config
from tests.test_api import Server
from tests.test_engine import make_settings


def test_out_of_memory_halves_the_batch_and_gives_the_same_result(models, settings, monkeypatch, sentence_clips, caplog):
    from asr.core.pipeline import Pipeline

    audio = with_pauses(sentence_clips * 3, 1.0)
    clean = Pipeline(models, settings).transcribe(audio)
    monkeypatch.setenv("ASR_FAULT_INJECT", "oom")
    retried = Pipeline(models, settings).transcribe(audio)
    assert "retrying in halves" in caplog.text
    assert retried.text == clean.text and retried.segments == clean.segments


def test_out_of_memory_on_one_segment_fails_the_job_clearly(pipeline, models, settings, tmp_path, monkeypatch, speech_wav):
    from asr.core.pipeline import Pipeline

    monkeypatch.setenv("ASR_FAULT_INJECT", "oom-always")
    failing = Pipeline(models, settings)
    monkeypatch.delenv("ASR_FAULT_INJECT")
    with pytest.raises(OutOfMemoryError, match="out of cpu memory on a .* s speech segment"):
        failing.transcribe(speech_wav)
    engine = Engine(make_settings(settings, tmp_path), pipeline_factory=lambda _: failing)
    engine.start()
    try:
        record = engine.wait(engine.submit(speech_wav, "big.wav").id, timeout=120)
        assert record.state is JobState.FAILED and record.error_code == "out_of_memory"
        assert "lower vad.max_segment_ms" in record.error
        failing._fault = ""  # the memory pressure is gone: the same worker carries on
        assert engine.wait(engine.submit(speech_wav, "next.wav").id, timeout=120).state is JobState.COMPLETED
    finally:
        engine.stop()


def _long_speech(path: Path, sentence_clips, minutes: float) -> Path:
    unit = with_pauses(sentence_clips, 0.8)
    sf.write(path, np.tile(unit, int(minutes * 60 * 16000 / len(unit)) + 1), 16000, subtype="PCM_16")
    return path


def _wait_state(url: str, job_id: str, states: set[str], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(f"{url}/v1/jobs/{job_id}").json()
        if job["status"] in states:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


@pytest.mark.slow  # starts processes
def test_a_fatal_device_error_exits_non_zero_and_the_job_is_interrupted(test_models, tmp_path, speech_wav):
    server = start_server(tmp_path, TEST_MODELS, env={"ASR_FAULT_INJECT": "device-error"})
    try:
        job = httpx.post(f"{server.url}/v1/jobs", files={"file": ("gpu.wav", speech_wav.read_bytes())}).json()
        code = server.process.wait(120)
        assert code == 70, server.log_tail()  # systemd's Restart=on-failure restarts it
        assert "fatal device error" in server.log_tail()
    finally:
        stop_server(server)
    restarted = start_server(tmp_path, TEST_MODELS)
    try:
        record = httpx.get(f"{restarted.url}/v1/jobs/{job['id']}").json()
        assert record["status"] == "interrupted" and "device" in record["error"]["message"]
    finally:
        stop_server(restarted)


@pytest.mark.slow  # starts processes
def test_kill_9_mid_job_keeps_finished_results_and_marks_the_running_one(test_models, tmp_path, speech_wav,
                                                                         sentence_clips):
    long_file = _long_speech(tmp_path / "lecture.wav", sentence_clips, 12)
    server = start_server(tmp_path / "svc", TEST_MODELS)
    try:
        done = httpx.post(f"{server.url}/v1/audio/transcriptions", timeout=120,
                          files={"file": ("short.wav", speech_wav.read_bytes())}).json()
        jobs = httpx.get(f"{server.url}/v1/jobs").json()["data"]
        finished_id = jobs[0]["id"]
        running = httpx.post(f"{server.url}/v1/jobs", files={"file": ("lecture.wav", long_file.read_bytes())}).json()
        _wait_state(server.url, running["id"], {"running"})
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(30)
    finally:
        stop_server(server)
    with sqlite3.connect(tmp_path / "svc" / "state" / DB_NAME) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    restarted = start_server(tmp_path / "svc", TEST_MODELS)
    try:
        assert httpx.get(f"{restarted.url}/v1/jobs/{running['id']}").json()["status"] == "interrupted"
        finished = httpx.get(f"{restarted.url}/v1/jobs/{finished_id}/result").json()
        assert finished["text"] == done["text"]
        leftovers = list((tmp_path / "svc" / "cache" / "jobs").iterdir())
        assert leftovers == []  # the killed job's upload copy was swept at start
    finally:
        stop_server(restarted)


@contextlib.contextmanager
def small_disk(path: Path, size_kb: int):
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    with open(filler, "wb") as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
    return filler


def test_a_full_disk_is_a_clear_error_and_the_service_survives(settings, pipeline, tmp_path, speech_wav):
    state, cache = tmp_path / "state", tmp_path / "cache"
    with small_disk(state, 4096), small_disk(cache, 16384):
        s = make_settings(settings, tmp_path)
        engine = Engine(s, pipeline_factory=lambda _: pipeline)
        with Server(s, engine) as server:
            engine.start()
            upload = {"file": ("talk.wav", speech_wav.read_bytes())}
            assert httpx.post(f"{server.url}/v1/audio/transcriptions", files=upload, timeout=120).status_code == 200

            filler = fill(cache)  # uploads and job copies have nowhere to go
            refused = httpx.post(f"{server.url}/v1/jobs", files=upload, timeout=60)
            assert refused.status_code == 507, refused.text
            assert "full" in refused.json()["error"]["message"]
            assert httpx.get(f"{server.url}/healthz").status_code == 200
            filler.unlink()

            filler = fill(state)  # the job history cannot grow
            refused = httpx.post(f"{server.url}/v1/jobs", files=upload, timeout=60)
            assert refused.status_code == 507 and "full" in refused.json()["error"]["message"], refused.text
            assert httpx.get(f"{server.url}/readyz").status_code == 200
            filler.unlink()

            recovered = httpx.post(f"{server.url}/v1/audio/transcriptions", files=upload, timeout=120)
            assert recovered.status_code == 200 and recovered.json()["text"]


# ---- storage that breaks under the service --------------------------------------------------------------


@contextlib.contextmanager
def read_only(path: Path):
    """``path`` made read-only for everyone, root included (a read-only bind mount of itself)."""
    path.mkdir(parents=True, exist_ok=True)
    bound = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True, text=True)
    if bound.returncode != 0:
        pytest.skip(f"cannot bind-mount here (needs root): {bound.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True, capture_output=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _error(response) -> dict:
    return response.json()["error"]


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_database_deleted_or_replaced_under_the_service_stops_submissions_and_keeps_the_result(
        settings, pipeline, tmp_path, speech_wav, how, caplog):
    from asr.service.health import HealthCheck
    from tests.test_engine import GatedPipeline

    gated = GatedPipeline(pipeline)
    s = make_settings(settings, tmp_path)
    engine = Engine(s, pipeline_factory=lambda _: gated)
    upload = {"file": ("talk.wav", speech_wav.read_bytes())}
    with Server(s, engine) as server:
        engine.start()
        gated.gate.clear()
        running = httpx.post(f"{server.url}/v1/jobs", files=upload).json()
        db = s.storage.state_path() / DB_NAME
        if how == "deleted":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
        else:
            copy = db.with_suffix(".copy")
            copy.write_bytes(db.read_bytes())
            copy.replace(db)
        refused = httpx.post(f"{server.url}/v1/jobs", files=upload)
        assert refused.status_code == 503 and _error(refused)["code"] == "storage_unavailable", refused.text
        assert str(db) in _error(refused)["message"] and how in _error(refused)["message"]
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503 and _error(ready)["code"] == "storage_unavailable"
        problem = HealthCheck(engine, server.url, 5.0)()  # what the systemd watchdog asks
        assert problem is not None and str(db) in problem
        assert str(db) in caplog.text
        gated.gate.set()  # the job that was running finishes: its result is not written into the void
        finished = engine.wait(running["id"], timeout=120)
        assert finished.state is JobState.COMPLETED and "not saved" in finished.error
        result = httpx.get(f"{server.url}/v1/jobs/{running['id']}/result", params={"format": "txt"})
        assert result.status_code == 200 and result.text
        assert list((s.storage.cache_path() / "jobs").iterdir()) == []


def test_an_unwritable_database_is_a_clear_503_and_leaks_no_upload(settings, pipeline, tmp_path, speech_wav):
    s = make_settings(settings, tmp_path)
    engine = Engine(s, pipeline_factory=lambda _: pipeline)
    upload = {"file": ("talk.wav", speech_wav.read_bytes())}
    with Server(s, engine) as server:
        engine.start()
        assert httpx.post(f"{server.url}/v1/audio/transcriptions", files=upload, timeout=120).status_code == 200
        with read_only(s.storage.state_path()):
            for route in ("/v1/jobs", "/v1/audio/transcriptions"):
                refused = httpx.post(f"{server.url}{route}", files=upload, timeout=60)
                assert refused.status_code == 503, refused.text
                assert _error(refused)["code"] == "storage_unavailable"
                assert "not writable" in _error(refused)["message"]
            assert httpx.get(f"{server.url}/readyz").status_code == 503
            assert list((s.storage.cache_path() / "jobs").iterdir()) == []
            assert list((s.storage.cache_path() / "uploads").iterdir()) == []
        assert httpx.get(f"{server.url}/readyz").status_code == 200  # writable again: ready again
        assert httpx.get(f"{server.url}/v1/jobs").json()["data"][0]["status"] == "completed"


@pytest.mark.slow  # starts processes
def test_a_full_disk_during_an_upload_is_507_on_every_route_and_leaves_nothing(test_models, tmp_path, speech_wav):
    """Through ``asr serve`` itself, which spools request bodies on the service's own disk: there a
    full disk once surfaced as FastAPI's 400 "There was an error parsing the body"."""
    cache = tmp_path / "svc-cache"
    big = speech_wav.read_bytes() * 3  # bigger than what is left once the disk is filled
    with small_disk(cache, 32768):
        server = start_server(tmp_path, TEST_MODELS, overrides={"storage": {"cache_dir": str(cache)}})
        try:
            filler = fill(cache)
            for route, files in (("/v1/jobs", {"file": ("a.wav", big)}),
                                 ("/v1/audio/transcriptions", {"file": ("a.wav", big)}),
                                 ("/gradio_api/upload", [("files", ("a.wav", big))])):
                refused = httpx.post(f"{server.url}{route}", files=files, timeout=60)
                assert refused.status_code == 507, (route, refused.status_code, refused.text[:300])
                assert _error(refused)["code"] == "storage_full"
            left = [p for p in cache.rglob("*") if p.is_file() and p != filler and p.stat().st_size
                    and "converted" not in p.parts and "results" not in p.parts]
            assert left == []
            filler.unlink()
            ok = httpx.post(f"{server.url}/v1/audio/transcriptions", files={"file": ("a.wav", speech_wav.read_bytes())},
                            timeout=120)
            assert ok.status_code == 200
        finally:
            stop_server(server)


def test_unwritable_result_files_still_show_the_finished_transcript_in_the_ui(settings, pipeline, tmp_path, speech_wav):
    from tests.gradio_events import file_data, run_event
    from tests.gradio_events import upload as ui_upload

    s = make_settings(settings, tmp_path)
    engine = Engine(s, pipeline_factory=lambda _: pipeline)
    with Server(s, engine) as server:
        engine.start()
        with read_only(s.storage.cache_path() / "gradio" / "results"):
            outcome = run_event(server.url, "transcribe",
                                [[file_data(ui_upload(server.url, speech_wav, "talk.wav"))], None, True, ["srt"], True, False, 0, ""])
        assert outcome.success, outcome
        text, sentences, board, downloads, notes, _ = outcome.output  # _: the ids on the board
        assert text and sentences and not downloads
        assert 'data-state="completed"' in board and "ws-sentence" in board  # the transcript is on its card
        assert "download files could not be written" in notes and "History" in notes
        assert engine.jobs()[0].state is JobState.COMPLETED


@pytest.mark.slow  # starts processes
def test_an_unwritable_state_dir_at_start_is_one_clear_line(test_models, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state directory's parent should be")
    config = write_config(tmp_path, TEST_MODELS, {"storage": {"state_dir": str(blocker / "state")}})
    started = subprocess.run([sys.executable, "app.py", "--config", str(config), "--port", str(free_port())],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
    assert started.returncode == 2, started.stderr[-2000:]
    assert "Traceback" not in started.stderr
    assert str(blocker) in started.stderr and "job history" in started.stderr
