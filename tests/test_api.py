"""The HTTP API over real HTTP (uvicorn on loopback) with the real engine and tiny models."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from asr.service.engine import Engine
from asr.service.jobs import JobState
from tests.test_engine import GatedPipeline, make_settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The server's create_app, with app.py's UI, served by uvicorn in a thread on a free loopback port."""

    def __init__(self, settings, engine):
        import uvicorn

        from app import build_ui
        from asr.service.server import create_app

        self.app, self.engine = create_app(settings, build_ui, engine)
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
    assert "filename*=UTF-8''meeting%2001.srt" in srt.headers["content-disposition"]
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
        # the UI: the page is only our login form (asr.service.login_page), its config and files need a login
        page = httpx.get(f"{srv.url}/", follow_redirects=False).text
        assert '<form id="login"' in page and '"components"' not in page
        assert httpx.get(f"{srv.url}/config").status_code == 401
        assert httpx.get(f"{srv.url}/gradio_api/file=/etc/passwd").status_code == 401
        assert json.loads(httpx.get(f"{srv.url}/v1/jobs", auth=("alice", "s3cret")).text)["data"][0]["id"] == job["id"]


# ---- the contract: one envelope, the routes OpenAI clients call, states as they are ----------------


def _envelope(response) -> dict:
    body = response.json()
    assert set(body) >= {"error"} and {"code", "message"} <= set(body["error"]), body
    return body["error"]


def test_every_error_has_one_envelope(settings, tmp_path, pipeline, speech_wav):
    s = make_settings(settings, tmp_path)
    s = s.model_copy(update={"server": s.server.model_copy(update={"auth": ["alice:s3cret"]})})
    engine = Engine(s, pipeline_factory=lambda _: pipeline)
    with Server(s, engine) as srv:
        engine.start()
        alice = ("alice", "s3cret")
        cases = [
            (httpx.get(f"{srv.url}/v1/jobs"), 401, "login_required"),                              # auth
            (httpx.get(f"{srv.url}/v1/jobs", params={"limit": 0}, auth=alice), 422, "invalid_request"),  # validation
            (httpx.post(f"{srv.url}/v1/jobs", auth=alice), 422, "invalid_request"),                # missing file
            (httpx.get(f"{srv.url}/v1/jobs/nope", auth=alice), 404, "job_not_found"),
            (httpx.get(f"{srv.url}/v1/no-such-route", auth=alice), 404, "not_found"),
            (httpx.post(f"{srv.url}/v1/jobs", auth=alice, files=upload(speech_wav), data={"kind": "x"}), 400,
             "invalid_request"),
        ]
        for response, status, code in cases:
            assert response.status_code == status, (response.request.url, response.text)
            assert _envelope(response)["code"] == code, response.text
        assert cases[0][0].headers["www-authenticate"].startswith("Basic")


