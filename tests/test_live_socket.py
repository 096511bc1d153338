"""Live captions over the WebSocket, against the real service in a subprocess (the live profile, on the test
models): a third-party FunASR client from PyPI (funasr-client, used as it ships) gets FunASR's messages, and
every protocol error gets its own message and a close, with the stream's place given back."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.server import running_server

pytestmark = pytest.mark.slow

FRAME = 1920  # 60 ms of PCM16 at 16 kHz, what FunASR's clients send


@pytest.fixture(scope="module")
def server(test_models, tmp_path_factory):
    overrides = {"models": {"profile": "vad+asr+punc+live"}, "live": {"max_streams": 2, "idle_timeout_s": 3}}
    with running_server(tmp_path_factory.mktemp("live-server"), test_models, overrides=overrides) as server:
        yield server


@pytest.fixture(scope="module")
def ws_url(server) -> str:
    return server.url.replace("http://", "ws://")


@pytest.fixture(scope="module")
def speech_pcm(speech_wav, tmp_path_factory):
    """The three sentences as a 16-bit mono WAV (what funasr-client reads) and as raw PCM16."""
    audio, rate = sf.read(speech_wav, dtype="float32")  # a FLOAT file read as int16 would come back as zeros
    assert rate == 16000
    audio = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    path = tmp_path_factory.mktemp("live-audio") / "three sentences.wav"
    sf.write(path, audio, rate, subtype="PCM_16")
    return path, audio.tobytes()


def stream_file(path, uri: str, mode: str) -> list[dict]:
    """funasr-client's file streaming, as it ships: its asyncio one (0.1.6's blocking one deadlocks in its own
    close(): it takes its lock, then signal_close() takes it again)."""
    import asyncio

    from funasr_client import async_file_asr_stream

    async def collect() -> list[dict]:
        return [message async for message in async_file_asr_stream(path, uri, mode=mode)]

    return asyncio.run(asyncio.wait_for(collect(), 120))


def test_a_third_party_funasr_client_gets_partials_then_finals_in_2pass(ws_url, speech_pcm):
    path, _ = speech_pcm
    messages = stream_file(path, ws_url + "/", "2pass")  # the root, where FunASR's clients connect
    modes = [m["mode"] for m in messages]
    assert "2pass-online" in modes and "2pass-offline" in modes
    assert all(m["wav_name"] == "three sentences.wav" for m in messages)
    finals = [m for m in messages if m["mode"] == "2pass-offline"]
    assert len(finals) >= 3 and all(m["text"] for m in finals)
    for final in finals:  # the client has decoded the timestamp string, as FunASR's C++ runtime sends it
        assert final["timestamp"] and all(start <= end for start, end in final["timestamp"])
        assert final["stamp_sents"] and {"text_seg", "punc", "start", "end", "ts_list"} <= set(final["stamp_sents"][0])
    assert messages[-1]["is_final"] and not any(m["is_final"] for m in messages[:-1])
    # the utterance is a job in the history, with its finals as the transcript and its audio for the player
    import httpx

    jobs = httpx.get(ws_url.replace("ws://", "http://") + "/v1/jobs", params={"q": "three sentences"}).json()["data"]
    job = next(j for j in jobs if j["filename"] == "three sentences.wav")
    assert job["status"] == "completed"
    result = httpx.get(ws_url.replace("ws://", "http://") + f"/v1/jobs/{job['id']}/result", params={"format": "txt"})
    assert result.status_code == 200 and "".join(result.text.split()) == "".join(m["text"] for m in finals)  # a line each
    media = httpx.get(ws_url.replace("ws://", "http://") + f"/ui/media/{job['id']}")
    assert media.status_code == 200 and media.content[:4] == b"fLaC"


def test_concurrent_streams_share_the_streaming_models_passes_and_each_gets_its_own_captions(ws_url, speech_pcm):
    """Two funasr-client streams at once (the limit here): each gets what it gets alone, and /metrics shows
    passes of the streaming model that carried both."""
    import asyncio

    import httpx
    from funasr_client import async_file_asr_stream

    path, _ = speech_pcm
    alone = [m["text"] for m in stream_file(path, ws_url + "/v1/live", "2pass")]

    async def both() -> list[list[dict]]:
        async def one() -> list[dict]:
            return [m async for m in async_file_asr_stream(path, ws_url + "/v1/live", mode="2pass")]
        return await asyncio.wait_for(asyncio.gather(one(), one()), 120)

    def passes_with_two() -> float:
        metrics = httpx.get(ws_url.replace("ws://", "http://") + "/metrics").text
        return sum(float(line.split()[-1]) for line in metrics.splitlines()
                   if line.startswith('asr_live_passes_total{streams="2"}'))

    before = passes_with_two()
    together = asyncio.run(both())
    assert [[m["text"] for m in messages] for messages in together] == [alone, alone]
    assert passes_with_two() > before, "the two streams never shared a pass of the streaming model"


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_online_and_offline_modes(ws_url, speech_pcm, mode):
    messages = stream_file(speech_pcm[0], ws_url + "/v1/live", mode)
    assert messages and {m["mode"] for m in messages} == {mode}
    assert messages[-1]["is_final"]


def _open(ws_url: str, path: str = "/v1/live", **kwargs):
    from websockets.sync.client import connect

    return connect(ws_url + path, subprotocols=["binary"], open_timeout=30, **kwargs)


def _error_of(socket) -> dict:
    message = json.loads(socket.recv(timeout=30))
    assert message["is_final"] is True
    return message["error"]


def _closed(socket) -> int:
    from websockets.exceptions import ConnectionClosed

    with pytest.raises(ConnectionClosed) as e:
        for _ in range(100):
            socket.recv(timeout=30)
    return e.value.rcvd.code


@pytest.mark.parametrize(("first", "code", "message"), [
    (b"\x00" * FRAME, "invalid_request", "send the JSON configuration message first"),
    ("{not json", "invalid_request", "a text message must be JSON"),
    ('["a list"]', "invalid_request", "a text message must be a JSON object"),
    ('{"mode": "3pass"}', "invalid_request", "mode must be one of online, offline, 2pass, not '3pass'"),
    ('{"mode": "2pass", "audio_fs": 44100}', "invalid_request", "audio_fs must be 16000 or 8000"),
    ('{"mode": "2pass", "chunk_size": "5,x,5"}', "invalid_request", "chunk_size must be three whole numbers"),
    ('{"mode": "2pass", "wav_format": "mp3"}', "invalid_request", "wav_format must be pcm"),
])
def test_a_bad_first_message_gets_its_reason_and_a_close(ws_url, first, code, message):
    with _open(ws_url) as socket:
        socket.send(first)
        error = _error_of(socket)
        assert error["code"] == code and message in error["message"]
        assert _closed(socket) == 1008


def test_an_oversized_frame_and_an_odd_frame_are_refused(ws_url):
    with _open(ws_url) as socket:
        socket.send(json.dumps({"mode": "2pass", "chunk_size": [5, 10, 5], "wav_name": "big"}))
        socket.send(b"\x00" * (257 * 1024))
        error = _error_of(socket)
        assert error["code"] == "request_too_large" and "live.max_frame_kb" in error["message"]
        assert _closed(socket) == 1009
    with _open(ws_url) as socket:
        socket.send(json.dumps({"mode": "online"}))
        socket.send(b"\x00" * 3)
        assert "PCM16" in _error_of(socket)["message"]


def test_streams_over_the_limit_are_refused_and_a_dropped_one_gives_its_place_back(server, ws_url, speech_pcm):
    pcm = speech_pcm[1]
    first, second = _open(ws_url), _open(ws_url)
    try:
        for socket in (first, second):
            socket.send(json.dumps({"mode": "2pass"}))
            socket.send(pcm[:FRAME * 5])
        time.sleep(1)
        with _open(ws_url) as third:
            third.send(json.dumps({"mode": "2pass"}))
            error = _error_of(third)
            assert error["code"] == "busy" and "live.max_streams" in error["message"]
            assert _closed(third) == 1013
    finally:
        first.close()  # a disconnect mid-stream, without {"is_speaking": false}
    deadline = time.monotonic() + 20
    while True:  # its place comes back
        with _open(ws_url) as again:
            again.send(json.dumps({"mode": "offline"}))
            again.send(pcm[:FRAME * 10])
            again.send(json.dumps({"is_speaking": False}))
            reply = json.loads(again.recv(timeout=60))
            if "error" not in reply or time.monotonic() > deadline:
                break
        time.sleep(0.5)
    second.close()
    assert "error" not in reply and reply["is_final"] is True
    # nothing is left behind: every stream's place, and its recording (none here had a final to keep)
    spool = server.config_path.parent / "cache" / "live"
    deadline = time.monotonic() + 20
    while (left := sorted(p.name for p in spool.glob("*"))) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == []
    metrics = httpx.get(server.url + "/metrics").text
    assert "asr_live_streams 0.0" in metrics


def test_a_client_that_goes_right_after_its_end_still_gets_its_utterance_saved(server, ws_url, speech_pcm):
    """It sends everything and is_speaking false, and closes without reading a reply: what it said is still
    decoded and kept in the history."""
    pcm = speech_pcm[1]
    with _open(ws_url) as socket:
        socket.send(json.dumps({"mode": "2pass", "wav_name": "left at once"}))
        for i in range(0, len(pcm), FRAME):
            socket.send(pcm[i:i + FRAME])
        socket.send(json.dumps({"is_speaking": False}))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = httpx.get(server.url + "/v1/jobs", params={"q": "left at once"}).json()["data"]
        if jobs:
            break
        time.sleep(0.5)
    assert [j["status"] for j in jobs] == ["completed"]
    text = httpx.get(server.url + f"/v1/jobs/{jobs[0]['id']}/result", params={"format": "txt"}).text
    assert text.strip()


def test_an_idle_stream_is_closed_with_its_reason(ws_url):
    with _open(ws_url) as socket:
        socket.send(json.dumps({"mode": "2pass"}))
        started = time.monotonic()
        error = _error_of(socket)
        assert error["code"] == "idle_timeout" and "live.idle_timeout_s" in error["message"]
        assert time.monotonic() - started >= 2.5
        assert _closed(socket) == 1001


def test_many_utterances_on_one_connection(ws_url, speech_pcm):
    pcm = speech_pcm[1]
    with _open(ws_url) as socket:
        socket.send(json.dumps({"mode": "offline"}))
        for _ in range(2):
            for i in range(0, len(pcm), FRAME):
                socket.send(pcm[i:i + FRAME])
            socket.send(json.dumps({"is_speaking": False}))
            replies = []
            while not replies or not replies[-1]["is_final"]:
                replies.append(json.loads(socket.recv(timeout=60)))
            assert len(replies) >= 3 and all(r["mode"] == "offline" for r in replies)


def test_with_logins_on_a_stream_needs_a_login(test_models, tmp_path_factory, speech_pcm):
    """The UI's logins hold for live streams too: none or a wrong password is refused; HTTP Basic in the URL
    (which the websockets library, under FunASR's Python clients, sends as a header) is let in."""
    overrides = {"models": {"profile": "vad+asr+punc+live"}, "server": {"auth": ["alice:secret"]}}
    with running_server(tmp_path_factory.mktemp("live-auth"), test_models, overrides=overrides) as server:
        url = server.url.replace("http://", "ws://")
        for credentials in ("", "alice:wrong@"):
            with _open(url.replace("ws://", f"ws://{credentials}")) as socket:
                error = _error_of(socket)
                assert error["code"] == "login_required", error
                assert _closed(socket) == 1008
        messages = stream_file(speech_pcm[0], url.replace("ws://", "ws://alice:secret@") + "/", "offline")
        assert messages and messages[-1]["is_final"] and "error" not in messages[-1]
