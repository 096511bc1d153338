#!/usr/bin/env python3
"""Where a transcription's time goes: per stage, and per torch operator inside the model stages.

    .venv/bin/python scripts/profile_ops.py                  # full-size models, 120 s of audio (~2 min)
    .venv/bin/python scripts/profile_ops.py --smoke          # tiny models, 20 s: checks the script runs

One process loads the pipeline at the default precision, warms it up, transcribes the file once unmeasured
and once under ``torch.profiler`` (CPU activities, no shapes, no stacks: its overhead is a few percent).
The stage table is the pipeline's own clock; the operator table is the profiler's self time, summed over
every thread (decode and VAD run in a thread of their own, so the total can exceed the wall time).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench import CACHE, benchmark_models, make_audio, service_cache  # noqa: E402
from bench_report import invocation, stamp, write_section  # noqa: E402

STAGES = ("decode_s", "vad_s", "asr_s", "punc_s", "itn_s", "total_s")


def profile(models_root: Path, audio: Path, precision: str, rows: int) -> tuple[dict, list, str]:
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from asr.config import load_settings
    from asr.core.pipeline import build_pipeline

    settings = load_settings(None, models={"cache_dir": str(models_root)},
                             runtime={"device": "cpu", "precision": precision},
                             storage={"cache_dir": str(service_cache(models_root)), "state_dir": str(CACHE / "state")})
    pipeline = build_pipeline(settings)
    pipeline.warm_up()
    pipeline.transcribe(str(audio))  # unmeasured: first-file effects stay out of the profile
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        transcript = pipeline.transcribe(str(audio))
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total_us = sum(e.self_cpu_time_total for e in events) or 1
    top = [(e.key, e.count, e.self_cpu_time_total / 1e6, e.self_cpu_time_total / total_us) for e in events[:rows]]
    return transcript.timings.__dict__, top, pipeline.models.precision + f", {torch.get_num_threads()} torch threads"


def render(timings: dict, top: list, mode: str, seconds: float, smoke: bool) -> str:
    lines = [stamp(invocation()), "",
             f"{'Tiny' if smoke else 'Full-size'} models at the default precision ({mode}), {seconds:g} s of "
             "espeak-ng Mandarin, the second transcription in one process.", "",
             "| stage | " + " | ".join(s.removesuffix("_s") for s in STAGES) + " |",
             "|---|" + "---|" * len(STAGES),
             "| wall s | " + " | ".join(f"{timings.get(s, 0.0):.2f}" for s in STAGES) + " |", "",
             "| operator (self time, all threads) | calls | s | share |", "|---|---|---|---|"]
    lines += [f"| `{name}` | {count} | {secs:.2f} | {share:.1%} |" for name, count, secs, share in top]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny models, 20 s of audio, nothing written")
    parser.add_argument("--seconds", type=float, default=120.0, help="audio length (default 120)")
    parser.add_argument("--precision", default="auto", help="runtime.precision (default auto)")
    parser.add_argument("--rows", type=int, default=15, help="operators listed (default 15)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds = 20.0
    models_root = benchmark_models(args.smoke)
    audio = make_audio(args.seconds / 60, CACHE / f"zh_{args.seconds / 60:g}min_16k.wav")
    timings, top, mode = profile(models_root, audio, args.precision, args.rows)
    report = render(timings, top, mode, args.seconds, args.smoke)
    print(report)
    if not args.smoke:
        write_section(args.out, "profile", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