def test_docs_are_served_from_local_assets(server):
    page = httpx.get(f"{server.url}/v1/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"/v1/docs/static/{asset}" in page.text
        assert httpx.get(f"{server.url}/v1/docs/static/{asset}").status_code == 200
    assert httpx.get(f"{server.url}/v1/openapi.json").json()["paths"]["/v1/models"]


def test_models_lists_what_is_loaded_and_the_openai_client_reads_it(server):
    from openai import OpenAI

    listed = httpx.get(f"{server.url}/v1/models").json()
    model = listed["data"][0]
    assert listed["object"] == "list" and model["id"] == "paraformer-large" and model["object"] == "model"
    assert set(model["loaded"]) == {"vad", "asr", "punc"} and model["loaded"]["asr"]["revision"] == "v2.0.4"
    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", http_client=httpx.Client(trust_env=False))
    assert [m.id for m in client.models.list()] == ["paraformer-large"]


def test_a_completed_job_reports_full_progress_and_cannot_be_cancelled(server, speech_wav):
    job = httpx.post(f"{server.url}/v1/jobs", files=upload(speech_wav)).json()
    assert server.engine.wait(job["id"], timeout=120).state is JobState.COMPLETED
    status = httpx.get(f"{server.url}/v1/jobs/{job['id']}").json()
    assert status["status"] == "completed" and status["progress"] == 1.0
    listed = httpx.get(f"{server.url}/v1/jobs").json()["data"]
    assert next(j for j in listed if j["id"] == job["id"])["progress"] == 1.0
    refused = httpx.delete(f"{server.url}/v1/jobs/{job['id']}")
    assert refused.status_code == 409 and _envelope(refused)["code"] == "already_finished"


def test_more_than_one_file_in_a_request_is_refused(server, speech_wav):
    data = speech_wav.read_bytes()
    two = [("file", ("first.wav", data, "audio/wav")), ("file", ("second.wav", data, "audio/wav"))]
    for route in ("/v1/jobs", "/v1/audio/transcriptions"):
        refused = httpx.post(f"{server.url}{route}", files=two)
        assert refused.status_code == 400, refused.text
        assert _envelope(refused)["code"] == "invalid_request" and "one file" in _envelope(refused)["message"]
    assert httpx.get(f"{server.url}/v1/jobs").json()["data"] == []


# ---- responsiveness: waiting jobs do not stall the other routes -----------------------------------------


@pytest.mark.slow  # nine clients wait on a full queue
def test_reads_answer_while_the_queue_and_the_worker_are_full(settings, tmp_path, pipeline, speech_wav):
    """Blocking waits once ran in asyncio's shared pool (6 threads on 2 cores): 7 clients waiting
    for their transcriptions left no thread for GET /v1/jobs, which then took 13–24 s."""
    gated = GatedPipeline(pipeline)
    s = make_settings(settings, tmp_path, max_size=8, workers=1)
    engine = Engine(s, pipeline_factory=lambda _: gated)
    with Server(s, engine) as srv:
        engine.start()
        done = httpx.post(f"{srv.url}/v1/jobs", files=upload(speech_wav, "done.wav")).json()
        assert engine.wait(done["id"], timeout=120).state is JobState.COMPLETED
        gated.gate.clear()
        answers: list[int] = []

        def wait_for_transcript(i: int) -> None:
            response = httpx.post(f"{srv.url}/v1/audio/transcriptions", files=upload(speech_wav, f"w{i}.wav"),
                                  timeout=300)
            answers.append(response.status_code)

        clients = [threading.Thread(target=wait_for_transcript, args=(i,), daemon=True) for i in range(9)]
        for client in clients:
            client.start()
        deadline = time.time() + 120
        while len([r for r in engine.jobs(limit=50) if not r.state.finished]) < 9:
            assert time.time() < deadline, "the nine transcriptions were not all accepted"
            time.sleep(0.1)
        # the worker holds one, eight wait: the queue is full, and every client is waiting
        assert httpx.post(f"{srv.url}/v1/jobs", files=upload(speech_wav)).status_code == 503
        patient = {"timeout": 5.0}  # generous: these answer in milliseconds when nothing stalls them
        assert len(httpx.get(f"{srv.url}/v1/jobs", **patient).json()["data"]) == 10
        assert httpx.get(f"{srv.url}/v1/jobs/{done['id']}", **patient).json()["status"] == "completed"
        assert httpx.get(f"{srv.url}/v1/jobs/{done['id']}/result", params={"format": "srt"}, **patient).status_code == 200
        assert httpx.get(f"{srv.url}/metrics", **patient).status_code == 200
        gated.gate.set()
        for client in clients:
            client.join(300)
        assert answers == [200] * 9


# ---- uploads: capped per request and in total, and never left behind ----------------------------------


def _upload_settings(settings, tmp_path, **storage):
    s = make_settings(settings, tmp_path)
    return s.model_copy(update={
        "audio": s.audio.model_copy(update={"max_file_mb": 1.0, "max_request_mb": 2.0}),
        "storage": s.storage.model_copy(update={"max_uploads_mb": 3.0, **storage}),
    })


def _leftovers(s) -> list[str]:
    """Files under Gradio's temp dir other than results and Gradio's own bookkeeping."""
    root = s.storage.cache_path() / "gradio"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and not p.relative_to(root).parts[0] in ("results", "vibe_edit_history"))


