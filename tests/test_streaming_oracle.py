"""Oracle: asr.core.streaming against FunASR's own AutoModel streaming, on the same random weights.

FunASR is fed the way its docs feed it: 9600-sample (600 ms) chunks, ``is_final`` on the last,
``chunk_size=[0, 10, 5]``, ``encoder_chunk_look_back=4``, ``decoder_chunk_look_back=1``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import REPO

SHARED_CONFIGS = REPO.parent / "shared" / "funasr-configs"
CHUNK = 9600
STREAM_KWARGS = {"chunk_size": [0, 10, 5], "encoder_chunk_look_back": 4, "decoder_chunk_look_back": 1}

LIVE = "vad+asr+punc+live"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: the tiny model gains nothing from two, and on a busy 2-core machine two threads
    spin against each other (a 600 ms chunk took 400 ms instead of 8)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def online(settings):
    """The test model of the streaming Paraformer (scripts/make_test_models.py), as the live profile loads it."""
    from asr.models.loading import load_models

    live = settings.model_copy(update={"models": settings.models.model_copy(update={"profile": LIVE})})
    return load_models(live).online


@pytest.fixture(scope="module")
def recognizer(online):
    from asr.core.streaming import OnlineRecognizer

    return OnlineRecognizer(online.module, online.frontend, online.tokenizer, torch.device("cpu"))


@pytest.fixture(scope="module")
def funasr_model(online):
    # Not ``from funasr import AutoModel``: once asr.models.funasr_import has put its bare ``funasr``
    # package in place (any test that loaded a model), the top level has no AutoModel; the classes
    # AutoModel looks up in FunASR's registry are imported first, so it works either way.
    from asr.models.funasr_import import import_registered

    import_registered("ParaformerStreaming")
    from funasr.auto.auto_model import AutoModel

    return AutoModel(model=str(online.location.directory), disable_update=True, device="cpu", disable_pbar=True,
                     log_level="ERROR", ncpu=1, frontend_conf={"dither": 0.0})  # it sets torch's threads on every call


@pytest.fixture(scope="module")
def speech(sentence_clips) -> np.ndarray:
    """Two spoken sentences with a short pause: 7-8 s of 16 kHz audio."""
    gap = np.zeros(4000, dtype=np.float32)
    return np.concatenate([gap, sentence_clips[0], gap, sentence_clips[1], gap]).astype(np.float32)


def _funasr_stream(model, pieces: list[np.ndarray]) -> list[str]:
    cache: dict = {}
    return [model.generate(input=p, cache=cache, is_final=i == len(pieces) - 1, **STREAM_KWARGS)[0]["text"]
            for i, p in enumerate(pieces)]


def _ours(recognizer, pieces: list[np.ndarray], stream=None) -> list[str]:
    stream = stream or recognizer.new_stream()
    return [recognizer.accept(stream, p, i == len(pieces) - 1) for i, p in enumerate(pieces)]


def _chunks(audio: np.ndarray, size: int = CHUNK) -> list[np.ndarray]:
    return [audio[i:i + size] for i in range(0, len(audio), size)]


def _uneven(audio: np.ndarray) -> list[np.ndarray]:
    """100 ms and 1700 ms pieces in turn."""
    pieces, i, sizes = [], 0, (1600, 27200)
    while i < len(audio):
        size = sizes[len(pieces) % 2]
        pieces.append(audio[i:i + size])
        i += size
    return pieces


def test_settings():
    from asr.core.streaming import StreamSettings

    s = StreamSettings()
    assert (s.chunk_size, s.encoder_chunk_look_back, s.decoder_chunk_look_back) == ((0, 10, 5), 4, 1)
    assert s.chunk_samples == 9600
    with pytest.raises(ValueError):
        StreamSettings(chunk_size=(0, 0, 5))


def test_600ms_chunks_match_funasr(recognizer, funasr_model, speech):
    pieces = _chunks(speech)
    expected = _funasr_stream(funasr_model, pieces)
    assert sum(bool(t) for t in expected) >= len(expected) // 2, f"random weights give too little text: {expected}"
    assert _ours(recognizer, pieces) == expected
    # a stream starts afresh after its final piece, and a fresh one does the same
    stream = recognizer.new_stream()
    assert _ours(recognizer, pieces, stream) == expected
    assert _ours(recognizer, pieces, stream) == expected


def test_final_piece_shorter_than_60ms_is_funasr_tail_chunk(recognizer, funasr_model, speech):
    # 9600 * k + 500 samples: the last call holds 500 samples, under 960: FunASR's "tail chunk".
    audio = speech[: CHUNK * 6 + 500]
    pieces = _chunks(audio)
    assert len(pieces[-1]) == 500
    assert _ours(recognizer, pieces) == _funasr_stream(funasr_model, pieces)
    # and an exact multiple of 9600: the final call ends with an empty tail chunk
    pieces = _chunks(speech[: CHUNK * 6])
    assert _ours(recognizer, pieces) == _funasr_stream(funasr_model, pieces)


def test_uneven_pieces_are_buffered_like_funasr(recognizer, funasr_model, speech):
    pieces = _uneven(speech)
    ours = _ours(recognizer, pieces)
    # FunASR's generate buffers the same way (cache["prev_samples"]): fed the same pieces it gives
    # the same text per piece; a 100 ms piece completes no chunk and gives "".
    assert ours == _funasr_stream(funasr_model, pieces)
    assert "" in ours
    # Against the documented 600 ms feeding the piece boundaries differ (one piece can complete
    # 0, 1 or 3 chunks), so only the whole can be compared; the chunks themselves are the same.
    # FunASR post-processes each call's tokens on its own (an English piece at a call's end gets a
    # space), so calls that group chunks differently can differ in spaces only.
    reference = "".join(_funasr_stream(funasr_model, _chunks(speech)))
    assert "".join(ours).replace(" ", "") == reference.replace(" ", "")


def test_accept_many_is_each_stream_alone(recognizer, speech, monkeypatch):
    """Three streams at different offsets (different cache fill and positions) in shared batches."""
    audios = [speech, speech[CHUNK * 2 + 123:], speech[CHUNK * 5 + 4000:]]
    starts = [0, 2, 5]  # rounds at which each stream joins
    piece_lists = [_chunks(a) for a in audios]
    alone = [_ours(recognizer, p) for p in piece_lists]

    encode_calls: list[int] = []
    original = type(recognizer)._encode

    def counting(self, rows):
        encode_calls.append(len(rows))
        return original(self, rows)

    monkeypatch.setattr(type(recognizer), "_encode", counting)
    streams = [recognizer.new_stream() for _ in audios]
    got: list[list[str]] = [[] for _ in audios]
    rounds = max(s + len(p) for s, p in zip(starts, piece_lists, strict=True))
    for r in range(rounds):
        items, owners = [], []
        for k, (start, pieces) in enumerate(zip(starts, piece_lists, strict=True)):
            j = r - start
            if 0 <= j < len(pieces):
                items.append((streams[k], pieces[j], j == len(pieces) - 1))
                owners.append(k)
        for k, text in zip(owners, recognizer.accept_many(items), strict=True):
            got[k].append(text)
    assert got == alone
    assert max(encode_calls) == 3, "the streams never shared an encoder pass"


# What FunASR's clients send (funasr_wss_client.py: 5,10,5) and two others: a shorter chunk with no
# look-behind, and longer look-backs. FunASR's server passes them to generate() as they come.
CLIENT_SETTINGS = [((5, 10, 5), 4, 1), ((0, 8, 4), 2, 0), ((5, 10, 5), 6, 2)]


@pytest.mark.parametrize(("chunk_size", "encoder_back", "decoder_back"), CLIENT_SETTINGS)
def test_a_clients_chunk_settings_match_funasr(recognizer, funasr_model, speech, chunk_size, encoder_back,
                                               decoder_back):
    from asr.core.streaming import StreamSettings

    settings = StreamSettings(chunk_size=chunk_size, encoder_chunk_look_back=encoder_back,
                              decoder_chunk_look_back=decoder_back)
    pieces = _chunks(speech, settings.chunk_samples)
    cache: dict = {}
    expected = [funasr_model.generate(input=p, cache=cache, is_final=i == len(pieces) - 1,
                                      chunk_size=list(chunk_size), encoder_chunk_look_back=encoder_back,
                                      decoder_chunk_look_back=decoder_back)[0]["text"]
                for i, p in enumerate(pieces)]
    assert sum(bool(t) for t in expected) >= len(expected) // 3, f"random weights give too little text: {expected}"
    assert _ours(recognizer, pieces, recognizer.new_stream(settings)) == expected


def test_streams_with_different_settings_share_a_recognizer(recognizer, speech):
    """A default stream and two clients' own settings fed together: each gets its text alone."""
    from asr.core.streaming import StreamSettings

    settings = [StreamSettings()] + [StreamSettings(chunk_size=c, encoder_chunk_look_back=e,
                                                    decoder_chunk_look_back=d) for c, e, d in CLIENT_SETTINGS[:2]]
    pieces = _chunks(speech, 4800)  # 300 ms, which none of the chunk sizes divides evenly
    alone = [_ours(recognizer, pieces, recognizer.new_stream(s)) for s in settings]
    assert alone[0] != alone[2], "the settings make no difference: the test shows nothing"
    streams = [recognizer.new_stream(s) for s in settings]
    together = [recognizer.accept_many([(st, p, i == len(pieces) - 1) for st in streams])
                for i, p in enumerate(pieces)]
    assert [list(t) for t in zip(*together, strict=True)] == alone


def test_cache_is_bounded(recognizer, sentence_clips):
    """60 s through one stream: every cached tensor has the same shape at 10 s as at 60 s."""
    clip = np.concatenate([*sentence_clips, np.zeros(8000, dtype=np.float32)])
    audio = np.tile(clip, int(np.ceil(60 * 16000 / len(clip))))[: 60 * 16000]
    stream = recognizer.new_stream()
    shapes = {}
    text = []
    for i, piece in enumerate(_chunks(audio)):
        text.append(recognizer.accept(stream, piece, False))
        seconds = (i + 1) * CHUNK / 16000
        if seconds in (10.2, 60.0):
            shapes[seconds] = stream.cache_tensors()
    assert set(shapes) == {10.2, 60.0}
    assert shapes[10.2] == shapes[60.0]
    assert shapes[60.0]["cache.encoder.opt[0].k"][2] == 4 * 10  # look-back 4 chunks of 10 frames
    assert shapes[60.0]["cache.decoder.opt[0].k"][2] == 1 * 10
    assert sum(bool(t) for t in text) > len(text) // 2
