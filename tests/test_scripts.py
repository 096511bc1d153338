"""The benchmark and CER scripts, run for real (the benchmark in its tiny smoke form)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


def test_cer_scoring_counts_substitutions_deletions_and_insertions(tmp_path):
    (tmp_path / "text").write_text("utt1 今天 天气 很好\nutt2 你好世界\nutt3 空\n", encoding="utf-8")
    (tmp_path / "hyp").write_text("utt1 今天天气很好。\nutt2 你好时界啊\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "scripts/eval_cer.py", "--ref", str(tmp_path / "text"),
                           "--hyp", str(tmp_path / "hyp")], cwd=REPO, capture_output=True, text=True, check=True)
    # utt1 exact (punctuation and spaces ignored); utt2: one substitution, one insertion; utt3: one deletion
    assert "CER 27.27% (3 errors / 11 reference characters, 3 utterances, 1 without a hypothesis)" in done.stdout


def test_cer_transcribes_a_wav_scp(tmp_path, speech_wav, test_models):
    (tmp_path / "notes.wav").write_text("not audio at all", encoding="utf-8")
    (tmp_path / "wav.scp").write_text(f"a {speech_wav}\nb {tmp_path / 'notes.wav'}\n", encoding="utf-8")
    (tmp_path / "text").write_text("a 今天天气很好我们去公园散步吧\nb 你好\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "scripts/eval_cer.py", "--ref", str(tmp_path / "text"), "--wav-scp",
                           str(tmp_path / "wav.scp"), "--config", "config.test-models.yaml", "--precision", "int8",
                           "--save-hyp", str(tmp_path / "hyp")], cwd=REPO, capture_output=True, text=True, check=True)
    # the unusable file is reported and scored as deletions; the rest of the run is kept
    assert done.stdout.startswith("CER ") and "2 utterances, 1 without a hypothesis" in done.stdout
    assert "b: " in done.stderr and "notes.wav" in done.stderr
    assert [line.split()[0] for line in (tmp_path / "hyp").read_text(encoding="utf-8").splitlines()] == ["a"]


@pytest.mark.slow
def test_benchmark_smoke_runs_every_configuration(test_models):
    """The benchmark end to end on tiny models: every row present, no thresholds."""
    done = subprocess.run([sys.executable, "scripts/bench.py", "--smoke"], cwd=REPO, capture_output=True,
                          text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout
    for row in ("FunASR AutoModel", "this service fp32", "this service int8"):
        assert f"| {row}" in table
    assert "funasr-onnx int8 |" in table or "funasr-onnx int8 not measured" in table
    assert "| fp32 |" in table  # the per-stage table
    # The same arithmetic on the same 16 kHz samples: the agreement column must say so.
    fp32_row = next(line for line in table.splitlines() if line.startswith("| this service fp32 |"))
    assert fp32_row.endswith("| 100.0% |"), fp32_row


@pytest.mark.slow
def test_startup_benchmark_smoke_measures_every_start_and_request(test_models):
    """The start-up benchmark end to end on tiny models (a real `asr serve` and real HTTP); no thresholds."""
    done = subprocess.run([sys.executable, "scripts/bench_startup.py", "--smoke"], cwd=REPO, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in done.stdout.splitlines()
            if line.startswith("| ") and line.split("|")[2].strip().replace(".", "").isdigit()}
    assert len(rows) == 5 and all(seconds > 0 for seconds in rows.values()), rows


@pytest.mark.slow
def test_loadtest_burst_refuses_exactly_the_overflow(test_models):
    """4 clients at once against a queue of 1 and 1 worker: exactly 2 refused with busy, 2 complete."""
    done = subprocess.run([sys.executable, "scripts/loadtest.py", "burst", "--clients", "4", "--max-size", "1",
                           "--workers", "1", "--audio-s", "40"], cwd=REPO, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "'accepted_completed': 2, 'refused_busy': 2" in done.stdout


def test_loadtest_refuses_non_loopback_targets():
    done = subprocess.run([sys.executable, "scripts/loadtest.py", "burst", "--url", "http://10.0.0.5:6006"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "only loopback" in done.stderr


@pytest.mark.slow
def test_contention_benchmark_smoke_measures_quiet_and_busy(test_models):
    """The busy-CPU benchmark on tiny models: a row per precision and spin setting, a number in every cell."""
    done = subprocess.run([sys.executable, "scripts/bench_contention.py", "--smoke"], cwd=REPO, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith(("| int8", "| fp32"))]
    assert [(r[0].strip(), "300 000" in r[1]) for r in rows] == [("int8", True), ("int8", False), ("fp32", False)]
    assert all(float(cell.strip().rstrip("×")) > 0 for r in rows for cell in r[2:]), rows


@pytest.mark.slow
def test_profile_smoke_lists_stages_and_operators(test_models):
    done = subprocess.run([sys.executable, "scripts/profile_ops.py", "--smoke", "--rows", "5"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    operators = [line for line in done.stdout.splitlines() if line.startswith("| `")]
    assert len(operators) == 5 and any("linear" in line or "addmm" in line for line in operators), done.stdout
    assert "| wall s |" in done.stdout
