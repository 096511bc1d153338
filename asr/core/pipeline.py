"""decode → VAD → batched ASR → punctuation → sentences, streamed with bounded memory.

Audio arrives in chunks from the decoder. The segmenter (FSMN-VAD, or fixed windows)
turns it into speech segments as it goes; their samples are cut out of a short rolling
buffer, and recognition runs whenever enough speech is pending to fill a few batches.
Only text and timestamps accumulate, so an hour of audio costs no more memory than ten
minutes. Punctuation then runs once over the whole text.
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
import torch

from asr import faults
from asr.config import Settings
from asr.core.audio import SAMPLE_RATE
from asr.core.batching import plan_batches
from asr.core.isolation import open_audio
from asr.core.itn import InverseNormalizer, normalize_transcript
from asr.core.punctuate import Punctuation, Punctuator, join_segment_texts
from asr.core.recognize import FRAME_MS, RecognizedSegment, Recognizer
from asr.core.sentences import build_sentences, join_words, per_segment_sentences
from asr.core.vad import VAD_BLOCK_MS, FixedSegmenter, SpeechDetector
from asr.errors import ConfigError, FatalDeviceError, OutOfMemoryError, SpeakersUnavailableError
from asr.models.loading import ModelSet

if TYPE_CHECKING:
    from asr.core.speakers import Diarizer
from asr.types import (
    STAGES,
    ProgressCallback,
    SpeechSegment,
    StageTimings,
    TranscribeOptions,
    Transcript,
    VadResult,
)

logger = logging.getLogger(__name__)

#: A file path, a whole 16 kHz float32 array, or an iterable of such chunks.
AudioSource = Union[str, os.PathLike, np.ndarray, Iterable[np.ndarray]]

CHUNK_S = 10.0
SAMPLES_PER_MS = SAMPLE_RATE // 1000
#: Share of the progress bar before punctuation (which runs once, at the end).
_STREAM_SHARE = 0.95


@dataclass
class _Clock:
    decode: float = 0.0
    vad: float = 0.0
    features: float = 0.0
    asr: float = 0.0
    punc: float = 0.0
    speakers: float = 0.0
    itn: float = 0.0

    def timings(self, total: float) -> StageTimings:
        # features are the ASR model's own front end: counted with ASR
        return StageTimings(self.decode, self.vad, self.asr + self.features, self.punc, total,
                            self.speakers, self.itn)


class _Ahead:
    """Run an iterator in a background thread, ``depth`` items ahead of its consumer.

    Exceptions reach the consumer in order; if the consumer stops early, the producer is told
    to stop and the thread is joined."""

    _END = object()

    def __init__(self, source: Iterator, depth: int):
        self._source = source
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="asr-ahead", daemon=True)

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            with torch.inference_mode():
                for item in self._source:
                    if not self._put((item, None)):
                        return
        except BaseException as e:  # handed to the consumer, which raises it
            self._put((None, e))
            return
        self._put((self._END, None))

    def __enter__(self) -> "_Ahead":
        self._thread.start()
        return self

    def __iter__(self):
        while True:
            item, error = self._queue.get()
            if error is not None:
                raise error
            if item is self._END:
                return
            yield item

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        close = getattr(self._source, "close", None)
        if close is not None:
            close()


def _is_fatal_device_error(error: BaseException) -> bool:
    text = str(error)
    return "CUDA error" in text or "device-side assert" in text or "illegal memory access" in text


class Pipeline:
    """Transcribe or segment one file at a time with one loaded ModelSet (not re-entrant)."""

    def __init__(self, models: ModelSet, settings: Settings):
        self.models = models
        self.settings = settings
        self.recognizer = Recognizer(models.asr, models.device, models.precision) if models.asr else None
        # Fault injection for the reliability tests (never set in production): "oom" makes every
        # batch of more than one segment run out of memory, "oom-always" every batch, and
        # "device-error" raises what a poisoned CUDA context raises.
        self._fault = faults.batch_fault()
        # Padded frames per batch. CPU: ~1000 measured fastest (bigger batches fall out of cache).
        self.batch_frames = settings.asr.batch_frames or (1000 if models.device.type == "cpu" else 8000)
        self.punctuator = Punctuator(models.punc, models.device) if models.punc else None
        # ITN is a pair of FSTs (a few MB, loaded in well under a second): always ready, so that a
        # request may turn it on without a first-use delay.
        self.normalizer = InverseNormalizer() if self.recognizer is not None else None

    # ---- sources ----------------------------------------------------------------------------

    def _open(
        self, source: AudioSource, clock: _Clock, name: str | None = None
    ) -> tuple[Iterator[np.ndarray], float | None]:
        """Chunks of 16 kHz mono float32, and the expected duration in seconds if known."""
        if isinstance(source, (str, os.PathLike)):
            t0 = time.perf_counter()
            info, chunks = open_audio(Path(source), self.settings.audio, name, CHUNK_S)
            clock.decode += time.perf_counter() - t0
            return chunks, info.duration_s
        if isinstance(source, np.ndarray):
            audio = np.asarray(source, dtype=np.float32).reshape(-1)
            step = int(CHUNK_S * SAMPLE_RATE)
            return (audio[i : i + step] for i in range(0, len(audio), step)), len(audio) / SAMPLE_RATE
        return iter(source), None

    def _timed_chunks(self, chunks: Iterator[np.ndarray], clock: _Clock) -> Iterator[np.ndarray]:
        while True:
            t0 = time.perf_counter()
            try:
                chunk = next(chunks)
            except StopIteration:
                clock.decode += time.perf_counter() - t0
                return
            clock.decode += time.perf_counter() - t0
            yield np.asarray(chunk, dtype=np.float32).reshape(-1)

    def _segmenter(self, use_vad: bool):
        if use_vad and self.models.vad is not None:
            return SpeechDetector(self.models.vad, self.settings.vad.max_end_silence_ms,
                                  fast_features=self.models.precision != "fp32")
        return FixedSegmenter(self.settings.vad.max_segment_ms)

    def _speech(
        self, chunks: Iterator[np.ndarray], segmenter, clock: _Clock, state: dict
    ) -> Iterator[tuple[SpeechSegment, np.ndarray]]:
        """Segments with their samples, cut from a rolling buffer that never holds the whole file."""
        # A segment can only start this far behind the newest sample: VAD works in 60 s
        # blocks, then a segment is at most max_segment_ms long plus its closing silence.
        retain = int(VAD_BLOCK_MS + 2 * CHUNK_S * 1000 + self.settings.vad.max_segment_ms + 10000) * SAMPLES_PER_MS
        buffer = np.zeros(0, dtype=np.float32)
        buffer_start = 0
        last_end = 0

        def cut(found: list[SpeechSegment]) -> Iterator[tuple[SpeechSegment, np.ndarray]]:
            nonlocal last_end
            position = buffer_start + len(buffer)
            for segment in found:
                begin = segment.start_ms * SAMPLES_PER_MS
                end = min(segment.end_ms * SAMPLES_PER_MS, position)
                if begin < buffer_start:
                    logger.warning("segment %s starts before the audio kept in memory; trimmed", segment)
                    begin = buffer_start
                if end <= begin:
                    continue
                segment = SpeechSegment(segment.start_ms, end // SAMPLES_PER_MS)
                last_end = max(last_end, end)
                yield segment, buffer[begin - buffer_start : end - buffer_start].copy()

        for chunk in self._timed_chunks(chunks, clock):
            if chunk.size == 0:
                continue
            buffer = np.concatenate([buffer, chunk])
            state["samples"] += chunk.size
            t0 = time.perf_counter()
            found = segmenter.feed(chunk)
            clock.vad += time.perf_counter() - t0
            yield from cut(found)
            # Segments come in order, so nothing before the last one's end (less a margin for
            # VAD's look-back) is needed again, nor anything older than `retain`.
            position = buffer_start + len(buffer)
            keep_from = max(buffer_start, last_end - 1000 * SAMPLES_PER_MS, position - retain)
            if keep_from > buffer_start:
                buffer = buffer[keep_from - buffer_start :]
                buffer_start = keep_from
            state["position_ms"] = (buffer_start + len(buffer)) // SAMPLES_PER_MS
        t0 = time.perf_counter()
        found = segmenter.finish()
        clock.vad += time.perf_counter() - t0
        yield from cut(found)

    # ---- recognition --------------------------------------------------------------------------

    def _recognize_batch(self, feats: list[torch.Tensor], hotwords: tuple[str, ...] = ()) -> list[RecognizedSegment]:
        """One batch; on out-of-memory, halve it until one segment alone does not fit."""
        failed = False
        try:
            faults.strike_batch(self._fault, len(feats))
            return self.recognizer.decode(feats, hotwords)
        except torch.OutOfMemoryError:
            failed = True  # recover outside the except block, so the traceback frees its tensors
        except RuntimeError as e:
            if _is_fatal_device_error(e):
                raise FatalDeviceError(f"the {self.models.device} device failed: {e}") from e
            raise
        if failed:
            gc.collect()
            if self.models.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(feats) == 1:
                seconds = feats[0].shape[0] * FRAME_MS / 1000
                raise OutOfMemoryError(
                    f"out of {self.models.device.type} memory on a {seconds:.0f} s speech segment; "
                    "lower vad.max_segment_ms or asr.batch_frames, or free device memory"
                )
            half = len(feats) // 2
            logger.warning("out of memory on a batch of %d segments; retrying in halves", len(feats))
            return self._recognize_batch(feats[:half], hotwords) + self._recognize_batch(feats[half:], hotwords)
        raise AssertionError("unreachable")

    def _recognize(
        self, pending: list[tuple[int, SpeechSegment, torch.Tensor]], hotwords: tuple[str, ...] = (),
        on_batch: Callable[[int], None] | None = None,
    ) -> dict[int, RecognizedSegment]:
        """Recognise ``pending`` in batches; ``on_batch(frames)`` after each, for the progress."""
        frames = [feats.shape[0] for _, _, feats in pending]
        results: dict[int, RecognizedSegment] = {}
        for batch in plan_batches(frames, self.batch_frames, self.settings.asr.max_batch_size):
            outputs = self._recognize_batch([pending[i][2] for i in batch], hotwords)
            for i, output in zip(batch, outputs):
                results[pending[i][0]] = output
            if on_batch is not None:
                on_batch(sum(frames[i] for i in batch))
        return results

    def _featurized(
        self, speech: Iterator[tuple[SpeechSegment, np.ndarray]], clock: _Clock, diarizer: Diarizer | None = None
    ):
        """Segments with their ASR features, computed as they come (in the producer thread), and
        their speaker embeddings when speakers were asked for: the audio is not kept for later."""
        for segment, wave in speech:
            t0 = time.perf_counter()
            feats = self.recognizer.featurize(wave)
            clock.features += time.perf_counter() - t0
            if diarizer is not None:
                t0 = time.perf_counter()
                diarizer.add(segment, wave)
                clock.speakers += time.perf_counter() - t0
            yield segment, feats

    def _diarizer(self) -> "Diarizer":
        """One transcription's speaker evidence. Imported here: clustering brings scikit-learn and
        scipy (about a second to import), which only a deployment with speakers should pay for."""
        from asr.core.speakers import Diarizer

        return Diarizer(self.models.spk, self.models.device, self.settings.speakers.max_speakers)

    # ---- public --------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Run every stage once on generated input, so the first real request is not the slow one
        (lazy initialisation in torch, FunASR's VAD and jieba happens here)."""
        rng = np.random.default_rng(0)
        noise = (0.05 * rng.standard_normal(SAMPLE_RATE * 3)).astype(np.float32)
        if self.models.vad is not None:
            detector = self._segmenter(True)
            detector.feed(noise)
            detector.finish()
        if self.recognizer is not None:
            # two lengths: the padded-batch path as well as the single-segment one
            fault, self._fault = self._fault, ""  # injected faults strike jobs, not the warm-up
            try:
                self._recognize_batch([self.recognizer.featurize(noise),
                                       self.recognizer.featurize(noise[: SAMPLE_RATE * 2])])
                if self.recognizer.supports_hotwords:  # the bias encoder's and decoder's first use
                    self._recognize_batch([self.recognizer.featurize(noise)], ("热词",))
            finally:
                self._fault = fault
        if self.punctuator is not None:
            self.punctuator("今 天 天 气 很 好 我 们 去 公 园 散 步 吧")
        if self.normalizer is not None:
            self.normalizer.text("一百二十三")
        if self.models.spk is not None:
            self._diarizer().add(SpeechSegment(0, 3000), noise)

    def transcribe(
        self,
        source: AudioSource,
        options: TranscribeOptions = TranscribeOptions(),
        progress: ProgressCallback | None = None,
        name: str | None = None,
    ) -> Transcript:
        """The whole pipeline on one file. Raises AsrError subclasses for bad input.

        ``name`` is what error messages call the file (the user's name for it)."""
        if self.recognizer is None:
            raise ConfigError("this service was started with the VAD-only profile; it cannot transcribe")
        if options.speakers and self.models.spk is None:
            raise SpeakersUnavailableError(
                "speaker labels need the CAM++ speaker model: use the profile vad+asr+punc+spk"
            )
        started = time.perf_counter()
        clock = _Clock()
        chunks, expected_s = self._open(source, clock, name)
        state = {"samples": 0, "position_ms": 0}
        report = _Progress(progress, expected_s)
        # Enough pending speech to sort into several batches; bounded, whatever the file length.
        window = max(8 * self.batch_frames, 4000)
        pending: list[tuple[int, SpeechSegment, torch.Tensor]] = []
        pending_frames = 0
        segments: list[SpeechSegment] = []
        recognized: dict[int, RecognizedSegment] = {}

        def flush() -> None:
            nonlocal pending, pending_frames
            if not pending:
                return
            # what is recognised, not state["position_ms"]: the reading thread may be minutes ahead
            from_ms = pending[0][1].start_ms
            done_ms = max(segment.end_ms for _, segment, _ in pending)
            total, recognised = max(1, pending_frames), 0

            def batch_done(frames: int) -> None:
                # batches run longest first, not in time order: the share of this round's speech
                # recognised, spread over the stretch of audio the round covers
                nonlocal recognised
                recognised += frames
                report("asr", from_ms + (done_ms - from_ms) * min(1.0, recognised / total))

            report("asr", from_ms)
            t0 = time.perf_counter()
            recognized.update(self._recognize(pending, options.hotwords, batch_done))
            clock.asr += time.perf_counter() - t0
            pending, pending_frames = [], 0
            report("asr", done_ms)

        report("decode", 0)
        speech = self._speech(chunks, self._segmenter(options.use_vad), clock, state)
        diarizer = self._diarizer() if options.speakers else None
        # Decoding, VAD and features run in a thread of their own, ahead of the recognition:
        # they are mostly single-threaded, so they fill the gaps the model leaves on the cores.
        with _Ahead(self._featurized(speech, clock, diarizer), depth=64) as ahead:
            for segment, feats in ahead:
                pending.append((len(segments), segment, feats))
                segments.append(segment)
                pending_frames += feats.shape[0]
                if pending_frames >= window:
                    flush()
                else:
                    report("vad", pending[0][1].start_ms)
        flush()

        pairs = [(segments[i], recognized[i]) for i in range(len(segments))]
        punctuation: Punctuation | None = None
        if options.punctuate and self.punctuator is not None:
            report("punc", None)
            t0 = time.perf_counter()
            punctuation = self.punctuator(join_segment_texts([r.text for _, r in pairs]))
            clock.punc += time.perf_counter() - t0
        if punctuation is not None:
            text = punctuation.text
            sentences = build_sentences(pairs, punctuation)
        else:
            text = join_words([w for _, r in pairs for w in r.words])
            sentences = per_segment_sentences(pairs)
        speaker_names: tuple[str, ...] = ()
        if diarizer is not None:
            report("spk", None)
            t0 = time.perf_counter()
            sentences, count = diarizer.assign(
                sentences, options.num_speakers, options.min_speakers, options.max_speakers
            )
            speaker_names = tuple(self.settings.speakers.label.format(n=i + 1) for i in range(count))
            clock.speakers += time.perf_counter() - t0
        duration_s = state["samples"] / SAMPLE_RATE
        transcript = Transcript(
            text=text,
            sentences=tuple(sentences),
            segments=tuple(segments),
            duration_s=duration_s,
            speakers=speaker_names,
        )
        itn = self.settings.text.itn if options.itn is None else options.itn
        if itn and self.normalizer is not None:
            report("itn", None)
            t0 = time.perf_counter()
            transcript = normalize_transcript(transcript, self.normalizer)
            clock.itn += time.perf_counter() - t0
        transcript = replace(transcript, timings=clock.timings(time.perf_counter() - started))
        report.done()
        logger.info(
            "transcribed %.1f s of audio in %.2f s (RTF %.4f): %d segments, %d sentences",
            duration_s, transcript.timings.total_s, transcript.rtf, len(segments), len(sentences),
        )
        return transcript

    def detect_speech(
        self, source: AudioSource, progress: ProgressCallback | None = None, name: str | None = None
    ) -> VadResult:
        """The VAD-only service: speech segments of one file."""
        if self.models.vad is None:
            raise ConfigError("speech detection needs the VAD model: use a profile with 'vad'")
        started = time.perf_counter()
        clock = _Clock()
        chunks, expected_s = self._open(source, clock, name)
        state = {"samples": 0, "position_ms": 0}
        report = _Progress(progress, expected_s)
        segments = []
        for segment, _ in self._speech(chunks, self._segmenter(True), clock, state):
            segments.append(segment)
            report("vad", state["position_ms"])
        report.done()
        return VadResult(
            segments=tuple(segments),
            duration_s=state["samples"] / SAMPLE_RATE,
            timings=clock.timings(time.perf_counter() - started),
        )


