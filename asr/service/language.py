"""Which language, English or Chinese, a browser is answered in: one choice for the whole UI.

The choice is the ``asr_lang`` cookie (set by the UI's language switch, ``?lang=en|zh``), else the
browser's Accept-Language, else English. The server renders its own text (cards, messages, errors)
in it, and the page tells Gradio's client the same, so that Gradio's strings and ours agree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

Language = Literal["en", "zh"]

LANGUAGES: tuple[Language, ...] = ("en", "zh")

#: the cookie that keeps a browser's choice from the switch
LANGUAGE_COOKIE = "asr_lang"


def pick_language(accept_language: str, asked: str = "") -> Language:
    """``asked`` (the ?lang= value or the cookie) when it is en or zh, else the browser's most preferred
    of the two (an Accept-Language of zh, zh-CN, zh-TW ... is Chinese), else English."""
    for tag in [asked, *_preferred(accept_language)]:
        primary = tag.strip().lower().split("-", 1)[0]
        if primary in LANGUAGES:
            return primary  # type: ignore[return-value]
    return "en"


def _preferred(accept_language: str) -> list[str]:
    """The tags of an Accept-Language header, most preferred first (a bad q counts as 0)."""
    ranked = []
    for position, entry in enumerate(accept_language.split(",")):
        tag, _, params = entry.partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag.strip() and quality > 0:
            ranked.append((-quality, position, tag.strip()))
    return [tag for _, _, tag in sorted(ranked)]


def cookie_language(cookie_header: str) -> str:
    """The ``asr_lang`` value of a Cookie header ("" when it has none)."""
    jar = SimpleCookie()
    try:
        jar.load(cookie_header or "")
    except CookieError:
        return ""
    morsel = jar.get(LANGUAGE_COOKIE)
    return morsel.value if morsel is not None else ""


def headers_language(headers: Mapping[str, str], asked: str = "") -> Language:
    """The language of a request with these headers: ``asked``, the switch's cookie, Accept-Language."""
    choice = asked if asked in LANGUAGES else cookie_language(headers.get("cookie", ""))
    return pick_language(headers.get("accept-language", ""), choice)


#: the page's own choice, run before Gradio's client starts (it reads navigator.language once, then)
_LOCALE_SCRIPT = ("<script>(function(){{var l={locale};"
                  "Object.defineProperty(Navigator.prototype,'language',{{get:function(){{return l}}}});"
                  "Object.defineProperty(Navigator.prototype,'languages',{{get:function(){{return [l]}}}});"
                  "document.documentElement.lang=l;}})();</script>")


class UiLanguage:
    """ASGI middleware for the UI's page (``GET /``): picks its language (``?lang=`` from the switch,
    which is then kept in a cookie; else the cookie; else Accept-Language) and tells Gradio's client,
    so that Gradio's words follow the choice and not only the browser's setting. Other paths pass by.

    ``locale_of`` maps a language to the client's locale tag (asr.service.ui_text.GRADIO_LOCALE)."""

    def __init__(self, app: Any, locale_of: Mapping[str, str], root_path: str = ""):
        self.app = app
        self.locale_of = locale_of
        self.root_path = root_path

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or not is_root(scope):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        asked = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("lang") or [""])[0]
        language = headers_language(headers, asked)
        script = _LOCALE_SCRIPT.format(locale=json.dumps(self.locale_of[language])).encode()
        extra = [(b"vary", b"Accept-Language, Cookie")]
        if asked in LANGUAGES:  # the switch
            extra.append(language_cookie(asked, self.root_path))
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def rewrite(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if not start:
                return await send(message)
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            kept = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            html = any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in kept)
            if start.get("status") == 200 and html and b"<head>" in body:
                body = body.replace(b"<head>", b"<head>" + script, 1)
                kept += extra
            length = str(len(body)).encode() if scope["method"] == "GET" else _length(start)
            await send({**start, "headers": kept + [(b"content-length", length)]})
            await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})
            start.clear()

        await self.app(scope, receive, rewrite)


def language_cookie(language: Language, root_path: str = "") -> tuple[bytes, bytes]:
    """The Set-Cookie header that keeps the switch's choice for a year, for every page under the UI."""
    path = base_path(root_path) or "/"
    return b"set-cookie", f"{LANGUAGE_COOKIE}={language}; Path={path}; Max-Age=31536000; SameSite=Lax".encode()


def _length(start: dict[str, Any]) -> bytes:
    return next((v for k, v in start.get("headers", []) if k.lower() == b"content-length"), b"0")


def base_path(root_path: str) -> str:
    """The path the browser reaches the UI under, without the trailing slash: ``server.root_path``,
    which may also be given as a full URL (as Gradio allows)."""
    return urlsplit(root_path or "").path.rstrip("/")


def is_root(scope: dict[str, Any]) -> bool:
    """The UI's root (``/`` below the app's root path, where Gradio serves its page)."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    return path in ("", "/")
