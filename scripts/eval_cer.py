#!/usr/bin/env python3
"""Character error rate of this service against a Kaldi-style reference, e.g. the AISHELL-1 test set.

    # transcribe wav.scp with the configured models and precision, then score
    .venv/bin/python scripts/eval_cer.py --wav-scp data/test/wav.scp --ref data/test/text --precision int8
    # score hypotheses you already have (same format: "<utt-id> <text>")
    .venv/bin/python scripts/eval_cer.py --hyp hyp.txt --ref data/test/text

`wav.scp` lines are `<utt-id> <path>`; `text` lines are `<utt-id> <transcript>` (spaces inside the
transcript are ignored, as are punctuation and letter case). CER = (substitutions + deletions +
insertions) / reference characters, over all utterances. FunASR publishes CER 1.95 % on AISHELL-1
test for Paraformer-large, in fp32 and in int8 alike (its funasr-onnx benchmark); run this with the
real weights and each precision to check that on your own machine.
"""

from __future__ import annotations

import argparse
import sys
import unicodedata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def read_kaldi(path: Path) -> dict[str, str]:
    entries = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            key, _, value = line.strip().partition(" ")
            entries[key] = value.strip()
    return entries


def normalise(text: str) -> list[str]:
    """Characters that count: no spaces, no punctuation, lower case."""
    return [ch.lower() for ch in text if not ch.isspace() and not unicodedata.category(ch).startswith("P")]


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def score(refs: dict[str, str], hyps: dict[str, str]) -> tuple[float, int, int, list[str]]:
    """(CER, errors, reference characters, utterance ids with no hypothesis)."""
    errors = chars = 0
    missing = []
    for key, ref in refs.items():
        if key not in hyps:
            missing.append(key)
        r = normalise(ref)
        errors += edit_distance(r, normalise(hyps.get(key, "")))
        chars += len(r)
    return (errors / chars if chars else 0.0), errors, chars, missing


def transcribe_all(wav_scp: dict[str, str], config: str | None, precision: str | None) -> dict[str, str]:
    sys.path.insert(0, str(REPO))
    from asr.config import load_settings
    from asr.core.pipeline import build_pipeline
    from asr.errors import AsrError

    overrides = {"runtime": {"precision": precision}} if precision else {}
    settings = load_settings(config, **overrides)
    pipeline = build_pipeline(settings)
    hyps = {}
    for i, (key, path) in enumerate(wav_scp.items(), 1):
        try:
            hyps[key] = pipeline.transcribe(path).text
        except AsrError as e:  # one unusable file costs its own characters (as deletions), not the run
            print(f"{key}: {path}: {e}", file=sys.stderr)
        if i % 100 == 0:
            print(f"{i}/{len(wav_scp)} utterances", file=sys.stderr)
    return hyps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", type=Path, required=True, help="Kaldi text file: <utt-id> <transcript>")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--wav-scp", type=Path, help="Kaldi wav.scp: <utt-id> <audio path>")
    source.add_argument("--hyp", type=Path, help="hypotheses already made: <utt-id> <text>")
    parser.add_argument("--config", help="service config (models, device) for --wav-scp")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16", "int8"])
    parser.add_argument("--save-hyp", type=Path, help="write the hypotheses here")
    args = parser.parse_args(argv)
    refs = read_kaldi(args.ref)
    hyps = read_kaldi(args.hyp) if args.hyp else transcribe_all(read_kaldi(args.wav_scp), args.config, args.precision)
    if args.save_hyp:
        args.save_hyp.write_text("".join(f"{k} {v}\n" for k, v in hyps.items()), encoding="utf-8")
    cer, errors, chars, missing = score(refs, hyps)
    print(f"CER {cer * 100:.2f}% ({errors} errors / {chars} reference characters, {len(refs)} utterances"
          f"{f', {len(missing)} without a hypothesis' if missing else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