class _Progress:
    """Turns 'the audio up to t ms is recognised' into (stage, fraction) callbacks that never go back.

    Reading and VAD run ahead of recognition in a thread of their own, so the loop sees VAD's next
    segments between two rounds of recognition: passing each call's stage on would jump
    vad → asr → vad → asr. The stage reported is the furthest one reached (``STAGES``), and the
    fraction is the share of the audio recognised so far, which only grows."""

    def __init__(self, callback: ProgressCallback | None, expected_s: float | None):
        self._callback = callback
        self._expected_ms = expected_s * 1000 if expected_s else None
        self._last = 0.0
        self._stage = 0

    def __call__(self, stage: str, done_ms: float | None) -> None:
        if self._callback is None:
            return
        if done_ms is None:
            fraction = _STREAM_SHARE
        elif self._expected_ms:
            fraction = _STREAM_SHARE * min(1.0, done_ms / self._expected_ms)
        else:
            fraction = self._last
        self._last = max(self._last, fraction)
        self._stage = max(self._stage, STAGES.index(stage))
        self._callback(STAGES[self._stage], self._last)

    def done(self) -> None:
        if self._callback is not None:
            self._stage = len(STAGES) - 1
            self._callback("done", 1.0)


def build_pipeline(settings: Settings) -> Pipeline:
    """The pipeline of the models ``settings`` name, loaded: the one way every entry point builds one."""
    from asr.models.loading import load_models

    return Pipeline(load_models(settings), settings)
