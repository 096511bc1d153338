"""The UI's login page (asr/service/login_page.py) in a real headless Chromium, against the real
service with logins on, used as a person would: read it, type, press the button.

One server and one browser serve the module; every test gets a fresh browser context (no cookies)
in the language it needs. The test also writes docs/screenshots/login.png.
"""

from __future__ import annotations

import re

import httpx
import pytest

from tests.server import running_server
from tests.test_ui_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LOAD_MS,
    STEP_MS,
    VIEWPORT,
    Traffic,
    assert_cjk_font,
    screenshot,
)

pytestmark = pytest.mark.browser

USER, PASSWORD = "alice", "secret-pass"
TITLE_EN, TITLE_ZH = "Offline speech recognition", "离线语音识别"
SUBTITLE = "Paraformer-large · 中文"


@pytest.fixture(scope="module")
def server(test_models, tmp_path_factory):
    # A low failure limit, so that the back-off test needs only a few wrong passwords.
    overrides = {"server": {"auth": [f"{USER}:{PASSWORD}"], "login_max_failures": 3}}
    with running_server(tmp_path_factory.mktemp("ui-login"), test_models, overrides=overrides) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium); the browser tests need Debian's Chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def open_page(browser, server):
    """``open_page(locale)``: a page of a fresh context (no session) in that locale, at the UI's root.
    Every request and page error of the test is checked when it ends: nothing left this machine."""
    traffic = Traffic()

    def ours(where: str) -> bool:
        # Gradio's app, once logged in, runs from /assets/ (and complains when a test leaves it
        # with its connection open); tests/test_ui_browser.py checks that app, this module our page.
        return "/assets/" not in where
    contexts = []

    def opened(locale: str = "en-US"):
        context = browser.new_context(viewport=VIEWPORT, locale=locale)
        context.set_default_timeout(STEP_MS)
        context.on("request", lambda r: traffic.requests.append(r.url))
        context.on("weberror", lambda e: ours(str(e.error)) and traffic.page_errors.append(str(e.error)))
        contexts.append(context)
        page = context.new_page()
        # A refused login is an error in the console ("Failed to load resource"): that one is expected;
        # any other (a script the page's CSP blocked, say) is not.
        page.on("console", lambda m: m.type == "error" and not m.text.startswith("Failed to load resource")
                and ours(m.location.get("url", "")) and traffic.page_errors.append(m.text))
        page.goto(server.url + "/")
        return page

    yield opened
    for context in contexts:
        context.close()
    assert not Traffic.external(traffic.requests), Traffic.external(traffic.requests)
    assert not traffic.page_errors, traffic.page_errors


def fields(page):
    return (page.get_by_label("User name", exact=True), page.get_by_label("Password", exact=True),
            page.get_by_role("button", name="Sign in", exact=True))


def sign_in(page, user: str, password: str) -> None:
    name, secret, button = fields(page)
    name.fill(user)
    secret.fill(password)
    button.click()


def expect_login_page(page) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_role("heading", name=TITLE_EN, exact=True)).to_be_visible(timeout=LOAD_MS)
    expect(page.locator("gradio-app")).to_have_count(0)  # not Gradio's page, its login form included


def expect_app(page) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_role("tab", name="Transcribe", exact=True)).to_be_visible(timeout=LOAD_MS)


def session_cookies(page) -> list[str]:
    return [c["name"] for c in page.context.cookies() if c["name"].startswith("access-token")]


# ---- the tests -------------------------------------------------------------------------------------


def test_the_login_page_names_the_product_and_is_not_gradios(open_page):
    from playwright.sync_api import expect

    page = open_page()
    expect_login_page(page)
    expect(page.get_by_text(SUBTITLE, exact=True)).to_be_visible()
    expect(page).to_have_title(TITLE_EN)
    name, secret, _ = fields(page)
    expect(name).to_be_focused()
    expect(secret).to_have_attribute("type", "password")
    expect(page.get_by_role("link", name="中文", exact=True)).to_be_visible()
    shot = screenshot(page, "login")
    assert shot.stat().st_size > 5000


