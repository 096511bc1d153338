"""The OpenMP spin-wait the package sets before torch loads (asr/__init__.py says why)."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _spin_count_after_import(first: str, env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    if env_value is not None:
        env["GOMP_SPINCOUNT"] = env_value
    code = f"import {first}, os; print(os.environ.get('GOMP_SPINCOUNT', 'unset'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, check=True)
    return done.stdout.strip()


@pytest.mark.parametrize("first", ["asr", "asr.cli", "asr.service.server", "asr.scaleout.batch"])
def test_every_entry_point_sets_the_short_spin_before_torch_loads(first):
    assert _spin_count_after_import(first, None) == "1000"


def test_a_spin_count_the_user_set_wins():
    assert _spin_count_after_import("asr", "20000") == "20000"


def test_torch_is_not_loaded_by_importing_the_package():
    """The setting only works if libgomp is not loaded yet when it is made."""
    code = "import asr, sys; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == "False"
