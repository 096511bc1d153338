"""The GPU check (scripts/gpu_check.sh, scripts/gpu_check.py) on a machine without CUDA: it says so and
passes; its smoke form (tiny models, CPU) runs every configuration and writes the table."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow  # each starts processes; the smoke loads the models seven times

NO_CUDA = "gpu_check: no CUDA device on this machine"


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU")
def test_without_cuda_it_says_so_and_passes():
    done = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(NO_CUDA) and done.stdout.strip().endswith("nothing to check"), done.stdout
    assert len(done.stdout.strip().splitlines()) == 1
    # the .py alone (no shell script in front) says the same
    done = subprocess.run([sys.executable, "scripts/gpu_check.py"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.startswith(NO_CUDA), done.stdout + done.stderr[-2000:]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _is_number(cell: str) -> bool:
    try:
        float(cell.rstrip("x%"))
    except ValueError:
        return False
    return True


def _docs_state() -> dict[str, int]:
    return {str(path): path.stat().st_mtime_ns for path in (REPO / "docs").rglob("*") if path.is_file()}


def test_smoke_on_cpu_writes_a_row_per_configuration(test_models, tmp_path):
    docs_before = _docs_state()
    done = subprocess.run([sys.executable, "scripts/gpu_check.py", "--smoke", "--device", "cpu", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    table = (tmp_path / "gpu_check.md").read_text(encoding="utf-8")
    assert table in done.stdout  # printed as well as written
    assert "Machine: " in table and "Date: " in table and "Command: `" in table
    rows = {cells[0]: cells for cells in map(_cells, table.splitlines()) if len(cells) > 5 and not cells[1].startswith("-")}
    measured = ["FunASR AutoModel (fp32, batch_size_s=300)", "this service fp32", "this service int8"]
    if "needs a CPU with" not in rows["this service bf16"][-1]:  # bf16 runs where the CPU has it
        measured.append("this service bf16")
    for name in measured:
        # load s, run s, RTF, speed-up, agreement
        assert all(_is_number(cell) for cell in rows[name][1:6]), rows[name]
    # fp16 is CUDA-only: a row that says why instead of numbers
    assert rows["this service fp16"][1] == "—" and "needs a CUDA device" in rows["this service fp16"][-1]
    # the same arithmetic on the same samples as AutoModel
    assert rows["this service fp32"][5] == "100.0%"
    # the concurrent jobs through the engine, with one and with two workers: every job completed
    for workers in ("1", "2"):
        assert rows[workers][6] == "4/4" and _is_number(rows[workers][4]), rows[workers]
    assert _docs_state() == docs_before  # a smoke run writes nothing into docs/
