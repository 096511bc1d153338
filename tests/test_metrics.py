"""Operations: ``GET /metrics`` (Prometheus) and the one ``job_done`` log line per job.

The real server runs as a subprocess (tests/server.py) for the HTTP side and the log; the queue
states (waiting, cancelled) are driven in-process with the gated real pipeline of test_engine.
"""

from __future__ import annotations

import logging
import shlex
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from asr.service.engine import Engine
from asr.service.metrics import ServiceMetrics
from tests.server import running_server
from tests.test_engine import GatedPipeline, make_settings

JOB_LINE = "job_done "


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, labels) -> value, for every sample of a Prometheus text exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(found: dict, name: str, **labels) -> float | None:
    return found.get((name, frozenset(labels.items())))


def job_lines(text: str) -> list[dict[str, str]]:
    """The job_done lines of a log, each parsed back into its fields."""
    parsed = []
    for line in text.splitlines():
        if JOB_LINE in line:
            fields = shlex.split(line[line.index(JOB_LINE) + len(JOB_LINE):])
            parsed.append(dict(field.split("=", 1) for field in fields))
    return parsed


def wait_done(client: httpx.Client, url: str, job_id: str) -> dict:
    deadline = time.monotonic() + 300  # a hang guard only
    while True:
        status = client.get(f"{url}/v1/jobs/{job_id}").json()
        if status["status"] not in ("queued", "running"):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.2)


@pytest.fixture(scope="module")
def served(tmp_path_factory, test_models, speech_wav):
    """A real server that has run one transcription (OpenAI route) and one VAD job."""
    directory = tmp_path_factory.mktemp("metrics-server")
    with running_server(directory, test_models) as server, httpx.Client(trust_env=False, timeout=300) as client:
        files = {"file": ("说话 it's a name=x.wav", speech_wav.read_bytes(), "audio/wav")}
        reply = client.post(f"{server.url}/v1/audio/transcriptions", files=files, data={"response_format": "json"})
        assert reply.status_code == 200, reply.text
        vad = client.post(f"{server.url}/v1/jobs", files={"file": ("v.wav", speech_wav.read_bytes())},
                          data={"kind": "vad"})
        assert vad.status_code == 202, vad.text
        wait_done(client, server.url, vad.json()["id"])
        jobs = {j["kind"]: j for j in client.get(f"{server.url}/v1/jobs").json()["data"]}
        metrics = client.get(f"{server.url}/metrics")
        yield server, jobs, metrics


@pytest.mark.slow  # starts processes
def test_metrics_in_prometheus_format(served):
    _, jobs, reply = served
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    found = samples(reply.text)
    transcribe = jobs["transcribe"]
    assert value(found, "asr_ready") == 1
    assert value(found, "asr_queue_depth") == 0 and value(found, "asr_queue_capacity") == 8
    assert value(found, "asr_workers", state="idle") == 1 and value(found, "asr_workers", state="busy") == 0
    assert value(found, "asr_jobs", state="completed") == 2 and value(found, "asr_jobs", state="failed") == 0
    assert value(found, "asr_jobs_finished_total", kind="transcribe", outcome="completed") == 1
    assert value(found, "asr_jobs_finished_total", kind="vad", outcome="completed") == 1
    assert value(found, "asr_audio_seconds_total", kind="transcribe") == pytest.approx(transcribe["duration_s"])
    assert value(found, "asr_job_rtf_count", kind="transcribe") == 1
    assert value(found, "asr_job_rtf_sum", kind="transcribe") == pytest.approx(transcribe["rtf"], abs=1e-5)
    for stage in ("decode", "vad", "asr", "punc", "total"):
        assert value(found, "asr_stage_seconds_count", kind="transcribe", stage=stage) == 1, stage
        assert value(found, "asr_stage_seconds_sum", kind="transcribe", stage=stage) == pytest.approx(
            transcribe["timings"][f"{stage}_s"])
    # a VAD job has no ASR or punctuation stage: nothing is observed for them
    assert value(found, "asr_stage_seconds_count", kind="vad", stage="vad") == 1
    assert value(found, "asr_stage_seconds_count", kind="vad", stage="asr") is None
    assert value(found, "asr_job_queue_wait_seconds_count", kind="transcribe") == 1
    assert value(found, "asr_model_load_seconds") > 0 and value(found, "asr_model_warmup_seconds") > 0
    assert value(found, "process_resident_memory_bytes") > 0


