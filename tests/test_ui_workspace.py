"""The transcript workspace in Chromium, as a person uses it: a batch where each file has its own card (its
progress, then its player and sentences, or its error, which stays), clicking a sentence to hear it, the
sentence being played highlighted, the keyboard and cancelling. (Recordings named by their time: tests/test_ui_browser.py.)
Same browser set-up as tests/test_ui_browser.py (Debian's Chromium, a fake microphone, nothing external)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.test_ui_browser import (  # noqa: F401  (fixtures)
    JOB_MS,
    audio_dir,
    context,
    made,
    mic_wav,
    page,
    panel,
    screenshot,
    server,
    speech_file,
    traffic,
)

pytestmark = pytest.mark.browser


def upload_files(view, paths: list[Path]) -> None:
    from playwright.sync_api import expect

    tab = panel(view)
    tab.get_by_role("button", name="Click to upload or drop files").locator("input[type=file]").set_input_files(
        [str(p) for p in paths])
    for path in paths:
        expect(tab.get_by_role("cell", name=path.name, exact=True)).to_be_visible()


def cards(view):
    return view.locator("#workspace .ws-job")


def wait_until_finished(view, count: int) -> None:
    from playwright.sync_api import expect

    expect(view.locator("#workspace .ws-job[data-active=false]")).to_have_count(count, timeout=JOB_MS)


@pytest.fixture(scope="module")
def bad_files(audio_dir) -> list[Path]:
    pdf = audio_dir / "report.wav"
    pdf.write_bytes(b"%PDF-1.4\n" + b"0" * 2000)
    noise = audio_dir / "noise.mp3"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return [pdf, noise]


@pytest.fixture(scope="module")
def long_file(audio_dir, speech_file) -> Path:
    """The three sentences eight times over: long enough to be seen running, and cancelled."""
    audio, rate = sf.read(speech_file("three_sentences.wav"), dtype="float32")
    path = audio_dir / "long.wav"
    sf.write(path, np.tile(audio, 8), rate, subtype="PCM_16")
    return path


def test_a_bad_file_in_a_batch_sinks_nothing_and_its_error_stays_next_to_it(page, speech_file, bad_files):
    """One good and two bad files: the good one is transcribed and shown; each bad one gets its own message, on
    its own card, still there after Gradio's 10 s (it used to show one error, no result, then a bare 'Error')."""
    from playwright.sync_api import expect

    good = speech_file("meeting one.wav")
    upload_files(page, [good, *bad_files])
    page.get_by_role("button", name="Transcribe", exact=True).click()
    wait_until_finished(page, 3)
    board = cards(page)
    by_name = {board.nth(i).locator(".ws-file").inner_text(): board.nth(i) for i in range(3)}
    assert set(by_name) == {"meeting one.wav", "report.wav", "noise.mp3"}
    ok = by_name["meeting one.wav"]
    expect(ok).to_have_attribute("data-state", "completed")
    expect(ok.locator(".ws-sentence").first).to_be_visible()
    expect(ok.locator("audio")).to_have_count(1)
    expect(by_name["report.wav"].locator(".ws-error")).to_contain_text("report.wav")
    expect(by_name["noise.mp3"].locator(".ws-error")).to_contain_text("noise.mp3")
    assert by_name["report.wav"].locator(".ws-error").inner_text() != by_name["noise.mp3"].locator(".ws-error").inner_text()
    time.sleep(11)
    expect(by_name["report.wav"].locator(".ws-error")).to_be_visible()
    expect(page.locator(".ws-sentence").first).to_be_visible()
    screenshot(page, "workspace-batch")


def test_click_a_sentence_to_hear_it_and_the_one_playing_is_highlighted(page, speech_file):
    from playwright.sync_api import expect

    upload_files(page, [speech_file("listen.wav")])
    page.keyboard.press("Control+Enter")  # the keyboard shortcut starts it
    wait_until_finished(page, 1)
    sentences = page.locator("#workspace .ws-sentence")
    expect(sentences.nth(1)).to_be_visible()
    audio = page.locator("#workspace audio")
    page.wait_for_function("document.querySelector('#workspace audio').readyState >= 1")
    assert page.request.get(audio.evaluate("a => a.src"), headers={"Range": "bytes=0-99"}).status == 206

    second = sentences.nth(1)
    start_s = int(second.get_attribute("data-start")) / 1000
    second.locator(".ws-text").click()
    page.wait_for_function("!document.querySelector('#workspace audio').paused")
    expect(second).to_have_class(re.compile("ws-playing"))
    assert audio.evaluate("a => a.currentTime") >= start_s - 0.05
    expect(sentences.nth(0)).not_to_have_class(re.compile("ws-playing"))
    page.locator("body").press(" ")  # space pauses...
    page.wait_for_function("document.querySelector('#workspace audio').paused")
    page.locator("body").press(" ")  # ...and plays again
    page.wait_for_function("!document.querySelector('#workspace audio').paused")
    audio.evaluate("a => a.pause()")
    screenshot(page, "workspace-player")


def test_progress_is_one_display_per_job_in_words_and_cancel_stops_it(page, long_file, speech_file):
    """While a batch runs each file has one progress bar (Gradio's overlay drew one on every output), its stage
    in words, never an internal id and never going back; Cancel on one job stops it and leaves the other."""
    from playwright.sync_api import expect

    upload_files(page, [long_file, speech_file("second.wav")])
    page.get_by_role("button", name="Transcribe", exact=True).click()
    bars = page.locator("#workspace .ws-progress")
    expect(bars.first).to_be_visible(timeout=JOB_MS)
    seen: list[str] = []
    for _ in range(20):
        labels = bars.all_inner_texts()
        if not labels:
            break
        assert bars.count() <= 2
        assert page.locator(".progress-text, .eta-bar").count() == 0, "no Gradio overlay on the outputs"
        seen.extend(labels)
        if any("recognition" in label for label in labels):
            break
        time.sleep(0.3)
    stages = {label.split(" · ")[0] for label in seen}
    assert stages <= {"waiting in queue (position 1)", "starting", "decode", "VAD", "recognition", "punctuation"}, stages
    assert not any(re.match(r"(vad|asr|punc)\b", label) for label in seen)
    long_card = page.locator('#workspace .ws-job:has(.ws-file:text-is("long.wav"))')
    long_card.get_by_role("button", name="Cancel").click()
    wait_until_finished(page, 2)
    expect(long_card).to_have_attribute("data-state", "cancelled")
    other = page.locator('#workspace .ws-job:has(.ws-file:text-is("second.wav"))')
    expect(other).to_have_attribute("data-state", "completed")
