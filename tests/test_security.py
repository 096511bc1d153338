"""Security probes against the running app (a real server process on loopback)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_MODELS
from tests.server import running_server

EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def server(test_models, tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("security"), TEST_MODELS) as srv:
        yield srv


@pytest.fixture(scope="module")
def job(server, speech_wav):
    """A finished job, whose upload copy and database are what the probes go after."""
    created = httpx.post(f"{server.url}/v1/jobs", files={"file": ("private.wav", speech_wav.read_bytes())}).json()
    deadline = time.monotonic() + 120
    while httpx.get(f"{server.url}/v1/jobs/{created['id']}").json()["status"] != "completed":
        assert time.monotonic() < deadline, "the job did not complete"
        time.sleep(0.2)
    return created


def test_calls_that_bypass_the_queue_are_refused(server):
    before = len(httpx.get(f"{server.url}/v1/jobs").json()["data"])
    for name in ("transcribe", "detect", "open_job", "refresh_history", "on_load"):
        response = httpx.post(f"{server.url}/gradio_api/run/{name}", json={"data": [None, None, True, ["srt"], True, False, 0, ""]})
        assert response.status_code in (403, 404), (name, response.status_code, response.text[:200])
    # a name that is no endpoint at all: Gradio answers 500 (it cannot infer a function), runs nothing
    assert httpx.post(f"{server.url}/gradio_api/run/predict", json={"data": []}).status_code in (404, 500)
    assert len(httpx.get(f"{server.url}/v1/jobs").json()["data"]) == before
    info = httpx.get(f"{server.url}/gradio_api/info").json()
    assert info["named_endpoints"] == {}  # nothing is published as an API endpoint


def test_file_routes_do_not_leak_server_files(server, job):
    state = server.config_path.parent / "state"
    jobs_dir = server.config_path.parent / "cache" / "jobs"
    targets = ["/etc/passwd", str(state / "jobs.sqlite3"), str(server.config_path),
               *[str(p) for p in jobs_dir.rglob("*") if p.is_file()], "../../../../etc/passwd", "http://127.0.0.1:1/"]
    for target in targets:
        for route in ("/gradio_api/file=", "/file="):
            response = httpx.get(f"{server.url}{route}{target}", follow_redirects=False)
            assert response.status_code in (400, 403, 404), (route, target, response.status_code)
            assert "root:" not in response.text and "SQLite format" not in response.text


def test_a_queue_payload_cannot_point_at_server_files(server):
    body = {"data": [[{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}], None, True, ["srt"], True, False, 0, ""],
            "fn_index": 0, "session_hash": "probe0001", "event_data": None, "trigger_id": None}
    joined = httpx.post(f"{server.url}/gradio_api/queue/join", json=body)
    if joined.status_code == 200:  # accepted into the queue: the event must fail, not read the file
        with httpx.stream("GET", f"{server.url}/gradio_api/queue/data", params={"session_hash": "probe0001"},
                          timeout=60) as events:
            text = ""
            for line in events.iter_lines():
                text += line
                if '"process_completed"' in line:
                    break
        assert "root:" not in text and '"success":true' not in text.replace(" ", "")
    else:
        assert joined.status_code in (400, 403, 404, 422)


def test_requests_from_a_foreign_origin_are_refused(server, speech_wav):
    headers = {"Origin": EVIL}
    assert httpx.get(f"{server.url}/config", headers=headers).status_code in (400, 403)
    upload = httpx.post(f"{server.url}/v1/audio/transcriptions", headers=headers,
                        files={"file": ("csrf.wav", speech_wav.read_bytes())})
    assert upload.status_code == 403 and "origin" in upload.text.lower()
    assert httpx.post(f"{server.url}/v1/jobs", headers=headers, files={"file": ("csrf.wav", b"x")}).status_code == 403
    same = {"Origin": server.url}
    assert httpx.get(f"{server.url}/v1/jobs", headers=same).status_code == 200


def test_uploads_are_never_served_back_as_html(server, job):
    page = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
    uploaded = httpx.post(f"{server.url}/gradio_api/upload", files=[("files", ("evil.html", page, "text/html"))])
    if uploaded.status_code == 200:
        path = uploaded.json()[0]
        served = httpx.get(f"{server.url}/gradio_api/file={path}")
        kind = served.headers.get("content-type", "")
        disposition = served.headers.get("content-disposition", "")
        assert not kind.startswith("text/html") or disposition.startswith("attachment"), (kind, disposition)
    result = httpx.get(f"{server.url}/v1/jobs/{job['id']}/result", params={"format": "txt"})
    assert result.headers["x-content-type-options"] == "nosniff"
    assert result.headers["content-disposition"].startswith("attachment")


def test_with_logins_nothing_is_reachable_without_one(test_models, tmp_path, speech_wav):
    overrides = {"server": {"auth": ["alice:correct-horse"]}}
    with running_server(tmp_path, TEST_MODELS, overrides=overrides) as server:
        anonymous = httpx.Client(base_url=server.url, follow_redirects=False)
        probes = [("GET", "/config"), ("GET", "/gradio_api/info"), ("GET", "/gradio_api/file=/etc/passwd"),
                  ("POST", "/gradio_api/upload"), ("POST", "/gradio_api/queue/join"), ("GET", "/v1/jobs"),
                  ("POST", "/v1/audio/transcriptions"), ("GET", "/v1/jobs/x/result"), ("GET", "/metrics")]
        for method, path in probes:
            response = anonymous.request(method, path)
            assert response.status_code in (401, 403), (method, path, response.status_code)
        page = anonymous.get("/").text
        assert 'id="login"' in page and "gradio-app" not in page and '"components"' not in page  # only our login page
        logged_in = httpx.post(f"{server.url}/v1/jobs", auth=("alice", "correct-horse"),
                               files={"file": ("mine.wav", speech_wav.read_bytes())})
        assert logged_in.status_code == 202
        login = anonymous.post("/login", data={"username": "alice", "password": "wrong"})
        assert login.status_code in (400, 401)
        session = httpx.Client(base_url=server.url)
        assert session.post("/login", data={"username": "alice", "password": "correct-horse"}).status_code == 200
        config = json.loads(session.get("/config").text)
        assert config["components"]
        # the UI's upload route (ours, in front of Gradio's) takes the login cookie
        uploaded = session.post("/gradio_api/upload", files=[("files", ("mine.wav", speech_wav.read_bytes()))])
        assert uploaded.status_code == 200 and uploaded.json()[0].endswith("mine.wav")
        assert anonymous.post("/gradio_api/upload", files=[("files", ("x.wav", b"x"))]).status_code == 401


# ---- files named in UI events -------------------------------------------------------------------------


def test_ui_events_may_only_name_files_the_service_handed_out(server, speech_wav):
    """Mounted into our app, Gradio applies none of its own file checks: an event naming /dev/zero
    pinned the event loop, one naming a server file got it transcribed or copied into its cache."""
    from tests.gradio_events import file_data, join, run_event, upload

    work = server.config_path.parent
    planted = work / "planted.wav"  # on the server, never uploaded
    planted.write_bytes(speech_wav.read_bytes())
    fifo = work / "pipe.wav"
    if not fifo.exists():
        os.mkfifo(fifo)
    gradio_dir = work / "cache" / "gradio"
    handed_out = upload(server.url, speech_wav, "mine.wav")
    before = sorted(p for p in gradio_dir.rglob("*") if p.is_file())
    link = Path(handed_out).with_name("link.wav")
    link.symlink_to(planted)  # a link inside the upload folder that leads out of it
    jobs_before = len(httpx.get(f"{server.url}/v1/jobs").json()["data"])
    targets = ["/dev/zero", "/dev/urandom", str(planted), str(fifo), str(link), "/etc/passwd",
               str(Path(handed_out).parent / ".." / ".." / ".." / ".." / "planted.wav"), "http://127.0.0.1:1/x.wav"]
    for target in targets:
        for route in ("queue/join", "run/transcribe", "call/transcribe", "api/transcribe"):
            refused = join(server.url, "transcribe", [[file_data(target)], None, True, ["srt"], True, False, 0, ""], route=route)
            assert refused.status_code == 403, (target, route, refused.status_code, refused.text[:200])
            assert refused.json()["error"]["code"] == "forbidden_file"
        nested = join(server.url, "detect", [{"path": target, "meta": {"_type": "gradio.FileData"}}])
        assert nested.status_code == 403
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    link.unlink()
    assert sorted(p for p in gradio_dir.rglob("*") if p.is_file()) == before  # nothing read into the cache
    assert len(httpx.get(f"{server.url}/v1/jobs").json()["data"]) == jobs_before
    # what the service handed out still works
    assert run_event(server.url, "transcribe", [[file_data(handed_out)], None, True, ["srt"], True, False, 0, ""]).success


def test_a_host_name_not_on_the_allow_list_is_refused_everywhere(server):
    """DNS rebinding: the attacker's name resolves to 127.0.0.1, and its page then sends Host and
    Origin both naming the attacker, which an Origin-equals-Host check lets through."""
    rebound = {"Host": "attacker.example:6006", "Origin": "http://attacker.example:6006"}
    for method, path in (("GET", "/"), ("GET", "/config"), ("GET", "/v1/jobs"), ("POST", "/v1/jobs"),
                         ("POST", "/gradio_api/upload"), ("GET", "/healthz")):
        refused = httpx.request(method, f"{server.url}{path}", headers=rebound)
        assert refused.status_code == 403, (path, refused.status_code)
        assert refused.json()["error"]["code"] == "forbidden_host"
    for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}"):
        assert httpx.get(f"{server.url}/", headers={"Host": host}).status_code == 200


def test_bad_requests_write_no_traceback_and_repeats_are_rate_limited(server):
    for i in range(25):
        response = httpx.get(f"{server.url}/gradio_api/queue/data", params={"session_hash": f"random{i}"})
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
        httpx.get(f"{server.url}/v1/jobs", headers={"Host": f"rebind{i}.example"})
    time.sleep(0.5)
    log = server.log_tail(200_000)
    assert "Traceback" not in log
    assert log.count("refused a request for host") == 1  # the other 24 were held back


# ---- logins back off -------------------------------------------------------------------------------------


def test_failed_logins_back_off_per_user_and_per_client(test_models, tmp_path):
    overrides = {"server": {"auth": ["alice:correct-horse"], "allowed_hosts": ["asr.example.org"],
                            "login_max_failures": 3}}
    with running_server(tmp_path, TEST_MODELS, overrides=overrides) as server:
        ui = httpx.Client(base_url=server.url)
        for _ in range(3):
            assert ui.post("/login", data={"username": "alice", "password": "wrong"}).status_code == 400
        throttled = ui.post("/login", data={"username": "alice", "password": "correct-horse"})
        assert throttled.status_code == 429 and throttled.json()["error"]["code"] == "too_many_login_attempts"
        assert int(throttled.headers["retry-after"]) >= 1
        # the same user through the API is held back too, even with the right password
        api = httpx.get(f"{server.url}/v1/jobs", auth=("alice", "correct-horse"))
        assert api.status_code == 429 and api.headers["retry-after"]
        time.sleep(float(throttled.headers["retry-after"]) + 0.2)
        assert ui.post("/login", data={"username": "alice", "password": "correct-horse"}).status_code == 200
        assert httpx.get(f"{server.url}/v1/jobs", auth=("alice", "correct-horse")).status_code == 200
        for _ in range(3):
            assert httpx.get(f"{server.url}/v1/jobs", auth=("mallory", "guess")).status_code == 401
        assert httpx.get(f"{server.url}/v1/jobs", auth=("mallory", "guess")).status_code == 429
        assert "failed logins in a row" in server.log_tail(100_000)
        # a configured name is served; the login form answers through it
        assert httpx.get(f"{server.url}/", headers={"Host": "asr.example.org"}).status_code == 200
