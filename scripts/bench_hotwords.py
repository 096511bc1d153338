#!/usr/bin/env python3
"""What hotwords cost: RTF and peak RSS of SeACo-Paraformer with and without hotwords, through the
service's pipeline, printed as markdown tables (one per precision) and, after a full run, written into
docs/BENCHMARKS.md.

    .venv/bin/python scripts/bench_hotwords.py                       # full-size SeACo, 5 min audio, 3 rounds
    .venv/bin/python scripts/bench_hotwords.py --smoke               # tiny models, 20 s, 1 round: nothing written
    .venv/bin/python scripts/bench_hotwords.py --precisions fp32,int8,bf16 --hotwords 0,50,200 --minutes 10

Each configuration (precision x hotword count) runs in a fresh process (so peak RSS is its own),
alternating with the others, ``--repeat`` times; the table shows medians. The models are the
full-size random-weight test models (scripts/make_test_models.py --full; speed does not depend on
weight values) and the audio is espeak-ng Mandarin, as in scripts/bench.py. The hotwords are random
2-4 character words of the model's vocabulary, the same list for every round.

Columns: **load** = process start to the pipeline loaded and warmed; **run** = the whole file
through the pipeline (VAD, ASR, punctuation); **RTF** = run / audio seconds; **vs none** = run time
over the same precision's without hotwords; **bias embedding ms** = the bias encoder on the hotword list
(cold), which the recogniser caches per list, so a request pays it once; **peak RSS**.
Run it on a quiet machine: the numbers are wall-clock seconds. Each precision measured replaces its own
block of the doc (``<!-- bench:hotwords-PRECISION -->``) and nothing else, so an int8 run and an fp32 run
keep each other's table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_report import DOC, invocation, publish, stamp

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "bench-hotwords"


def hotword_list(count: int, seed: int = 200) -> list[str]:
    """``count`` distinct 2-4 character words of CJK characters the test vocabulary has."""
    sys.path.insert(0, str(REPO / "scripts"))
    from make_test_models import asr_tokens

    characters = [t for t in asr_tokens() if len(t) == 1 and "\u4e00" <= t <= "\u9fff"]
    rng = random.Random(seed)
    words: dict[str, None] = {}
    while len(words) < count:
        words["".join(rng.choice(characters) for _ in range(rng.randint(2, 4)))] = None
    return list(words)


# ---- one configuration, in its own process -------------------------------------------------------


def run_one(precision: str, count: str, audio: str, models_root: str, result_path: str) -> None:
    """In a child process: load, warm up, transcribe once, write a JSON result."""
    from asr.config import load_settings
    from asr.core.hotwords import resolve_hotwords
    from asr.core.pipeline import build_pipeline
    from asr.types import TranscribeOptions

    settings = load_settings(
        None, models={"cache_dir": models_root, "asr_model": "seaco"},
        runtime={"device": "cpu", "precision": precision},
        storage={"cache_dir": str(CACHE / "service-cache" / Path(models_root).name), "state_dir": str(CACHE / "state")},
    )
    words = resolve_hotwords(hotword_list(int(count)), settings.hotwords)
    pipeline = build_pipeline(settings)
    pipeline.warm_up()
    recognizer = pipeline.recognizer
    if not recognizer.supports_hotwords:
        raise SystemExit(f"{type(recognizer.module).__name__} is not SeACo-Paraformer")
    passed = []  # the hotwords each batch was decoded with: proof the pipeline hands them on
    decode = recognizer.decode
    recognizer.decode = lambda feats, hotwords=(): passed.append(tuple(hotwords)) or decode(feats, hotwords)
    ready = time.time()
    transcript = pipeline.transcribe(audio, TranscribeOptions(hotwords=words))
    done = time.time()
    if words and not any(p == words for p in passed):
        raise SystemExit("the pipeline did not pass TranscribeOptions.hotwords to Recognizer.decode")
    embed_s = 0.0
    if words:
        recognizer._hotword_cache.clear()
        t0 = time.perf_counter()
        recognizer._hotword_embeddings(words)
        embed_s = time.perf_counter() - t0
    Path(result_path).write_text(json.dumps({
        "ready": ready, "done": done, "text": transcript.text, "embed_s": embed_s, "batches": len(passed),
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }, ensure_ascii=False), encoding="utf-8")


def measure(precision: str, count: int, audio: Path, models_root: Path) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result_path = f.name
    started = time.time()
    done = subprocess.run([sys.executable, __file__, "--run", precision, str(count), str(audio), str(models_root),
                           result_path], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{precision} with {count} hotwords failed:\n{done.stderr[-3000:]}")
    result = json.loads(Path(result_path).read_text(encoding="utf-8"))
    os.unlink(result_path)
    result["load_s"] = result["ready"] - started
    result["run_s"] = result["done"] - result["ready"]
    return result


# ---- report ---------------------------------------------------------------------------------------


def render(results: dict[tuple[str, int], list[dict]], duration: float, stamped: str) -> dict[str, str]:
    """A block per precision, each starting with ``stamped``: "vs none" compares within a precision."""
    sections: dict[str, list[str]] = {}
    for (precision, count), rows in results.items():
        lines = sections.setdefault(f"hotwords-{precision}", [
            stamped, "",
            ("| precision | hotwords | load s | run s | RTF | vs none | bias embedding ms (once per list) "
             "| peak RSS GB |"),
            "|---|---|---|---|---|---|---|---|",
        ])
        med = {k: statistics.median(r[k] for r in rows) for k in ("load_s", "run_s", "embed_s", "peak_rss")}
        base = results.get((precision, 0))
        ratio = f"{med['run_s'] / statistics.median(r['run_s'] for r in base):.2f}x" if base else "—"
        embed = f"{med['embed_s'] * 1000:.1f}" if count else "—"
        lines.append(f"| {precision} | {count} | {med['load_s']:.2f} | {med['run_s']:.2f} | {med['run_s'] / duration:.4f} "
                     f"| {ratio} | {embed} | {med['peak_rss'] / 1e9:.2f} |")
    return {key: "\n".join(lines) for key, lines in sections.items()}


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--run":
        sys.path.insert(0, str(REPO))
        run_one(*sys.argv[2:7])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny models, 20 s of audio, one round, nothing written")
    parser.add_argument("--minutes", type=float, default=5.0, help="audio length")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (each configuration once per round)")
    parser.add_argument("--precisions", default="fp32,int8", help="comma-separated: fp32, int8, bf16")
    parser.add_argument("--hotwords", default="0,20,200", help="comma-separated hotword counts (0: none)")
    parser.add_argument("--out", type=Path, default=DOC, help="the doc whose hotwords-* blocks a full run replaces")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "scripts"))
    import make_test_models
    import soundfile as sf
    from mandarin_speech import SENTENCES, speak, write_speech

    if args.smoke:
        args.minutes, args.repeat = 20 / 60, 1
        models_root = REPO / ".cache" / "test-models"
        make_test_models.main(["--out", str(models_root)])
    else:
        models_root = REPO / ".cache" / "full-models"
        make_test_models.main(["--full", "--out", str(models_root)])
    audio = CACHE / f"zh_{args.minutes:g}min_16k.wav"
    if not audio.exists():
        audio.parent.mkdir(parents=True, exist_ok=True)
        clips, rate = speak(SENTENCES, to_16k=True)
        write_speech(audio, args.minutes * 60, clips, rate, seed=args.minutes)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    counts = sorted({int(c) for c in args.hotwords.split(",") if c.strip()})
    results: dict[tuple[str, int], list[dict]] = {}
    for round_ in range(args.repeat):
        for precision in precisions:
            for count in counts:  # alternating, so drift in machine speed hits every row alike
                result = measure(precision, count, audio, models_root)
                results.setdefault((precision, count), []).append(result)
                print(f"round {round_ + 1} {precision} {count} hotwords: load {result['load_s']:.2f} s, run "
                      f"{result['run_s']:.2f} s, {result['batches']} batches, peak RSS {result['peak_rss'] / 1e9:.2f} GB",
                      file=sys.stderr)
    sections = render(results, sf.info(str(audio)).duration, stamp(invocation(argv)))
    publish(sections, args.out, write=not args.smoke)
    return 0


if __name__ == "__main__":
    sys.exit(main())