@pytest.mark.slow  # starts processes
def test_one_parseable_log_line_per_job(served):
    server, jobs, _ = served
    lines = job_lines(server.log_path.read_text(encoding="utf-8"))
    by_id = {line["id"]: line for line in lines}
    assert len(lines) == 2 and set(by_id) == {j["id"] for j in jobs.values()}, lines
    transcribe = jobs["transcribe"]
    line = by_id[transcribe["id"]]
    assert line["file"] == transcribe["filename"] == "说话 it's a name=x.wav", "JSON-quoted, it comes back intact"
    assert (line["kind"], line["outcome"]) == ("transcribe", "completed")
    assert float(line["audio_s"]) == pytest.approx(transcribe["duration_s"], abs=1e-3)
    assert float(line["rtf"]) == pytest.approx(transcribe["rtf"], abs=1e-5)
    for stage in ("decode", "vad", "asr", "punc", "total"):
        assert float(line[f"{stage}_s"]) == pytest.approx(transcribe["timings"][f"{stage}_s"], abs=1e-3)
    assert float(line["wall_s"]) >= 0 and float(line["queue_s"]) >= 0
    assert "error_code" not in line
    assert by_id[jobs["vad"]["id"]]["kind"] == "vad"


@pytest.mark.slow  # starts processes
def test_metrics_need_a_login_when_logins_are_on(tmp_path, test_models):
    with running_server(tmp_path, test_models, overrides={"server": {"auth": ["ops:s3cret"]}}) as server:
        assert httpx.get(server.url + "/metrics", trust_env=False).status_code == 401
        ok = httpx.get(server.url + "/metrics", auth=("ops", "s3cret"), trust_env=False)
        assert ok.status_code == 200 and "asr_ready 1.0" in ok.text


def test_queue_states_cancellations_and_their_log_lines(settings, tmp_path, pipeline, speech_wav, caplog):
    gated = GatedPipeline(pipeline)
    engine = Engine(make_settings(settings, tmp_path, max_size=2), pipeline_factory=lambda s: gated)
    metrics = ServiceMetrics(engine)
    engine.start()
    try:
        gated.gate.clear()
        running = engine.submit(speech_wav, "a.wav")
        deadline = time.monotonic() + 60
        while not gated.started:  # the worker has taken the first job and waits at the gate
            assert time.monotonic() < deadline
            time.sleep(0.05)
        queued = [engine.submit(speech_wav, f"{name}.wav") for name in ("b", "c")]
        found = samples(metrics.render()[0].decode())
        assert value(found, "asr_queue_depth") == 2 and value(found, "asr_workers", state="busy") == 1
        assert value(found, "asr_jobs", state="queued") == 2 and value(found, "asr_jobs", state="running") == 1
        with caplog.at_level(logging.INFO, logger="asr.service.engine"):
            engine.cancel(queued[0].id)  # cancelled while waiting
            engine.cancel(running.id)  # cancelled while running, at its next batch boundary
            gated.gate.set()
            for job in (running, queued[1]):
                engine.wait(job.id, timeout=120)
        found = samples(metrics.render()[0].decode())
        assert value(found, "asr_queue_depth") == 0
        assert value(found, "asr_jobs", state="cancelled") == 2 and value(found, "asr_jobs", state="completed") == 1
        assert value(found, "asr_jobs_finished_total", kind="transcribe", outcome="cancelled") == 2
        assert value(found, "asr_jobs_finished_total", kind="transcribe", outcome="completed") == 1
        assert value(found, "asr_job_rtf_count", kind="transcribe") == 1  # only completed jobs have an RTF
        lines = {line["id"]: line for line in job_lines(caplog.text)}
        assert lines[queued[0].id]["outcome"] == "cancelled" and "queue_s" not in lines[queued[0].id]
        assert lines[running.id]["outcome"] == "cancelled" and "rtf" not in lines[running.id]
        assert lines[queued[1].id]["outcome"] == "completed" and float(lines[queued[1].id]["audio_s"]) > 0
        assert len(lines) == 3
    finally:
        gated.gate.set()
        engine.stop()
        engine.store.close()
