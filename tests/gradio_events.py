"""Drive the UI's events over plain HTTP, as the browser does: upload, queue/join, the event stream.

    path = upload(url, wav_path)
    outcome = run_event(url, "transcribe", [[file_data(path)], None, True, ["srt"], True, False, 0, ""])
    outcome.success, outcome.output (the outputs' values) or outcome.error (the gr.Error text)
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


@dataclass
class Outcome:
    success: bool
    output: list[Any] | None
    error: str | None


def upload(url: str, path: Path, name: str | None = None, **kwargs: Any) -> str:
    response = httpx.post(f"{url}/gradio_api/upload", files=[("files", (name or path.name, path.read_bytes()))],
                          timeout=60, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()[0]


def file_data(path: str, name: str | None = None) -> dict[str, Any]:
    return {"path": path, "orig_name": name or Path(path).name, "meta": {"_type": "gradio.FileData"}}


def fn_index(url: str, api_name: str, **kwargs: Any) -> int:
    config = httpx.get(f"{url}/config", timeout=30, **kwargs).json()
    return next(i for i, d in enumerate(config["dependencies"]) if d.get("api_name") == api_name)


def join(url: str, api_name: str, data: list[Any], session: str | None = None, route: str = "queue/join",
         **kwargs: Any) -> httpx.Response:
    body = {"data": data, "fn_index": fn_index(url, api_name, **kwargs), "session_hash": session or uuid.uuid4().hex,
            "event_data": None, "trigger_id": None}
    return httpx.post(f"{url}/gradio_api/{route}", json=body, timeout=30, **kwargs)


def run_event(url: str, api_name: str, data: list[Any], timeout: float = 120, **kwargs: Any) -> Outcome:
    session = uuid.uuid4().hex
    joined = join(url, api_name, data, session, **kwargs)
    assert joined.status_code == 200, joined.text
    with httpx.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session},
                      timeout=timeout, **kwargs) as events:
        for line in events.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("msg") == "process_completed":
                output = message.get("output") or {}
                if message.get("success"):
                    return Outcome(True, output.get("data"), None)
                return Outcome(False, None, output.get("error"))
    raise AssertionError("the event stream ended without a result")
