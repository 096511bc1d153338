"""The Live tab in Chromium with a fake microphone (it plays the test sentences in a loop): Start, the
partial captions in grey, each sentence's final in its place, Stop and the last final. The service runs the
live profile on the test models; everything else is tests/test_ui_browser.py's set-up."""

from __future__ import annotations

import re

import pytest

from tests.server import running_server
from tests.test_ui_browser import (  # noqa: F401  (fixtures)
    JOB_MS,
    audio_dir,
    context,
    mic_wav,
    page,
    screenshot,
    traffic,
)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(test_models, tmp_path_factory):
    overrides = {"models": {"profile": "vad+asr+punc+live"}}
    with running_server(tmp_path_factory.mktemp("ui-live-server"), test_models, overrides=overrides) as server:
        yield server


def test_live_captions_from_the_microphone(page, traffic):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Live", exact=True).click()
    board = page.locator("#live")
    start, stop = board.get_by_role("button", name="Start"), board.get_by_role("button", name="Stop")
    expect(stop).to_be_disabled()
    start.click()
    expect(board.locator(".live-status")).to_have_text("Listening…")
    expect(board.locator(".live-partial")).not_to_be_empty(timeout=JOB_MS)  # grey, while a sentence is spoken
    expect(board.locator(".live-final").first).to_be_visible(timeout=JOB_MS)  # a sentence's final, after it
    assert board.locator(".live-final").first.inner_text().strip()
    screenshot(page, "live")
    finals = board.locator(".live-final").count()
    stop.click()
    expect(board.locator(".live-status")).to_have_text("Done.", timeout=JOB_MS)
    expect(start).to_be_enabled()
    assert board.locator(".live-final").count() >= finals
    assert not [e for e in traffic.page_errors if "live" in e.lower()], traffic.page_errors
    # the session is in History, named by its time like a recording, with its audio
    page.get_by_role("tab", name="History", exact=True).click()
    history = page.get_by_role("tabpanel")
    history.get_by_role("button", name="Refresh", exact=True).click()
    cell = history.get_by_role("gridcell", name=re.compile(r"^recording \d{4}-\d\d-\d\d \d\d-\d\d-\d\d$")).first
    expect(cell).to_be_visible(timeout=JOB_MS)
    cell.click()
    expect(history.locator("#history-workspace .ws-sentence").first).to_be_visible()
    expect(history.locator("#history-workspace audio")).to_have_count(1)

