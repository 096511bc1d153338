"""Scale-out on a real local Ray cluster (2 CPUs, started here): the Ray Data batch path, resume,
decode failures, a worker crash retried by Ray, and the web app's queue in front of Ray actors.

Ray is an optional extra (``pip install .[ray]``); ``scripts/setup.sh --test`` installs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from asr.scaleout.batch import RESULTS_NAME, list_inputs, run_local
from tests.conftest import REPO, TEST_CONFIG
from tests.test_batch import FORMATS, make_corpus, manifest_lines, output_files, spec_for

try:
    import ray
except ImportError:  # the tests are part of CI: a missing extra is a failure, not a skip
    pytest.fail("Ray is not installed: pip install -e '.[ray]' (scripts/setup.sh --test does)", pytrace=False)

from asr import faults
from asr.scaleout import cluster, ray_batch, ray_serve

#: Files longer than this go to the actors as paths (streamed there), shorter ones as decoded audio,
#: so that both ways are exercised (the corpus has files of 4.5 to 22 s).
INLINE_MAX_S = 10.0


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A private local Ray instance with 2 CPUs on loopback, shut down after the module."""
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, object_store_memory=512 * 2**20,
        logging_level="WARNING", _temp_dir=str(tmp_path_factory.mktemp("ray")),
    )
    try:
        yield ray.cluster_resources()
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, sentence_clips):
    root = tmp_path_factory.mktemp("ray-corpus")
    return root, make_corpus(root, sentence_clips)


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory, corpus, settings, pipeline):
    out = tmp_path_factory.mktemp("local")
    run_local(list_inputs([corpus[0]]), out, settings, spec_for(settings), pipeline=pipeline, progress=False)
    return out


def run_ray(items, out, settings, **kwargs):
    kwargs = {"workers": 2, "cpus_per_worker": 0.75, "inline_max_s": INLINE_MAX_S, "progress": False, **kwargs}
    return ray_batch.run_on_ray(items, out, settings, spec_for(settings), **kwargs)


def statuses(out: Path) -> dict[str, tuple[str, str | None]]:
    return {e["id"]: (e["status"], e["error_code"]) for e in manifest_lines(out)}


def test_ray_batch_gives_the_same_files_as_a_local_run(ray_cluster, tmp_path, corpus, local_reference, settings):
    assert ray_cluster["CPU"] == 2
    out = tmp_path / "ray"
    summary = run_ray(list_inputs([corpus[0]]), out, settings)
    assert (summary.total, summary.done, summary.failed, summary.lost) == (7, 7, 2, 0)
    # byte for byte (JSON: all but the timings), decoded in Ray tasks or streamed by the actor
    assert output_files(out) == output_files(local_reference)
    assert statuses(out) == statuses(local_reference)
    entries = {e["id"]: e for e in manifest_lines(out)}
    # the file that cannot be decoded is in the manifest with its error, as in a local run
    local = {e["id"]: e for e in manifest_lines(local_reference)}
    for id_ in ("broken", "b/empty"):
        assert entries[id_]["status"] == "failed" and entries[id_]["error"] == local[id_]["error"]
    ok = [e for e in entries.values() if e["status"] == "ok"]
    assert all(e["audio_s"] == local[e["id"]]["audio_s"] and e["rtf"] > 0 for e in ok)
    assert all(e["worker"].split(":")[1] != str(os.getpid()) for e in ok)  # transcribed by the actors


def test_ray_batch_resumes_a_partial_run(ray_cluster, tmp_path, corpus, local_reference, settings):
    out = tmp_path / "ray"
    items = list_inputs([corpus[0]])
    # a first run over part of the inputs, then one interrupted while writing the manifest
    first = run_ray(items[:3], out, settings, workers=1, cpus_per_worker=1.5)
    assert (first.done, first.skipped) == (3, 0)
    lines = (out / RESULTS_NAME).read_text(encoding="utf-8").splitlines(keepends=True)
    (out / RESULTS_NAME).write_text("".join(lines[:2]) + lines[2][:25], encoding="utf-8")  # the third entry torn

    summary = run_ray(items, out, settings)
    assert summary.skipped == 2 and summary.done == len(items) - 2
    assert {e["id"] for e in manifest_lines(out)} == {i.id for i in items}
    assert output_files(out) == output_files(local_reference)


