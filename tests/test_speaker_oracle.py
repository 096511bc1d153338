"""Speaker labels, slow tier: equivalence with FunASR's own ``AutoModel(model, vad_model, punc_model,
spk_model).generate()`` on the same models and audio, and espeak-ng dialogues in two voices end to end.

The oracle: per-sentence speakers equal the ``spk`` of FunASR's ``sentence_info``, up to renaming, with
FunASR's spectral clustering's bound of 15 speakers. FunASR's k-means draws on numpy's global generator
unseeded; the reference seeds it with 0, as our clustering seeds its own. Where we differ on purpose the
test says so: under 20 windows FunASR labels everything speaker 0, even when told there are two.
Above 2048 windows FunASR's UMAP is unseeded (no two runs agree), so the long dialogue checks structure.

Random CAM++ weights do not encode voices: the dialogues check structure, not who is who.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asr.types import TranscribeOptions
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
from bench_speakers import dialogue  # noqa: E402

#: FunASR's AutoModel with the speaker model, in a process of its own (it needs FunASR's full import).
REFERENCE = r"""
import json, sys
import numpy as np
audio, out, asr, vad, punc, spk, max_segment, end_silence, preset = sys.argv[1:10]
vad_kwargs = {"max_single_segment_time": int(max_segment)}
if end_silence != "-":
    vad_kwargs["max_end_silence_time"] = int(end_silence)
from funasr import AutoModel
model = AutoModel(model=asr, vad_model=vad, punc_model=punc, spk_model=spk, device="cpu", disable_update=True,
                  disable_pbar=True, log_level="ERROR", frontend_conf={"dither": 0.0}, vad_kwargs=vad_kwargs)
kwargs = {} if preset == "-" else {"preset_spk_num": int(preset)}
np.random.seed(0)  # FunASR's k-means takes numpy's global generator
result = model.generate(input=np.load(audio), **kwargs)[0]
sentences = [{"text": s["text"], "start": s["start"], "end": s["end"], "spk": s["spk"]}
             for s in result.get("sentence_info", [])]
