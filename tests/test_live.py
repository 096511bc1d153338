"""Live captions for one stream (asr.core.live): the streaming VAD's endpoints equal FunASR's own, and a
session gives partials from the streaming model and, at each end of speech, a final that is our offline
pipeline's text on that very segment. On the random-weight test models (the VAD is the real FSMN-VAD), so
texts are compared, never read."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from asr.core.live import PRE_ROLL_MS, LiveOptions, LiveSession
from asr.errors import RequestError
from asr.types import TranscribeOptions
from tests.test_loading import _kept_process_state

LIVE = "vad+asr+punc+live"
FRAME_MS = 60  # what FunASR's clients send: chunk_size[1] * 60 / chunk_interval


@pytest.fixture(scope="module")
def live_pipeline(settings):
    from asr.core.pipeline import build_pipeline

    return build_pipeline(settings.model_copy(update={"models": settings.models.model_copy(update={"profile": LIVE})}))


@pytest.fixture(scope="module")
def online(live_pipeline):
    from asr.core.streaming import OnlineRecognizer

    model = live_pipeline.models.online
    return OnlineRecognizer(model.module, model.frontend, model.tokenizer, live_pipeline.models.device)


def pcm16(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2")


def heard(audio: np.ndarray) -> np.ndarray:
    """The audio as the server hears it from a client: through PCM16."""
    return pcm16(audio).astype(np.float32) / 32768


def frames_of(audio: np.ndarray, ms: int = FRAME_MS) -> list[bytes]:
    pcm = pcm16(audio)
    step = ms * 16
    return [pcm[i:i + step].tobytes() for i in range(0, len(pcm), step)]


def session(live_pipeline, online, **options) -> LiveSession:
    from asr.core.vad import LiveEndpoints

    return LiveSession(LiveOptions(**options), online, lambda: LiveEndpoints(live_pipeline.models.vad),
                       live_pipeline.transcribe)


def run(live, audio: np.ndarray) -> list:
    captions = []
    for frame in frames_of(audio):
        captions += live.audio(frame)
    return captions + live.end()


@pytest.mark.slow  # FunASR's AutoModel once per 60 ms frame
def test_the_live_endpoints_equal_funasr_s_streaming_vad(live_pipeline, speech_with_pauses):
    """Frame by frame, as FunASR's two-pass server calls AutoModel(vad).generate(chunk_size=60, cache=...)."""
    from asr.core.vad import LiveEndpoints
    from asr.models.funasr_import import import_registered

    import_registered("FsmnVADStreaming")
    from funasr.auto.auto_model import AutoModel

    with _kept_process_state():
        theirs = AutoModel(model=str(live_pipeline.models.vad.location.directory), device="cpu", disable_update=True,
                           disable_pbar=True, log_level="ERROR")
    ours = LiveEndpoints(live_pipeline.models.vad)
    cache: dict = {}
    found, expected = [], []
    frames = frames_of(speech_with_pauses)
    for i, frame in enumerate(frames):
        samples = np.frombuffer(frame, "<i2").astype(np.float32) / 32768
        with _kept_process_state():
            value = theirs.generate(input=samples, cache=cache, is_final=False, chunk_size=FRAME_MS,
                                    disable_pbar=True)[0]["value"]
        expected.append(tuple(value[0]) if len(value) == 1 else (-1, -1))
        found.append(ours.feed(samples))
    assert found == expected
    starts = [s for s, _ in found if s != -1]
    ends = [e for _, e in found if e != -1]
    # the last end needs more silence than the audio has after it (is_final would close it)
    assert len(starts) == 3 and len(ends) == 2, "the three sentences are found as speech"


def test_two_pass_gives_partials_then_each_segment_s_final_as_the_offline_pipeline_decodes_it(
        live_pipeline, online, speech_with_pauses):
    live = session(live_pipeline, online, mode="2pass")
    captions = run(live, speech_with_pauses)
    partials = [c for c in captions if c.source == "online"]
    finals = [c for c in captions if c.source == "offline"]
    assert partials and all(not c.is_final and c.text for c in partials)
    assert len(finals) >= 3 and all(c.is_final for c in finals)
    duration_ms = len(speech_with_pauses) // 16
    for final in finals:
        assert 0 <= final.start_ms < final.end_ms <= duration_ms
        segment = heard(speech_with_pauses)[final.start_ms * 16:final.end_ms * 16]
        alone = live_pipeline.transcribe(segment, TranscribeOptions(use_vad=False))
        assert final.text == "".join(s.text for s in alone.sentences)  # its text, <unk> dropped as the sentences do
        assert "<unk>" not in final.text
        # its sentences count from the stream's start
        assert all(final.start_ms <= s.start_ms <= s.end_ms <= final.end_ms + 1 for s in final.sentences)
    assert [f.start_ms for f in finals] == sorted(f.start_ms for f in finals)
    assert live.utterance[0] == finals and live.finals == []  # kept for the history; the next one starts empty
    assert live.utterance[1] == pytest.approx(len(speech_with_pauses) / 16000, abs=0.07)


