#!/usr/bin/env python3
"""Batch throughput: `asr batch` locally vs on Ray with 1 and 2 CPU workers, on the same generated files.

    .venv/bin/python scripts/bench_batch.py                     # full-size models, 24 files of 30 s
    .venv/bin/python scripts/bench_batch.py --tiny --files 8    # tiny test models: a quick check

Each configuration is the real command in a process of its own (``asr batch DIR --out ...``, with
``--ray local --workers N`` for Ray: a private Ray instance with every CPU of this machine), on
espeak-ng Mandarin files made once under .cache/bench-batch. Reported per configuration:

* wall: the whole command, start-up included (Python, model load, Ray start and actors);
* steady: audio seconds per wall second between the first and the last file finishing
  (from the results manifest's ``finished_at``), i.e. throughput once the workers are running;
* per-file RTF: the median of the manifest's ``rtf`` (a worker's own seconds per audio second).

Rounds alternate the configurations; the table shows the median of each column over the rounds.

Needs the ray extra (`pip install -e '.[ray]'`) for the Ray rows. Random weights: speed does not
depend on weight values, so the full-size test models time like the real ones.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from mandarin_speech import SENTENCES, speak, write_speech

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "bench-batch"


def make_inputs(files: int, seconds: float) -> Path:
    """``files`` WAV files of ``seconds`` of Mandarin each: sentences in random order with pauses."""
    directory = CACHE / f"inputs-{files}x{seconds:g}s"
    if directory.is_dir() and len(list(directory.glob("*.wav"))) == files:
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    # The first nine sentences and shorter pauses: the files the numbers in docs/SCALE_OUT.md were measured on.
    clips, rate = speak(SENTENCES[:9])
    for n in range(files):
        write_speech(directory / f"file{n:03d}.wav", seconds, clips, rate, seed=n, pauses=(0.3, 0.5, 0.8, 1.2))
    return directory


def run(name: str, inputs: Path, config: Path, extra: list[str]) -> dict:
    out = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    try:
        command = [sys.executable, "-m", "asr", "batch", str(inputs), "--out", str(out), "--config", str(config),
                   "--format", "txt,srt", *extra]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASR_")}
        env["RAY_DISABLE_USAGE_STATS"] = "1"
        started = time.perf_counter()
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"{name} failed ({result.returncode}):\n{result.stderr[-3000:]}")
        entries = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    finally:
        shutil.rmtree(out, ignore_errors=True)
    audio = sum(e["audio_s"] for e in entries)
    finished = sorted((datetime.fromisoformat(e["finished_at"]), e["audio_s"]) for e in entries)
    span = (finished[-1][0] - finished[0][0]).total_seconds()
    steady = sum(a for _, a in finished[1:]) / span if span > 0 else float("nan")
    row = {"name": name, "files": len(entries), "audio_s": audio, "wall_s": wall, "x_wall": audio / wall,
           "x_steady": steady, "rtf_file": statistics.median(e["rtf"] for e in entries)}
    print(f"{name}: {len(entries)} files, {audio:.0f} s audio, wall {wall:.1f} s ({audio / wall:.1f}x real time), "
          f"steady {steady:.1f}x, per-file RTF {row['rtf_file']:.3f}", file=sys.stderr)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=30.0, help="audio per file (default 30)")
    parser.add_argument("--tiny", action="store_true", help="the tiny test models instead of full-size ones")
    parser.add_argument("--precision", default="auto", help="runtime.precision (default auto)")
    parser.add_argument("--workers", default="1,2", help="Ray worker counts to run (default 1,2)")
    parser.add_argument("--no-local", action="store_true", help="skip the local run")
    parser.add_argument("--repeat", type=int, default=2, help="rounds; the table shows medians (default 2)")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO / "scripts"))
    import make_test_models

    models = REPO / ".cache" / ("test-models" if args.tiny else "full-models")
    make_test_models.main(["--out", str(models)] + ([] if args.tiny else ["--full"]))
    inputs = make_inputs(args.files, args.seconds)
    CACHE.mkdir(parents=True, exist_ok=True)
    config = CACHE / "config.yaml"
    config.write_text(f"models:\n  cache_dir: {models}\nruntime:\n  device: cpu\n  precision: {args.precision}\n",
                      encoding="utf-8")
    runs = [] if args.no_local else [("local (1 process, all cores)", [])]
    runs += [(f"ray, {w} CPU worker(s)", ["--ray", "local", "--workers", str(w)])
             for w in (int(w) for w in args.workers.split(",") if w.strip())]
    measured: dict[str, list[dict]] = {}
    for _ in range(args.repeat):  # alternating, so that drift in machine load hits every run alike
        for name, extra in runs:
            measured.setdefault(name, []).append(run(name, inputs, config, extra))
    rows = [{key: (statistics.median(r[key] for r in results) if key != "name" else name) for key in results[0]}
            for name, results in measured.items()]

    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"{'tiny' if args.tiny else 'full-size'} models, precision {args.precision}; "
          f"{args.files} files × {args.seconds:g} s; median of {args.repeat} round(s)\n")
    print("| run | wall (incl. start-up) | × real time, whole run | × real time, steady | per-file RTF |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['wall_s']:.1f} s | {r['x_wall']:.1f} | {r['x_steady']:.1f} | {r['rtf_file']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