@pytest.mark.slow
def test_a_worker_that_crashes_is_retried_by_ray_and_no_file_is_lost_or_done_twice(
        ray_cluster, tmp_path, corpus, local_reference, settings):
    out = tmp_path / "ray"
    marker = tmp_path / "crashed-once"
    items = list_inputs([corpus[0]])
    # the actor that gets b/c/pair exits abruptly (as on a segfault or the OOM killer), once
    env = {"env_vars": {faults.WORKER_CRASH_ENV: f"b/c/pair={marker}"}}
    summary = run_ray(items, out, settings, runtime_env=env)
    assert marker.exists(), "the test hook did not fire"
    assert (summary.done, summary.failed, summary.lost) == (7, 2, 0)
    lines = manifest_lines(out)
    assert sorted(e["id"] for e in lines) == sorted(i.id for i in items)  # each input exactly once
    assert dict(statuses(out))["b/c/pair"] == ("ok", None)
    assert output_files(out) == output_files(local_reference)  # complete and identical


@pytest.mark.slow
def test_a_file_that_kills_every_worker_is_recorded_and_the_batch_goes_on(ray_cluster, tmp_path, corpus, settings,
                                                                          monkeypatch):
    out = tmp_path / "ray"
    items = [i for i in list_inputs([corpus[0]]) if i.id in ("a/s0", "a/s1", "b/s0")]
    monkeypatch.setattr(ray_batch, "TASK_RETRIES", 0)  # fewer retries to run out of (each restarts an actor)
    # an empty marker path: the hook fires every time, so Ray's retries run out
    env = {"env_vars": {faults.WORKER_CRASH_ENV: "a/s1="}}
    summary = run_ray(items, out, settings, runtime_env=env, workers=1, cpus_per_worker=1.0)
    assert (summary.done, summary.failed, summary.lost) == (3, 1, 1)
    assert statuses(out) == {"a/s0": ("ok", None), "a/s1": ("failed", "worker_lost"), "b/s0": ("ok", None)}


# ---- online: the web app's queue in front of Ray actors ------------------------------------------------


def test_the_web_app_queue_fronts_ray_actors(ray_cluster, tmp_path, settings, pipeline, speech_wav):
    from tests.test_api import Server, upload
    from tests.test_engine import make_settings

    plan = cluster.plan_resources(2, 0, 0.75, decode_cpus=0.0)
    engine, factory, s = ray_serve.ray_engine(make_settings(settings, tmp_path, max_size=4), plan)
    expected = pipeline.transcribe(speech_wav)
    try:
        with Server(s, engine) as srv:
            engine.start()
            assert httpx.get(f"{srv.url}/readyz").status_code == 200
            # the OpenAI-compatible endpoint, answered by an actor
            answer = httpx.post(f"{srv.url}/v1/audio/transcriptions", files=upload(speech_wav),
                                data={"response_format": "verbose_json"}, timeout=120)
            assert answer.status_code == 200, answer.text
            assert answer.json()["text"] == expected.text
            # jobs: submitted to the one queue, run on both actors, polled and fetched from the front
            ids = [httpx.post(f"{srv.url}/v1/jobs", files=upload(speech_wav), timeout=60).json()["id"]
                   for _ in range(3)]
            ids.append(httpx.post(f"{srv.url}/v1/jobs", files=upload(speech_wav), data={"kind": "vad"},
                                  timeout=60).json()["id"])
            deadline = time.monotonic() + 120
            while any(httpx.get(f"{srv.url}/v1/jobs/{i}").json()["status"] not in ("completed", "failed")
                      for i in ids):
                assert time.monotonic() < deadline, "jobs did not finish"
                time.sleep(0.2)
            for job_id in ids[:3]:
                result = httpx.get(f"{srv.url}/v1/jobs/{job_id}/result", params={"format": "json"})
                assert result.json()["text"] == expected.text
            vad = httpx.get(f"{srv.url}/v1/jobs/{ids[3]}/result", params={"format": "json"}).json()
            assert len(vad["segments"]) == len(expected.segments)
            # a bad upload is refused at the front, before any actor sees it
            refused = httpx.post(f"{srv.url}/v1/audio/transcriptions",
                                 files={"file": ("notes.wav", b"just some text, not audio", "audio/wav")})
            assert refused.status_code == 415
            status = engine.status()
            assert status["device"] == "cpu (Ray actor)" and status["test_models"] is True
            assert set(status["models"]) == {"vad", "asr", "punc"}
        # an actor on another node than the front gets the file's bytes instead of its path
        remote = engine.pipelines[0]
        remote._node = "another-node"
        assert remote.transcribe(speech_wav).text == expected.text
    finally:
        factory.shutdown()


