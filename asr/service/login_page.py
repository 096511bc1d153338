"""Our login page, served in place of Gradio's when logins are on (``server.auth``).

Gradio's own page names no product, empties the user name after a wrong password and speaks only
English. Ours answers ``GET /`` (any query) for a visitor without a valid Gradio session and logs in
through Gradio's own ``POST /login``, so the sessions, the cookies, ``GET /logout`` and every guard
in front of ``/login`` (LoginGuard's back-off, HostGuard's Host and Origin checks) stay as they are.

    add_login_page(app, ui_user, settings.server.root_path)   # in server.create_app

The page is one HTML document with its CSS and JS inline (nothing from the network: it works through
an SSH tunnel), in English or Chinese after the browser's Accept-Language, ``?lang=en|zh`` to switch.
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import urllib.parse
from collections.abc import Callable
from typing import Any

from asr.service.language import LANGUAGES, Language, base_path, headers_language, is_root, language_cookie

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
ASGIApp = Callable[..., Any]

#: what the page says -> (English, Chinese). ``{seconds}`` and ``{status}`` are filled in by the page.
STRINGS: dict[str, tuple[str, str]] = {
    "title": ("Offline speech recognition", "离线语音识别"),
    "subtitle": ("Paraformer-large · 中文", "Paraformer-large · 中文"),
    "user": ("User name", "用户名"),
    "password": ("Password", "密码"),
    "submit": ("Sign in", "登录"),
    "busy": ("Signing in…", "正在登录…"),
    "wrong": ("Wrong user name or password", "用户名或密码错误"),
    "wait": ("Too many failed sign-ins: try again in {seconds} s", "登录失败次数过多，请 {seconds} 秒后再试"),
    "failed": ("Sign-in failed (HTTP {status}); try again", "登录失败（HTTP {status}），请重试"),
    "offline": ("The server cannot be reached; try again", "无法连接服务器，请重试"),
    "noscript": ("This page needs JavaScript.", "此页面需要启用 JavaScript。"),
    "switch": ("中文", "English"),  # the link to the other language, written in that language
}

#: The page's <html lang> and the other language's ?lang= value, per language.
_HTML_LANG = {"en": "en", "zh": "zh-CN"}
_OTHER: dict[str, Language] = {"en": "zh", "zh": "en"}

_STYLE = """
:root { color-scheme: light dark; --fg: #1f2937; --muted: #6b7280; --bg: #f3f4f6; --card: #fff;
  --line: #d1d5db; --accent: #ea580c; --bad: #b91c1c; }
@media (prefers-color-scheme: dark) { :root { --fg: #e5e7eb; --muted: #9ca3af; --bg: #111827; --card: #1f2937;
  --line: #4b5563; --bad: #f87171; } }
* { box-sizing: border-box; }
body { margin: 0; min-height: 100vh; display: flex; align-items: center; justify-content: center;
  background: var(--bg); color: var(--fg); font: 16px/1.5 system-ui, "Noto Sans CJK SC", sans-serif; }
main { width: 26rem; max-width: calc(100vw - 2rem); background: var(--card); border: 1px solid var(--line);
  border-radius: 12px; padding: 2rem; }
h1 { margin: 0; font-size: 1.375rem; }
.subtitle { margin: 0 0 1.5rem; color: var(--muted); }
label { display: block; margin: 1rem 0 .25rem; font-weight: 600; }
input { width: 100%; padding: .5rem .75rem; font: inherit; color: inherit; background: transparent;
  border: 1px solid var(--line); border-radius: 6px; }
input:focus { outline: 2px solid var(--accent); outline-offset: 1px; }
button { width: 100%; margin-top: 1.5rem; padding: .6rem; font: inherit; font-weight: 600; color: #fff;
  background: var(--accent); border: 0; border-radius: 6px; cursor: pointer; }
button:disabled { opacity: .6; cursor: wait; }
.message { margin: 1rem 0 0; color: var(--bad); }
.message:empty { display: none; }
.lang { margin: 1.5rem 0 0; text-align: right; font-size: .9rem; }
.lang a { color: var(--muted); }
"""

# Gradio answers 200 (and sets its session cookie) or 400; LoginGuard answers 429 with Retry-After.
_SCRIPT = """
(function () {
  var form = document.getElementById("login"), data = form.dataset;
  var user = form.elements.username, password = form.elements.password;
  var button = form.querySelector("button"), label = button.textContent;
  var message = document.getElementById("message"), timer = null;
  function say(text) { message.textContent = text; }
  function ready() { button.disabled = false; button.textContent = label; }
  function wait(seconds) {
    clearInterval(timer);
    function tick() {
      if (seconds <= 0) { clearInterval(timer); ready(); say(""); return; }
      say(data.wait.replace("{seconds}", seconds));
      seconds -= 1;
    }
    button.textContent = label;
    tick();
    timer = setInterval(tick, 1000);
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (button.disabled) { return; }
    button.disabled = true;
    button.textContent = data.busy;
    say("");
    fetch(form.getAttribute("action"), {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/x-www-form-urlencoded"},
      body: new URLSearchParams({username: user.value, password: password.value}).toString()
    }).then(function (response) {
      if (response.ok) { location.reload(); return; }
      if (response.status === 429) {
        wait(Math.max(1, parseInt(response.headers.get("Retry-After"), 10) || 1));
        return;
      }
      ready();
      if (response.status === 400) {
        password.value = "";
        say(data.wrong);
      } else {
        say(data.failed.replace("{status}", response.status));
      }
      password.focus();
    }, function () { ready(); say(data.offline); });
  });
})();
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# Only our own inline style and script may run (by hash: they never change), only our own origin
# be fetched or posted to, and no other site may frame the page (clickjacking of the password).
_HEADERS = {
    "content-security-policy": (
        f"default-src 'none'; style-src {_csp_hash(_STYLE)}; script-src {_csp_hash(_SCRIPT)}; "
        "connect-src 'self'; form-action 'self'; img-src data:; base-uri 'none'; frame-ancestors 'none'"),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",  # the same URL is the app once logged in
    "vary": "Accept-Language, Cookie",
}


def logout_url(root_path: str = "") -> str:
    """Where a "log out" link points: Gradio's ``GET /logout``, which ends every session of the user,
    deletes the cookies and redirects to the root, where the login page then appears."""
    return base_path(root_path) + "/logout"


def login_page(language: Language, root_path: str = "") -> str:
    """The whole login page in ``language``, posting to ``{root_path}/login``."""
    text = {key: html.escape(pair[1] if language == "zh" else pair[0]) for key, pair in STRINGS.items()}
    base = html.escape(base_path(root_path))
    other = _OTHER[language]
    messages = " ".join(f'data-{key}="{text[key]}"' for key in ("busy", "wrong", "wait", "failed", "offline"))
    return f"""<!DOCTYPE html>
<html lang="{_HTML_LANG[language]}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{text["title"]}</title>
<link rel="icon" href="data:,">
<style>{_STYLE}</style>
</head>
<body>
<main>
<h1>{text["title"]}</h1>
<p class="subtitle">{text["subtitle"]}</p>
<form id="login" method="post" action="{base}/login" {messages}>
<label for="username">{text["user"]}</label>
<input id="username" name="username" autocomplete="username" autocapitalize="none" spellcheck="false" required autofocus>
<label for="password">{text["password"]}</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<p id="message" class="message" role="alert"></p>
<button type="submit">{text["submit"]}</button>
</form>
<noscript><p class="message">{text["noscript"]}</p></noscript>
<p class="lang"><a href="{base}/?lang={other}" hreflang="{_HTML_LANG[other]}" lang="{_HTML_LANG[other]}">{text["switch"]}</a></p>
</main>
<script>{_SCRIPT}</script>
</body>
</html>
"""


class LoginPage:
    """ASGI middleware: ``GET /`` (and ``HEAD``) from a visitor without a valid Gradio session gets
    our login page; everything else, a logged-in visitor's ``/`` included, goes on to the app.
    ``user_of(scope)`` names the session's user, None without one."""

    def __init__(self, app: ASGIApp, user_of: Callable[[Scope], str | None], root_path: str = ""):
        self.app = app
        self.user_of = user_of
        self.root_path = root_path

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if (scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or not is_root(scope)
                or self.user_of(scope) is not None):
            return await self.app(scope, receive, send)
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        asked = (query.get("lang") or [""])[0]
        language = headers_language({"accept-language": _header(scope, b"accept-language"),
                                     "cookie": _header(scope, b"cookie")}, asked)
        body = login_page(language, self.root_path).encode()
        headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode())]
        headers += [(k.encode(), v.encode()) for k, v in _HEADERS.items()]
        if asked in LANGUAGES:  # the switch's choice holds for the UI once signed in, too
            headers.append(language_cookie(asked, self.root_path))  # type: ignore[arg-type]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


def add_login_page(app: Any, ui_user: Callable[[Any], str | None], root_path: str = "") -> None:
    """Serve our login page in front of the mounted Gradio app. ``ui_user(request)`` is the server's
    reader of Gradio's session cookie (a Starlette request in, the user or None out)."""
    from starlette.requests import Request

    app.add_middleware(LoginPage, user_of=lambda scope: ui_user(Request(scope)), root_path=root_path)
    logger.debug("the UI's login page is ours (Gradio's is not shown)")


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers") or []:
        if key == name:
            return value.decode("latin-1")
    return ""