def test_a_wrong_password_keeps_the_user_name(open_page):
    from playwright.sync_api import expect

    page = open_page()
    expect_login_page(page)
    sign_in(page, USER, "not-the-password")
    expect(page.get_by_role("alert")).to_have_text("Wrong user name or password")
    name, secret, button = fields(page)
    expect(name).to_have_value(USER)
    expect(secret).to_have_value("")
    expect(secret).to_be_focused()  # the one field to type again
    expect(button).to_be_enabled()
    assert not session_cookies(page)
    # and the right one, typed in the same page, gets in
    secret.fill(PASSWORD)
    button.click()
    expect_app(page)


def test_the_right_password_opens_the_app(open_page):
    page = open_page()
    expect_login_page(page)
    sign_in(page, USER, PASSWORD)
    expect_app(page)
    assert session_cookies(page)
    page.reload()  # the session holds: the app again, not the login page
    expect_app(page)


def test_logout_brings_the_login_page_back(open_page, server):
    from playwright.sync_api import expect

    page = open_page()
    expect_login_page(page)
    sign_in(page, USER, PASSWORD)
    expect_app(page)
    header = page.locator("#signed-in")
    expect(header).to_contain_text(f"Signed in as {USER}")  # who you are, once in
    header.get_by_role("link", name="Log out").click()
    expect_login_page(page)
    assert page.url == server.url + "/"  # Gradio's /logout redirected to the root
    assert not session_cookies(page)
    page.goto(server.url + "/")
    expect_login_page(page)
    expect(page.get_by_role("tab", name="Transcribe", exact=True)).to_have_count(0)


def test_a_chinese_browser_gets_the_chinese_page(open_page):
    from playwright.sync_api import expect

    page = open_page("zh-CN")
    heading = page.get_by_role("heading", name=TITLE_ZH, exact=True)
    expect(heading).to_be_visible(timeout=LOAD_MS)
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_label("用户名", exact=True)).to_be_visible()
    expect(page.get_by_label("密码", exact=True)).to_be_visible()
    assert_cjk_font(page, heading)
    page.get_by_label("用户名", exact=True).fill(USER)
    page.get_by_label("密码", exact=True).fill("错误的密码")
    page.get_by_role("button", name="登录", exact=True).click()
    expect(page.get_by_role("alert")).to_have_text("用户名或密码错误")
    expect(page.get_by_label("用户名", exact=True)).to_have_value(USER)
    # the switch link: English, and back
    page.get_by_role("link", name="English", exact=True).click()
    expect_login_page(page)
    page.get_by_role("link", name="中文", exact=True).click()
    expect(heading).to_be_visible()
    page.get_by_label("密码", exact=True).fill(PASSWORD)
    page.get_by_label("用户名", exact=True).fill(USER)
    page.get_by_role("button", name="登录", exact=True).click()
    # signed in, the UI is in Chinese too, with who is signed in and the logout in Chinese
    expect(page.get_by_role("tab", name="转写", exact=True)).to_be_visible(timeout=LOAD_MS)
    expect(page.locator("#signed-in")).to_have_text(f"已登录：{USER} · 退出登录")


def test_the_login_page_s_language_switch_holds_once_signed_in(open_page):
    """Switched to English on the login page of a Chinese browser: the UI behind it is in English too."""
    from playwright.sync_api import expect

    page = open_page("zh-CN")
    page.get_by_role("link", name="English", exact=True).click()
    expect_login_page(page)
    sign_in(page, USER, PASSWORD)
    expect_app(page)
    expect(page.locator("#header-tools a.lang-switch")).to_have_text("中文")