@pytest.mark.slow
def test_asr_serve_ray_command(tmp_path, test_models, speech_wav, settings, pipeline):
    """``asr serve --ray local`` as a real process with its own private Ray instance."""
    from tests.server import _environment, free_port, write_config

    config = write_config(tmp_path, test_models, {"runtime": {"precision": "fp32"}})
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as f:
        process = subprocess.Popen(
            [sys.executable, "-m", "asr", "serve", "--ray", "local", "--workers", "1", "--cpus-per-worker", "1",
             "--config", str(config), "--port", str(port)],
            cwd=REPO, env={**_environment(), "RAY_DISABLE_USAGE_STATS": "1"}, stdin=subprocess.DEVNULL,
            stdout=f, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, log.read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-4000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=5, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        answer = httpx.post(f"{url}/v1/audio/transcriptions", trust_env=False, timeout=120,
                            files={"file": (speech_wav.name, speech_wav.read_bytes(), "audio/wav")})
        assert answer.status_code == 200, answer.text
        assert answer.json()["text"] == pipeline.transcribe(speech_wav).text
    finally:
        process.terminate()
        try:
            code = process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait(10)
    assert code == 0, log.read_text(errors="replace")[-4000:]


def test_plans_that_cannot_run_are_refused(ray_cluster):
    from asr.errors import ConfigError

    with pytest.raises(ConfigError, match="do not fit in the cluster's 2 CPUs"):
        cluster.plan_resources(2, 0, 1.0)  # nothing left for the decode tasks: it would wait forever
    with pytest.raises(ConfigError, match="the cluster has 0 GPU"):
        cluster.plan_resources(1, 1, None)
    plan = cluster.plan_resources(2, None, None)
    assert (plan.workers, plan.gpus_per_worker, plan.cpus_per_worker, plan.threads) == (2, 0, 0.75, 1)
    assert cluster.plan_resources(None, None, None).workers == 1


def test_the_cli_runs_a_batch_on_ray(ray_cluster, tmp_path, corpus, local_reference):
    """``asr batch --ray ADDRESS`` joins the cluster this process is connected to."""
    from asr.cli import main

    out = tmp_path / "cli"
    code = main(["batch", str(corpus[0]), "--out", str(out), "--ray", "auto", "--workers", "1",
                 "--format", ",".join(FORMATS), "--inline-max-s", str(INLINE_MAX_S), "--config", str(TEST_CONFIG),
                 "--precision", "fp32", "--device", "cpu"])
    assert code == 1  # the two undecodable files
    assert output_files(out) == output_files(local_reference)
    json.loads((out / RESULTS_NAME).read_text(encoding="utf-8").splitlines()[0])
