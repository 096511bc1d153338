"""The UI in Chinese and in English, in Chromium: picked from the browser's language, switched with the
header's link (and kept), with every word of ours and of Gradio's in the page's language, the errors of a
batch included. It used to be half translated with a zh-CN browser (Gradio's words in Chinese, ours in
English) and showed the raw key ``common.upload`` as a tooltip.

Same browser set-up as tests/test_ui_browser.py (Debian's Chromium, nothing external)."""

from __future__ import annotations

import re

import pytest

from tests.test_ui_browser import (  # noqa: F401  (fixtures)
    JOB_MS,
    LOAD_MS,
    audio_dir,
    context,
    made,
    mic_wav,
    screenshot,
    server,
    speech_file,
    traffic,
)
from tests.test_ui_workspace import bad_files  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser

#: English a Chinese page may show: names, formats, units and settings a reader knows as they are
ENGLISH_KEPT = {
    "paraformer", "large", "rtf", "csv", "srt", "vtt", "txt", "json", "itn", "random", "weights", "wav", "mp3",
    "models", "profile", "vad", "asr", "punc", "spk", "seaco", "asr_model", "pdf",
}
FILE_NAME = re.compile(r"\S+\.(wav|mp3)\b")
#: what Gradio 6.31 writes in English whatever the page's language: tooltips and screen-reader labels of its
#: components that are not in its translation tables (so no gr.I18n entry can reach them)
GRADIO_ENGLISH_ONLY = ("Click to upload or drop files", "Remove this file", "Select input device", "Copy")


@pytest.fixture
def open_page(context, server):
    """``open_page(locale)``: a page of a fresh context (no cookie) in that browser language, loaded."""
    from playwright.sync_api import expect

    contexts = []

    def opened(locale: str):
        fresh = context.browser.new_context(viewport={"width": 1280, "height": 900}, locale=locale)
        contexts.append(fresh)
        page = fresh.new_page()
        page.goto(server.url + "/")
        expect(page.get_by_text("RANDOM WEIGHTS").first).to_be_visible(timeout=LOAD_MS)
        return page

    yield opened
    for fresh in contexts:
        fresh.close()


def english_words(text: str) -> set[str]:
    """The English words of a text, less file names and the words a Chinese page keeps."""
    text = FILE_NAME.sub(" ", text)
    return {w for w in re.findall(r"[A-Za-z][A-Za-z_]{2,}", text) if w.lower() not in ENGLISH_KEPT}


def shown_words(page, files: list) -> str:
    """The visible text of the page, and the tooltips, placeholders and labels that are read out; less what is
    nobody's words: the transcripts (random characters), the uploaded files' names, the microphones' names
    (Chromium's fake one), the switch to English, and Gradio's English-only words."""
    text = page.evaluate("""() => {
        const parts = [document.body.innerText];
        for (const node of document.querySelectorAll('[title], [placeholder], [aria-label]')) {
            if (node.offsetParent === null) continue;
            for (const name of ['title', 'placeholder', 'aria-label']) parts.push(node.getAttribute(name) || '');
        }
        let text = parts.join('\\n');
        const theirs = [...document.querySelectorAll('.ws-text, .lang-switch, option')].map(n => n.innerText.trim());
        for (const words of theirs.sort((a, b) => b.length - a.length)) text = text.split(words).join(' ');
        return text;
    }""")
    for kept in (*GRADIO_ENGLISH_ONLY, *(p.stem for p in files)):
        text = text.replace(kept, " ")
    return text


def test_a_chinese_browser_gets_the_whole_ui_in_chinese_errors_included(open_page, speech_file, bad_files):
    from playwright.sync_api import expect

    page = open_page("zh-CN")
    for name in ("转写", "语音检测", "历史记录", "系统"):
        expect(page.get_by_role("tab", name=name, exact=True)).to_be_visible()
    expect(page.get_by_text("随机权重").first).to_be_visible()
    expect(page.get_by_role("button", name="转写", exact=True)).to_be_visible()
    expect(page.locator("#header-tools a.lang-switch")).to_have_text("English")

    good = speech_file("会议 一.wav")
    page.get_by_role("tabpanel").locator("input[type=file]").first.set_input_files([str(good), *map(str, bad_files)])
    expect(page.get_by_role("cell", name="report.wav", exact=True)).to_be_visible()
    page.get_by_role("button", name="转写", exact=True).click()
    expect(page.locator("#workspace .ws-job[data-active=false]")).to_have_count(3, timeout=JOB_MS)
    cards = page.locator("#workspace .ws-job")
    by_name = {cards.nth(i).locator(".ws-file").inner_text(): cards.nth(i) for i in range(3)}
    expect(by_name["会议 一.wav"].locator(".ws-status")).to_contain_text("完成")
    for bad in ("report.wav", "noise.mp3"):
        error = by_name[bad].locator(".ws-error")
        expect(error).to_contain_text(bad)
        assert english_words(error.inner_text()) == set(), error.inner_text()  # the message, not only its frame
    expect(by_name["会议 一.wav"].locator(".ws-edit").first).to_have_attribute("title", "修改")

    words = shown_words(page, [good, *bad_files])
    assert "common.upload" not in words and "__i18n__" not in words
    assert english_words(words) == set(), [line for line in words.splitlines() if english_words(line)]
    screenshot(page, "transcribe-zh")

    page.get_by_role("tab", name="历史记录", exact=True).click()
    history = page.get_by_role("tabpanel")
    history.get_by_role("button", name="刷新", exact=True).click()
    expect(history.get_by_role("columnheader", name="文件", exact=True)).to_be_visible()
    expect(history.get_by_role("gridcell", name="会议 一.wav", exact=True).first).to_be_visible()
    expect(history.get_by_role("gridcell", name="转写", exact=True).first).to_be_visible()  # the job's type
    page.get_by_role("tab", name="系统", exact=True).click()
    system = page.get_by_role("tabpanel")
    expect(system).to_contain_text("就绪: 是", timeout=JOB_MS)
    expect(system).to_contain_text(re.compile(r"登录: 关闭"))
    expect(system).to_contain_text(re.compile(r"CPU: \d+ 核"))


def test_the_switch_changes_the_language_of_every_word_and_is_kept(open_page, server):
    from playwright.sync_api import expect

    page = open_page("zh-CN")
    page.locator("#header-tools a.lang-switch").click()  # "English"
    expect(page.get_by_role("tab", name="Transcribe", exact=True)).to_be_visible(timeout=LOAD_MS)
    expect(page.get_by_text("Test models with RANDOM WEIGHTS are loaded")).to_be_visible()
    expect(page.get_by_text("Drop File Here").first).to_be_visible()  # Gradio's own words follow the switch
    expect(page.locator("#header-tools a.lang-switch")).to_have_text("中文")

    page.goto(server.url + "/")  # a new visit, with the browser still saying zh-CN: the choice holds
    expect(page.get_by_role("tab", name="History", exact=True)).to_be_visible(timeout=LOAD_MS)
    expect(page.get_by_text("Test models with RANDOM WEIGHTS are loaded")).to_be_visible()

    english = open_page("en-US")
    expect(english.get_by_role("tab", name="Transcribe", exact=True)).to_be_visible()
    english.locator("#header-tools a.lang-switch").click()  # "中文"
    expect(english.get_by_role("tab", name="转写", exact=True)).to_be_visible(timeout=LOAD_MS)
    expect(english.get_by_text("将文件拖放到此处").first).to_be_visible()
    expect(english.get_by_text("随机权重").first).to_be_visible()
