"""The ``asr`` command, run as a real subprocess on real files with the tiny test models.

Each run loads the models (a couple of seconds), so assertions are grouped into few runs.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.config import OutputConfig
from asr.core.sentences import tokens_text
from asr.core.writers import build_cues
from asr.types import Transcript
from tests.audio_samples import FAKES, encode
from tests.conftest import TEST_CONFIG, TEST_MODELS
from tests.test_writers import SRT_TIME, VTT_TIME, check_cues, parse_cue_blocks

ASR_ID = "iic/speech_paraformer-large-vad-punc_asr_nat-zh-cn-16k-common-vocab8404-pytorch"
VAD_ID = "iic/speech_fsmn_vad_zh-cn-16k-common-pytorch"
PUNC_ID = "iic/punc_ct-transformer_zh-cn-common-vocab272727-pytorch"
FORMATS = ("srt", "txt", "json", "vtt", "tsv")
SUMMARY = re.compile(r"^(?P<path>.+): audio (?P<audio>[\d.]+) s, wall [\d.]+ s, RTF [\d.]+ -> (?P<outputs>.+)$")


def run_asr(*args, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m asr ARGS`` in ``cwd``, with no ASR_* settings inherited from this shell."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("ASR_")}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "asr", *map(str, args)],
        cwd=cwd, env=clean, capture_output=True, text=True,
        timeout=900,  # a hang guard only, far above any real run
    )


def assert_clean_failure(result: subprocess.CompletedProcess, code: int) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr


def write_config(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, speech_wav, speech_with_pauses, sentence_clips) -> dict[str, Path]:
    """The three-sentence WAV, the same speech as FLAC (PyAV), and two different files named x.wav."""
    d = tmp_path_factory.mktemp("cli-inputs")
    flac = encode(d / "speech.flac", speech_with_pauses, 16000, "flac")
    a, b = d / "a" / "x.wav", d / "b" / "x.wav"
    a.parent.mkdir()
    b.parent.mkdir()
    sf.write(a, sentence_clips[0], 16000)
    sf.write(b, np.concatenate([sentence_clips[1], np.zeros(16000, np.float32), sentence_clips[2]]), 16000)
    return {"wav": speech_wav, "flac": flac, "x_a": a, "x_b": b}


def seconds(path: Path) -> float:
    return sf.info(str(path)).frames / sf.info(str(path)).samplerate


# ---- transcribe ---------------------------------------------------------------------------


def test_console_script_is_installed(tmp_path):
    script = Path(sys.executable).parent / "asr"
    assert script.is_file() and os.access(script, os.X_OK), script
    result = subprocess.run([str(script), "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for command in ("transcribe", "vad", "download", "verify", "info"):
        assert command in result.stdout


def test_transcribe_writes_every_format_for_every_file(test_models, inputs, tmp_path):
    files = [inputs["wav"], inputs["flac"], inputs["x_a"], inputs["x_b"]]
    out = tmp_path / "out"
    result = run_asr(
        "transcribe", *files, "--config", TEST_CONFIG, "--format", ",".join(FORMATS), "--out", out, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr

    # one summary line per file, in order, with its audio length, wall time and RTF
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(files), result.stdout
    summaries = [SUMMARY.match(line) for line in lines]
    assert all(summaries), lines
    assert [m["path"] for m in summaries] == [str(f) for f in files]
    for match, path in zip(summaries, files):
        assert float(match["audio"]) == pytest.approx(seconds(path), abs=0.06)

    # same stem twice: x and x-2, each holding its own file's transcript
    stems = ["three_sentences", "speech", "x", "x-2"]
    assert inputs["wav"].stem == "three_sentences"
    for match, stem in zip(summaries, stems):
        assert match["outputs"] == ", ".join(str(out / f"{stem}.{fmt}") for fmt in FORMATS)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.{fmt}" for s in stems for fmt in FORMATS)

    for stem, path in zip(stems, files):
        data = json.loads((out / f"{stem}.json").read_text(encoding="utf-8"))
        assert {"text", "sentences", "segments", "timings", "duration_s", "rtf"} <= set(data)
        transcript = Transcript.from_dict(data)
        assert transcript.duration_s == pytest.approx(seconds(path), abs=0.01)
        assert transcript.text and transcript.sentences and transcript.segments
        assert transcript.timings.total_s > 0

        # every subtitle file parses, and holds exactly the cues of that transcript
        expected = build_cues(transcript.sentences, OutputConfig())
        srt = parse_cue_blocks((out / f"{stem}.srt").read_text(encoding="utf-8"), SRT_TIME, numbered=True)
        assert srt == expected and srt
        check_cues(srt, OutputConfig(), duration_ms=transcript.duration_s * 1000,
                   unsplittable={tokens_text([t]) for s in transcript.sentences for t in s.tokens})
        vtt = (out / f"{stem}.vtt").read_text(encoding="utf-8")
        assert vtt.startswith("WEBVTT\n\n")
        assert parse_cue_blocks(vtt[len("WEBVTT\n\n"):], VTT_TIME, numbered=False) == expected
        txt = (out / f"{stem}.txt").read_text(encoding="utf-8").splitlines()
        assert txt == [s.text for s in transcript.sentences]
        rows = list(csv.reader((out / f"{stem}.tsv").open(encoding="utf-8", newline=""), delimiter="\t"))
        assert rows[0] == ["start_ms", "end_ms", "text"]
        assert rows[1:] == [[str(s.start_ms), str(s.end_ms), s.text] for s in transcript.sentences]

    # the FLAC holds the same speech as the WAV: the same speech segments, give or take a frame
    wav, flac = (Transcript.from_dict(json.loads((out / f"{s}.json").read_text(encoding="utf-8"))) for s in stems[:2])
    assert len(wav.segments) == len(flac.segments) >= 3
    for a, b in zip(wav.segments, flac.segments):
        assert abs(a.start_ms - b.start_ms) <= 100 and abs(a.end_ms - b.end_ms) <= 100


def test_bad_files_are_reported_and_the_good_ones_still_written(test_models, inputs, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    pdf = bad / "report.wav"
    pdf.write_bytes(FAKES["pdf"]())  # a PDF renamed .wav
    empty = bad / "empty.wav"
    empty.write_bytes(b"")
    missing = bad / "missing.wav"
    files = [pdf, inputs["x_a"], empty, missing, inputs["x_b"]]
    out = tmp_path / "out"
    result = run_asr("transcribe", *files, "--config", TEST_CONFIG, "--format", "srt", "--out", out, cwd=tmp_path)
    assert_clean_failure(result, 1)

    errors = {line.split(": error: ")[0]: line for line in result.stderr.splitlines() if ": error: " in line}
    assert set(errors) == {str(pdf), str(empty), str(missing)}, result.stderr
    assert "PDF" in errors[str(pdf)]
    assert "empty" in errors[str(empty)]
    assert "No such file" in errors[str(missing)]
    # the good files around them were transcribed and written
    summarised = [line.split(": audio ")[0] for line in result.stdout.splitlines()]
    assert summarised == [str(inputs["x_a"]), str(inputs["x_b"])]
    assert sorted(p.name for p in out.iterdir()) == ["x-2.srt", "x.srt"]
    assert all(parse_cue_blocks(p.read_text(encoding="utf-8"), SRT_TIME, numbered=True) for p in out.iterdir())


def test_unknown_format_is_refused_before_anything_runs(tmp_path, inputs):
    result = run_asr("transcribe", inputs["x_a"], "--config", TEST_CONFIG, "--format", "srt,bogus",
                     "--out", tmp_path / "out", cwd=tmp_path)
    assert_clean_failure(result, 2)
    assert "bogus" in result.stderr
    assert all(fmt in result.stderr for fmt in FORMATS), result.stderr
    assert not (tmp_path / "out").exists()
    result = run_asr("vad", inputs["x_a"], "--config", TEST_CONFIG, "--format", "srt", cwd=tmp_path)
    assert_clean_failure(result, 2)
    assert all(fmt in result.stderr for fmt in ("txt", "json", "csv")), result.stderr


# ---- vad ----------------------------------------------------------------------------------


TIMESTAMP = r"\d{2}:\d{2}:\d{2}\.\d{3}"


def test_live_streams_a_file_and_prints_partials_then_each_sentence_s_final(test_models, inputs, tmp_path):
    wav = inputs["wav"]
    result = run_asr("live", wav, "--config", TEST_CONFIG, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    partials = [line for line in lines if line.startswith("… ")]
    finals = [re.fullmatch(rf"\[({TIMESTAMP}) → ({TIMESTAMP})\] (.+)", line) for line in lines if line.startswith("[")]
    assert partials and len(finals) >= 3 and all(finals), lines
    assert len(partials) + len(finals) == len(lines)
    offline = run_asr("live", wav, "--mode", "offline", "--config", TEST_CONFIG, cwd=tmp_path)
    assert offline.returncode == 0 and not any(line.startswith("… ") for line in offline.stdout.splitlines())


def test_live_refuses_a_bad_file_with_its_message(inputs, tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    result = run_asr("live", bad, "--config", TEST_CONFIG, cwd=tmp_path)
    assert_clean_failure(result, 1)
    assert "notes.wav" in result.stderr and "Traceback" not in result.stderr


def test_vad_prints_a_table_and_writes_csv(test_models, inputs, tmp_path):
    wav = inputs["wav"]
    result = run_asr("vad", wav, "--config", TEST_CONFIG, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    match = re.fullmatch(rf"# {re.escape(str(wav))}: (\d+) speech segments in ([\d.]+) s", lines[0])
    assert match, lines[0]
    count = int(match[1])
    assert count >= 3  # three sentences with 2.5 s pauses between them
    assert float(match[2]) == pytest.approx(seconds(wav), abs=0.06)
    assert lines[1].split() == ["#", "start", "end", "duration"]
    table = [line.split() for line in lines[2:]]
    assert len(table) == count
    assert [row[0] for row in table] == [str(i) for i in range(1, count + 1)]
    assert all(re.fullmatch(r"\d{2}:\d{2}:\d{2}\.\d{3}", row[1]) and row[3].endswith("s") for row in table)

    out = tmp_path / "vad-out"
    result = run_asr("vad", wav, "--config", TEST_CONFIG, "--format", "csv,json", "--out", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["three_sentences.vad.csv", "three_sentences.vad.json"]
    rows = list(csv.DictReader((out / "three_sentences.vad.csv").open(encoding="utf-8", newline="")))
    segments = json.loads((out / "three_sentences.vad.json").read_text(encoding="utf-8"))["segments"]
    assert len(rows) == len(segments) == count
    previous_end = 0
    for row, segment, printed in zip(rows, segments, table):
        assert {k: int(row[k]) for k in ("index", "start_ms", "end_ms", "duration_ms")} == segment
        assert row["start"] == printed[1] and row["end"] == printed[2]
        assert previous_end <= segment["start_ms"] < segment["end_ms"] <= seconds(wav) * 1000
        previous_end = segment["end_ms"]

    # csv on stdout is pure CSV (the summary goes to stderr); a missing file is reported, exit 1
    missing = tmp_path / "missing.wav"
    result = run_asr("vad", missing, wav, "--config", TEST_CONFIG, "--format", "csv", cwd=tmp_path)
    assert_clean_failure(result, 1)
    assert f"{missing}: error: No such file" in result.stderr
    assert f"# {wav}: {count} speech segments" in result.stderr
    assert list(csv.DictReader(result.stdout.splitlines())) == rows


# ---- info and verify ----------------------------------------------------------------------


def test_info_and_verify_with_the_test_models(test_models, tmp_path):
    result = run_asr("info", "--config", TEST_CONFIG, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^device\s+cpu$", result.stdout, re.M), result.stdout
    for model_id in (ASR_ID, VAD_ID, PUNC_ID):
        assert f"{model_id}@v2.0.4" in result.stdout
    assert result.stdout.count("RANDOM WEIGHTS") == 2  # the ASR and punctuation models; VAD is real

    result = run_asr("info", "--json", "--config", TEST_CONFIG, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["device"] == "cpu" and info["profile"] == "vad+asr+punc"
    assert Path(info["cache_dir"]) == TEST_MODELS.resolve()
    models = info["models"]
    assert {role: (m["id"], m["revision"], m["status"]) for role, m in models.items()} == {
        "vad": (VAD_ID, "v2.0.4", "ok"), "asr": (ASR_ID, "v2.0.4", "ok"), "punc": (PUNC_ID, "v2.0.4", "ok"),
    }
    assert {role: m["random_weights"] for role, m in models.items()} == {"vad": False, "asr": True, "punc": True}

    result = run_asr("verify", "--config", TEST_CONFIG, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and all(" ok (" in line for line in lines), lines
    assert [line.split(":")[0] for line in lines] == ["vad", "asr", "punc"]


def test_info_shows_the_precision_auto_resolves_to(test_models, tmp_path):
    """Not "precision auto": the mode the models would run in here, by the rule loading uses."""
    import torch

    from asr.models.precision import resolve_precision

    mode, why = resolve_precision("auto", torch.device("cpu"))
    result = run_asr("info", "--precision", "auto", "--device", "cpu", "--config", TEST_CONFIG, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(rf"^precision\s+{mode} \({re.escape(why)}\)$", result.stdout, re.M), result.stdout
    assert why.startswith("auto")

    result = run_asr("info", "--json", "--precision", "auto", "--device", "cpu", "--config", TEST_CONFIG, cwd=tmp_path)
    info = json.loads(result.stdout)
    assert (info["precision"], info["precision_setting"], info["precision_reason"]) == (mode, "auto", why)

    result = run_asr("info", "--precision", "fp16", "--device", "cpu", "--config", TEST_CONFIG, cwd=tmp_path)
    assert re.search(r"^precision\s+error: precision fp16 needs a CUDA device", result.stdout, re.M), result.stdout


def test_runs_print_no_deprecation_warnings(test_models, inputs, tmp_path):
    """CPU int8 uses torch's quantized tensors, which torch itself warns about on every start:
    both when it converts the checkpoint and when it loads the converted one from the cache."""
    config = write_config(tmp_path / "asr.yaml", f"models:\n  cache_dir: {TEST_MODELS}\n"
                                                f"storage:\n  cache_dir: {tmp_path / 'cache'}\n")
    runs = {"help": run_asr("--help", cwd=tmp_path), "info": run_asr("info", "--config", config, cwd=tmp_path)}
    for run in ("converting", "from the cache"):
        runs[run] = run_asr("transcribe", inputs["x_a"], "--precision", "int8", "--config", config,
                            "--out", tmp_path / "out", cwd=tmp_path)
    assert list((tmp_path / "cache" / "converted").glob("asr-int8-*.pt")), "the second run did not load a cache"
    for name, result in runs.items():
        assert result.returncode == 0, (name, result.stderr)
        noise = [line for line in result.stderr.splitlines() if re.search("deprecat|FutureWarning", line, re.I)]
        assert noise == [], (name, result.stderr)


# ---- configuration and model problems -----------------------------------------------------


def test_empty_cache_says_which_model_and_how_to_fix(inputs, tmp_path):
    # a relative cache_dir: resolved against the config file, not the working directory
    (tmp_path / "empty-cache").mkdir()
    config = write_config(tmp_path / "conf" / "asr.yaml", "models:\n  cache_dir: ../empty-cache\n")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()

    result = run_asr("transcribe", inputs["x_a"], "--config", config, "--out", tmp_path / "out", cwd=cwd)
    assert_clean_failure(result, 2)
    assert VAD_ID in result.stderr and "asr download" in result.stderr
    assert str(tmp_path / "empty-cache") in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())

    result = run_asr("info", "--config", config, cwd=cwd)
    assert_clean_failure(result, 1)
    assert result.stdout.count("missing") == 3
    assert all(model_id in result.stdout for model_id in (ASR_ID, VAD_ID, PUNC_ID))

    result = run_asr("verify", "--config", config, cwd=cwd)
    assert_clean_failure(result, 2)
    assert "not found" in result.stderr and VAD_ID in result.stderr and "asr download" in result.stderr


def test_incomplete_model_directory(test_models, inputs, tmp_path):
    cache = tmp_path / "models"
    shutil.copytree(test_models, cache)
    config = write_config(tmp_path / "asr.yaml", f"models:\n  cache_dir: {cache}\n")
    asr_dir = cache / "models" / f"{ASR_ID.replace('/', '--')}" / "snapshots" / "v2.0.4"
    model_pt = asr_dir / "model.pt"

    size = model_pt.stat().st_size
    model_pt.write_bytes(model_pt.read_bytes()[: size // 2])  # truncated: the manifest says otherwise
    result = run_asr("transcribe", inputs["x_a"], "--config", config, "--out", tmp_path / "out", cwd=tmp_path)
    assert_clean_failure(result, 2)
    assert ASR_ID in result.stderr and "model.pt" in result.stderr
    assert "truncated" in result.stderr and str(size) in result.stderr and str(size // 2) in result.stderr

    model_pt.unlink()
    result = run_asr("transcribe", inputs["x_a"], "--config", config, "--out", tmp_path / "out", cwd=tmp_path)
    assert_clean_failure(result, 2)
    assert ASR_ID in result.stderr and "model.pt is missing" in result.stderr and "asr download" in result.stderr


def test_unknown_config_key_is_named(inputs, tmp_path):
    config = write_config(tmp_path / "typo.yaml", "vad:\n  max_segmnet_ms: 1000\n")
    result = run_asr("transcribe", inputs["x_a"], "--config", config, cwd=tmp_path)
    assert_clean_failure(result, 2)
    assert "vad.max_segmnet_ms" in result.stderr and str(config) in result.stderr
