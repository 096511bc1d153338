"""The web UI in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright's sync API)
against the real service in a subprocess (tests/server.py), on the random-weight test models.

One server and one browser serve the whole module; every test gets a fresh page. The tests also
write the README screenshots, one per tab, to docs/screenshots/ (set UI_SCREENSHOT_DIR to write
them elsewhere). Transcripts are random characters, so only their structure is checked.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import REPO, with_pauses
from tests.server import running_server

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
SCREENSHOTS = Path(os.environ.get("UI_SCREENSHOT_DIR") or REPO / "docs" / "screenshots")

# Playwright timeouts (ms): generous, these are upper bounds on a slow 2-core machine, not expectations.
LOAD_MS = 60_000
JOB_MS = 180_000
STEP_MS = 30_000

TIMESTAMP = r"\d{2}:\d{2}:\d{2}\.\d{3}"
SENTENCE_LINE = re.compile(rf"^\[({TIMESTAMP}) → ({TIMESTAMP})\] \S")
SRT_TIME = re.compile(r"^(\d{2}):(\d{2}):(\d{2}),(\d{3}) --> (\d{2}):(\d{2}):(\d{2}),(\d{3})$")


# ---- fixtures -------------------------------------------------------------------------------------


@dataclass
class Traffic:
    """Everything the browser asked for during the module, and the page errors it saw."""

    requests: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    @staticmethod
    def external(urls: list[str]) -> list[str]:
        return [u for u in urls
                if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).hostname not in LOCAL_HOSTS]


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    return Traffic()


@pytest.fixture(scope="module")
def made() -> list[tuple[str, str]]:
    """(file name, job kind) of every job the tests completed through the UI, for the History test."""
    return []


@pytest.fixture(scope="module")
def server(test_models, tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("ui-server"), test_models) as server:
        yield server


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ui-audio")


@pytest.fixture(scope="module")
def mic_wav(sentence_clips, audio_dir) -> Path:
    """What Chromium's fake microphone plays (in a loop): the test sentences as 16-bit PCM, 16 kHz mono."""
    path = audio_dir / "microphone.wav"
    sf.write(path, with_pauses(sentence_clips, 0.6, lead_s=0.2), 16000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def speech_file(speech_wav, audio_dir):
    """The three-sentence speech WAV under a name of the caller's choosing (names tell the jobs apart)."""

    def named(name: str) -> Path:
        path = audio_dir / name
        if not path.exists():
            shutil.copyfile(speech_wav, path)
        return path

    return named


@pytest.fixture(scope="module")
def context(server, mic_wav, traffic):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium); the browser tests need Debian's Chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # launch() gives every browser a fresh temporary profile.
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS + [
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={mic_wav}",
        ])
        context = browser.new_context(viewport=VIEWPORT, locale="en-US", accept_downloads=True,
                                      permissions=["microphone"])
        context.grant_permissions(["microphone"], origin=server.url)
        context.set_default_timeout(STEP_MS)
        context.on("request", lambda r: traffic.requests.append(r.url))
        context.on("weberror", lambda e: traffic.page_errors.append(str(e.error)))
        try:
            yield context
        finally:
            context.close()
            browser.close()


@pytest.fixture
def page(context, server, request, tmp_path_factory):
    """A fresh page with the app loaded (the on-load event has run: the banner is filled in)."""
    from playwright.sync_api import expect

    page = context.new_page()
    own_requests: list[str] = []
    page.on("request", lambda r: own_requests.append(r.url))
    page.own_requests = own_requests
    failed_before = request.session.testsfailed
    page.goto(server.url + "/")
    expect(page.get_by_text("RANDOM WEIGHTS").first).to_be_visible(timeout=LOAD_MS)
    yield page
    if request.session.testsfailed > failed_before:  # keep what the page looked like when the test failed
        out = tmp_path_factory.getbasetemp() / "ui-failures"
        out.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]", "_", request.node.name)
        try:
            page.screenshot(path=out / f"{name}.png", full_page=True)
            (out / f"{name}.html").write_text(page.content(), encoding="utf-8")
            (out / f"{name}.aria.txt").write_text(page.locator("body").aria_snapshot(), encoding="utf-8")
        except Exception as e:  # the page may be gone; the log below still helps
            print(f"could not save the failing page: {e}")
        (out / f"{name}.server.log").write_text(server.log_tail(20000), encoding="utf-8")
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"\n{request.node.name} failed: page screenshot, DOM and server log in {out}")
    page.close()


