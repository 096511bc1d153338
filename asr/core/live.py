"""Live captions for one stream, as FunASR's two-pass runtime makes them: the streaming Paraformer gives
partial text every chunk (600 ms), and at each end of speech that FSMN-VAD finds, the offline pipeline
decodes the sentence again, with punctuation (and ITN and hotwords), for the final text.

    session = open_session(pipeline, online_recognizer(pipeline.models), options)
    for frame in frames:                     # PCM16 bytes, as the client sends them
        captions += session.audio(frame)
    captions += session.end()

No sockets or threads here (asr/service/live.py speaks the WebSocket protocol); ``online`` is the
streaming recognizer (asr.core.streaming) and ``finalize`` the offline pass on one segment.

Where this departs from FunASR's server, on purpose:
- a final decodes exactly the segment the VAD found ([start, end]), not the frames up to the one in
  which the end was noticed (FunASR's also carries up to the end silence);
- a final's times count from the start of the stream, not of the segment, so that a client can place
  it without adding up the segments itself.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from asr.errors import ConfigError, RequestError
from asr.types import Sentence, SpeechSegment, TimedToken, TranscribeOptions, Transcript

logger = logging.getLogger(__name__)

Mode = Literal["online", "offline", "2pass"]
MODES: tuple[str, ...] = ("online", "offline", "2pass")
SAMPLE_RATE = 16000
SAMPLE_RATES = (8000, 16000)
#: speech heard before the VAD said it started is taken from here (FunASR keeps 20 frames, 1.2 s)
PRE_ROLL_MS = 2000
#: chunks of the past a stream's encoder or decoder may keep (FunASR's runtime keeps 4 and 1)
MAX_LOOK_BACK = 16


@dataclass(frozen=True)
class LiveOptions:
    """What the client's first message asks for (FunASR's names, checked)."""

    mode: Mode = "2pass"
    chunk_size: tuple[int, int, int] = (5, 10, 5)
    chunk_interval: int = 10
    sample_rate: int = SAMPLE_RATE
    wav_name: str = "microphone"
    encoder_chunk_look_back: int = 4
    decoder_chunk_look_back: int = 1
    #: the offline pass's options: punctuation, ITN, hotwords
    final: TranscribeOptions = field(default_factory=lambda: TranscribeOptions(use_vad=False))

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise RequestError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.sample_rate not in SAMPLE_RATES:
            raise RequestError(f"audio_fs must be 16000 or 8000 (PCM16 mono), not {self.sample_rate}")
        if len(self.chunk_size) != 3 or not all(isinstance(c, int) and 0 <= c <= 64 for c in self.chunk_size) \
                or self.chunk_size[1] < 1:
            raise RequestError(f"chunk_size must be three whole numbers such as 5,10,5, not {list(self.chunk_size)}")
        if not 1 <= self.chunk_interval <= 100:
            raise RequestError(f"chunk_interval must be between 1 and 100, not {self.chunk_interval}")
        for name in ("encoder_chunk_look_back", "decoder_chunk_look_back"):
            # the caches keep this many chunks: a bound on a stream's memory (FunASR's -1, all, has none)
            if not 0 <= getattr(self, name) <= MAX_LOOK_BACK:
                raise RequestError(f"{name} must be between 0 and {MAX_LOOK_BACK} chunks, not {getattr(self, name)}")


@dataclass(frozen=True)
class Caption:
    """One message for the client: new partial text, or a segment's final text (with its sentences)."""

    text: str
    is_final: bool
    #: "online" (the streaming model's) or "offline" (the second pass's)
    source: Literal["online", "offline"]
    start_ms: int = -1
    end_ms: int = -1
    sentences: tuple[Sentence, ...] = ()


@dataclass(eq=False)
class Segment:
    """Speech the VAD has closed, waiting for its second pass (``LiveSession.final``)."""

    audio: np.ndarray
    start: int  # samples at 16 kHz, from the start of the utterance
    end: int
    #: the utterance's finals, which this one's joins (in order: a stream's segments are finished in turn)
    finals: list[Caption]


