"""The UI's words in both languages (asr.service.ui_text), and how a page's language is chosen
(asr.service.language): fast, in-process; the browser side is tests/test_ui_language.py."""

from __future__ import annotations

import re
import string

import httpx
import pytest

from asr.service.language import LANGUAGE_COOKIE, UiLanguage, headers_language
from asr.service.ui_text import GRADIO_GAPS, GRADIO_LOCALE, UI_TEXT, gradio_translations, ui_text
from tests.conftest import REPO

CJK = re.compile(r"[\u4e00-\u9fff\uff00-\uffef]")  # Chinese characters or full-width punctuation
#: words that are the same in both languages: names, formats and units a Chinese reader knows as they are
SAME_IN_BOTH = {"vad.csv", "vad.col.number", "history.col.rtf", "system.cpu"}


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@pytest.mark.parametrize("key", sorted(UI_TEXT))
def test_every_word_of_the_ui_is_in_english_and_in_chinese(key):
    english, chinese = UI_TEXT[key]
    assert english.strip() and chinese.strip()
    assert _fields(english) == _fields(chinese), "both languages fill in the same parameters"
    if key == "app.switch":
        assert CJK.search(english) and not CJK.search(chinese)  # each names the other language, in it
    elif key not in SAME_IN_BOTH:
        assert CJK.search(chinese), f"{key}: {chinese!r} is not Chinese"


def test_every_key_app_py_uses_exists_and_every_key_is_used():
    """app.py names its words by key; a typo would show a raw key in someone's browser (Gradio's own
    ``common.upload`` did), and a key nothing uses is a word that was forgotten when its UI went."""
    source = (REPO / "app.py").read_text(encoding="utf-8")
    literal = set(re.findall(r'(?:static_text|ui_text|t|say|fact)\(\s*["\']([a-z_]+\.[a-z_.]*[a-z_])["\']', source))
    assert literal, "the scan found no keys"
    assert literal - set(UI_TEXT) == set()
    # keys made from a prefix and a value: the prefix appears in app.py as an f-string
    prefixes = set(re.findall(r'f["\']([a-z_]+\.(?:[a-z_]+\.)*)\{', source))
    unused = {k for k in UI_TEXT if k not in literal and not any(k.startswith(p) for p in prefixes)}
    assert unused == set()


def test_gradio_gets_both_tables_with_its_own_gap_filled():
    tables = gradio_translations()
    assert set(tables) == set(GRADIO_LOCALE.values()) == {"en", "zh-CN"}
    assert tables["zh-CN"]["tab.history"] == "历史记录" and tables["en"]["tab.history"] == "History"
    assert tables["zh-CN"]["common.upload"] == "上传"  # Gradio 6.31's Chinese table lacks it
    assert set(GRADIO_GAPS) <= set(tables["en"])


def test_ui_text_fills_in_parameters_and_refuses_unknown_keys():
    assert ui_text("card.waiting", "zh", position=2) == "排队等待（第 2 位）"
    assert ui_text("card.waiting", "en", position=2) == "waiting in queue (position 2)"
    with pytest.raises(KeyError):
        ui_text("no.such.key", "en")


@pytest.mark.parametrize(("headers", "asked", "expected"), [
    ({"accept-language": "zh-CN,zh;q=0.9"}, "", "zh"),
    ({"accept-language": "en-US"}, "", "en"),
    ({"accept-language": "en-US", "cookie": f"{LANGUAGE_COOKIE}=zh"}, "", "zh"),  # the switch beats the browser
    ({"accept-language": "zh-CN", "cookie": f"other=1; {LANGUAGE_COOKIE}=en"}, "", "en"),
    ({"accept-language": "zh-CN", "cookie": f"{LANGUAGE_COOKIE}=fr"}, "", "zh"),  # a bad cookie is ignored
    ({"accept-language": "zh-CN", "cookie": 'bad"cookie'}, "", "zh"),
    ({"accept-language": "zh-CN", "cookie": f"{LANGUAGE_COOKIE}=zh"}, "en", "en"),  # ?lang= beats the cookie
    ({}, "", "en"),
])
def test_the_language_of_a_request(headers, asked, expected):
    assert headers_language(headers, asked) == expected


PAGE = b"<!doctype html><html><head><title>t</title></head><body>app</body></html>"


async def _gradio_like(scope, receive, send):
    """What Gradio's page route answers: HTML at /, JSON elsewhere."""
    html = scope["path"] == "/"
    body = PAGE if html else b'{"ok": true}'
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/html; charset=utf-8" if html else b"application/json"),
        (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _client() -> httpx.AsyncClient:
    app = UiLanguage(_gradio_like, locale_of=GRADIO_LOCALE, root_path="/asr")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


@pytest.mark.anyio
async def test_the_page_tells_gradio_its_language_and_the_switch_is_kept_in_a_cookie():
    async with _client() as client:
        chinese = await client.get("/", headers={"accept-language": "zh-CN,zh;q=0.9"})
        assert chinese.status_code == 200
        assert chinese.text.startswith('<!doctype html><html><head><script>(function(){var l="zh-CN";')
        assert int(chinese.headers["content-length"]) == len(chinese.content)  # not the original's length
        assert "set-cookie" not in chinese.headers and "Cookie" in chinese.headers["vary"]

        switched = await client.get("/?lang=en", headers={"accept-language": "zh-CN"})
        assert 'var l="en";' in switched.text
        cookie = switched.headers["set-cookie"]
        assert cookie.startswith(f"{LANGUAGE_COOKIE}=en;") and "Path=/asr" in cookie and "Max-Age=" in cookie

        kept = await client.get("/", headers={"accept-language": "zh-CN", "cookie": f"{LANGUAGE_COOKIE}=en"})
        assert 'var l="en";' in kept.text

        other = await client.get("/config", headers={"accept-language": "zh-CN"})
        assert other.content == b'{"ok": true}' and "vary" not in other.headers


@pytest.fixture
def anyio_backend():
    return "asyncio"
