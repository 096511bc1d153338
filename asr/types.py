"""Frozen dataclasses that cross the package boundary: options in, results out.

Times are integer milliseconds on the audio's own timeline.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal

Stage = Literal["decode", "vad", "asr", "punc", "spk", "itn", "done"]
#: The stages in the order a transcription reaches them. Reading and VAD run ahead of recognition
#: in a thread of their own, so several are busy at once; progress names the furthest one reached.
STAGES: tuple[Stage, ...] = ("decode", "vad", "asr", "punc", "spk", "itn", "done")
#: progress(stage, fraction): the furthest stage reached, and the share of the whole job done
#: (both only ever move forward)
ProgressCallback = Callable[[str, float], None]


@dataclass(frozen=True)
class TranscribeOptions:
    """Per-request choices; everything else comes from Settings."""

    punctuate: bool = True
    """Run CT-Transformer punctuation (when the profile loaded it)."""
    use_vad: bool = True
    """Cut the audio with FSMN-VAD (when loaded); without it the audio is cut at fixed lengths."""
    precision: str | None = None
    """Override the configured precision for this request (issue: precision modes)."""
    itn: bool | None = None
    """Inverse text normalisation (一百二十三 → 123); None: the deployment's default (``text.itn``)."""
    hotwords: tuple[str, ...] = ()
    """Names and jargon to bias recognition towards (SeACo-Paraformer only), checked by the caller."""
    speakers: bool = False
    """Label each sentence with its speaker (needs the ``+spk`` profile)."""
    num_speakers: int | None = None
    """The number of speakers when known; else clustering decides, within min/max."""
    min_speakers: int | None = None
    max_speakers: int | None = None


@dataclass(frozen=True)
class SpeechSegment:
    """A stretch of speech found by VAD."""

    start_ms: int
    end_ms: int

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms


@dataclass(frozen=True)
class TimedToken:
    """One recognised unit (a Chinese character or an English word) and when it was said."""

    text: str
    start_ms: int
    end_ms: int
    mark: str = ""
    """Punctuation that follows this token in the text, if any."""


@dataclass(frozen=True)
class Sentence:
    text: str
    start_ms: int
    end_ms: int
    tokens: tuple[TimedToken, ...] = ()
    speaker: int | None = None
    """0-based speaker id (numbered by first appearance) when speakers were asked for."""


@dataclass(frozen=True)
class StageTimings:
    """Wall seconds spent in each stage of one transcription."""

    decode_s: float = 0.0
    vad_s: float = 0.0
    asr_s: float = 0.0
    punc_s: float = 0.0
    total_s: float = 0.0
    speakers_s: float = 0.0
    """Speaker embeddings (in the reading thread, beside recognition) and clustering."""
    itn_s: float = 0.0


@dataclass(frozen=True)
class Transcript:
    text: str
    """The full text, punctuated when punctuation ran."""
    sentences: tuple[Sentence, ...]
    segments: tuple[SpeechSegment, ...]
    duration_s: float
    """Length of the audio in seconds."""
    timings: StageTimings = field(default_factory=StageTimings)
    language: str = "zh"
    speakers: tuple[str, ...] = ()
    """Display names of the speakers, indexed by ``Sentence.speaker`` (empty: no speaker labels)."""

    def speaker_name(self, sentence: Sentence) -> str | None:
        if sentence.speaker is None or sentence.speaker >= len(self.speakers):
            return None
        return self.speakers[sentence.speaker]

    @property
    def rtf(self) -> float:
        """Real-time factor: processing seconds per second of audio."""
        return self.timings.total_s / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rtf"] = round(self.rtf, 5)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Transcript":
        return cls(
            text=data["text"],
            sentences=tuple(
                Sentence(
                    text=s["text"],
                    start_ms=s["start_ms"],
                    end_ms=s["end_ms"],
                    tokens=tuple(TimedToken(**t) for t in s.get("tokens", ())),
                    speaker=s.get("speaker"),
                )
                for s in data["sentences"]
            ),
            segments=tuple(SpeechSegment(**s) for s in data["segments"]),
            duration_s=data["duration_s"],
            timings=StageTimings(**data.get("timings", {})),
            language=data.get("language", "zh"),
            speakers=tuple(data.get("speakers", ())),
        )


@dataclass(frozen=True)
class VadResult:
    """The VAD-only service's answer: speech segments of one file."""

    segments: tuple[SpeechSegment, ...]
    duration_s: float
    timings: StageTimings = field(default_factory=StageTimings)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VadResult":
        return cls(
            segments=tuple(SpeechSegment(s["start_ms"], s["end_ms"]) for s in data["segments"]),
            duration_s=data["duration_s"],
            timings=StageTimings(**data.get("timings", {})),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "duration_s": self.duration_s,
            "segments": [
                {"index": i + 1, "start_ms": s.start_ms, "end_ms": s.end_ms, "duration_ms": s.duration_ms}
                for i, s in enumerate(self.segments)
            ],
            "timings": asdict(self.timings),
        }


@dataclass(frozen=True)
class Punctuation:
    text: str
    """The punctuated text."""
    marks: tuple[int, ...]
    """One id per input word into ``labels`` (1 = no mark)."""
    labels: tuple[str, ...]
    """CT-Transformer's classes, e.g. ('<unk>', '_', '，', '。', '？', '、')."""


@dataclass(frozen=True)
class RecognizedSegment:
    """One segment's recognition, in FunASR's post-processed form."""

    words: tuple[str, ...]
    """Units after FunASR's post-processing: Chinese characters and whole English words."""
    timestamps: tuple[tuple[int, int], ...]
    """[start_ms, end_ms] per word, relative to the segment's start."""

    @property
    def text(self) -> str:
        """FunASR's per-segment text: the words joined by spaces."""
        return " ".join(self.words).strip()
