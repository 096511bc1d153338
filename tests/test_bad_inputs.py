"""Hostile and broken input, each through the engine (probe at submit, decode in the isolated child,
the real pipeline) and through the HTTP API: a specific message, nothing crashing, the service
still answering afterwards."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import httpx
import numpy as np
import pytest

from asr import errors
from asr.service.engine import Engine
from asr.service.jobs import JobState
from tests import audio_samples as A
from tests.test_api import Server
from tests.test_engine import make_settings


@dataclass(frozen=True)
class Case:
    name: str
    upload_name: str
    build: Callable[[A.Samples, Path], Path]
    error: type | None = None  # refused (at submit or by the job) with this error
    words: str = ""  # ...whose message contains this
    status: int | None = None  # HTTP status of the refusal
    speech: bool | None = None  # accepted: True = speech found, False = empty transcript, None = either
    duration: float | None = None  # accepted: expected audio seconds (approximately)


def fake(kind: str) -> Callable[[A.Samples, Path], Path]:
    def build(samples: A.Samples, path: Path) -> Path:
        path.write_bytes(A.FAKES[kind]())
        return path
    return build


def copy_of(method: str, *args) -> Callable[[A.Samples, Path], Path]:
    def build(samples: A.Samples, path: Path) -> Path:
        path.write_bytes(getattr(samples, method)(*args).read_bytes())
        return path
    return build


def truncated(method: str, keep: float) -> Callable[[A.Samples, Path], Path]:
    return lambda samples, path: A.truncate(getattr(samples, method)(), path, keep)


def flipped(method: str) -> Callable[[A.Samples, Path], Path]:
    return lambda samples, path: A.flip_bits(getattr(samples, method)(), path, flips=40, seed=7)


def raw(data: bytes) -> Callable[[A.Samples, Path], Path]:
    def build(samples: A.Samples, path: Path) -> Path:
        path.write_bytes(data)
        return path
    return build


def wav_of(make: Callable[[], np.ndarray], rate: int, encoding: str = "s16") -> Callable[[A.Samples, Path], Path]:
    return lambda samples, path: A.write_wav(path, make(), rate, encoding)


def noise(seconds: float, level: float) -> np.ndarray:
    return (level * np.random.default_rng(0).standard_normal(int(seconds * 16000))).astype(np.float32)


def bomb(samples: A.Samples, path: Path) -> Path:
    """A FLAC of three hours of silence: a small file that decodes to 700 MB of float32 samples."""
    import av

    with av.open(str(path), "w", format="flac") as out:
        stream = out.add_stream("flac", rate=16000, layout="mono")
        block = np.zeros((1, 16384), np.float32)
        for start in range(0, 16000 * 3 * 3600, block.shape[1]):
            frame = av.AudioFrame.from_ndarray(block, format="flt", layout="mono")
            frame.sample_rate, frame.pts = 16000, start
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def lying_bomb(samples: A.Samples, path: Path) -> Path:
    """The same three hours of silence, but its FLAC header (STREAMINFO) says 10 seconds."""
    return A.flac_set_length(bomb(samples, path), 10 * 16000)


CASES = [
    # broken files
    Case("empty", "empty.wav", raw(b""), errors.EmptyFileError, "empty", 400),
    Case("header only", "header.wav", copy_of("header_only_wav"), errors.EmptyFileError, "no audio samples", 400),
    Case("truncated wav", "cut.wav", truncated("speech_wav", 0.5), speech=None),
    Case("truncated mp3", "cut.mp3", truncated("mp3", 0.5), speech=None),
    Case("truncated m4a", "cut.m4a", truncated("m4a", 0.5), errors.CorruptAudioError, "damaged", 400),
    Case("bit-flipped mp3", "flipped.mp3", flipped("mp3"), speech=None),
    # not audio
    Case("pdf as wav", "report.wav", fake("pdf"), errors.NotAudioError, "PDF", 415),
    Case("jpeg as mp3", "photo.mp3", fake("jpeg"), errors.NotAudioError, "JPEG", 415),
    Case("zip as wav", "archive.wav", fake("zip"), errors.NotAudioError, "ZIP", 415),
    Case("html as mp3", "page.mp3", fake("html"), errors.NotAudioError, "HTML", 415),
    # video
    Case("mp4 with audio", "clip.mp4", copy_of("mp4_video"), speech=True),
    Case("mp4 without audio", "silent-film.mp4", copy_of("mp4_video_only"), errors.NoAudioTrackError,
         "no audio track", 415),
    # rates and channels
    Case("8 kHz mu-law", "phone.wav", copy_of("mulaw_wav"), speech=True),
    Case("44.1 kHz", "cd.wav", copy_of("wav", "s16", 44100), speech=True),
    Case("48 kHz", "video.wav", copy_of("wav", "s16", 48000), speech=True),
    Case("96 kHz", "studio.wav", copy_of("wav", "s24", 96000), speech=True),
    Case("speech in one channel", "left.wav", copy_of("left_only_wav"), speech=True),
    Case("phase-inverted stereo", "inverted.wav", copy_of("phase_inverted_wav"), speech=True),
    Case("6 channels", "surround.wav", copy_of("six_channel_wav"), speech=None),
    # length
    Case("long silence", "quiet.wav", wav_of(lambda: np.zeros(16000 * 600, np.float32), 16000), speech=False,
         duration=600),
    Case("long low noise", "hiss.wav", wav_of(lambda: noise(300, 0.0005), 16000), speech=False, duration=300),
    Case("one sample", "click.wav", wav_of(lambda: np.array([0.5], np.float32), 16000), speech=False),
    Case("10 ms", "blip.wav", wav_of(lambda: noise(0.01, 0.1), 16000), speech=False),
    # size
    Case("decompression bomb", "tiny.flac", bomb, errors.AudioTooLongError, "longer than", 413),
    Case("decompression bomb, header lies", "short.flac", lying_bomb, errors.AudioTooLongError,
         "more audio than its header says", 413),
    # samples and names
    Case("NaN and Inf floats", "nan.wav", copy_of("nan_inf_wav"), speech=None),
    Case("option-like name", "-i x.wav", copy_of("speech_wav"), speech=True),
    Case("path in the name", "../../x.wav", copy_of("speech_wav"), speech=True),
    Case("300-byte UTF-8 name", "语音" * 49 + "a.wav", copy_of("speech_wav"), speech=True),
]


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> A.Samples:
    return A.Samples(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="module")
def service(settings, pipeline, tmp_path_factory):
    """One engine (real pipeline, isolated decoder, 2-hour limit) behind a real HTTP server."""
    tmp = tmp_path_factory.mktemp("bad-inputs")
    s = make_settings(settings, tmp, max_size=4)
    s = s.model_copy(update={"audio": s.audio.model_copy(update={"max_duration_s": 7200})})
    engine = Engine(s, pipeline_factory=lambda _: pipeline)
    with Server(s, engine) as server:
        engine.start()
        yield engine, server


def on_disk(case: Case, samples: A.Samples, tmp_path: Path) -> Path:
    # the file lives under a safe name; case.upload_name is what the user's file was called
    return case.build(samples, tmp_path / ("input" + Path(case.upload_name).suffix))


def check_accepted(case: Case, record, audio_path: Path) -> None:
    assert record.state is JobState.COMPLETED, (case.name, record.error)
    transcript = record.result
    assert math.isfinite(transcript.duration_s)
    if case.duration is not None:
        assert transcript.duration_s == pytest.approx(case.duration, rel=0.02)
    if case.speech is True:
        assert transcript.segments and transcript.text, case.name
    elif case.speech is False:
        assert transcript.text == "" and transcript.segments == (), case.name
    for sentence in transcript.sentences:
        assert all(math.isfinite(t.start_ms) and t.start_ms <= t.end_ms for t in sentence.tokens)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_through_the_engine(case, samples, service, tmp_path):
    engine, _ = service
    path = on_disk(case, samples, tmp_path)
    try:
        job = engine.submit(path, case.upload_name)
    except errors.AsrError as e:
        assert case.error is not None, f"{case.name} was refused: {e}"
        assert isinstance(e, case.error) and case.words.lower() in str(e).lower(), str(e)
        assert not str(e).startswith(str(tmp_path))  # the message names the user's file, not our path
        return
    record = engine.wait(job.id, timeout=300)
    if case.error is not None:
        assert record.state is JobState.FAILED and case.words.lower() in (record.error or "").lower(), record
        return
    check_accepted(case, record, path)
    assert record.filename == Path(case.upload_name.replace("\\", "/")).name[:200]


@pytest.mark.parametrize("case", [c for c in CASES if c.error is not None], ids=lambda c: c.name)
def test_through_the_api(case, samples, service, tmp_path):
    _, server = service
    path = on_disk(case, samples, tmp_path)
    response = httpx.post(f"{server.url}/v1/audio/transcriptions",
                          files={"file": (case.upload_name, path.read_bytes())}, timeout=300)
    assert response.status_code == case.status, response.text
    error = response.json()["error"]
    assert case.words.lower() in error["message"].lower()
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_a_bomb_that_hides_its_length_from_the_probe_fails_its_job_as_too_long(samples, service, tmp_path):
    """Header and last frames both understate the length: the probe passes it, so decoding must stop it, at the
    length the header gives, with audio_too_long (not after hours, as another error)."""
    engine, server = service
    path = A.flac_hide_end(lying_bomb(samples, tmp_path / "input.flac"))
    record = engine.wait(engine.submit(path, "short.flac").id, timeout=300)
    assert record.state is JobState.FAILED and record.error_code == "audio_too_long", record
    assert "more audio than its header says" in record.error and record.error.startswith("short.flac:"), record.error
    response = httpx.post(f"{server.url}/v1/audio/transcriptions",
                          files={"file": ("short.flac", path.read_bytes())}, timeout=300)
    assert response.status_code == 413 and response.json()["error"]["code"] == "audio_too_long", response.text


def test_accepted_odd_files_through_the_api(samples, service, tmp_path):
    _, server = service
    for case in [c for c in CASES if c.error is None and c.duration is None][:6]:
        directory = tmp_path / case.name.replace(" ", "-")
        directory.mkdir()
        path = on_disk(case, samples, directory)
        response = httpx.post(f"{server.url}/v1/audio/transcriptions", timeout=300,
                              files={"file": (case.upload_name, path.read_bytes())},
                              data={"response_format": "verbose_json"})
        assert response.status_code == 200, (case.name, response.text)


def test_an_upload_over_the_size_limit_is_413(settings, pipeline, tmp_path, samples):
    s = make_settings(settings, tmp_path)
    s = s.model_copy(update={"audio": s.audio.model_copy(update={"max_file_mb": 0.05})})
    engine = Engine(s, pipeline_factory=lambda _: pipeline)
    with Server(s, engine) as server:
        engine.start()
        big = samples.wav("f32", 48000).read_bytes()
        response = httpx.post(f"{server.url}/v1/audio/transcriptions", files={"file": ("big.wav", big)})
        assert response.status_code == 413 and "limit" in response.json()["error"]["message"]
        with pytest.raises(errors.FileTooLargeError, match="too large"):
            engine.submit(samples.wav("f32", 48000), "big.wav")


@pytest.mark.parametrize("fault, words", [("hang", "stopped making progress"), ("crash", "crashed"),
                                          ("oom", "more memory")])
def test_a_failing_decoder_fails_one_job_and_the_service_carries_on(fault, words, settings, pipeline, tmp_path,
                                                                    speech_wav, monkeypatch):
    s = make_settings(settings, tmp_path)
    s = s.model_copy(update={"audio": s.audio.model_copy(update={"decode_stall_s": 3, "decoder_memory_mb": 1024})})
    engine = Engine(s, pipeline_factory=lambda _: pipeline)
    engine.start()
    try:
        monkeypatch.setenv("ASR_DECODER_FAULT", fault)
        with pytest.raises(errors.DecoderFailedError, match=words):
            engine.submit(speech_wav, "evil.wav")
        monkeypatch.delenv("ASR_DECODER_FAULT")
        record = engine.wait(engine.submit(speech_wav, "fine.wav").id, timeout=120)
        assert record.state is JobState.COMPLETED
        assert not [t for t in threading.enumerate() if t.name == "asr-ahead"]
    finally:
        engine.stop()


def test_the_decode_timeout_counts_waiting_for_the_decoder_not_the_consumers_time(settings, tmp_path, monkeypatch):
    """A long file's chunks wait on VAD and recognition far longer than decoding takes: that must not count."""
    import time
    from types import SimpleNamespace

    from asr.core import isolation

    consumer_s = [0.0]  # the consumer's time, added to the decoder side's clock
    monkeypatch.setattr(isolation, "time", SimpleNamespace(monotonic=lambda: time.monotonic() + consumer_s[0]))
    limits = settings.audio.model_copy(update={"isolate_decoder": True, "decode_timeout_s": 60})
    path = A.write_wav(tmp_path / "tone.wav", A.tone(30.0, 16000), 16000)
    _, chunks = isolation.open_audio(path, limits, "tone.wav", chunk_s=5.0)
    total = 0
    for chunk in chunks:
        total += len(chunk)
        consumer_s[0] += 120  # two minutes of recognition per chunk: 12 minutes in all
    assert total == 30 * 16000


