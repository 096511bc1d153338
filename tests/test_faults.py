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
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from asr.engine import DB_NAME, Engine
from asr.errors import OutOfMemoryError
from asr.jobs import JobState
from tests.conftest import TEST_MODELS, with_pauses
from tests.server import start_server, stop_server
from tests.test_api import Server
from tests.test_engine import make_settings


def test_out_of_memory_halves_the_batch_and_gives_the_same_result(models, settings, monkeypatch, sentence_clips, caplog):
    from asr.pipeline import Pipeline

    audio = with_pauses(sentence_clips * 3, 1.0)
    clean = Pipeline(models, settings).transcribe(audio)
    monkeypatch.setenv("ASR_FAULT_INJECT", "oom")
    retried = Pipeline(models, settings).transcribe(audio)
    assert "retrying in halves" in caplog.text
    assert retried.text == clean.text and retried.segments == clean.segments


def test_out_of_memory_on_one_segment_fails_the_job_clearly(pipeline, models, settings, tmp_path, monkeypatch, speech_wav):
    from asr.pipeline import Pipeline

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
