#!/usr/bin/env python3
"""Compare inverse-text-normalisation libraries on our own test set: correctness, speed, install size.

    PYTHONPATH=DIR python3 scripts/itn_compare.py --only NAME [--size NAME=DIR] [--rounds 20]
        [--cases tests/data/itn_cases.tsv]
    python3 scripts/itn_compare.py --only house --only wetext   # what the service runs, against stock

``house`` is this project's ITN (``asr.core.itn.InverseNormalizer``: the FSTs that
scripts/build_itn_fst.py compiles, run by the ``wetext`` runtime); it needs wetext installed.

Run it with an interpreter that has the candidates installed (each is skipped with a note when it is
not). ``--size NAME=DIR`` reports the disk size of a directory the library was installed into on its
own (``pip install --target DIR NAME``), dependencies included. Prints a markdown report: exact matches
per kind of case, the mismatches, the time to build each normaliser and the time per sentence.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def read_cases(path: Path) -> list[tuple[str, str, str]]:
    cases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            kind, spoken, written = line.split("\t")
            cases.append((kind, spoken, written))
    return cases


def wetext() -> Callable[[str], str]:
    from wetext import Normalizer

    normalizer = Normalizer(lang="zh", operator="itn")
    return normalizer.normalize


def wetextprocessing() -> Callable[[str], str]:
    from itn.chinese.inverse_normalizer import InverseNormalizer

    normalizer = InverseNormalizer()
    return normalizer.normalize


def house() -> Callable[[str], str]:
    """Ours: the FSTs in asr/core/itn_fst (scripts/build_itn_fst.py) run by wetext's runtime."""
    sys.path.insert(0, str(REPO))
    from asr.core.itn import InverseNormalizer

    return InverseNormalizer().text


CANDIDATES = {"wetext": wetext, "wetextprocessing": wetextprocessing, "house": house}


def dir_size_mb(directory: Path) -> float:
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                total += os.path.getsize(path)
    return total / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=REPO / "tests" / "data" / "itn_cases.tsv")
    parser.add_argument("--rounds", type=int, default=20, help="passes over the test set for the timing")
    parser.add_argument("--size", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--only", choices=list(CANDIDATES), action="append",
                        help="just this library (run each in an environment of its own: wetext uses "
                             "WeTextProcessing's grammars instead of its own when both are installed)")
    args = parser.parse_args(argv)
    cases = read_cases(args.cases)
    sizes = dict(entry.split("=", 1) for entry in args.size)
    kinds = list(dict.fromkeys(kind for kind, _, _ in cases))

    print(f"{len(cases)} cases ({', '.join(kinds)}); Python {sys.version.split()[0]}\n")
    rows, wrong = [], {}
    for name, build in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        try:
            started = time.perf_counter()
            normalize = build()
            build_s = time.perf_counter() - started
        except ImportError as e:
            print(f"- {name}: not installed ({e})")
            continue
        outputs = [normalize(spoken) for _, spoken, _ in cases]
        per_kind = collections.Counter(kind for (kind, _, written), out in zip(cases, outputs) if out == written)
        wrong[name] = [(kind, spoken, written, out) for (kind, spoken, written), out in zip(cases, outputs)
                       if out != written]
        timings = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            for _, spoken, _ in cases:
                normalize(spoken)
            timings.append((time.perf_counter() - started) / len(cases))
        size = f"{dir_size_mb(Path(sizes[name])):.0f} MB" if name in sizes else "not measured"
        rows.append((name, sum(per_kind.values()), per_kind, build_s, statistics.median(timings), size))

    print("| library | exact | " + " | ".join(kinds) + " | build | per sentence (median) | install size |")
    print("|---|---|" + "---|" * len(kinds) + "---|---|---|")
    totals = collections.Counter(kind for kind, _, _ in cases)
    for name, exact, per_kind, build_s, per_sentence, size in rows:
        cells = " | ".join(f"{per_kind[k]}/{totals[k]}" for k in kinds)
        print(f"| {name} | {exact}/{len(cases)} | {cells} | {build_s:.2f} s | {per_sentence * 1000:.2f} ms | {size} |")
    for name, misses in wrong.items():
        print(f"\n{name}: {len(misses)} mismatch(es)\n")
        for kind, spoken, written, out in misses:
            print(f"- {kind}: {spoken} → {out} (expected {written})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
