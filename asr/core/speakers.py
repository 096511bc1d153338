"""Speaker labels: CAM++ embeddings of 1.5 s windows of the speech, clustered, one speaker per sentence.

The method is FunASR's (``AutoModel(..., spk_model=...)``); the clustering and its departures from
FunASR are described in ``asr.core.speaker_clustering``. What this module adds is the streaming: the
pipeline hands over each VAD segment as it is cut, its windows are embedded in batches, and only their
embeddings (192 floats and two times per window) are kept, so hours of audio cost megabytes, not the
audio again.

Example::

    diarizer = Diarizer(models.spk, models.device)
    for segment, wave in speech:            # each VAD segment, in order
        diarizer.add(segment, wave)
    sentences, count = diarizer.assign(sentences, num_speakers=2)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from asr.core import speaker_clustering as clustering
from asr.errors import SpeakersError
from asr.models.loading import LoadedModel
from asr.types import Sentence, SpeechSegment

logger = logging.getLogger(__name__)

#: Windows embedded per CAM++ call: batching makes a window ~1.5x cheaper on a CPU than one at a time;
#: more does not help. The features waiting for a batch are the only audio-derived data kept (~1.5 MB).
BATCH_WINDOWS = 32
MEL_BINS = 80
FRAME_SHIFT_SAMPLES = 160
#: Fbank frames of one 1.5 s window (25 ms frames every 10 ms, Kaldi's snip_edges).
WINDOW_FRAMES = 1 + (clustering.WINDOW_SAMPLES - 400) // FRAME_SHIFT_SAMPLES

def _fbank(samples: np.ndarray) -> torch.Tensor:
    from funasr.utils import fbank as kaldi  # FunASR's own (kaldi-native-fbank), as extract_feature uses

    return kaldi.fbank(torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)).unsqueeze(0),
                       num_mel_bins=MEL_BINS)


def window_features(wave: np.ndarray, spans: Sequence[tuple[float, float, int, int]]) -> list[torch.Tensor]:
    """FunASR's ``extract_feature`` for each window of one segment: 80 log-mel bins, mean removed per window.

    The fbank of the whole segment is computed once and sliced where a window starts on a frame boundary
    (every window but a segment's last): Kaldi frames depend only on their own 400 samples, so the slice is
    identical to the window's own fbank, at half the cost."""
    whole = _fbank(wave) if len(wave) >= clustering.WINDOW_SAMPLES else None
    features = []
    for _, _, first, last in spans:
        if whole is not None and first % FRAME_SHIFT_SAMPLES == 0 and last - first == clustering.WINDOW_SAMPLES:
            start = first // FRAME_SHIFT_SAMPLES
            feats = whole[start : start + WINDOW_FRAMES]
        else:
            chunk = wave[first:last]
            if len(chunk) < clustering.WINDOW_SAMPLES:
                chunk = np.pad(chunk, (0, clustering.WINDOW_SAMPLES - len(chunk)))
            feats = _fbank(chunk)
        features.append(feats - feats.mean(dim=0, keepdim=True))
    return features


class Diarizer:
    """One transcription's speaker evidence: embeddings of 1.5 s windows, never audio."""

    def __init__(self, model: LoadedModel, device: torch.device, max_speakers: int = 16):
        self.model = model
        self.device = device
        self.max_speakers = max_speakers
        self._pending: list[torch.Tensor] = []
        self._spans: list[tuple[float, float]] = []
        self._embeddings: list[np.ndarray] = []

    # ---- evidence -------------------------------------------------------------------------------

    def add(self, segment: SpeechSegment, wave: np.ndarray) -> None:
        """Called once per VAD segment, in order, from the pipeline's producer thread, with the segment's
        16 kHz float32 samples (absolute times in segment.start_ms/end_ms). Its windows' features wait
        for a full batch (at most ``BATCH_WINDOWS``); the audio is not kept."""
        spans = clustering.window_spans(segment.start_ms, len(wave))
        if not spans:
            return
        self._pending.extend(window_features(wave, spans))
        self._spans.extend((start, end) for start, end, _, _ in spans)
        while len(self._pending) >= BATCH_WINDOWS:
            self._embed(BATCH_WINDOWS)

    def _embed(self, count: int) -> None:
        batch, self._pending = self._pending[:count], self._pending[count:]
        with torch.inference_mode():
            out = self.model.module(torch.stack(batch).to(self.device))
        self._embeddings.append(out.float().cpu().numpy())

    def embeddings(self) -> np.ndarray:
        """(windows, 192) float32, in time order; embeds what is still waiting."""
        while self._pending:
            self._embed(BATCH_WINDOWS)
        if not self._embeddings:
            return np.zeros((0, 192), dtype=np.float32)
        if len(self._embeddings) > 1:
            self._embeddings = [np.concatenate(self._embeddings)]
        return self._embeddings[0]

    @property
    def spans(self) -> list[tuple[float, float]]:
        """(start_s, end_s) of every window so far, in time order."""
        return list(self._spans)

    # ---- labels ---------------------------------------------------------------------------------

    def turns(
        self, num_speakers: int | None = None, min_speakers: int | None = None, max_speakers: int | None = None
    ) -> list[tuple[float, float, int]]:
        """Who speaks when: ``(start_s, end_s, speaker)`` stretches in time order (FunASR's timeline of
        the clustered windows). Empty when there was no speech."""
        high = self.max_speakers if max_speakers is None else max_speakers
        low = 1 if min_speakers is None else min_speakers
        if num_speakers is not None and num_speakers < 1:
            raise SpeakersError(f"the number of speakers must be at least 1, not {num_speakers}")
        if low < 1 or high < 1:
            raise SpeakersError("the least and the most speakers must be at least 1")
        if low > high:
            raise SpeakersError(f"at least {low} speakers but at most {high}: the least is above the most")
        embeddings = self.embeddings()
        if len(embeddings) == 0:
            return []
        labels = clustering.cluster(embeddings, num_speakers, low, high)
        turns = clustering.timeline(self._spans, labels)
        logger.info("speakers: %d windows, %d clusters, %d turns", len(embeddings), int(labels.max()) + 1, len(turns))
        return turns

    def assign(
        self,
        sentences: Sequence[Sentence],
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
    ) -> tuple[tuple[Sentence, ...], int]:
        """Cluster, build the timeline, give each sentence the speaker it overlaps most; ids renumbered
        0.. by first appearance. Returns the sentences and the number of speakers among them.

        A sentence overlapping no window gets the nearest turn's speaker. No speech at all: the
        sentences unchanged and 0 speakers."""
        turns = self.turns(num_speakers, min_speakers, max_speakers)
        if not turns or not sentences:
            return tuple(sentences), 0
        found = clustering.assign([(s.start_ms, s.end_ms) for s in sentences], turns)
        renumber: dict[int, int] = {}
        for speaker in found:
            renumber.setdefault(speaker, len(renumber))
        return tuple(replace(s, speaker=renumber[k]) for s, k in zip(sentences, found)), len(renumber)
