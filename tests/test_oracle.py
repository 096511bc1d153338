"""Equivalence oracle: with identical models and audio, our fp32 pipeline produces exactly the text
(and VAD segments) of FunASR's own ``AutoModel(model, vad_model, punc_model).generate()``.

FunASR runs in a subprocess, because it needs its full import while our process uses the
selective one. Feature dither is 0 on both sides (FunASR's default of 1.0 adds noise).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from tests.conftest import REPO, with_pauses


def funasr_reference(tmp_path, audio: np.ndarray, models, settings) -> dict:
    np.save(tmp_path / "audio.npy", audio)
    dirs = [str(models.asr.location.directory), str(models.vad.location.directory), str(models.punc.location.directory)]
    args = [str(tmp_path / "audio.npy"), str(tmp_path / "ref.json"), *dirs, str(settings.vad.max_segment_ms)]
    if settings.vad.max_end_silence_ms is not None:
        args.append(str(settings.vad.max_end_silence_ms))
    subprocess.run([sys.executable, str(REPO / "tests" / "funasr_reference.py"), *args], check=True, cwd=tmp_path,
                   capture_output=True)
    return json.loads((tmp_path / "ref.json").read_text(encoding="utf-8"))


def assert_same_as_funasr(ours, reference):
    assert [[s.start_ms, s.end_ms] for s in ours.segments] == reference["vad"]
    assert ours.text == reference["text"]
    # Per-token times: equal wherever FunASR's stamps line up with its words (it misaligns them
    # after a dropped <unk> token, which only a random-weight model emits often).
    ours_stamps = [(t.start_ms, t.end_ms) for s in ours.sentences for t in s.tokens]
    ends = [seg.end_ms for seg in ours.segments]
    theirs = [(min(a, max(ends)), min(b, max(ends))) for a, b in reference["timestamp"]]
    assert abs(len(ours_stamps) - len(theirs)) <= len(theirs) // 50 + 1
    same = sum(1 for a, b in zip(ours_stamps, theirs) if abs(a[0] - b[0]) <= 60 and abs(a[1] - b[1]) <= 60)
    assert same >= 0.9 * len(theirs), f"{same}/{len(theirs)} token times agree"


def test_text_equals_funasr_automodel(tmp_path, pipeline, models, settings, speech_with_pauses):
    reference = funasr_reference(tmp_path, speech_with_pauses, models, settings)
    assert_same_as_funasr(pipeline.transcribe(speech_with_pauses), reference)


def test_text_equals_funasr_on_long_batched_audio(tmp_path, pipeline, models, settings, sentence_clips):
    """~2.5 minutes: short pauses, and a 40 s run without a pause that VAD must cut at 30 s;
    our segments are batched together, FunASR decodes them one by one on CPU."""
    no_pause = np.concatenate(sentence_clips * 4)
    audio = np.concatenate([with_pauses(sentence_clips * 3, 0.9), no_pause, with_pauses(sentence_clips, 3.0)])
    reference = funasr_reference(tmp_path, audio, models, settings)
    ours = pipeline.transcribe(audio)
    assert any(s.duration_ms > 25000 for s in ours.segments)
    assert_same_as_funasr(ours, reference)


def test_text_equals_funasr_with_fixed_end_silence(tmp_path, models, settings, sentence_clips):
    from asr.core.pipeline import Pipeline

    fixed = settings.model_copy(update={"vad": settings.vad.model_copy(update={"max_end_silence_ms": 400})})
    audio = with_pauses(sentence_clips * 2, 0.6)
    reference = funasr_reference(tmp_path, audio, models, fixed)
    assert_same_as_funasr(Pipeline(models, fixed).transcribe(audio), reference)


def test_silence_equals_funasr(tmp_path, pipeline, models, settings):
    silence = np.zeros(16000 * 8, dtype=np.float32)
    reference = funasr_reference(tmp_path, silence, models, settings)
    ours = pipeline.transcribe(silence)
    assert ours.text == reference["text"] == "" and reference["vad"] == []
