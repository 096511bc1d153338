#!/usr/bin/env python3
"""Start-up and first-request benchmark, side by side with FunASR's AutoModel.

    .venv/bin/python scripts/bench_startup.py            # full-size models, 5 rounds (~3 min)
    .venv/bin/python scripts/bench_startup.py --smoke    # tiny models, 1 round, nothing written

Each round starts, in fresh processes and alternating:
- **AutoModel**: ``AutoModel(model, vad_model, punc_model)`` from local directories, until it returns;
- **engine**: this service's models loaded and warmed (what ``asr transcribe`` and the workers do first);
- **service**: ``asr serve`` (web UI, HTTP API and engine), until ``GET /readyz`` answers 200; then the same
  30 s file is sent to ``POST /v1/audio/transcriptions`` three times, to show whether the first request after
  start pays for anything the warm-up missed.

One unmeasured round runs first, so the page cache is warm and the converted int8/bf16 checkpoints exist
(start-up targets are for a warm page cache). A full run replaces its own block of docs/BENCHMARKS.md
(``<!-- bench:startup -->``), nothing else.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml
from bench import model_dirs
from bench_report import DOC, invocation, publish, stamp

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "bench-startup"
REQUESTS = 3


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASR_")}
    env.update(GRADIO_ANALYTICS_ENABLED="False", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return env


def write_config(models_root: Path) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    config = {
        "models": {"cache_dir": str(models_root)},
        "runtime": {"device": "cpu", "precision": "auto"},
        "storage": {"state_dir": str(CACHE / "state"), "cache_dir": str(CACHE / "cache")},
    }
    path = CACHE / f"config-{models_root.name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def time_automodel(models_root: Path) -> float:
    dirs = model_dirs(models_root)
    code = (
        "import os, sys\nfrom funasr import AutoModel\n"
        "AutoModel(model=sys.argv[1], vad_model=sys.argv[2], punc_model=sys.argv[3], device='cpu', "
        "ncpu=os.cpu_count(), disable_update=True, disable_pbar=True, log_level='ERROR')\n"
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(dirs["asr"]), str(dirs["vad"]), str(dirs["punc"])],
                   check=True, cwd=CACHE, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def time_engine(config: Path) -> float:
    code = (
        "import sys\nfrom asr.config import load_settings\nfrom asr.core.pipeline import build_pipeline\n"
        "build_pipeline(load_settings(sys.argv[1])).warm_up()\n"
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(config)], check=True, cwd=REPO, env=environment(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_service(config: Path, audio: Path) -> tuple[float, list[float]]:
    """Seconds from process start to /readyz 200, then the wall time of each transcription request."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "asr", "serve", "--config", str(config), "--port", str(port)],
                                   cwd=REPO, env=environment(), stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT)
        try:
            with httpx.Client(trust_env=False, timeout=300) as client:
                while True:
                    if process.poll() is not None:
                        log.seek(0)
                        raise SystemExit(f"asr serve exited ({process.returncode}):\n"
                                         f"{log.read().decode(errors='replace')[-3000:]}")
                    try:
                        if client.get(url + "/readyz", timeout=2).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.02)
                ready = time.perf_counter() - started
                requests = []
                for _ in range(REQUESTS):
                    sent = time.perf_counter()
                    with audio.open("rb") as f:
                        answer = client.post(url + "/v1/audio/transcriptions", files={"file": (audio.name, f)})
                    answer.raise_for_status()
                    requests.append(time.perf_counter() - sent)
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return ready, requests


def make_request_audio(seconds: float) -> Path:
    from mandarin_speech import SENTENCES, speak, write_speech

    path = CACHE / f"request_{seconds:g}s_16k.wav"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        clips, rate = speak(SENTENCES, to_16k=True)
        write_speech(path, seconds, clips, rate, seed=seconds)
    return path


def render(rounds: list[dict], audio_s: float, stamped: str, smoke: bool) -> str:
    def med(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    first = [r["requests"][0] for r in rounds]
    later = [t for r in rounds for t in r["requests"][1:]]
    lines = [
        stamped, "",
        f"{len(rounds)} rounds, each configuration in a fresh process, alternating; medians. "
        f"All three {'tiny test' if smoke else 'full-size'} models, `precision: auto` (int8 on a CPU with VNNI), "
        "warm page cache (one unmeasured round first).", "",
        "| from process start to | seconds |", "|---|---|",
        f"| FunASR `AutoModel(model, vad_model, punc_model)` returned (no warm-up) | {med('automodel'):.2f} |",
        f"| this service's engine: models loaded and warmed | {med('engine'):.2f} |",
        f"| `asr serve` (web UI + HTTP API + engine): `GET /readyz` answers 200 | {med('service'):.2f} |",
        "",
        f"Then {REQUESTS} requests, one after another, of the same {audio_s:g} s file to `POST "
        "/v1/audio/transcriptions`:", "",
        "| request | seconds (median over rounds) |", "|---|---|",
        f"| the first after start | {statistics.median(first):.2f} |",
        f"| the ones after it | {statistics.median(later):.2f} |",
        "",
        "The service's start-up is the engine's plus importing Gradio, building the UI and binding the port; "
        "the models load in a thread while the UI is built.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny models, one round, nothing written")
    parser.add_argument("--repeat", type=int, default=5, help="measured rounds (default 5)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the request audio (default 30)")
    parser.add_argument("--out", type=Path, default=DOC, help="the doc whose startup block a full run replaces")
    args = parser.parse_args(argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per readiness poll
    sys.path.insert(0, str(REPO))
    import make_test_models

    if args.smoke:
        models_root, args.repeat, args.seconds = REPO / ".cache" / "test-models", 1, 5.0
        make_test_models.main(["--out", str(models_root)])
    else:
        models_root = REPO / ".cache" / "full-models"
        make_test_models.main(["--full", "--out", str(models_root)])
    config = write_config(models_root)
    audio = make_request_audio(args.seconds)
    time_engine(config)  # the unmeasured round: page cache, converted checkpoints
    time_service(config, audio)
    time_automodel(models_root)
    rounds = []
    for round_ in range(args.repeat):
        row = {"automodel": time_automodel(models_root), "engine": time_engine(config)}
        row["service"], row["requests"] = time_service(config, audio)
        rounds.append(row)
        print(f"round {round_ + 1}: AutoModel {row['automodel']:.2f} s, engine {row['engine']:.2f} s, "
              f"service ready {row['service']:.2f} s, requests {', '.join(f'{t:.2f}' for t in row['requests'])} s",
              file=sys.stderr)
    section = render(rounds, args.seconds, stamp(invocation(argv)), args.smoke)
    publish({"startup": section}, args.out, write=not args.smoke)
    return 0


if __name__ == "__main__":
    sys.exit(main())