def test_ui_uploads_are_capped_per_request_and_in_total(settings, tmp_path, pipeline):
    s = _upload_settings(settings, tmp_path)
    engine = Engine(s, pipeline_factory=lambda _: pipeline)
    part = b"\0" * int(0.9 * 1024 * 1024)
    with Server(s, engine) as srv:
        engine.start()
        many = [("files", (f"f{i}.wav", part)) for i in range(3)]  # 2.7 MB in one request: over 2 MB
        refused = httpx.post(f"{srv.url}/gradio_api/upload", files=many)
        assert refused.status_code == 413 and refused.json()["error"]["code"] == "request_too_large", refused.text
        one_too_big = httpx.post(f"{srv.url}/gradio_api/upload", files=[("files", ("big.wav", part * 2))])
        assert one_too_big.status_code == 413 and one_too_big.json()["error"]["code"] == "file_too_large"
        assert _leftovers(s) == []

        two = [("files", (f"g{i}.wav", part)) for i in range(2)]
        assert httpx.post(f"{srv.url}/gradio_api/upload", files=two).status_code == 200  # 1.8 MB kept
        full = httpx.post(f"{srv.url}/gradio_api/upload", files=two)  # 3.6 MB in all: over 3 MB
        assert full.status_code == 413 and "upload space" in full.json()["error"]["message"], full.text
        assert len(_leftovers(s)) == 2  # the first request's files, nothing of the second

        boundary = "asrtestboundary"
        body = b"".join((f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"c{i}.wav\"\r\n"
                         f"Content-Type: audio/wav\r\n\r\n").encode() + part + b"\r\n" for i in range(3))
        body += f"--{boundary}--\r\n".encode()
        streamed = httpx.post(f"{srv.url}/gradio_api/upload", content=iter([body[i:i + 65536] for i in
                                                                            range(0, len(body), 65536)]),
                              headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert streamed.status_code == 413  # no Content-Length: cut off as it streams in
        assert len(_leftovers(s)) == 2
        assert httpx.get(f"{srv.url}/healthz").status_code == 200


@pytest.mark.slow  # waits for an upload to expire
def test_a_ui_upload_is_removed_once_its_job_has_its_copy_or_when_it_expires(settings, tmp_path, pipeline, speech_wav):
    from tests.gradio_events import file_data, run_event
    from tests.gradio_events import upload as ui_upload

    s = make_settings(settings, tmp_path)
    # long enough for the first of two jobs (and its playback copy) to finish on a loaded machine before the
    # second is sent: 2 s was, until the player's copy made a UI job a little longer
    s = s.model_copy(update={"storage": s.storage.model_copy(update={"ui_upload_ttl_s": 8.0})})
    engine = Engine(s, pipeline_factory=lambda _: pipeline)
    with Server(s, engine) as srv:
        engine.start()
        path = ui_upload(srv.url, speech_wav, "meeting.wav")
        outcome = run_event(srv.url, "transcribe", [[file_data(path)], None, True, ["srt"], True, False, 0, ""])
        assert outcome.success and outcome.output[0], outcome
        assert _leftovers(s) == []  # neither the upload, a copy of it, nor an empty temp file is left

        # the same file uploaded twice (two tabs, two users) is one file: the first job must not take
        # it away from the second
        first, second = ui_upload(srv.url, speech_wav, "twice.wav"), ui_upload(srv.url, speech_wav, "twice.wav")
        assert first == second
        assert run_event(srv.url, "transcribe", [[file_data(first)], None, True, ["srt"], True, False, 0, ""]).success
        assert Path(second).exists()
        assert run_event(srv.url, "transcribe", [[file_data(second)], None, True, ["srt"], True, False, 0, ""]).success
        assert _leftovers(s) == []

        unused = ui_upload(srv.url, speech_wav, "never-used.wav")
        assert Path(unused).exists()
        deadline = time.time() + 30
        while Path(unused).exists():
            assert time.time() < deadline, "the unused upload was not removed after its time"
            time.sleep(0.2)
        assert _leftovers(s) == []


@pytest.mark.slow  # starts processes
def test_the_same_bad_file_gets_the_same_message_in_the_ui_the_api_and_the_cli(server, tmp_path):
    from tests.conftest import TEST_CONFIG
    from tests.gradio_events import file_data, run_event
    from tests.gradio_events import upload as ui_upload
    from tests.test_cli import run_asr

    bad = {"empty.wav": b"", "report.wav": b"%PDF-1.7\n" + b"x" * 4000,
           "Q&A; page $1.mp3": b"<!DOCTYPE html><html><body>not audio</body></html>" * 20}
    for name, content in bad.items():
        path = tmp_path / name
        path.write_bytes(content)
        api = httpx.post(f"{server.url}/v1/jobs", files={"file": (name, content)})
        assert 400 <= api.status_code < 500
        api_message = _envelope(api)["message"]
        if content:
            # the browser sends the user's name along; the stored copy's name drops the "$"
            ui = run_event(server.url, "transcribe",
                           [[file_data(ui_upload(server.url, path), name)], None, True, ["srt"], True, False, 0, ""])
            assert not ui.success and ui.error == api_message, (name, ui.error, api_message)
        cli = run_asr("transcribe", "--config", TEST_CONFIG, path, "--out", tmp_path / "out", cwd=tmp_path)
        assert cli.returncode != 0
        assert f"{path}: error: {api_message.removeprefix(name + ': ')}" in cli.stderr, (cli.stderr, api_message)
        assert api_message.startswith(f"{name}: ")
