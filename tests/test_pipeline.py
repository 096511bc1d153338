"""The pipeline end to end on espeak-ng Mandarin, with the real FSMN-VAD and tiny random-weight
Paraformer / CT-Transformer models (their text is meaningless; structure and timing are not)."""

from __future__ import annotations

import numpy as np
import pytest

from asr.types import TranscribeOptions
from tests.conftest import with_pauses


def speech_intervals(clips, pause_s=2.5, lead_s=0.5) -> list[tuple[int, int]]:
    """[start_ms, end_ms] of each clip inside with_pauses(clips, pause_s, lead_s)."""
    intervals, t = [], lead_s * 1000
    for clip in clips:
        length = len(clip) / 16
        intervals.append((int(t), int(t + length)))
        t += length + pause_s * 1000
    return intervals


def test_vad_finds_each_sentence_and_the_pauses(pipeline, speech_with_pauses, sentence_clips):
    result = pipeline.detect_speech(speech_with_pauses)
    speech = speech_intervals(sentence_clips)
    assert result.duration_s == pytest.approx(len(speech_with_pauses) / 16000)
    assert len(result.segments) >= len(speech)
    for start, end in speech:  # every sentence is mostly covered by speech segments
        covered = sum(max(0, min(end, s.end_ms) - max(start, s.start_ms)) for s in result.segments)
        assert covered >= 0.8 * (end - start), (start, end, result.segments)
    for (_, end), (start, _) in zip(speech, speech[1:]):  # the middle of each pause is silence
        middle = (end + start) // 2
        assert not any(s.start_ms <= middle <= s.end_ms for s in result.segments), (middle, result.segments)
    ends = [s.end_ms for s in result.segments]
    assert ends == sorted(ends) and all(s.end_ms > s.start_ms for s in result.segments)


def test_silence_gives_no_segments_and_an_empty_transcript(pipeline):
    silence = np.zeros(16000 * 20, dtype=np.float32)
    assert pipeline.detect_speech(silence).segments == ()
    transcript = pipeline.transcribe(silence)
    assert transcript.text == "" and transcript.sentences == () and transcript.segments == ()
    assert transcript.duration_s == pytest.approx(20.0)


def test_timestamps_fall_inside_the_speech(pipeline, speech_with_pauses, sentence_clips):
    transcript = pipeline.transcribe(speech_with_pauses)
    speech = speech_intervals(sentence_clips)
    tokens = [t for s in transcript.sentences for t in s.tokens]
    assert transcript.text and tokens
    for token in tokens:
        assert 0 <= token.start_ms <= token.end_ms <= len(speech_with_pauses) / 16
        assert any(seg.start_ms <= token.start_ms and token.end_ms <= seg.end_ms for seg in transcript.segments)
        # VAD pads a segment by a few hundred ms around the speech it found
        assert any(start - 500 <= token.start_ms and token.end_ms <= end + 1000 for start, end in speech), token
    starts = [t.start_ms for t in tokens]
    assert starts == sorted(starts)
    for sentence in transcript.sentences:
        assert sentence.text.strip()
        assert sentence.start_ms == sentence.tokens[0].start_ms and sentence.end_ms == sentence.tokens[-1].end_ms


def test_sentences_carry_the_punctuated_text(pipeline, speech_with_pauses):
    transcript = pipeline.transcribe(speech_with_pauses)
    # CT-Transformer writes its class 0 label literally as "<unk>" (FunASR keeps it; only an
    # untrained model predicts it); sentences do not count it as punctuation.
    text = transcript.text.replace("<unk>", "")
    assert "".join(s.text for s in transcript.sentences).replace(" ", "") == text.replace(" ", "")
    plain = pipeline.transcribe(speech_with_pauses, TranscribeOptions(punctuate=False))
    marks = set("，。？、")
    assert not marks & set(plain.text)
    stripped = "".join(ch for ch in text if ch not in marks and ch not in ",.?")
    assert stripped.replace(" ", "") == plain.text.replace(" ", "")


def test_progress_reports_stages_and_reaches_one(pipeline, speech_with_pauses):
    seen = []
    pipeline.transcribe(speech_with_pauses, progress=lambda stage, fraction: seen.append((stage, fraction)))
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    stages = [s for s, _ in seen]
    assert {"decode", "asr", "punc", "done"} <= set(stages)
    assert stages.index("asr") < stages.index("punc") < stages.index("done")


def test_asr_progress_follows_recognition_not_reading(pipeline, speech_with_pauses):
    """Reading runs ahead in its own thread; a minute of trailing silence is read long before the
    speech is recognised, so the "asr" progress must stop where the speech ends, not at the end."""
    from asr.core.pipeline import _STREAM_SHARE

    audio = np.concatenate([speech_with_pauses, np.zeros(16000 * 60, np.float32)])
    seen = []
    transcript = pipeline.transcribe(audio, progress=lambda stage, fraction: seen.append((stage, fraction)))
    speech_end_ms = max(segment.end_ms for segment in transcript.segments)
    last_asr = max(fraction for stage, fraction in seen if stage == "asr")
    assert last_asr <= _STREAM_SHARE * speech_end_ms / (len(audio) / 16) + 1e-6, (last_asr, speech_end_ms)


