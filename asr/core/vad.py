"""Cut streamed audio into speech segments: FSMN-VAD, or fixed windows when no VAD is loaded.

Both segmenters take 16 kHz float32 chunks as they are decoded and hand back finished
segments as soon as they are known, so a long file never has to be in memory at once.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from asr.core.fbank import fast_fbank
from asr.models.loading import LoadedModel
from asr.types import SpeechSegment

logger = logging.getLogger(__name__)

SAMPLES_PER_MS = 16
#: FunASR's VAD processes audio in 60 s blocks; feeding it that size reproduces its
#: whole-file segmentation exactly.
VAD_BLOCK_MS = 60000


class SpeechDetector:
    """Streaming FSMN-VAD over one file. Feed chunks with ``feed``, then call ``finish`` once."""

    def __init__(self, model: LoadedModel, max_end_silence_ms: int | None = None, fast_features: bool = False):
        self._module = model.module
        self._fast_features = fast_features
        self._frontend = model.frontend
        self._cache: dict = {}
        self._held: torch.Tensor | None = None
        self._options = {
            "chunk_size": VAD_BLOCK_MS,
            "is_streaming_input": False,
            "device": "cpu",
        }
        if max_end_silence_ms is not None:
            self._options["max_end_silence_time"] = max_end_silence_ms
        # FunASR writes a per-call end-silence into the model's own options; put it back after.
        self._saved_end_silence = self._module.vad_opts.max_end_silence_time

    def _run(self, samples: torch.Tensor, is_final: bool) -> list[SpeechSegment]:
        with torch.inference_mode(), fast_fbank(self._fast_features):
            results, _ = self._module.inference(
                data_in=[samples], key=["audio"], frontend=self._frontend,
                cache=self._cache, is_final=is_final, **self._options,
            )
        return [SpeechSegment(int(s), int(e)) for s, e in results[0]["value"] if e > s]

    def feed(self, chunk: np.ndarray) -> list[SpeechSegment]:
        """Add decoded audio; returns the segments that ended so far."""
        if chunk.size == 0:
            return []
        # One chunk is held back: FunASR needs the last call to carry samples *and* is_final.
        previous, self._held = self._held, torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32))
        return self._run(previous, is_final=False) if previous is not None else []

    def finish(self) -> list[SpeechSegment]:
        """Flush: the remaining segments, including one still open at the end of the audio."""
        held, self._held = self._held, None
        try:
            return self._run(held, is_final=True) if held is not None else []
        finally:
            self._module.vad_opts.max_end_silence_time = self._saved_end_silence


class LiveEndpoints:
    """FSMN-VAD on a live stream, frame by frame, as FunASR's two-pass server runs it: each call says where
    speech started and where it ended within what was fed so far (ms from the stream's start), -1 for
    neither. The model's cache holds only its look-back, so memory does not grow with the stream."""

    def __init__(self, model: LoadedModel):
        self._module = model.module
        self._frontend = model.frontend
        self._cache: dict = {}

    def feed(self, samples: np.ndarray, is_final: bool = False) -> tuple[int, int]:
        """(start_ms, end_ms) of speech found in this frame, -1 for none; ``samples`` is one client frame."""
        frame_ms = max(1, len(samples) // SAMPLES_PER_MS)
        with torch.inference_mode():
            results, _ = self._module.inference(
                data_in=[torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))], key=["live"],
                frontend=self._frontend, cache=self._cache, is_final=is_final, chunk_size=frame_ms,
                is_streaming_input=True, device="cpu",
            )
        found = results[0]["value"]
        # One boundary (or one short segment) per frame is what a frame can hold; FunASR's server also
        # ignores a frame that reports several, which only a frame far longer than the end silence could.
        if len(found) != 1:
            return -1, -1
        start, end = found[0]
        return int(start), int(end)


class FixedSegmenter:
    """Without a VAD model: windows of at most ``max_segment_ms``, cut at the quietest 10 ms
    in the window's last fifth so that a cut rarely lands inside a word."""

    def __init__(self, max_segment_ms: int):
        self._max = max_segment_ms * SAMPLES_PER_MS
        self._search = max(self._max // 5, 160)
        self._buffer = np.zeros(0, dtype=np.float32)
        self._start = 0  # sample offset of _buffer[0]

    def feed(self, chunk: np.ndarray) -> list[SpeechSegment]:
        self._buffer = np.concatenate([self._buffer, chunk.astype(np.float32, copy=False)])
        segments = []
        while len(self._buffer) > self._max:
            cut = self._quietest_cut()
            segments.append(SpeechSegment(self._start // SAMPLES_PER_MS, (self._start + cut) // SAMPLES_PER_MS))
            self._buffer = self._buffer[cut:]
            self._start += cut
        return segments

    def finish(self) -> list[SpeechSegment]:
        end = self._start + len(self._buffer)
        segments = [SpeechSegment(self._start // SAMPLES_PER_MS, end // SAMPLES_PER_MS)] if len(self._buffer) else []
        self._buffer = np.zeros(0, dtype=np.float32)
        self._start = end
        return [s for s in segments if s.duration_ms > 0]

    def _quietest_cut(self) -> int:
        frame = 160
        lo = self._max - self._search
        window = self._buffer[lo : self._max]
        frames = len(window) // frame
        if frames == 0:
            return self._max - self._max % SAMPLES_PER_MS
        energy = (window[: frames * frame].reshape(frames, frame) ** 2).sum(axis=1)
        cut = lo + int(np.argmin(energy)) * frame + frame // 2
        return cut - cut % SAMPLES_PER_MS  # whole milliseconds, so segments map back to samples exactly