# ---- helpers ------------------------------------------------------------------------------------------


def panel(page):
    """The visible tab's panel (Gradio renders only the selected tab)."""
    return page.get_by_role("tabpanel")


def open_tab(page, name: str):
    from playwright.sync_api import expect

    tab = page.get_by_role("tab", name=name, exact=True)
    tab.click()
    expect(tab).to_have_attribute("aria-selected", "true")
    return panel(page)


def block(scope, label: str):
    """The Gradio component block whose label is exactly ``label``."""
    exact = re.compile(rf"^\s*{re.escape(label)}\s*$")
    page = getattr(scope, "page", scope)  # an inner locator for filter(has=...) must not be rooted in scope
    return scope.locator(".block").filter(
        has=page.locator("[data-testid=block-label], [data-testid=block-info]").filter(has_text=exact)
    )


def textbox(scope, label: str):
    # Not get_by_label: a Textbox with a copy button leaves its textarea without an accessible name.
    return block(scope, label).locator("textarea")


def upload(scope, path: Path) -> None:
    """Choose a file in the panel's upload area and wait until Gradio lists it as uploaded."""
    from playwright.sync_api import expect

    scope.get_by_role("button", name="Click to upload or drop files").locator("input[type=file]").set_input_files(path)
    expect(scope.get_by_role("cell", name=path.name, exact=True)).to_be_visible()


def file_links(scope, label: str) -> dict[str, str]:
    """File name -> URL of the download links in a gr.File block."""
    links = block(scope, label).locator("a[download]")
    return {a.get_attribute("download"): a.get_attribute("href") for a in links.all()}


def grid_rows(grid) -> list[list[str]]:
    """The data rows of a gr.Dataframe grid (header row left out)."""
    rows = []
    for row in grid.get_by_role("row").all():
        cells = row.get_by_role("gridcell")
        if cells.count():
            rows.append([c.inner_text().strip() for c in cells.all()])
    return rows


def platform_fonts(page, locator) -> dict[str, int]:
    """Font family -> glyphs Chromium really drew with it, for the element and its (shadow) subtree."""
    locator.evaluate("e => e.setAttribute('data-font-probe', '1')")
    cdp = page.context.new_cdp_session(page)
    try:
        cdp.send("DOM.enable")
        cdp.send("CSS.enable")
        root = cdp.send("DOM.getDocument", {"depth": -1, "pierce": True})["root"]

        def walk(node):
            yield node
            for child in node.get("children", []) + node.get("shadowRoots", []):
                yield from walk(child)

        def probed(node):
            attrs = node.get("attributes", [])
            return "data-font-probe" in attrs[::2]

        target = next(n for n in walk(root) if probed(n))
        fonts: dict[str, int] = {}
        for node in walk(target):
            if node.get("nodeType") == 1:
                for font in cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node["nodeId"]})["fonts"]:
                    fonts[font["familyName"]] = fonts.get(font["familyName"], 0) + font["glyphCount"]
        return fonts
    finally:
        cdp.detach()
        locator.evaluate("e => e.removeAttribute('data-font-probe')")


def assert_cjk_font(page, locator) -> None:
    fonts = platform_fonts(page, locator)
    assert any("CJK" in name and count > 0 for name, count in fonts.items()), (
        f"Chinese text was not drawn with a CJK font (Noto Sans CJK expected): {fonts}"
    )


