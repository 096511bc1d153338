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
    SCREENSHOTS,
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
def long_files(audio_dir, speech_file) -> list[Path]:
    """The three sentences 40 times over (15 min): long enough to be seen running, and cancelled."""
    audio, rate = sf.read(speech_file("three_sentences.wav"), dtype="float32")
    paths = [audio_dir / "long.wav", audio_dir / "long too.wav"]
    for path in paths:
        sf.write(path, np.tile(audio, 40), rate, subtype="PCM_16")
    return paths


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


def test_a_video_plays_with_its_picture_and_follows_the_sentences(page, speech_file, audio_dir):
    """A video upload gets a video player (it used to play its sound only), offered with the FLAC after it for a
    browser that cannot play the video's codec; clicking a sentence seeks the video."""
    from playwright.sync_api import expect

    from tests.audio_samples import write_video

    audio, rate = sf.read(speech_file("three_sentences.wav"), dtype="float32")
    video = write_video(audio_dir / "talk on video.mp4", len(audio) / rate, audio=audio, rate=rate)
    upload_files(page, [video])
    page.get_by_role("button", name="Transcribe", exact=True).click()
    wait_until_finished(page, 1)
    player = page.locator("#workspace video")
    expect(player).to_have_count(1)
    sources = player.locator("source")
    assert [sources.nth(i).get_attribute("type") for i in range(2)] == ["video/mp4", "audio/flac"]
    page.wait_for_function("document.querySelector('#workspace video').readyState >= 1")
    assert player.evaluate("v => v.currentSrc").endswith("/video"), "Chromium plays H.264: the picture is shown"
    assert player.evaluate("v => v.videoWidth") == 64
    second = page.locator("#workspace .ws-sentence").nth(1)
    second.locator(".ws-text").click()
    page.wait_for_function("!document.querySelector('#workspace video').paused")
    expect(second).to_have_class(re.compile("ws-playing"))
    assert player.evaluate("v => v.currentTime") >= int(second.get_attribute("data-start")) / 1000 - 0.05
    assert page.request.get(player.evaluate("v => v.currentSrc"), headers={"Range": "bytes=0-99"}).status == 206


def test_progress_is_one_display_per_job_in_words_and_cancel_stops_it(page, long_files):
    """While a batch runs each file has one progress bar (Gradio's overlay drew one on every output), its stage
    in words, never an internal id; the second file says it waits in the queue while the first runs; Cancel on it
    stops it and leaves the other, which goes on to finish."""
    from playwright.sync_api import expect

    upload_files(page, long_files)
    page.get_by_role("button", name="Transcribe", exact=True).click()
    running = page.locator('#workspace .ws-job:has(.ws-file:text-is("long.wav")) .ws-progress')
    waiting = page.locator('#workspace .ws-job:has(.ws-file:text-is("long too.wav")) .ws-progress')
    expect(running).to_contain_text("recognition", timeout=JOB_MS)
    expect(waiting).to_contain_text("waiting in queue (position 1)")
    assert page.locator("#workspace .ws-progress").count() == 2
    assert page.locator(".progress-text, .eta-bar").count() == 0, "no Gradio overlay on the outputs"
    labels = page.locator("#workspace .ws-progress").all_inner_texts()
    assert not any(re.match(r"(vad|asr|punc)\b", label) for label in labels), labels
    screenshot(page, "workspace-progress")
    page.locator('#workspace .ws-job:has(.ws-file:text-is("long too.wav"))').get_by_role("button", name="Cancel").click()
    wait_until_finished(page, 2)
    expect(page.locator('#workspace .ws-job:has(.ws-file:text-is("long too.wav"))')).to_have_attribute(
        "data-state", "cancelled")
    expect(page.locator('#workspace .ws-job:has(.ws-file:text-is("long.wav"))')).to_have_attribute(
        "data-state", "completed")