class LiveSession:
    """One client's stream. ``online`` has ``new_stream(settings)`` and ``accept(stream, samples, is_final) -> str``;
    ``endpoints()`` makes a detector with ``feed(samples) -> (start_ms, end_ms)``; ``finalize(samples, options)``
    is the offline pass on one segment. Not thread-safe: one stream is fed by one caller at a time.

    ``audio`` and ``end`` do a frame's whole work. A server with many streams splits it, to batch the streaming
    model over its streams and to keep the second pass off their path (asr.service.live.LiveHub)::

        samples = session.hear(frame)                                   # each stream
        if session.needs_model(samples): ...                            # this frame completes a chunk: batch it
        texts = online.accept_many([(session.stream, samples, False), ...])  # those streams, one pass
        captions, segments = session.heard(samples, text)               # each stream: partials, endpoints
        captions += [session.final(segment) for segment in segments]    # elsewhere: the second pass
    """

    def __init__(self, options: LiveOptions, online: Any, endpoints: Callable[[], Any],
                 finalize: Callable[[np.ndarray, TranscribeOptions], Transcript]):
        self.options = options
        self._online = online
        self._new_endpoints = endpoints
        self._endpoints = endpoints()
        self._finalize = finalize
        self._settings = _stream_settings(options)
        self._stream = self._new_stream() if online is not None and options.mode != "offline" else None
        self._position = 0  # samples received so far (16 kHz)
        self._recent: deque[np.ndarray] = deque()  # the last PRE_ROLL_MS, for a start the VAD reports late
        self._recent_samples = 0
        self._segment: list[np.ndarray] | None = None  # speech since the VAD's start, until its end
        self._segment_start = 0  # samples
        self._pending: list[np.ndarray] = []  # everything since the last final, for an end the VAD never found
        self.finals: list[Caption] = []
        #: the last utterance's finals and length (s), once end() has run
        self.utterance: tuple[list[Caption], float] = ([], 0.0)

    @property
    def position_s(self) -> float:
        """How much of the current utterance has been received, in seconds."""
        return self._position / SAMPLE_RATE

    @property
    def stream(self) -> Any:
        """The streaming model's state for this session (None in offline mode: no partials)."""
        return self._stream

    def needs_model(self, samples: np.ndarray) -> bool:
        """Whether the streaming model has work on ``samples`` (they complete a chunk): the frames a server
        batches over its streams. The others it may take at once (``accept`` only keeps them)."""
        return self._stream is not None and len(samples) > 0 and self._stream.completes_chunk(len(samples))

    # ---- the client's messages ----

    def audio(self, pcm: bytes) -> list[Caption]:
        """One binary frame (PCM16 little-endian mono at the options' sample rate)."""
        samples = self.hear(pcm)
        text = self._online.accept(self._stream, samples, False) if self._stream is not None and len(samples) else ""
        captions, segments = self.heard(samples, text)
        return captions + [self.final(segment) for segment in segments]

    def end(self) -> list[Caption]:
        """``{"is_speaking": false}``: what is left is decoded, as one last final."""
        captions, segments = self.end_step()
        return captions + [self.final(segment) for segment in segments]

    # ---- the same, in steps ----

    def hear(self, pcm: bytes) -> np.ndarray:
        """A frame as 16 kHz float samples; RequestError for one that is not PCM16."""
        return self._to_16k(pcm)

    def heard(self, samples: np.ndarray, text: str) -> tuple[list[Caption], list[Segment]]:
        """After the streaming model has taken ``samples`` (``text``: what it made of them): the partial, and
        the segments that ended here, for ``final``."""
        if not len(samples):
            return [], []
        captions = self._as_partial(text, is_final=False)
        self._position += len(samples)
        self._remember(samples)
        if self._segment is not None:
            self._segment.append(samples)
        speech_start, speech_end = self._endpoints.feed(samples)
        if speech_start != -1:
            self._open_segment(speech_start * 16)
        segments = []
        if speech_end != -1:
            more, segment = self._close(speech_end * 16)
            captions += more
            segments += [segment] if segment is not None else []
        return captions, segments

    def end_step(self) -> tuple[list[Caption], list[Segment]]:
        """``end`` up to the second pass: the streaming model's last words, and the segment left open."""
        captions = self._partial(is_final=True)
        segment = None
        if self._segment is not None:
            more, segment = self._close(self._position)
            captions += more
        elif self._pending and self.options.mode != "online":
            # no end of speech was found (or no start): decode what came since the last final
            pending = np.concatenate(self._pending)
            self._segment, self._segment_start = [pending], self._position - len(pending)
            more, segment = self._close(self._position)
            captions += more
        self.utterance = (self.finals, self._position / SAMPLE_RATE)  # for the history, before the reset
        self.finals = []
        # the connection may carry another utterance: it starts from nothing, at time 0 (as FunASR's does)
        self._endpoints, self._position = self._new_endpoints(), 0
        self._recent.clear()
        self._recent_samples = 0
        return captions, [segment] if segment is not None else []

    def final(self, segment: Segment) -> Caption:
        """A segment's second pass: its final caption, which also joins its utterance's finals."""
        transcript = self._finalize(segment.audio, self.options.final)
        final = _shifted(transcript, segment.start // 16)
        text = "".join(s.text for s in final.sentences)  # FunASR's <unk> dropped, as the sentences drop it
        caption = Caption(text=text, is_final=True, source="offline", start_ms=segment.start // 16,
                          end_ms=segment.end // 16, sentences=final.sentences)
        segment.finals.append(caption)
        return caption

    # ---- the stages ----

    def _new_stream(self) -> Any:
        return self._online.new_stream(self._settings)

    def _partial(self, is_final: bool) -> list[Caption]:
        """The streaming model's words so far (``is_final``: its last ones for this segment)."""
        if self._stream is None:
            return []
        text = self._online.accept(self._stream, np.zeros(0, dtype=np.float32), is_final)
        if is_final:
            self._stream = self._new_stream()  # the next segment starts with a fresh cache
        return self._as_partial(text, is_final)

    def _as_partial(self, text: str, is_final: bool) -> list[Caption]:
        if self._stream is None or (not text and not (is_final and self.options.mode == "online")):
            return []
        if self.options.mode == "2pass" and is_final:
            return []  # the offline pass gives this segment's final
        return [Caption(text=text, is_final=is_final, source="online")]

    def _open_segment(self, start: int) -> None:
        """Speech began at ``start`` (samples): the segment is the audio from there, taken from the recent past."""
        start = max(start, self._position - self._recent_samples)
        audio = np.concatenate(list(self._recent)) if self._recent else np.zeros(0, np.float32)
        self._segment = [audio[start - (self._position - len(audio)):]]
        self._segment_start = start

    def _close(self, end: int) -> tuple[list[Caption], Segment | None]:
        """Speech ended at ``end`` (samples): the online stream is finished, and the segment cut for its
        second pass (None in online mode, or when it is empty)."""
        captions = self._partial(is_final=True)
        segment = self._segment or []
        self._segment = None
        audio = np.concatenate(segment) if segment else np.zeros(0, np.float32)
        audio = audio[: max(0, end - self._segment_start)]
        self._pending = []
        if self.options.mode == "online" or not len(audio):
            return captions, None
        return captions, Segment(audio, self._segment_start, end, self.finals)

    def _remember(self, samples: np.ndarray) -> None:
        self._recent.append(samples)
        self._recent_samples += len(samples)
        while self._recent and self._recent_samples - len(self._recent[0]) >= PRE_ROLL_MS * 16:
            self._recent_samples -= len(self._recent.popleft())
        if self.options.mode != "online":
            self._pending.append(samples)
            if self._segment is None:  # between segments only the recent past can become speech
                while self._pending and sum(map(len, self._pending)) - len(self._pending[0]) >= PRE_ROLL_MS * 16:
                    self._pending.pop(0)

    def _to_16k(self, pcm: bytes) -> np.ndarray:
        if len(pcm) % 2:
            raise RequestError("audio frames must be PCM16: an even number of bytes")
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        if self.options.sample_rate == 8000:
            from scipy.signal import resample_poly

            samples = resample_poly(samples, 2, 1).astype(np.float32)
        return samples


def _stream_settings(options: LiveOptions) -> Any:
    """The client's chunk sizes and look-backs, as the streaming model takes them."""
    from asr.core.streaming import StreamSettings  # torch: only once a stream is opened

    return StreamSettings(chunk_size=options.chunk_size, encoder_chunk_look_back=options.encoder_chunk_look_back,
                          decoder_chunk_look_back=options.decoder_chunk_look_back)


def _shifted(transcript: Transcript, offset_ms: int) -> Transcript:
    """The segment's transcript with its times counted from the start of the stream."""
    def tokens(sentence: Sentence) -> tuple[TimedToken, ...]:
        return tuple(replace(t, start_ms=t.start_ms + offset_ms, end_ms=t.end_ms + offset_ms) for t in sentence.tokens)

    sentences = tuple(replace(s, start_ms=s.start_ms + offset_ms, end_ms=s.end_ms + offset_ms, tokens=tokens(s))
                      for s in transcript.sentences)
    return replace(transcript, sentences=sentences)


def session_transcript(finals: list[Caption], duration_s: float) -> Transcript:
    """The finals of an utterance as one transcript (the job a live session leaves in the history)."""
    sentences = tuple(s for caption in finals for s in caption.sentences)
    segments = tuple(SpeechSegment(c.start_ms, c.end_ms) for c in finals)
    return Transcript(text="".join(c.text for c in finals), sentences=sentences, segments=segments,
                      duration_s=duration_s)


def online_recognizer(models: Any) -> Any:
    """The streaming recognizer of a loaded live-profile ModelSet (``models.online``)."""
    from asr.core.streaming import OnlineRecognizer

    model = models.online
    if model is None:
        raise ConfigError("live captions need the streaming model: use the profile vad+asr+punc+live")
    return OnlineRecognizer(model.module, model.frontend, model.tokenizer, models.device)


def open_session(pipeline: Any, online: Any, options: LiveOptions) -> LiveSession:
    """A stream over a loaded live-profile pipeline: its VAD for the endpoints, itself for the finals."""
    from asr.core.vad import LiveEndpoints

    vad = pipeline.models.vad
    return LiveSession(options, online, lambda: LiveEndpoints(vad), pipeline.transcribe)