json.dump({"text": result.get("text", ""), "sentences": sentences}, open(out, "w"), ensure_ascii=False)
"""


@pytest.fixture(scope="module")
def spk_settings(test_models):
    from asr.config import load_settings

    return load_settings(REPO / "config.test-models.yaml", models={"profile": "vad+asr+punc+spk"},
                         runtime={"device": "cpu", "precision": "fp32"})


@pytest.fixture(scope="module")
def spk_models(spk_settings):
    from asr.models.loading import load_models

    return load_models(spk_settings)


@pytest.fixture(scope="module")
def spk_pipeline(spk_models, spk_settings):
    from asr.core.pipeline import Pipeline

    return Pipeline(spk_models, spk_settings)


@pytest.fixture(scope="module")
def voices_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("voices")


@pytest.fixture(scope="module")
def exchange(voices_dir) -> tuple[np.ndarray, list[int]]:
    """Eight turns, the two voices alternating (~30 s, a few dozen windows)."""
    return dialogue(voices_dir, 8)


def funasr_speakers(tmp_path, audio: np.ndarray, models, settings, preset: int | None = None) -> dict:
    np.save(tmp_path / "audio.npy", audio)
    dirs = [str(getattr(models, role).location.directory) for role in ("asr", "vad", "punc", "spk")]
    silence = settings.vad.max_end_silence_ms
    args = [str(tmp_path / "audio.npy"), str(tmp_path / "ref.json"), *dirs, str(settings.vad.max_segment_ms),
            "-" if silence is None else str(silence), "-" if preset is None else str(preset)]
    subprocess.run([sys.executable, "-c", REFERENCE, *args], check=True, cwd=tmp_path, capture_output=True)
    return json.loads((tmp_path / "ref.json").read_text(encoding="utf-8"))


def same_partition(a, b) -> bool:
    return len(a) == len(b) and len(set(zip(a, b))) == len(set(a)) == len(set(b))


def windows_of(transcript) -> int:
    from asr.core.speaker_clustering import window_spans

    return sum(len(window_spans(s.start_ms, s.duration_ms * 16)) for s in transcript.segments)


def our_turns(transcript, audio: np.ndarray, models, num_speakers: int | None):
    """Our timeline on our VAD segments (the pipeline's own evidence, rebuilt from the same samples)."""
    from asr.core.speakers import Diarizer

    diarizer = Diarizer(models.spk, models.device)
    for segment in transcript.segments:
        diarizer.add(segment, audio[segment.start_ms * 16 : segment.end_ms * 16])
    return diarizer.turns(num_speakers, 1, 15)


def overlapping(piece: dict, turns) -> int:
    return sum(1 for start, end, _ in turns if min(piece["end"], end * 1000) > max(piece["start"], start * 1000))


def assert_speakers_equal_funasr(ours, audio, reference, models, num_speakers=None):
    """FunASR's sentence_info pieces end at every mark (commas too) while our sentences end at 。？！, so
    the units differ. The oracle is therefore our timeline: FunASR's own distribute_spk on it gives every
    piece FunASR's speaker (windows, embeddings, clustering, merging, smoothing all equal), and our
    overlap rule gives the same except where it differs on purpose (a piece over no turn, or over two
    or more where FunASR counts the first twice). Our sentences get their speakers from that timeline."""
    from asr.core import speaker_clustering as sc
    from asr.models.funasr_import import import_registered

    import_registered("CAMPPlus")
    from funasr.models.campplus.utils import distribute_spk

    assert ours.text == reference["text"]
    pieces = reference["sentences"]
    theirs = [p["spk"] for p in pieces]
    turns = our_turns(ours, audio, models, num_speakers)
    funasr_rule = [p["spk"] for p in distribute_spk([dict(p) for p in pieces], [list(t) for t in turns])]
    assert same_partition(funasr_rule, theirs), f"on our timeline {funasr_rule}\nFunASR's {theirs}"
    mine = sc.assign([(p["start"], p["end"]) for p in pieces], turns)
    differ = [i for i, (a, b) in enumerate(zip(mine, funasr_rule)) if {a} != {b}]
    agree = [i for i in range(len(pieces)) if i not in differ]
    assert same_partition([mine[i] for i in agree], [theirs[i] for i in agree])
    assert all(overlapping(pieces[i], turns) != 1 for i in differ), [pieces[i] for i in differ]
    assert len(differ) <= len(pieces) // 10
    sentences = sc.assign([(s.start_ms, s.end_ms) for s in ours.sentences], turns)
    assert same_partition([s.speaker for s in ours.sentences], sentences)


@pytest.mark.parametrize("preset", [None, 2, 3])
def test_speakers_equal_funasr_automodel(tmp_path, spk_pipeline, spk_models, spk_settings, exchange, preset):
    audio, _ = exchange
    reference = funasr_speakers(tmp_path, audio, spk_models, spk_settings, preset)
    ours = spk_pipeline.transcribe(audio, TranscribeOptions(speakers=True, num_speakers=preset, max_speakers=15))
    assert 20 <= windows_of(ours) < 2048
    assert_speakers_equal_funasr(ours, audio, reference, spk_models, preset)


def test_speakers_equal_funasr_on_a_longer_dialogue(tmp_path, spk_pipeline, spk_models, spk_settings, voices_dir):
    """~2.5 minutes, some turns without a pause (one VAD segment holds both voices)."""
    audio, _ = dialogue(voices_dir, 16)
    run_on, _ = dialogue(voices_dir, 6, pause_s=0.05)
    audio = np.concatenate([audio, run_on, audio])
    reference = funasr_speakers(tmp_path, audio, spk_models, spk_settings)
    ours = spk_pipeline.transcribe(audio, TranscribeOptions(speakers=True, max_speakers=15))
    assert 150 <= windows_of(ours) < 2048
    assert_speakers_equal_funasr(ours, audio, reference, spk_models)


def test_under_twenty_windows_we_differ_on_purpose(tmp_path, spk_pipeline, spk_models, spk_settings, voices_dir):
    """Two turns (~8 s of speech): FunASR's ClusterBackend returns speaker 0 for every window under 20,
    even with preset_spk_num=2. We cluster them (average linkage), so told two, we give two."""
    audio, _ = dialogue(voices_dir, 2)
    reference = funasr_speakers(tmp_path, audio, spk_models, spk_settings, preset=2)
    ours = spk_pipeline.transcribe(audio, TranscribeOptions(speakers=True, num_speakers=2, max_speakers=15))
    assert windows_of(ours) < 20
    assert ours.text == reference["text"]
    assert {s["spk"] for s in reference["sentences"]} == {0}  # FunASR: one speaker, whatever it is told
    assert len(ours.speakers) == 2 and {s.speaker for s in ours.sentences} == {0, 1}


# ---- espeak-ng dialogues end to end: structure -------------------------------------------------------


def assert_well_formed(transcript, at_most: int):
    ids = [s.speaker for s in transcript.sentences]
    assert transcript.sentences and None not in ids
    assert ids[0] == 0 and set(ids) == set(range(len(transcript.speakers)))
    firsts = [ids.index(k) for k in range(len(transcript.speakers))]
    assert firsts == sorted(firsts)  # numbered by first appearance
    assert 1 <= len(transcript.speakers) <= at_most


def test_dialogue_end_to_end(spk_pipeline, exchange):
    audio, _ = exchange
    auto = spk_pipeline.transcribe(audio, TranscribeOptions(speakers=True))
    assert_well_formed(auto, 16)
    assert spk_pipeline.transcribe(audio, TranscribeOptions(speakers=True)).sentences == auto.sentences  # seeded
    two = spk_pipeline.transcribe(audio, TranscribeOptions(speakers=True, num_speakers=2))
    assert_well_formed(two, 2)
    capped = spk_pipeline.transcribe(audio, TranscribeOptions(speakers=True, min_speakers=1, max_speakers=3))
    assert_well_formed(capped, 3)
    off = spk_pipeline.transcribe(audio, TranscribeOptions(speakers=False))
    assert off.speakers == () and all(s.speaker is None for s in off.sentences)
    assert [s.text for s in off.sentences] == [s.text for s in auto.sentences]


def test_long_dialogue_end_to_end(spk_pipeline, exchange):
    """~31 minutes: over 2048 windows, the path that reduces to centroids before spectral clustering."""
    audio, _ = exchange
    long = np.tile(audio, int(np.ceil(31 * 60 * 16000 / len(audio))))
    transcript = spk_pipeline.transcribe(long, TranscribeOptions(speakers=True, num_speakers=2))
    assert windows_of(transcript) >= 2048
    assert_well_formed(transcript, 2)
