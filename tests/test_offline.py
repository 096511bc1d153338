"""Zero network access: loading the models and transcribing a file, with every socket connect and
DNS look-up made to fail from the first line of the process (before any import)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO, TEST_CONFIG

GUARDED_RUN = r"""
import json, socket, sys
attempts = []
def deny(*args, **kwargs):
    attempts.append(repr(args)[:200])
    raise OSError("network access blocked by the offline test")
socket.socket.connect = deny
socket.socket.connect_ex = deny
socket.create_connection = deny
socket.getaddrinfo = deny
socket.gethostbyname = deny

from asr.cli import main
code = main(["transcribe", sys.argv[1], "--config", sys.argv[2], "--out", sys.argv[3], "--format", "srt,json"])
code_vad = main(["vad", sys.argv[1], "--config", sys.argv[2]])
ours = list(attempts)
# control: the guard really sees a connection attempt
import urllib.request
try:
    urllib.request.urlopen("http://127.0.0.1:9/", timeout=1)
except OSError:
    pass
print(json.dumps({"code": code, "code_vad": code_vad, "attempts": ours, "control": len(attempts) - len(ours)}))
"""


def test_models_load_and_transcribe_with_the_network_blocked(test_models, speech_wav, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", GUARDED_RUN, str(speech_wav), str(TEST_CONFIG), str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["control"] > 0, "the socket guard did not see the control connection"
    assert report["attempts"] == [], report["attempts"]
    assert report["code"] == 0 and report["code_vad"] == 0, done.stderr[-2000:]
    transcript = json.loads((tmp_path / f"{speech_wav.stem}.json").read_text(encoding="utf-8"))
    assert transcript["text"] and transcript["segments"]
