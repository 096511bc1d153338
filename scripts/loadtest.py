#!/usr/bin/env python3
"""Load and soak test of the running service, on loopback only, bounded in count and time.

    # start a server on the tiny test models (queue of M, C workers) and burst N clients at it
    .venv/bin/python scripts/loadtest.py burst --clients 12 --max-size 4 --workers 1
    # many short jobs for a while: RSS, open files and temp-dir size should stay flat
    .venv/bin/python scripts/loadtest.py soak --seconds 300 --clients 3
    # either against a server you started yourself (loopback addresses only)
    .venv/bin/python scripts/loadtest.py burst --url http://127.0.0.1:6006 --clients 12 ...

Burst: N clients submit at the same moment to `POST /v1/audio/transcriptions`. With a queue of
M and C workers, exactly N - M - C must be refused at once with 503 "busy", and every accepted
job must complete. It reports p50/p95 latency, the refusal latency, and the server's RSS and
temp-dir size before and after. Soak: clients send short jobs back to back for a set time;
every few seconds it samples RSS, open file descriptors and the temp dir.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx

REPO = Path(__file__).resolve().parent.parent
MAX_CLIENTS = 64
MAX_SECONDS = 3600


def require_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(f"refusing to load-test {host!r}: only loopback addresses (127.0.0.0/8, ::1) are allowed")


def make_audio(directory: Path, seconds: float, name: str) -> Path:
    """Mandarin speech from espeak-ng, repeated to ``seconds``."""
    import numpy as np
    import soundfile as sf

    path = directory / name
    if path.exists():
        return path
    wav = directory / "sentence.wav"
    subprocess.run(["espeak-ng", "-v", "cmn", "-w", str(wav), "今天天气很好，我们去公园散步吧。你觉得怎么样？"],
                   check=True)
    sentence, rate = sf.read(wav, dtype="float32")
    unit = np.concatenate([sentence, np.zeros(int(rate * 0.7), np.float32)])
    sf.write(path, np.tile(unit, int(seconds * rate / len(unit)) + 1)[: int(seconds * rate)], rate, subtype="PCM_16")
    return path


class Target:
    """The server under test, and how to read its process and temp dir from outside."""

    def __init__(self, url: str, pid: int | None, cache_dir: Path | None):
        self.url, self.pid, self.cache_dir = url, pid, cache_dir

    def rss_mb(self) -> float | None:
        if self.pid is None:
            return None
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return None

    def open_files(self) -> int | None:
        return len(os.listdir(f"/proc/{self.pid}/fd")) if self.pid else None

    def temp_mb(self) -> float | None:
        if self.cache_dir is None:
            return None
        return sum(p.stat().st_size for p in self.cache_dir.rglob("*") if p.is_file()) / 2**20


def start_server(directory: Path, max_size: int, workers: int) -> tuple[subprocess.Popen, Target]:
    sys.path.insert(0, str(REPO))
    from tests.server import start_server as start

    subprocess.run([sys.executable, str(REPO / "scripts" / "make_test_models.py")], check=True,
                   stdout=subprocess.DEVNULL)
    server = start(directory, REPO / ".cache" / "test-models",
                   overrides={"queue": {"max_size": max_size, "workers": workers}})
    return server.process, Target(server.url, server.process.pid, directory / "cache")


def transcribe(url: str, audio: bytes, name: str, timeout: float) -> tuple[int, float, str]:
    started = time.monotonic()
    try:
        response = httpx.post(f"{url}/v1/audio/transcriptions", files={"file": (name, audio)}, timeout=timeout)
        code, body = response.status_code, response.text[:200]
    except httpx.HTTPError as e:
        code, body = 0, repr(e)
    return code, time.monotonic() - started, body


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def burst(target: Target, clients: int, audio: Path, max_size: int, workers: int, timeout: float) -> dict:
    data = audio.read_bytes()
    before = (target.rss_mb(), target.temp_mb())
    barrier = threading.Barrier(clients)

    def one(i: int):
        barrier.wait()
        return transcribe(target.url, data, f"burst-{i}.wav", timeout)

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, range(clients)))
    time.sleep(1)
    ok = [r for r in results if r[0] == 200]
    busy = [r for r in results if r[0] == 503 and "busy" in r[2]]
    other = [r for r in results if r not in ok and r not in busy]
    expected_refused = max(0, clients - max_size - workers)
    return {
        "clients": clients, "max_size": max_size, "workers": workers,
        "accepted_completed": len(ok), "refused_busy": len(busy), "other": [(r[0], r[2]) for r in other],
        "expected_refused": expected_refused, "exact": len(busy) == expected_refused and not other,
        "p50_s": percentile([r[1] for r in ok], 0.5), "p95_s": percentile([r[1] for r in ok], 0.95),
        "refusal_max_s": max((r[1] for r in busy), default=0.0),
        "rss_mb": (before[0], target.rss_mb()), "temp_mb": (before[1], target.temp_mb()),
    }


def soak(target: Target, clients: int, audio: Path, seconds: float, timeout: float, every: float = 5.0) -> dict:
    data = audio.read_bytes()
    deadline = time.monotonic() + seconds
    counts = {"ok": 0, "busy": 0, "other": 0}
    lock = threading.Lock()

    def loop(i: int) -> None:
        n = 0
        while time.monotonic() < deadline:
            code, _, body = transcribe(target.url, data, f"soak-{i}-{n}.wav", timeout)
            with lock:
                counts["ok" if code == 200 else "busy" if code == 503 else "other"] += 1
            if code == 503:
                time.sleep(0.5)
            n += 1

    samples = []
    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    while time.monotonic() < deadline:
        samples.append((round(seconds - (deadline - time.monotonic())), target.rss_mb(), target.open_files(),
                        target.temp_mb()))
        time.sleep(every)
    for t in threads:
        t.join(timeout)
    samples.append((round(seconds), target.rss_mb(), target.open_files(), target.temp_mb()))
    return {"clients": clients, "seconds": seconds, "counts": counts, "samples": samples}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["burst", "soak"])
    parser.add_argument("--url", help="a running server (loopback only); default: start one on the test models")
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--max-size", type=int, default=4, help="queue.max_size of the server it starts")
    parser.add_argument("--workers", type=int, default=1, help="queue.workers of the server it starts")
    parser.add_argument("--audio-s", type=float, default=None, help="length of each request's audio")
    parser.add_argument("--seconds", type=float, default=120, help="soak duration")
    parser.add_argument("--timeout", type=float, default=600, help="per-request timeout")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS or not 0 < args.seconds <= MAX_SECONDS:
        raise SystemExit(f"--clients must be 1..{MAX_CLIENTS} and --seconds at most {MAX_SECONDS}")
    work = Path(tempfile.mkdtemp(prefix="asr-loadtest-"))
    process = None
    if args.url:
        require_loopback(args.url)
        target = Target(args.url.rstrip("/"), None, None)
    else:
        process, target = start_server(work / "server", args.max_size, args.workers)
    try:
        # burst: long enough that no job ends while the burst arrives; soak: short jobs
        seconds = args.audio_s or (120 if args.mode == "burst" else 8)
        audio = make_audio(work, seconds, f"speech-{seconds:g}s.wav")
        if args.mode == "burst":
            report = burst(target, args.clients, audio, args.max_size, args.workers, args.timeout)
        else:
            report = soak(target, args.clients, audio, args.seconds, args.timeout)
        print(report)
        return 0 if args.mode == "soak" or report["exact"] else 1
    finally:
        if process is not None:
            process.terminate()
            process.wait(30)
        shutil.rmtree(work, ignore_errors=True)  # the server's state and uploads, the generated audio


if __name__ == "__main__":
    sys.exit(main())
