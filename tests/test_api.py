"""The HTTP API over real HTTP (uvicorn on loopback) with the real engine and tiny models."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from asr.engine import Engine
from asr.jobs import JobState
from tests.test_engine import GatedPipeline, make_settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """app.create_app served by uvicorn in a thread, on a free loopback port."""

    def __init__(self, settings, engine):
        import uvicorn

        from app import create_app

        self.app, self.engine = create_app(settings, engine)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            assert time.time() < deadline, "server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)
        self.engine.stop()
        self.engine.store.close()


@pytest.fixture
def gated(pipeline):
    return GatedPipeline(pipeline)


@pytest.fixture
def server(settings, tmp_path, gated):
    s = make_settings(settings, tmp_path, max_size=2)
    engine = Engine(s, pipeline_factory=lambda _: gated)
    with Server(s, engine) as srv:
        engine.start()
        yield srv
        gated.gate.set()


def upload(path, name=None):
    return {"file": (name or path.name, path.read_bytes(), "audio/wav")}


def test_health_and_readiness(settings, tmp_path, pipeline):
    s = make_settings(settings, tmp_path)
    engine = Engine(s, pipeline_factory=lambda _: pipeline)
    with Server(s, engine) as srv:
        assert httpx.get(f"{srv.url}/healthz").json() == {"status": "ok"}
        not_ready = httpx.get(f"{srv.url}/readyz")
        assert not_ready.status_code == 503 and not_ready.json()["status"] == "starting"
        engine.start()
        assert httpx.get(f"{srv.url}/readyz").status_code == 200


def test_openai_transcriptions_in_every_format(server, speech_wav):
    url = f"{server.url}/v1/audio/transcriptions"
    plain = httpx.post(url, files=upload(speech_wav), data={"model": "whisper-1"}, timeout=120)
    assert plain.status_code == 200 and plain.json()["text"]
    text = httpx.post(url, files=upload(speech_wav), data={"response_format": "text"}, timeout=120)
    assert text.headers["content-type"].startswith("text/plain") and text.text == plain.json()["text"]
    srt = httpx.post(url, files=upload(speech_wav), data={"response_format": "srt"}, timeout=120)
    assert srt.text.startswith("1\n") and " --> " in srt.text and "," in srt.text.splitlines()[1]
    vtt = httpx.post(url, files=upload(speech_wav), data={"response_format": "vtt"}, timeout=120)
    assert vtt.text.startswith("WEBVTT") and vtt.headers["content-type"].startswith("text/vtt")
    verbose = httpx.post(url, files=upload(speech_wav), data={"response_format": "verbose_json"}, timeout=120).json()
    assert verbose["text"] == plain.json()["text"] and verbose["duration"] > 10
    starts = [s["start"] for s in verbose["segments"]]
    assert verbose["segments"] and starts == sorted(starts)
    assert all(0 <= s["start"] <= s["end"] <= verbose["duration"] for s in verbose["segments"])
    assert all(w["start"] <= w["end"] for s in verbose["segments"] for w in s["words"])


def test_the_openai_python_client_works(server, speech_wav):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", timeout=120)
    with open(speech_wav, "rb") as f:
        result = client.audio.transcriptions.create(model="paraformer-large", file=f, response_format="verbose_json")
    assert result.text and result.segments and result.duration > 10


@pytest.mark.parametrize(
    "name, content, status, code, words",
    [
        ("slides.wav", b"%PDF-1.5\n" + b"0" * 3000, 415, "not_audio", "PDF"),
        ("empty.wav", b"", 400, "empty_file", "empty"),
        ("page.mp3", b"<!DOCTYPE html><html><body>hi</body></html>" * 50, 415, "not_audio", "HTML"),
    ],
)
def test_bad_uploads_get_specific_errors(server, name, content, status, code, words):
    response = httpx.post(f"{server.url}/v1/audio/transcriptions", files={"file": (name, content)}, timeout=60)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and words in error["message"] and error["message"].startswith(name)
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_unknown_response_format_is_400(server, speech_wav):
    response = httpx.post(f"{server.url}/v1/audio/transcriptions", files=upload(speech_wav),
                          data={"response_format": "docx"})
    assert response.status_code == 400 and "verbose_json" in response.text


def test_oversized_uploads_are_413_even_without_content_length(settings, tmp_path, pipeline, speech_wav):
    s = make_settings(settings, tmp_path)
    s = s.model_copy(update={"audio": s.audio.model_copy(update={"max_file_mb": 0.1})})
    engine = Engine(s, pipeline_factory=lambda _: pipeline)
    with Server(s, engine) as srv:
        engine.start()
        big = speech_wav.read_bytes()  # ~1.4 MB float WAV
        declared = httpx.post(f"{srv.url}/v1/audio/transcriptions", files={"file": ("big.wav", big)})
        assert declared.status_code == 413 and declared.json()["error"]["code"] == "file_too_large"

        boundary = "asrtestboundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n"
                f"Content-Type: audio/wav\r\n\r\n").encode() + big + f"\r\n--{boundary}--\r\n".encode()

        def chunked():
            for i in range(0, len(body), 65536):
                yield body[i:i + 65536]

        streamed = httpx.post(f"{srv.url}/v1/jobs", content=chunked(),
                              headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert streamed.status_code == 413
        assert not list((s.storage.cache_path() / "jobs").iterdir())
        assert httpx.get(f"{srv.url}/healthz").status_code == 200


def test_a_full_queue_answers_503_busy_at_once(server, gated, speech_wav):
    gated.gate.clear()
    jobs = [httpx.post(f"{server.url}/v1/jobs", files=upload(speech_wav)).json() for _ in range(3)]
    assert [j["status"] for j in jobs] == ["queued"] * 3  # one is taken by the worker, two wait
    started = time.time()
    refused = httpx.post(f"{server.url}/v1/audio/transcriptions", files=upload(speech_wav), timeout=30)
    assert refused.status_code == 503 and time.time() - started < 30
    assert refused.json()["error"]["code"] == "busy" and "busy: 2 jobs waiting" in refused.json()["error"]["message"]
    assert refused.headers["retry-after"]
    gated.gate.set()
    for job in jobs:
        assert server.engine.wait(job["id"], timeout=120).state is JobState.COMPLETED


def test_async_jobs_status_and_results(server, speech_wav):
    created = httpx.post(f"{server.url}/v1/jobs", files=upload(speech_wav, "meeting 01.wav"))
    assert created.status_code == 202
    job = created.json()
    assert job["status"] == "queued" and job["filename"] == "meeting 01.wav"
    server.engine.wait(job["id"], timeout=120)
    status = httpx.get(f"{server.url}/v1/jobs/{job['id']}").json()
    assert status["status"] == "completed" and status["rtf"] > 0 and status["timings"]["asr_s"] > 0
    assert set(status["result_formats"]) == {"txt", "srt", "vtt", "json", "tsv"}
    srt = httpx.get(f"{server.url}/v1/jobs/{job['id']}/result", params={"format": "srt"})
    assert srt.status_code == 200 and " --> " in srt.text
    assert 'filename="meeting 01.srt"' in srt.headers["content-disposition"]
    full = httpx.get(f"{server.url}/v1/jobs/{job['id']}/result").json()
    assert full["text"] and full["sentences"] and full["segments"]
    assert httpx.get(f"{server.url}/v1/jobs/{job['id']}/result", params={"format": "docx"}).status_code == 400
    listing = httpx.get(f"{server.url}/v1/jobs").json()["data"]
    assert listing[0]["id"] == job["id"]


def test_vad_jobs_give_segment_tables(server, speech_wav):
    job = httpx.post(f"{server.url}/v1/jobs", files=upload(speech_wav), data={"kind": "vad"}).json()
    server.engine.wait(job["id"], timeout=120)
    csv = httpx.get(f"{server.url}/v1/jobs/{job['id']}/result", params={"format": "csv"}).text.splitlines()
    assert csv[0] == "index,start_ms,end_ms,duration_ms,start,end" and len(csv) >= 4


def test_unknown_unfinished_and_cancelled_jobs(server, gated, speech_wav):
    assert httpx.get(f"{server.url}/v1/jobs/nope").status_code == 404
    gated.gate.clear()
    first = httpx.post(f"{server.url}/v1/jobs", files=upload(speech_wav)).json()
    second = httpx.post(f"{server.url}/v1/jobs", files=upload(speech_wav)).json()
    assert httpx.get(f"{server.url}/v1/jobs/{second['id']}/result").status_code == 409
    cancelled = httpx.delete(f"{server.url}/v1/jobs/{second['id']}").json()
    assert cancelled["status"] == "cancelled"
    gated.gate.set()
    assert server.engine.wait(first["id"], timeout=120).state is JobState.COMPLETED


def test_a_client_that_disconnects_still_gets_its_result_in_history(server, gated, speech_wav):
    gated.gate.clear()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/v1/audio/transcriptions", files=upload(speech_wav, "walked-away.wav"), timeout=1.5)
    gated.gate.set()
    deadline = time.time() + 120
    while True:
        jobs = httpx.get(f"{server.url}/v1/jobs").json()["data"]
        mine = [j for j in jobs if j["filename"] == "walked-away.wav"]
        if mine and mine[0]["status"] == "completed":
            break
        assert time.time() < deadline, mine
        time.sleep(0.2)


def test_auth_protects_the_api_but_not_health(settings, tmp_path, pipeline, speech_wav):
    s = make_settings(settings, tmp_path)
    s = s.model_copy(update={"server": s.server.model_copy(update={"auth": ["alice:s3cret", "bob:hunter2"]})})
    engine = Engine(s, pipeline_factory=lambda _: pipeline)
    with Server(s, engine) as srv:
        engine.start()
        assert httpx.get(f"{srv.url}/healthz").status_code == 200
        assert httpx.get(f"{srv.url}/v1/jobs").status_code == 401
        assert httpx.get(f"{srv.url}/v1/jobs", auth=("alice", "wrong")).status_code == 401
        job = httpx.post(f"{srv.url}/v1/jobs", files=upload(speech_wav), auth=("alice", "s3cret")).json()
        engine.wait(job["id"], timeout=120)
        bearer = {"authorization": "Bearer alice:s3cret"}
        assert httpx.get(f"{srv.url}/v1/jobs/{job['id']}", headers=bearer).json()["status"] == "completed"
        # another user cannot see alice's job
        assert httpx.get(f"{srv.url}/v1/jobs/{job['id']}", auth=("bob", "hunter2")).status_code == 404
        assert httpx.get(f"{srv.url}/v1/jobs", auth=("bob", "hunter2")).json()["data"] == []
        # the UI: the page shell is only a login form, its config and files need a login
        page = httpx.get(f"{srv.url}/", follow_redirects=False).text
        assert '"auth_required":true' in page and '"components":[]' in page
        assert httpx.get(f"{srv.url}/config").status_code == 401
        assert httpx.get(f"{srv.url}/gradio_api/file=/etc/passwd").status_code == 401
        assert json.loads(httpx.get(f"{srv.url}/v1/jobs", auth=("alice", "s3cret")).text)["data"][0]["id"] == job["id"]
