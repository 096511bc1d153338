"""Dependency pins that security depends on."""

from __future__ import annotations

import re
from importlib.metadata import version

from tests.conftest import REPO


def _release(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def test_gradio_is_pinned_to_a_release_with_the_file_access_and_cors_fixes():
    """6.25.0 carries the fixes listed in the reliability notes (file routes, CORS with cookies,
    multipart limits, auth and redirect boundaries); fixes ship only in Gradio's latest release."""
    pinned = re.search(r'"gradio==([\d.]+)"', (REPO / "pyproject.toml").read_text()).group(1)
    assert _release(pinned) >= (6, 25, 0)
    assert version("gradio") == pinned


def test_decoder_libraries_are_recent_enough():
    assert _release(version("av")) >= (17, 1, 0)  # PyAV 17.0.x bundled an FFmpeg with a critical CVE
