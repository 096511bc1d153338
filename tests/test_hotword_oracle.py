"""Hotword oracle: with SeACo-Paraformer and the same random weights, our text and timestamps equal
FunASR's own ``AutoModel(model=seaco_dir).generate(input, hotword=...)``, with no hotwords, a few,
more than SeACo's filter keeps, and FunASR's hotword-file form; and, once the pipeline passes a
request's hotwords to the recogniser, the whole pipeline (VAD, batches, punctuation) equals
``AutoModel(model, vad_model, punc_model).generate(hotword=...)``.

FunASR runs in a subprocess (it needs its full import; we use the selective one). Without a VAD model
AutoModel decodes each input whole, as one segment, so ours gets each clip as one segment too.
The tiny model's bias decoder is scaled so that hotwords change its text (scripts/make_test_models.py,
build_seaco); each case also checks that they did, so a recogniser that ignored them would fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from asr.config import HotwordsConfig
from asr.core.hotwords import read_hotword_file, resolve_hotwords
from asr.types import TranscribeOptions
from tests.conftest import with_pauses
from tests.test_hotwords import FEW, MANY, difference, load_seaco_models, ours, seaco_settings

REFERENCE = r'''
import json, sys
import numpy as np
from funasr import AutoModel

job = json.load(open(sys.argv[1], encoding="utf-8"))
common = dict(device="cpu", disable_update=True, disable_pbar=True, log_level="ERROR", frontend_conf={"dither": 0.0})
whole = AutoModel(model=job["asr_dir"], **common)
out = {"clips": [], "pipeline": []}
for case in job["clips"]:
    results = []
    for path in job["clip_files"]:
        result = whole.generate(input=np.load(path), hotword=case)[0]
        results.append([result.get("text", ""), result.get("timestamp", [])])
    out["clips"].append(results)
if job["pipeline"]:
    full = AutoModel(model=job["asr_dir"], vad_model=job["vad_dir"], punc_model=job["punc_dir"],
                     vad_kwargs=job["vad_kwargs"], **common)
    for case in job["pipeline"]:
        result = full.generate(input=np.load(job["long_file"]), hotword=case)[0]
        out["pipeline"].append([result.get("text", ""), result.get("timestamp", [])])
json.dump(out, open(sys.argv[2], "w", encoding="utf-8"), ensure_ascii=False)
'''


def run_funasr(tmp_path, models, settings, clips, clip_cases, long_audio=None, pipeline_cases=()) -> dict:
    files = []
    for i, clip in enumerate(clips):
        files.append(str(tmp_path / f"clip{i}.npy"))
        np.save(files[-1], clip)
    vad_kwargs = {"max_single_segment_time": settings.vad.max_segment_ms}
    if settings.vad.max_end_silence_ms is not None:
        vad_kwargs["max_end_silence_time"] = settings.vad.max_end_silence_ms
    job = {
        "asr_dir": str(models.asr.location.directory), "vad_dir": str(models.vad.location.directory),
        "punc_dir": str(models.punc.location.directory), "vad_kwargs": vad_kwargs,
        "clip_files": files, "clips": list(clip_cases), "pipeline": list(pipeline_cases),
        "long_file": str(tmp_path / "long.npy"),
    }
    if long_audio is not None:
        np.save(job["long_file"], long_audio)
    (tmp_path / "job.json").write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "reference.py").write_text(REFERENCE, encoding="utf-8")
    done = subprocess.run([sys.executable, "reference.py", "job.json", "out.json"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def seaco_models(test_models):
    return load_seaco_models()


def test_whole_clips_with_hotwords_equal_funasr_automodel(tmp_path, seaco_models, sentence_clips):
    from asr.core.recognize import Recognizer

    recognizer = Recognizer(seaco_models.asr, seaco_models.device, "fp32")
    _, pieces = next((k, v) for k, v in recognizer._seg_dict.items() if " " in v)
    hotword_file = tmp_path / "hotwords.txt"  # FunASR's file form: a line is one hotword, spaces and all
    hotword_file.write_text(f"公园 散步\n{pieces.replace('@@ ', '').upper()}\n天气\n一 二 三\n", encoding="utf-8")
    requests = {"none": None, "few": " ".join(FEW), "many": " ".join(MANY), "file": str(hotword_file)}
    reference = run_funasr(tmp_path, seaco_models, seaco_settings(), sentence_clips, requests.values())

    config = HotwordsConfig(max_count=len(MANY))
    words = {name: resolve_hotwords(request, config) for name, request in requests.items() if name != "file"}
    words["file"] = resolve_hotwords(read_hotword_file(hotword_file), config)
    assert len(words["many"]) > 50 and words["file"][0] == "公园 散步"
    feats = [recognizer.featurize(clip) for clip in sentence_clips]
    plain = [ours(s) for s in recognizer.decode(feats)]
    for (name, hotwords), theirs in zip(words.items(), reference["clips"]):
        for i, (segment, (text, stamps), without) in enumerate(zip(recognizer.decode(feats, hotwords), theirs, plain)):
            mine, funasr = ours(segment), (text, [tuple(t) for t in stamps])
            agree = mine == funasr
            assert agree, f"{name} hotwords, clip {i}: {difference(mine, funasr)}"
            assert text
            if hotwords:
                assert mine[0] != without[0], f"{name} hotwords changed nothing in clip {i}"


def test_the_pipeline_with_hotwords_equals_funasr_automodel(tmp_path, seaco_models, sentence_clips):
    """VAD, our batches and punctuation; FunASR decodes segment by segment (on CPU), each with the
    hotwords. Skipped while the pipeline does not pass a request's hotwords on to the recogniser."""
    from asr.core.pipeline import Pipeline
    from tests.test_oracle import assert_same_as_funasr

    settings = seaco_settings()
    pipeline = Pipeline(seaco_models, settings)
    options = TranscribeOptions(itn=False)  # FunASR has no ITN

    def transcribe(audio, hotwords=()):
        return pipeline.transcribe(audio, replace(options, hotwords=hotwords))

    probe = sentence_clips[0]
    if transcribe(probe, FEW).text == transcribe(probe).text:
        pytest.skip("the pipeline does not pass TranscribeOptions.hotwords to Recognizer.decode yet")
    audio = with_pauses(sentence_clips * 2, 1.0)
    plain, with_few = transcribe(audio), transcribe(audio, FEW)
    reference = run_funasr(tmp_path, seaco_models, settings, [], [], audio, [None, " ".join(FEW), " ".join(MANY)])
    with_many = transcribe(audio, MANY)
    for ours_, (text, stamps) in zip((plain, with_few, with_many), reference["pipeline"]):
        vad = [[s.start_ms, s.end_ms] for s in ours_.segments]
        assert_same_as_funasr(ours_, {"text": text, "timestamp": stamps, "vad": vad})
    assert len({plain.text, with_few.text, with_many.text}) == 3