def test_too_many_wrong_passwords_show_the_wait_then_let_the_user_in(open_page):
    from playwright.sync_api import expect

    page = open_page()
    expect_login_page(page)
    name, _, button = fields(page)
    for _ in range(3):  # login_max_failures
        sign_in(page, "mallory", "guess")
        expect(page.get_by_role("alert")).to_have_text("Wrong user name or password")
    sign_in(page, "mallory", "guess")
    alert = page.get_by_role("alert")
    expect(alert).to_have_text(re.compile(r"^Too many failed sign-ins: try again in \d+ s$"))
    expect(button).to_be_disabled()
    expect(name).to_have_value("mallory")
    expect(alert).to_be_hidden(timeout=LOAD_MS)  # the wait counts down, then the form is back
    expect(button).to_be_enabled()
    sign_in(page, USER, PASSWORD)
    expect_app(page)


def test_the_page_is_ours_for_every_visitor_without_a_session(server):
    """Without a browser: the root with any query, and a stale session cookie, get our page with
    its protective headers; a logged-in session gets Gradio's app."""
    for query, title in (("", TITLE_EN), ("?lang=zh", TITLE_ZH), ("?__theme=dark", TITLE_EN)):
        page = httpx.get(f"{server.url}/{query}")
        assert page.status_code == 200 and f"<h1>{title}</h1>" in page.text and "gradio-app" not in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    chinese = httpx.get(f"{server.url}/", headers={"Accept-Language": "zh-TW,zh;q=0.9,en;q=0.5"})
    assert f"<h1>{TITLE_ZH}</h1>" in chinese.text
    session = httpx.Client(base_url=server.url)
    assert session.post("/login", data={"username": USER, "password": PASSWORD}).status_code == 200
    app = session.get("/")
    assert "gradio-app" in app.text and "<h1>" not in app.text
    stale = httpx.Client(base_url=server.url)  # Gradio's cookie, with a token it never gave out
    for cookie in session.cookies.jar:
        stale.cookies.set(cookie.name, "forged")
    assert len(stale.cookies) == 2 and f"<h1>{TITLE_EN}</h1>" in stale.get("/").text
    assert httpx.get(f"{server.url}/", headers={"Host": "attacker.example"}).status_code == 403


def test_the_page_escapes_what_it_shows():
    from asr.service.language import pick_language
    from asr.service.login_page import login_page, logout_url

    page = login_page("en", '/asr"><script>alert(1)</script>')
    assert "<script>alert(1)" not in page and 'action="/asr&quot;&gt;&lt;script&gt;' in page
    assert 'action="/asr/login"' in login_page("zh", "https://example.org/asr/")
    assert logout_url("/asr/") == "/asr/logout" and logout_url("") == "/logout"
    assert pick_language("zh-CN,zh;q=0.9") == "zh" and pick_language("fr, en;q=0.2, zh;q=0.5") == "zh"
    assert pick_language("zh-CN", "en") == "en" and pick_language("de") == "en" and pick_language("zh;q=0, en") == "en"


def test_only_the_root_of_a_visitor_without_a_session_is_answered():
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from asr.service.login_page import LoginPage

    def call(path: str, method: str = "GET", user: str | None = None, root: str = "") -> tuple[int, bytes]:
        sent: list[dict] = []

        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 299, "headers": []})
            await send({"type": "http.response.body", "body": b"gradio"})

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": method, "path": path, "root_path": root, "query_string": b"lang=zh",
                 "headers": []}
        # In a thread of its own: the browser fixture's event loop may be running in this one.
        with ThreadPoolExecutor(1) as thread:
            thread.submit(asyncio.run, LoginPage(app, lambda s: user, "/asr")(scope, None, send)).result()
        return sent[0]["status"], sent[1]["body"]

    status, body = call("/")
    assert status == 200 and 'action="/asr/login"' in body.decode() and "离线语音识别" in body.decode()
    assert call("/asr/", root="/asr")[0] == 200 and call("/", method="HEAD") == (200, b"")
    assert call("/", user=USER) == (299, b"gradio")  # logged in: Gradio's app
    for path in ("/login", "/config", "/logout", "/gradio_api/info", "/v1/jobs"):
        assert call(path) == (299, b"gradio"), path
    assert call("/", method="POST") == (299, b"gradio")