@pytest.mark.slow  # the everyday loop keeps the two-pass oracle; the other modes here
def test_online_mode_gives_partials_and_a_final_piece_but_no_second_pass(live_pipeline, online, speech_with_pauses):
    captions = run(session(live_pipeline, online, mode="online"), speech_with_pauses)
    assert captions and all(c.source == "online" for c in captions)
    assert captions[-1].is_final


@pytest.mark.slow  # the everyday loop keeps the two-pass oracle; the other modes here
def test_offline_mode_gives_only_finals(live_pipeline, online, speech_with_pauses):
    captions = run(session(live_pipeline, online, mode="offline"), speech_with_pauses)
    assert captions and all(c.source == "offline" and c.is_final for c in captions)


@pytest.mark.slow  # the everyday loop keeps the two-pass oracle; the other modes here
def test_speech_with_no_end_is_decoded_when_the_client_stops(live_pipeline, online, sentence_clips):
    """No silence after the speech, so the VAD never ends it: is_speaking false decodes what came."""
    audio = np.concatenate(sentence_clips)[: 16000 * 3]
    live = session(live_pipeline, online, mode="2pass")
    captions = []
    for frame in frames_of(audio):
        captions += live.audio(frame)
    assert not any(c.source == "offline" for c in captions)
    ending = live.end()
    assert [c.source for c in ending] == ["offline"] and ending[0].text


@pytest.mark.slow  # long audio: a minute of silence after the speech
def test_memory_per_stream_is_bounded(live_pipeline, online, speech_with_pauses):
    """Between sentences a stream keeps only its recent past; a minute of silence adds nothing."""
    live = session(live_pipeline, online, mode="2pass")
    for frame in frames_of(np.concatenate([speech_with_pauses, np.zeros(16000 * 60, np.float32)])):
        live.audio(frame)
    assert live._segment is None
    assert live._recent_samples <= (PRE_ROLL_MS + FRAME_MS) * 16
    assert sum(map(len, live._pending)) <= (PRE_ROLL_MS + FRAME_MS) * 16


@pytest.mark.parametrize(("options", "message"), [
    ({"mode": "3pass"}, "mode must be one of online, offline, 2pass, not '3pass'"),
    ({"sample_rate": 44100}, "audio_fs must be 16000 or 8000 (PCM16 mono), not 44100"),
    ({"chunk_size": (5, 0, 5)}, "chunk_size must be three whole numbers such as 5,10,5, not [5, 0, 5]"),
    ({"chunk_interval": 0}, "chunk_interval must be between 1 and 100, not 0"),
    ({"encoder_chunk_look_back": 17}, "encoder_chunk_look_back must be between 0 and 16 chunks, not 17"),
])
def test_bad_options_are_refused_with_their_reason(options, message):
    with pytest.raises(RequestError) as e:
        LiveOptions(**options)
    assert str(e.value) == message


def test_a_frame_that_is_not_pcm16_is_refused(live_pipeline, online):
    with pytest.raises(RequestError, match="PCM16"):
        session(live_pipeline, online).audio(b"\x00\x01\x02")


@pytest.mark.slow  # the everyday loop keeps the two-pass oracle; the other modes here
def test_8_khz_audio_is_resampled(live_pipeline, online, speech_with_pauses):
    from scipy.signal import resample_poly

    narrow = resample_poly(speech_with_pauses, 1, 2).astype(np.float32)
    live = session(live_pipeline, online, mode="offline", sample_rate=8000)
    captions = []
    for frame in frames_of(narrow, ms=FRAME_MS * 2):  # 60 ms at 8 kHz is half the bytes: frames_of counts 16 kHz
        captions += live.audio(frame)
    captions += live.end()
    assert len(captions) >= 3
    assert max(c.end_ms for c in captions) <= len(speech_with_pauses) // 16 + FRAME_MS