def test_fix_a_sentence_and_a_speaker_name_then_export_and_reopen_the_edited_version(page, speech_file):
    """An edit is saved with the job (the original kept, see tests/test_workspace.py), the exported SRT has it,
    and History reopens the edited version; a bad edit gets its message beside the transcript."""
    from playwright.sync_api import expect

    from tests.test_ui_browser import block, file_links, open_tab, textbox

    upload_files(page, [speech_file("fix me.wav")])
    page.get_by_role("button", name="Transcribe", exact=True).click()
    wait_until_finished(page, 1)
    first = page.locator("#workspace .ws-sentence").first
    first.get_by_role("button", name="edit sentence 1").click()
    text = first.locator(".ws-text")
    expect(text).to_have_attribute("contenteditable", "true")
    text.fill("今天开会讨论预算。")
    text.press("Enter")
    expect(first).to_have_class(re.compile("ws-edited"))
    expect(text).to_have_text("今天开会讨论预算。")

    second = page.locator("#workspace .ws-sentence").nth(1)
    second.get_by_role("button", name="edit sentence 2").click()
    second.locator(".ws-text").fill("   ")
    second.locator(".ws-text").press("Enter")
    expect(page.locator("#workspace .ws-edit-error")).to_be_visible()
    assert page.locator("#workspace .ws-edit-error").inner_text().strip()
    expect(second).not_to_have_class(re.compile("ws-edited"))

    page.get_by_role("button", name="Export the edited version").click()
    tab = panel(page)
    link = block(tab, "Downloads").locator('a[download="fix me.srt"]')
    expect(link).to_have_count(1)
    srt = page.request.get(link.get_attribute("href")).text()
    assert "今天开会讨论预算。" in srt.split("\n\n")[0], srt[:300]

    history = open_tab(page, "History")
    history.get_by_role("button", name="Refresh", exact=True).click()
    grid = history.get_by_role("grid", name=re.compile(r"^Past jobs"))
    grid.get_by_role("gridcell", name="fix me.wav", exact=True).first.click()
    reopened = history.locator("#history-workspace .ws-sentence")
    expect(reopened.first.locator(".ws-text")).to_have_text("今天开会讨论预算。")
    expect(reopened.first).to_have_class(re.compile("ws-edited"))  # still marked as edited, as it was
    expect(reopened.nth(1)).not_to_have_class(re.compile("ws-edited"))
    expect(textbox(history, "Text")).to_have_value(re.compile("今天开会讨论预算。"))
    assert "fix me.srt" in file_links(history, "Files")
    screenshot(page, "workspace-edited")


def test_history_search_and_delete(page, speech_file):
    from playwright.sync_api import expect

    from tests.test_ui_browser import open_tab

    upload_files(page, [speech_file("unique budget talk.wav")])
    page.get_by_role("button", name="Transcribe", exact=True).click()
    wait_until_finished(page, 1)
    history = open_tab(page, "History")
    grid = history.get_by_role("grid", name=re.compile(r"^Past jobs"))
    search = history.get_by_label("Search")
    search.fill("unique budget")
    search.press("Enter")
    expect(grid.get_by_role("gridcell", name="unique budget talk.wav", exact=True)).to_have_count(1)
    rows = grid.get_by_role("row").filter(has=page.get_by_role("gridcell"))
    expect(rows).to_have_count(1)
    rows.first.get_by_role("gridcell", name="unique budget talk.wav", exact=True).click()
    expect(history.locator("#history-workspace .ws-job")).to_have_count(1)
    media = history.locator("#history-workspace audio").evaluate("a => a.src")
    assert page.request.get(media).status == 200
    history.get_by_role("button", name="Delete this job").click()
    expect(grid.get_by_role("gridcell", name="unique budget talk.wav", exact=True)).to_have_count(0)
    expect(history.locator("#history-workspace .ws-job")).to_have_count(0)
    assert page.request.get(media).status == 404, "its playback audio went with it"


def test_on_a_phone_every_tab_is_reachable_and_the_result_scrolls_into_view(context, server, speech_file):
    """At 390x844 Gradio hid History and System behind an unlabelled "⋯", and the result stayed below the
    form, out of sight."""
    from playwright.sync_api import expect

    phone = context.browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                        locale="en-US")
    try:
        page = phone.new_page()
        page.goto(server.url + "/")
        expect(page.get_by_text("RANDOM WEIGHTS").first).to_be_visible(timeout=JOB_MS)
        for name in ("Transcribe", "VAD", "History", "System"):
            expect(page.get_by_role("tab", name=name, exact=True)).to_be_visible()
        page.get_by_role("tab", name="System", exact=True).tap()
        expect(page.get_by_role("tabpanel")).to_contain_text("ready: yes", timeout=JOB_MS)
        page.get_by_role("tab", name="Transcribe", exact=True).tap()
        upload_files(page, [speech_file("on the phone.wav")])
        page.get_by_role("button", name="Transcribe", exact=True).tap()
        wait_until_finished(page, 1)
        result = page.locator("#workspace .ws-job").first
        expect(result).to_be_in_viewport(timeout=10_000)
        page.wait_for_timeout(800)  # the smooth scroll settles
        page.screenshot(path=SCREENSHOTS / "phone.png", animations="disabled")  # what the phone shows, not the page
    finally:
        phone.close()
