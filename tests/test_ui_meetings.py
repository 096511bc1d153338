"""The Transcribe tab's meetings controls in Chromium, on a meetings deployment (SeACo + CAM++ test models):
speakers on with a count, hotwords, ITN; the coloured sentence list and the speaker-prefixed SRT. Also a plain
deployment, whose controls say what to configure. Same browser set-up as tests/test_ui_browser.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import soundfile as sf

from tests.conftest import with_pauses
from tests.server import running_server
from tests.test_meetings import DIALOGUE, speak
from tests.test_ui_browser import (  # noqa: F401  (fixtures)
    JOB_MS,
    audio_dir,
    context,
    mic_wav,
    page,
    panel,
    run_transcribe,
    screenshot,
    traffic,
    upload,
)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(test_models, tmp_path_factory):
    overrides = {"models": {"profile": "vad+asr+punc+spk", "asr_model": "seaco"}}
    with running_server(tmp_path_factory.mktemp("ui-meetings"), test_models, overrides=overrides) as server:
        yield server


@pytest.fixture(scope="module")
def dialogue(audio_dir) -> Path:
    clips = [speak(text, audio_dir / f"turn{i}.wav", voice, pitch) for i, (voice, pitch, text) in enumerate(DIALOGUE)]
    path = audio_dir / "meeting.wav"
    sf.write(path, with_pauses(clips, 1.0), 16000, subtype="PCM_16")
    return path


def test_speakers_hotwords_and_itn_from_the_transcribe_tab(page, dialogue):
    from playwright.sync_api import expect

    tab = panel(page)
    upload(tab, dialogue)
    expect(tab.get_by_role("checkbox", name="Numbers as digits (ITN)")).to_be_checked()
    tab.get_by_role("checkbox", name="Speaker labels").check()
    count = tab.get_by_label("Speakers (0 = find out)")
    count.fill("2")
    tab.get_by_label("Hotwords").fill("预算 培训")
    _, sentences = run_transcribe(page)
    lines = sentences.splitlines()
    assert lines and all(re.search(r"\] Speaker [12]: ", line) for line in lines), sentences[:400]

    coloured = page.locator("#workspace .ws-sentence")
    expect(coloured.first).to_be_visible(timeout=JOB_MS)
    names = coloured.locator("select.ws-who")
    chosen = {names.nth(i).evaluate("s => s.options[s.selectedIndex].text") for i in range(names.count())}
    assert chosen <= {"Speaker 1", "Speaker 2"}, chosen
    colours = {names.nth(i).evaluate("e => getComputedStyle(e).color") for i in range(names.count())}
    speakers = {coloured.nth(i).get_attribute("data-speaker") for i in range(coloured.count())}
    assert len(colours) == len(speakers), "each speaker has a colour of its own"
    chips = page.locator("#workspace .ws-chip .ws-name-of")
    assert set(chips.all_inner_texts()) == {"Speaker 1", "Speaker 2"}

    srt_link = tab.locator('a[download="meeting.srt"]')
    body = page.request.get(srt_link.get_attribute("href")).text()
    assert all(block.split("\n")[2].startswith("Speaker ") for block in body.strip().split("\n\n"))
    screenshot(page, "meetings")


def test_a_count_out_of_range_gets_its_message(page, dialogue):
    from playwright.sync_api import expect

    tab = panel(page)
    upload(tab, dialogue)
    tab.get_by_role("checkbox", name="Speaker labels").check()
    tab.get_by_label("Speakers (0 = find out)").fill("40")
    page.get_by_role("button", name="Transcribe", exact=True).click()
    expect(page.get_by_text(re.compile(r"speakers.max_speakers"))).to_be_visible(timeout=JOB_MS)