def test_timings_and_rtf(pipeline, speech_with_pauses):
    transcript = pipeline.transcribe(speech_with_pauses)
    t = transcript.timings
    assert t.total_s > 0 and t.vad_s > 0 and t.asr_s > 0 and t.punc_s > 0
    # decoding and VAD run ahead in their own thread, overlapping ASR: each stage fits in the total
    assert all(stage <= t.total_s for stage in (t.decode_s, t.vad_s, t.asr_s, t.punc_s))
    assert transcript.rtf == pytest.approx(t.total_s / transcript.duration_s)


def test_batching_does_not_change_the_result(models, settings, speech_with_pauses, sentence_clips):
    """One segment per batch and everything in one batch give the same words and times."""
    from asr.core.pipeline import Pipeline

    long_audio = with_pauses(sentence_clips * 3, 1.5)
    alone = Pipeline(models, settings.model_copy(update={"asr": settings.asr.model_copy(update={"batch_frames": 100})}))
    together = Pipeline(models, settings.model_copy(update={"asr": settings.asr.model_copy(update={"batch_frames": 100000})}))
    a, b = alone.transcribe(long_audio), together.transcribe(long_audio)
    assert len(a.segments) > 3
    assert a.text == b.text
    assert [(t.text, t.start_ms, t.end_ms) for s in a.sentences for t in s.tokens] == [
        (t.text, t.start_ms, t.end_ms) for s in b.sentences for t in s.tokens
    ]


def test_file_source_equals_array_source(pipeline, speech_wav, speech_with_pauses):
    from_file = pipeline.transcribe(speech_wav)
    from_array = pipeline.transcribe(speech_with_pauses)
    assert from_file.text == from_array.text
    assert from_file.segments == from_array.segments


_LONG_RUN = """
import resource, sys
import numpy as np
from asr.config import load_settings
from asr.core.pipeline import build_pipeline
from asr.core.audio import load_audio
minutes = float(sys.argv[1])
settings = load_settings(sys.argv[2], asr={"batch_frames": 600})
pipeline = build_pipeline(settings)
unit = np.concatenate([np.concatenate([load_audio(p), np.zeros(16000, np.float32)]) for p in sys.argv[3:]])
total = int(minutes * 60 * 16000)
def lazy_chunks():  # never holds the whole file
    produced = 0
    while produced < total:
        chunk = unit[: total - produced].copy()
        produced += len(chunk)
        yield chunk
transcript = pipeline.transcribe(lazy_chunks())
print(len(transcript.segments), transcript.duration_s, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


@pytest.mark.slow
def test_long_audio_is_streamed_not_held(test_models, speech_dir, sentence_clips):
    """Peak memory of a 30-minute file stays within a margin of a 6-minute one's: the audio streams
    through a rolling window and is never held whole (holding it would add 92 MB of float32; what
    does grow is the transcript itself, tokens and timestamps)."""
    import subprocess
    import sys

    from tests.conftest import REPO, TEST_CONFIG

    clips = sorted(str(p) for p in speech_dir.glob("sentence*.wav"))
    peaks = {}
    for minutes in (6, 30):
        out = subprocess.run(
            [sys.executable, "-c", _LONG_RUN, str(minutes), str(TEST_CONFIG), *clips],
            cwd=REPO, capture_output=True, text=True, check=True,
        ).stdout.split()
        segments, duration, peaks[minutes] = int(out[0]), float(out[1]), int(out[2])
        assert duration == pytest.approx(minutes * 60, abs=0.1) and segments > minutes * 5
    grown = peaks[30] - peaks[6]
    audio_growth = (30 - 6) * 60 * 16000 * 4
    assert grown < audio_growth / 2, f"peak RSS grew {grown / 1e6:.0f} MB from 6 to 30 minutes"


def test_profiles_load_only_their_models(settings):
    from asr.core.pipeline import Pipeline
    from asr.models.loading import load_models

    for profile, roles in {"asr": {"asr"}, "asr+punc": {"asr", "punc"}, "vad": {"vad"}}.items():
        s = settings.model_copy(update={"models": settings.models.model_copy(update={"profile": profile})})
        loaded = load_models(s)
        assert {m.role for m in loaded.models()} == roles
        pipeline = Pipeline(loaded, s)
        audio = np.concatenate([np.zeros(8000, np.float32), np.random.default_rng(0).normal(0, 0.1, 16000 * 70).astype(np.float32)])
        if profile == "vad":
            assert pipeline.detect_speech(audio).duration_s == pytest.approx(len(audio) / 16000)
            with pytest.raises(Exception, match="VAD-only"):
                pipeline.transcribe(audio)
            continue
        transcript = pipeline.transcribe(audio)
        # without VAD, 70.5 s is cut into windows of at most vad.max_segment_ms
        assert len(transcript.segments) == 3
        assert all(seg.duration_ms <= s.vad.max_segment_ms for seg in transcript.segments)
        assert transcript.segments[-1].end_ms == len(audio) // 16
