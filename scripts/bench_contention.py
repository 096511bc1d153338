#!/usr/bin/env python3
"""How this service's speed holds up on a CPU that other processes keep busy.

    .venv/bin/python scripts/bench_contention.py              # full-size models, 60 s of audio, 3 rounds (~15 min)
    .venv/bin/python scripts/bench_contention.py --smoke      # tiny models, one round: checks the script runs

Each configuration transcribes the same file in a fresh process (scripts/bench.py's child, so load and run
are measured as there), first on a quiet machine, then with one busy process per CPU (a Python loop each,
at normal priority). The spin rows compare OpenMP's spin-wait before a waiting thread sleeps: GNU OpenMP's
own default (300 000 spins) against this service's (``asr/__init__.py`` sets 1 000 unless
``GOMP_SPINCOUNT`` is already set). **whole** = process start to the SRT written; **run** = the
transcription alone; **× quiet** = busy time over quiet time (fair share of the CPUs would be about 2×).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench import CACHE, benchmark_models, make_audio, measure  # noqa: E402
from bench_report import invocation, stamp, write_section  # noqa: E402

#: GNU OpenMP's documented default when neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT is set.
LIBGOMP_DEFAULT_SPINS = "300000"
SPIN_SETTINGS = {"OpenMP's default (300 000 spins)": LIBGOMP_DEFAULT_SPINS, "this service's (1 000 spins)": None}


def spin_settings(mode: str, modes: list[str]) -> list[tuple[str, str | None]]:
    """Both spin settings for the first precision; the service's alone for the rest, because every busy
    run with OpenMP's default takes minutes."""
    return list(SPIN_SETTINGS.items()) if mode == modes[0] else list(SPIN_SETTINGS.items())[1:]


@contextlib.contextmanager
def busy_cpus(count: int) -> Iterator[None]:
    """``count`` processes that keep a CPU each busy, like other work on a shared box."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


@contextlib.contextmanager
def spin_setting(value: str | None) -> Iterator[None]:
    """GOMP_SPINCOUNT for the child processes; None leaves it unset, so the service's default applies."""
    saved = os.environ.pop("GOMP_SPINCOUNT", None)
    if value is not None:
        os.environ["GOMP_SPINCOUNT"] = value
    try:
        yield
    finally:
        os.environ.pop("GOMP_SPINCOUNT", None)
        if saved is not None:
            os.environ["GOMP_SPINCOUNT"] = saved


def run_rounds(modes: list[str], audio: Path, models_root: Path, repeat: int, busy: int) -> dict[tuple, list[dict]]:
    results: dict[tuple, list[dict]] = {}
    for condition in ("quiet", "busy"):
        with busy_cpus(busy) if condition == "busy" else contextlib.nullcontext():
            for round_ in range(repeat):
                for mode in modes:
                    for label, spins in spin_settings(mode, modes):  # alternating: drift hits every row alike
                        with spin_setting(spins):
                            result = measure(mode, audio, models_root)
                        results.setdefault((mode, label, condition), []).append(result)
                        print(f"{condition} round {round_ + 1} {mode} {label}: load {result['load_s']:.2f} s, "
                              f"run {result['run_s']:.2f} s", file=sys.stderr)
    return results


def render(results: dict[tuple, list[dict]], modes: list[str], seconds: float, repeat: int, busy: int,
           smoke: bool) -> str:
    lines = [
        stamp(invocation()), "",
        f"{'Tiny' if smoke else 'Full-size'} models, {seconds:g} s of espeak-ng Mandarin, {repeat} round(s), medians; "
        f"busy = {busy} other process(es) spinning at normal priority, one per CPU. "
        "Each run is a fresh process; **whole** is process start to the SRT written, **run** the transcription "
        "alone. OpenMP's default is measured for the first precision only (its busy runs take minutes).", "",
        "| precision | OpenMP spin-wait | quiet whole s | busy whole s | × quiet | quiet run s | busy run s | × quiet |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode in modes:
        for label, _ in spin_settings(mode, modes):
            quiet, loaded = results[(mode, label, "quiet")], results[(mode, label, "busy")]

            def median(rows: list[dict], key: str) -> float:
                return statistics.median(r["load_s"] + r["run_s"] if key == "whole" else r["run_s"] for r in rows)

            qw, bw, qr, br = median(quiet, "whole"), median(loaded, "whole"), median(quiet, "run"), median(loaded, "run")
            lines.append(f"| {mode} | {label} | {qw:.2f} | {bw:.2f} | {bw / qw:.1f}× | {qr:.2f} | {br:.2f} | "
                         f"{br / qr:.1f}× |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny models, 10 s of audio, one round, nothing written")
    parser.add_argument("--seconds", type=float, default=60.0, help="audio length (default 60)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--modes", default="int8,fp32", help="precisions (default int8,fp32; int8 is the CPU default)")
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 2, help="busy processes (default: one per CPU)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.repeat = 10.0, 1
    models_root = benchmark_models(args.smoke)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    audio = make_audio(args.seconds / 60, CACHE / f"zh_{args.seconds / 60:g}min_16k.wav")
    results = run_rounds(modes, audio, models_root, args.repeat, args.busy)
    report = render(results, modes, args.seconds, args.repeat, args.busy, args.smoke)
    print(report)
    if not args.smoke:
        write_section(args.out, "contention", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