def screenshot(page, name: str) -> Path:
    """A full-page PNG of the current tab, 1280 px wide, for the README."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.mouse.move(0, 0)
    page.evaluate("() => { document.activeElement && document.activeElement.blur(); return document.fonts.ready; }")
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=path, full_page=True, animations="disabled")
    with open(path, "rb") as f:
        header = f.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    assert width == VIEWPORT["width"] and height >= VIEWPORT["height"] // 2, (width, height)
    return path


def ms(h: str, m: str, s: str, frac: str) -> int:
    return ((int(h) * 60 + int(m)) * 60 + int(s)) * 1000 + int(frac)


def parse_srt(body: str) -> list[tuple[int, int, str]]:
    """(start ms, end ms, text) of each cue; asserts the SRT structure on the way."""
    cues = []
    blocks = [b for b in re.split(r"\n\s*\n", body.replace("\r\n", "\n").strip()) if b.strip()]
    assert blocks, "the SRT file has no cues"
    for number, cue in enumerate(blocks, start=1):
        lines = cue.split("\n")
        assert lines[0].strip() == str(number), f"cue {number} is numbered {lines[0]!r}"
        match = SRT_TIME.match(lines[1].strip())
        assert match, f"cue {number}: bad time line {lines[1]!r}"
        start, end = ms(*match.groups()[:4]), ms(*match.groups()[4:])
        text = "\n".join(lines[2:]).strip()
        assert text, f"cue {number} has no text"
        cues.append((start, end, text))
    for (s0, e0, _), (s1, e1, _) in zip(cues, cues[1:]):
        assert s1 >= s0 and s1 >= e0 - 1, f"cues are not in time order: {s0}-{e0} then {s1}-{e1}"
    assert all(s <= e for s, e, _ in cues), "a cue ends before it starts"
    return cues


def run_transcribe(page) -> tuple[str, str]:
    """Click Transcribe and wait for the result; returns (text, sentences)."""
    from playwright.sync_api import expect

    tab = panel(page)
    timings = tab.get_by_text(re.compile(r"RTF \d"))
    page.get_by_role("button", name="Transcribe", exact=True).click()
    expect(timings).to_be_visible(timeout=JOB_MS)
    text = textbox(tab, "Text")
    expect(text).not_to_have_value("", timeout=STEP_MS)
    return text.input_value(), textbox(tab, "Sentences with timestamps").input_value()


# ---- the tests ---------------------------------------------------------------------------------------


def test_page_opens_on_transcribe_with_the_test_model_warning_and_loads_nothing_external(page):
    from playwright.sync_api import expect

    expect(page).to_have_title("Offline ASR")
    expect(page.get_by_role("tab", name="Transcribe", exact=True)).to_have_attribute("aria-selected", "true")
    expect(page.get_by_role("button", name="Transcribe", exact=True)).to_be_visible()
    banner = page.get_by_text(re.compile("Test models with RANDOM WEIGHTS are loaded"))
    expect(banner).to_be_visible()
    heading = page.get_by_role("heading", name=re.compile("Offline speech recognition"))
    expect(heading).to_contain_text("中文")
    assert_cjk_font(page, heading)

    page.wait_for_load_state("networkidle", timeout=LOAD_MS)
    requests = page.own_requests
    assert any("/assets/" in u for u in requests), f"the request recorder saw no page assets: {requests[:5]}"
    assert Traffic.external(requests) == [], "the page loaded something from outside the server"


def test_transcribe_an_uploaded_file(page, speech_file, made):
    from playwright.sync_api import expect

    tab = panel(page)
    audio = speech_file("three_sentences.wav")
    upload(tab, audio)
    expect(tab.get_by_role("checkbox", name="Punctuation")).to_be_checked()
    for fmt, checked in (("srt", True), ("txt", True), ("vtt", False), ("json", False)):
        box = tab.get_by_role("checkbox", name=fmt, exact=True)
        expect(box).to_be_checked() if checked else expect(box).not_to_be_checked()

    text, sentences = run_transcribe(page)
    made.append((audio.name, "transcribe"))
    assert text.strip()
    lines = sentences.splitlines()
    assert lines and all(SENTENCE_LINE.match(line) for line in lines), sentences[:500]
    spans = [tuple(SENTENCE_LINE.match(line).groups()) for line in lines]
    assert all(start <= end for start, end in spans) and spans == sorted(spans)
    timings = re.compile(r"three_sentences\.wav — audio \d+\.\d s, wall \d+\.\d+ s, RTF \d")
    expect(tab.get_by_text(timings)).to_be_visible()

    links = file_links(tab, "Downloads")
    assert set(links) == {"three_sentences.srt", "three_sentences.txt"}, links
    with page.expect_download() as info:
        block(tab, "Downloads").locator('a[download="three_sentences.srt"]').click()
    download = info.value
    assert download.suggested_filename == "three_sentences.srt"
    cues = parse_srt(Path(download.path()).read_text(encoding="utf-8"))
    assert cues[-1][1] <= sf.info(str(audio)).duration * 1000 + 1
    txt = page.request.get(links["three_sentences.txt"])
    assert txt.ok and txt.text().strip()

    assert_cjk_font(page, textbox(tab, "Text"))
    screenshot(page, "transcribe")


def test_record_from_the_microphone_and_transcribe(page, made):
    from playwright.sync_api import expect

    tab = panel(page)
    recorder = block(tab, "…or record")
    expect(recorder.get_by_role("combobox", name="Select input device")).to_contain_text("Fake", timeout=STEP_MS)
    recorder.get_by_role("button", name="Record", exact=True).click()
    stop = recorder.get_by_role("button", name="Stop", exact=True)
    expect(stop).to_be_visible()
    # Record until the recorder's own clock shows at least 4 s of audio (however long that takes).
    expect(recorder.locator("time").filter(has_text=re.compile(r"^0:0[4-9]$|^0:[1-5]\d$"))).to_have_count(
        1, timeout=STEP_MS)
    stop.click()

    # Stopping uploads the take; it is then offered for download from the server.
    saved = recorder.locator("a[download]")
    expect(saved).to_have_count(1, timeout=STEP_MS)
    href = saved.get_attribute("href")
    name = Path(urlsplit(href).path).name  # the link's download attribute is just "true"
    assert name.endswith(".wav"), href
    take = page.request.get(href)
    assert take.ok
    samples, rate = sf.read(io.BytesIO(take.body()), dtype="float32", always_2d=True)
    assert samples.shape[0] / rate >= 3.0, f"the take is only {samples.shape[0] / rate:.2f} s long"
    assert float(np.abs(samples).max()) > 0.05, "the take is silent: the fake microphone's speech did not arrive"

    text, sentences = run_transcribe(page)
    # Named by the time it was made (Gradio names every take "audio.wav"), in the results and in History.
    name = page.locator("#workspace .ws-file").first.inner_text()
    assert re.fullmatch(r"recording \d{4}-\d\d-\d\d \d\d-\d\d-\d\d\.wav", name), name
    made.append((name, "transcribe"))
    assert text.strip()
    assert sentences.splitlines() and SENTENCE_LINE.match(sentences.splitlines()[0]), sentences[:300]
    expect(tab.get_by_text(re.compile(rf"{re.escape(name)} — audio \d+\.\d s"))).to_be_visible()


def test_a_pdf_named_wav_gets_a_friendly_error_and_the_page_keeps_working(page, audio_dir, speech_file, made):
    from playwright.sync_api import expect

    tab = panel(page)
    fake = audio_dir / "not_really_audio.wav"
    fake.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n" * 20)
    upload(tab, fake)
    page.get_by_role("button", name="Transcribe", exact=True).click()
    toast = page.get_by_test_id("toast-body").filter(has_text="not_really_audio.wav")
    expect(toast).to_be_visible(timeout=JOB_MS)
    expect(toast).to_contain_text("PDF")
    expect(toast).not_to_contain_text("Internal error")
    toast.get_by_test_id("toast-close").click()
    expect(toast).to_have_count(0)

    block(tab, "Audio or video files").get_by_role("button", name="Clear").click()
    expect(tab.get_by_role("cell", name=fake.name)).to_have_count(0)
    audio = speech_file("after_error.wav")
    upload(tab, audio)
    text, sentences = run_transcribe(page)
    made.append((audio.name, "transcribe"))
    assert text.strip() and SENTENCE_LINE.match(sentences.splitlines()[0])
    expect(tab.get_by_text(re.compile(r"after_error\.wav — audio"))).to_be_visible()
    assert set(file_links(tab, "Downloads")) == {"after_error.srt", "after_error.txt"}
    expect(page.get_by_test_id("toast-body")).to_have_count(0)


def test_vad_tab_finds_the_three_sentences(page, speech_file, made):
    from playwright.sync_api import expect

    tab = open_tab(page, "VAD")
    audio = speech_file("vad_three_sentences.wav")
    upload(tab, audio)
    page.get_by_role("button", name="Find speech", exact=True).click()
    expect(tab.get_by_text(re.compile(r"\d+ speech segments in \d+\.\d s of audio"))).to_be_visible(timeout=JOB_MS)
    made.append((audio.name, "vad"))

    grid = tab.get_by_role("grid", name="Speech segments")
    expect(grid.get_by_role("row").filter(has=page.get_by_role("gridcell"))).not_to_have_count(0)
    rows = grid_rows(grid)
    assert len(rows) >= 3, rows
    previous_end = -1.0
    for i, (index, start, end, duration) in enumerate(rows, start=1):
        assert index == str(i)
        assert re.fullmatch(TIMESTAMP, start) and re.fullmatch(TIMESTAMP, end), (start, end)
        s, e = (ms(*re.split(r"[:.]", t)) / 1000 for t in (start, end))
        assert previous_end <= s < e
        assert float(duration) == pytest.approx(e - s, abs=0.002)
        previous_end = e

    links = file_links(tab, "CSV")
    assert list(links) == ["vad_three_sentences.vad.csv"], links  # named as `asr vad` names it
    body = page.request.get(links["vad_three_sentences.vad.csv"])
    assert body.ok
    table = list(csv.DictReader(io.StringIO(body.text())))
    assert len(table) == len(rows) and table[0]["start"] == rows[0][1]

    # the picture: the segments over the waveform, one rectangle each; a click plays that segment and stops
    segments = tab.locator("#vad-workspace svg.ws-timeline rect.ws-seg")
    expect(segments).to_have_count(len(rows))
    assert tab.locator("#vad-workspace svg.ws-timeline rect.ws-wave").count() > 100
    page.wait_for_function("document.querySelector('#vad-workspace audio').readyState >= 1")
    second = segments.nth(1)
    start_s, end_s = (int(second.get_attribute(a)) / 1000 for a in ("data-start", "data-end"))
    second.click()
    page.wait_for_function("!document.querySelector('#vad-workspace audio').paused")
    expect(second).to_have_class(re.compile("ws-playing"))
    page.wait_for_function("document.querySelector('#vad-workspace audio').paused", timeout=STEP_MS)
    stopped = tab.locator("#vad-workspace audio").evaluate("a => a.currentTime")
    assert end_s - 0.05 <= stopped <= end_s + 0.6, (start_s, end_s, stopped)
    screenshot(page, "vad")


def test_history_lists_the_jobs_and_opens_one(page, server, speech_file, made):
    from playwright.sync_api import expect

    if not any(kind == "transcribe" for _, kind in made):  # this test run on its own: make a job to find
        import httpx

        audio = speech_file("history_probe.wav")
        with open(audio, "rb") as f:
            answer = httpx.post(server.url + "/v1/audio/transcriptions", files={"file": (audio.name, f, "audio/wav")},
                                timeout=JOB_MS / 1000, trust_env=False)
        assert answer.status_code == 200, answer.text
        made.append((audio.name, "transcribe"))

    tab = open_tab(page, "History")
    grid = tab.get_by_role("grid", name=re.compile(r"^Past jobs \(newest first\)"))
    tab.get_by_role("button", name="Refresh", exact=True).click()
    newest_name = made[-1][0]
    expect(grid.get_by_role("gridcell", name=newest_name, exact=True).first).to_be_visible(timeout=STEP_MS)
    rows = grid_rows(grid)
    # columns: time, file, type, duration (s), state, RTF, id; the type in words, so VAD and transcript
    # jobs of the same file tell apart
    kinds = {"transcribe": "transcript", "vad": "speech segments (VAD)"}
    for name, kind in made:
        matching = [r for r in rows if r[1] == name and r[2] == kinds[kind]]
        assert matching, f"{name} ({kind}) is not in the history: {rows}"
        row = matching[0]
        assert row[4] == "completed", row
        assert re.fullmatch(r"\d+\.\d{4}", row[5]), f"no RTF: {row}"
        assert re.fullmatch(r"\d+\.\d", row[3]) and float(row[3]) > 0, row
        assert re.fullmatch(r"[0-9a-f]{32}", row[6]), row

    name = next(name for name, kind in made if kind == "transcribe")
    row_index = next(i for i, r in enumerate(rows) if r[1] == name and r[2] == "transcript")
    # a click on the row opens it (it used to take a dropdown and a button)
    data_rows = grid.get_by_role("row").filter(has=page.get_by_role("gridcell"))
    data_rows.nth(row_index).get_by_role("gridcell", name=name, exact=True).click()
    text = textbox(tab, "Text")
    expect(text).not_to_have_value("", timeout=STEP_MS)
    assert re.search(rf"^\[{TIMESTAMP} → {TIMESTAMP}\] \S", text.input_value(), re.M), text.input_value()[:300]
    expect(tab.locator("#history-workspace .ws-sentence").first).to_be_visible()
    stem = Path(name).stem
    expect(block(tab, "Files").locator("a[download]")).to_have_count(4)
    assert set(file_links(tab, "Files")) == {f"{stem}.{ext}" for ext in ("srt", "vtt", "txt", "json")}
    expect(tab.get_by_text(re.compile(rf"{re.escape(name)} — audio .* RTF \d"))).to_be_visible()
    screenshot(page, "history")


def test_system_tab_shows_device_models_queue_and_workers(page):
    from playwright.sync_api import expect

    from asr.config import ModelsConfig

    tab = open_tab(page, "System")
    assert tab.get_by_role("button", name="Refresh", exact=True).count() == 0  # it refreshes itself
    info = tab.get_by_role("list")
    expect(info).to_contain_text("ready: yes", timeout=STEP_MS)
    first = info.get_by_role("listitem").first
    shown = first.inner_text()
    expect(first).not_to_have_text(shown, timeout=STEP_MS)  # the uptime moved on, with no click
    expect(info).to_contain_text(re.compile(r"version \d+\.\d+"))
    expect(info).to_contain_text("logins: off")
    expect(info).to_contain_text(re.compile(r"jobs: \d+ done, \d+ failed"))
    expect(info).to_contain_text(re.compile(r"CPU: \d+ cores, load [\d.]+"))
    expect(info).to_contain_text(re.compile(r"memory: [\d.]+ GB free of [\d.]+ GB, this service [\d.]+ [MG]B"))
    expect(info).to_contain_text(re.compile(r"disk \(state dir\): [\d.]+ [GT]B free of"))
    expect(info).to_contain_text("device: cpu")
    expect(info).to_contain_text(re.compile(r"precision: (fp32|bf16|fp16|int8)"))
    expect(info).to_contain_text(re.compile(r"queue: \d+ waiting \(max 8\)"))
    expect(info).to_contain_text(re.compile(r"workers: #0 (idle|busy)"))
    models = ModelsConfig()
    for role in ("vad", "asr", "punc"):
        expect(info.get_by_role("listitem").filter(has_text=f"{role}:").first).to_contain_text(
            getattr(models, role).id)
    expect(info.get_by_text("RANDOM WEIGHTS (test model)")).to_have_count(2)  # ASR and punctuation; VAD is real
    screenshot(page, "system")


def test_the_browser_never_left_the_local_server(traffic):
    """Over every page and action above (uploads, recording, downloads): nothing went to the internet."""
    assert traffic.requests, "no requests were recorded"
    assert Traffic.external(traffic.requests) == []
    assert traffic.page_errors == [], traffic.page_errors
