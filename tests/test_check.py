"""``asr serve --check``: the real command on the tiny test models and on broken set-ups.

It must say what is wrong (and how to fix it) without starting the server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def check(config: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASR_", "MODELSCOPE_"))}
    return subprocess.run([sys.executable, "-m", "asr", "serve", "--check", "--config", str(config)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def write(path: Path, models: Path, extra: str = "") -> Path:
    path.write_text(
        f"models:\n  cache_dir: {models}\nruntime:\n  device: cpu\n"
        f"storage:\n  state_dir: {path.parent / 'state'}\n  cache_dir: {path.parent / 'cache'}\n{extra}",
        encoding="utf-8",
    )
    return path


def lines(result: subprocess.CompletedProcess) -> dict[str, str]:
    """check name -> "ok <detail>" or "FAIL <detail>", from the fixed columns the command prints."""
    out = {}
    for line in result.stdout.splitlines():
        status, name, detail = line[:4].strip(), line[6:16].strip(), line[16:].strip()
        if status in ("ok", "FAIL"):
            out[name] = f"{status} {detail}"
    return out


def test_check_passes_on_a_good_setup_and_starts_nothing(test_models, tmp_path):
    result = check(write(tmp_path / "config.yaml", test_models), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    found = lines(result)
    assert set(found) == {"config", "web UI", "model vad", "model asr", "model punc", "device", "state dir",
                          "cache dir"}
    assert all(v.startswith("ok") for v in found.values()), found
    assert found["web UI"].endswith("app.py")  # the checkout's: the package is installed editable
    assert "sha256-verified" in found["model asr"] and "RANDOM WEIGHTS" in found["model asr"]
    assert "all checks passed" in result.stdout
    assert "serving on" not in result.stderr and not (tmp_path / "state" / "jobs.sqlite3").exists()


def test_check_names_every_problem(test_models, tmp_path):
    models = tmp_path / "models-copy"
    shutil.copytree(test_models / "models", models / "models")
    weights = next((models / "models").glob("iic--speech_paraformer-large-vad-punc*/snapshots/*/model.pt"))
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))  # same size: only the sha256 pass can tell
    shutil.rmtree(next((models / "models").glob("iic--punc*")))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    config = write(tmp_path / "config.yaml", models)
    config.write_text(config.read_text().replace("device: cpu", "device: cuda:99").replace(
        f"state_dir: {tmp_path / 'state'}", f"state_dir: {blocker / 'state'}")
        + f"server:\n  ui_path: {tmp_path / 'no-such-app.py'}\n")
    result = check(config, tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stdout + result.stderr
    found = lines(result)
    assert found["model vad"].startswith("ok")
    assert found["model asr"].startswith("FAIL") and "does not match its manifest" in found["model asr"]
    assert found["model punc"].startswith("FAIL") and "not found" in found["model punc"]
    assert "asr download" in found["model punc"] and "asr install-bundle" in found["model punc"]
    assert found["device"].startswith("FAIL") and "cuda:99" in found["device"]
    assert found["state dir"].startswith("FAIL") and "not writable" in found["state dir"]
    assert found["cache dir"].startswith("ok")
    assert found["web UI"].startswith("FAIL") and "server.ui_path" in found["web UI"]
    assert "5 check(s) failed" in result.stderr


@pytest.mark.parametrize("text, message", [
    ("queue:\n  workers: 0\n", "queue.workers"),
    ("serverr:\n  port: 1\n", "serverr"),
])
def test_check_refuses_a_bad_config(tmp_path, test_models, text, message):
    config = write(tmp_path / "config.yaml", test_models, text)
    result = check(config, tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "asr serve: error: invalid config file" in result.stderr and message in result.stderr


def test_check_covers_the_meetings_models_and_the_hotword_file(test_models, tmp_path):
    words = tmp_path / "hotwords.txt"
    words.write_text("达摩院\n通义千问\n", encoding="utf-8")
    meetings = "  profile: vad+asr+punc+spk\n  asr_model: seaco\n"
    config = write(tmp_path / "config.yaml", test_models, f"hotwords:\n  file: {words}\n")
    config.write_text(config.read_text().replace("models:\n", "models:\n" + meetings))
    result = check(config, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    found = lines(result)
    assert "seaco" in found["model asr"] and "campplus" in found["model spk"]
    assert found["hotwords"] == f"ok {words}: 2 hotwords"

    words.write_text("\n".join(f"词{i}" for i in range(300)), encoding="utf-8")
    found = lines(check(config, tmp_path))
    assert found["hotwords"].startswith("FAIL") and "hotwords.max_count" in found["hotwords"]
    config.write_text(config.read_text().replace("asr_model: seaco", "asr_model: paraformer"))
    found = lines(check(config, tmp_path))
    assert found["hotwords"].startswith("FAIL") and "models.asr_model: seaco" in found["hotwords"]