@pytest.mark.slow  # a hub of its own and three streams (14 s); the recognizer's batching is in the fast tier
def test_the_hub_batches_concurrent_streams_and_each_gets_what_it_would_alone(settings, live_pipeline, online,
                                                                               speech_with_pauses):
    """Three streams whose audio is all waiting at once, as when the service falls behind: the hub takes each up
    to its next chunk and puts the three chunks through one pass, the second passes run on the final thread, and
    every stream gets the captions it gets on its own, in order."""
    import asyncio

    import torch

    from asr.service.live import LiveHub

    audios = [speech_with_pauses, speech_with_pauses[16000 + 123:], speech_with_pauses[40000:]]
    alone = [run(session(live_pipeline, online, mode="2pass"), audio) for audio in audios]
    # the hub's threads with this thread's torch thread count: a different count rounds differently, and random
    # weights' text can follow the rounding
    same_threads = {"threads": torch.get_num_threads(), "final_threads": torch.get_num_threads()}
    hub = LiveHub(settings.model_copy(update={"live": settings.live.model_copy(update={"max_backlog_s": 60,
                                                                                       **same_threads})}),
                  pipeline_factory=lambda _: live_pipeline)
    hub.start()

    async def results(feed) -> list:
        captions = []
        while True:
            kind, partials, segments, *rest = await feed.next()
            assert kind != "error", partials
            captions += partials + [await hub.final(feed.session.final, segment) for segment in segments]
            if kind == "end":
                assert rest[2] == "payload" and rest[0] == [c for c in captions if c.source == "offline"]
                return captions

    async def together() -> list:
        feeds = [hub.open(LiveOptions(mode="2pass")) for _ in audios]
        # the streams' frames in turn, as concurrent clients send them, with no await in between: the live thread
        # finds (nearly) all of it waiting
        streams = [list(frames_of(audio)) for audio in audios]
        for k in range(max(map(len, streams))):
            for feed, frames in zip(feeds, streams, strict=True):
                if k < len(frames):
                    feed.audio(frames[k])
                elif k == len(frames):
                    feed.end("payload")
        for feed, frames in zip(feeds, streams, strict=True):
            if len(frames) == max(map(len, streams)):
                feed.end("payload")
        captions = await asyncio.gather(*(results(feed) for feed in feeds))
        for feed in feeds:
            hub.close(feed)
        return captions

    try:
        assert asyncio.run(together()) == alone
    finally:
        hub.stop()
    assert max(hub.passes()) == 3, f"the streams never shared a pass: {hub.passes()}"
    assert hub.streams == 0


@pytest.mark.slow  # a hub of its own (its warm-up); the socket tests send files faster than real time too
def test_a_stream_sent_faster_than_the_service_takes_it_is_read_no_further_until_it_is_taken(settings, live_pipeline):
    """The audio waiting for a stream is bounded: past ``live.max_backlog_s`` its handler is told to wait, and
    ``room()`` returns once the live thread has taken it."""
    import asyncio
    import time

    from asr.service.live import LiveHub

    hub = LiveHub(settings.model_copy(update={"live": settings.live.model_copy(update={"max_backlog_s": 1})}),
                  pipeline_factory=lambda _: live_pipeline)
    hub.start()

    async def flood() -> tuple[list[bool], float]:
        feed = hub.open(LiveOptions(mode="2pass"))
        hub._executor.submit(time.sleep, 0.5)  # the live thread busy (as under load): nothing is taken meanwhile
        full = [feed.audio(b"\x00\x00" * 960) for _ in range(30)]  # 1.8 s at once
        await asyncio.wait_for(feed.room(), 30)
        after = hub._full(feed)  # room() came back because the live thread took it all
        hub.close(feed)
        return full, after

    try:
        full, after = asyncio.run(flood())
    finally:
        hub.stop()
    assert full.index(True) == 16 and all(full[16:])  # the 17th frame of 60 ms makes 1.02 s: the first over 1 s
    assert after is False
    assert hub.streams == 0


@pytest.mark.slow  # a second live pipeline, with SeACo
def test_a_streams_hotwords_reach_its_finals_with_seaco(test_models, speech_with_pauses):
    """FunASR's clients send hotwords as a JSON object string; with SeACo each final is the offline pipeline's
    text on its segment with those hotwords, and they change it (on these weights), so this can fail."""
    import json

    from asr.config import load_settings
    from asr.core.live import online_recognizer, open_session
    from asr.core.pipeline import build_pipeline
    from asr.service.live import parse_options
    from tests.conftest import TEST_CONFIG
    from tests.test_hotwords import FEW

    settings = load_settings(TEST_CONFIG, models={"asr_model": "seaco", "profile": LIVE},
                             runtime={"device": "cpu", "precision": "fp32"})
    pipeline = build_pipeline(settings)
    options = parse_options({"mode": "2pass", "hotwords": json.dumps({w: 20 for w in FEW})}, settings)
    assert options.final.hotwords == FEW
    captions = run(open_session(pipeline, online_recognizer(pipeline.models), options), speech_with_pauses)
    finals = [c for c in captions if c.source == "offline"]
    assert len(finals) >= 3
    changed = 0
    for final in finals:
        segment = heard(speech_with_pauses)[final.start_ms * 16:final.end_ms * 16]
        with_words = pipeline.transcribe(segment, options.final)
        assert final.text == "".join(s.text for s in with_words.sentences)
        without = pipeline.transcribe(segment, replace(options.final, hotwords=()))
        changed += with_words.text != without.text
    assert changed, "the hotwords changed no final: the test shows nothing"