def test_a_decoder_that_takes_too_long_in_all_is_stopped_as_such(settings, speech_wav, monkeypatch):
    from asr.core.isolation import probe

    monkeypatch.setenv("ASR_DECODER_FAULT", "hang")
    limits = settings.audio.model_copy(update={"isolate_decoder": True, "decode_timeout_s": 1, "decode_stall_s": 60})
    with pytest.raises(errors.DecoderFailedError, match="took longer than 1 s"):
        probe(speech_wav, limits, "slow.wav")


def test_what_the_isolated_decoder_notices_reaches_the_service_log(settings, samples, tmp_path, caplog):
    """The child logs skipped packets, truncation and NaN samples to its stderr; the service's log must get them."""
    import logging

    from asr.core.isolation import open_audio

    limits = settings.audio.model_copy(update={"isolate_decoder": True})
    cut = truncated("speech_wav", 0.5)(samples, tmp_path / "cut.wav")
    nan = copy_of("nan_inf_wav")(samples, tmp_path / "nan.wav")
    with caplog.at_level(logging.WARNING, logger="asr.core.isolation"):
        for path in (cut, nan):
            _, chunks = open_audio(path, limits, "user-" + path.name)
            assert sum(len(chunk) for chunk in chunks) > 0
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "asr.core.isolation")
    assert "user-cut.wav" in logged and "truncated" in logged, logged
    assert "user-nan.wav" in logged and "NaN" in logged, logged
