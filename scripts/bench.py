#!/usr/bin/env python3
"""Side-by-side benchmark: FunASR's AutoModel, this service's precision modes and funasr-onnx int8,
on the same models and the same long Mandarin audio, each configuration in its own process.

    .venv/bin/python scripts/bench.py                 # full-size models, 10 and 60 min audio, 3 rounds (~45 min)
    .venv/bin/python scripts/bench.py --smoke         # tiny models, 20 s audio, 1 round (what CI runs), nothing written

It builds (or reuses) the full-size random-weight test models and espeak-ng Mandarin audio,
runs every configuration once per round, alternating them, and reports medians: load seconds
(process start to models loaded and warmed), run seconds, RTF, speed-up over AutoModel, peak
RSS, model size on disk and token agreement with AutoModel's text. Speed does not depend on
weight values; random weights do make token agreement of the reduced modes pessimistic.

funasr-onnx: the models are exported with FunASR's own exporter (`pip install -e '.[bench]'` adds onnx,
onnxruntime, onnxscript) and run by funasr-onnx in a virtualenv of its own under .cache/bench, because
it needs numpy <= 1.26. When that is impossible the report says why.

A full run replaces its own block of docs/BENCHMARKS.md (``<!-- bench:offline -->``), nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_report import DOC, invocation, machine, publish, stamp  # noqa: F401 (bench.machine predates bench_report)

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "bench"

MODES = ("funasr", "fp32", "bf16", "int8", "onnx-int8")


# ---- inputs ----------------------------------------------------------------------------------


#: Pauses between sentences of the long-segment audio: all shorter than FSMN-VAD's end-of-speech silence
#: (800 ms), so its segments run on to the 30 s maximum, as in a lecture or a fast talker's monologue.
LONG_SEGMENT_PAUSES = (0.1, 0.2, 0.3)


def make_audio(minutes: float, path: Path, pauses: tuple[float, ...] | None = None) -> Path:
    """Long Mandarin speech from espeak-ng at 16 kHz: sentences in random order with natural pauses
    (``pauses``: the choice of pause lengths, in seconds; default mandarin_speech's conversational ones)."""
    if not path.exists():
        from mandarin_speech import (  # not at the top: the funasr-onnx venv lacks soundfile
            SENTENCES,
            speak,
            write_speech,
        )

        path.parent.mkdir(parents=True, exist_ok=True)
        clips, rate = speak(SENTENCES, to_16k=True)
        write_speech(path, minutes * 60, clips, rate, seed=minutes, **({"pauses": pauses} if pauses else {}))
    return path


def benchmark_models(smoke: bool) -> Path:
    """The models a benchmark runs on, built (or found up to date): tiny ones for a smoke run, else full-size."""
    import make_test_models

    if smoke:
        root = REPO / ".cache" / "test-models"
        make_test_models.main(["--out", str(root)])
    else:
        root = REPO / ".cache" / "full-models"
        make_test_models.main(["--full", "--out", str(root)])
    return root


def service_cache(models_root: Path) -> Path:
    """The service's cache (converted int8/bf16 checkpoints) for one model set, so sizes are not mixed up."""
    return CACHE / "service-cache" / models_root.name


def model_dirs(root: Path) -> dict[str, Path]:
    from asr.config import ModelsConfig
    from asr.models.files import locate_model

    models = ModelsConfig(cache_dir=root)
    return {role: locate_model(models, role).directory for role in ("asr", "vad", "punc")}


ONNX_VENV = CACHE / "onnx-venv"


def onnx_python() -> Path | str:
    """A separate virtualenv for funasr-onnx, which needs numpy <= 1.26 (this project uses 2.x)."""
    python = ONNX_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(ONNX_VENV)], check=True)
        done = subprocess.run([str(python), "-m", "pip", "install", "-q", "numpy<=1.26.4", "funasr-onnx==0.4.3",
                               "onnxruntime"], capture_output=True, text=True)
        if done.returncode != 0:
            return f"could not install funasr-onnx: {done.stderr.strip().splitlines()[-1:]}"
    return python


def export_onnx(dirs: dict[str, Path], target: Path) -> dict[str, Path] | str:
    """FunASR's own ONNX export (int8 via onnxruntime), once; a reason string if impossible."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        return f"{e.name} is not installed: pip install -e '.[bench]'"
    out = {}
    for role, directory in dirs.items():
        dest = target / role
        if not (dest / "model_quant.onnx").exists():
            import shutil

            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(directory, dest)
            # torch >= 2.9 exports with dynamo by default, which FunASR's export code does not
            # handle; its classic TorchScript exporter is what FunASR was written against.
            code = (
                "import torch, sys\n_export = torch.onnx.export\n"
                "torch.onnx.export = lambda *a, **k: _export(*a, dynamo=False, **k)\n"
                "from funasr import AutoModel\n"
                "AutoModel(model=sys.argv[1], disable_update=True, device='cpu', log_level='ERROR')"
                ".export(type='onnx', quantize=True)\n"
            )
            done = subprocess.run([sys.executable, "-c", code, str(dest)], capture_output=True, text=True)
            if done.returncode != 0 or not (dest / "model_quant.onnx").exists():
                return f"ONNX export of {role} failed: {done.stderr.strip().splitlines()[-1:]}"
        out[role] = dest
    return out


# ---- one configuration, in its own process -------------------------------------------------------


def run_one(mode: str, audio: str, models_root: str, result_path: str) -> None:
    """Runs in a child process: prints nothing, writes a JSON result."""
    import resource

    if mode == "funasr":
        from funasr import AutoModel

        dirs = model_dirs(Path(models_root))
        # ncpu=2: the machine's cores (FunASR's default of 4 oversubscribes two cores, ~1.8x slower)
        model = AutoModel(model=str(dirs["asr"]), vad_model=str(dirs["vad"]), punc_model=str(dirs["punc"]),
                          device="cpu", ncpu=os.cpu_count(), disable_update=True, disable_pbar=True,
                          log_level="ERROR", frontend_conf={"dither": 0.0}, vad_kwargs={"max_single_segment_time": 30000})
        ready = time.time()
        result = model.generate(input=audio, batch_size_s=300)[0]
        text, done = result.get("text", ""), time.time()
        timings = {}
    elif mode == "onnx-int8":  # runs in the funasr-onnx virtualenv: numpy and funasr_onnx only
        import numpy as np
        from funasr_onnx import CT_Transformer, Fsmn_vad, Paraformer

        dirs = {role: Path(models_root) / role for role in ("asr", "vad", "punc")}
        vad = Fsmn_vad(str(dirs["vad"]), quantize=True, intra_op_num_threads=os.cpu_count())
        asr = Paraformer(str(dirs["asr"]), batch_size=8, quantize=True, intra_op_num_threads=os.cpu_count())
        punc = CT_Transformer(str(dirs["punc"]), quantize=True, intra_op_num_threads=os.cpu_count())
        ready = time.time()
        wave = np.load(audio)  # decoded once by the parent: the same 16 kHz samples everyone gets
        segments = vad(wave)[0]
        pieces = [wave[s * 16 : e * 16] for s, e in segments]
        texts = []
        for piece in pieces:  # funasr-onnx takes one array per call (lists must be file paths)
            texts += [r["preds"] if isinstance(r, dict) else r for r in asr(piece)]
        joined = "".join(t if isinstance(t, str) else t[0] for t in texts)
        text, done = (punc(joined)[0] if joined else ""), time.time()
        timings = {}
    else:
        from asr.config import load_settings
        from asr.core.pipeline import build_pipeline
        from asr.core.writers import render

        settings = load_settings(None, models={"cache_dir": models_root},
                                 runtime={"device": "cpu", "precision": mode},
                                 storage={"cache_dir": str(service_cache(Path(models_root))), "state_dir": str(CACHE / "state")})
        pipeline = build_pipeline(settings)
        pipeline.warm_up()
        ready = time.time()
        transcript = pipeline.transcribe(audio)
        with tempfile.TemporaryFile("w+b") as f:  # the full output, SRT included
            f.write(render(transcript, "srt", settings.output).body)
        text, done = transcript.text, time.time()
        timings = transcript.timings.__dict__
    Path(result_path).write_text(json.dumps({
        "ready": ready, "done": done, "text": text, "timings": timings,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }, ensure_ascii=False), encoding="utf-8")


def measure(mode: str, audio: Path, models_root: Path) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result_path = f.name
    python = sys.executable
    if mode == "onnx-int8":
        python = str(ONNX_VENV / "bin" / "python")
        decoded = audio.with_suffix(".16k.npy")
        if not decoded.exists():
            import numpy as np

            from asr.core.audio import load_audio

            np.save(decoded, load_audio(audio))
        audio = decoded
    started = time.time()
    subprocess.run([python, __file__, "--run", mode, str(audio), str(models_root), result_path],
                   check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = json.loads(Path(result_path).read_text(encoding="utf-8"))
    os.unlink(result_path)
    result["load_s"] = result["ready"] - started
    result["run_s"] = result["done"] - result["ready"]
    return result


# ---- reporting ----------------------------------------------------------------------------------


def _plain(text: str) -> list[str]:
    return [ch for ch in text if ch.strip() and ch not in "，。？、,.?!<>unk"]


def agreement(a: str, b: str) -> float:
    """1 - character edit distance / reference length, punctuation ignored."""
    import numpy as np

    x, y = _plain(a), _plain(b)
    if not x:
        return 1.0 if not y else 0.0
    codes = {ch: i for i, ch in enumerate(set(x) | set(y))}
    ys = np.array([codes[ch] for ch in y], dtype=np.int64)
    steps = np.arange(len(y) + 1)
    previous = steps.copy()
    # Row by row, vectorised: deletions and substitutions from the row above, then the chain of
    # insertions along the row as a running minimum (an hour of text is ~30k characters a side).
    for i, ch in enumerate(x, 1):
        best = np.empty_like(previous)
        best[0] = i
        best[1:] = np.minimum(previous[1:] + 1, previous[:-1] + (ys != codes[ch]))
        previous = np.minimum.accumulate(best - steps) + steps
    return max(0.0, 1 - int(previous[-1]) / len(x))


def disk_size(mode: str, dirs: dict[str, Path], onnx: dict[str, Path] | str, models_root: Path) -> float:
    if mode == "onnx-int8" and isinstance(onnx, dict):
        files = [onnx[r] / "model_quant.onnx" for r in onnx]
    elif mode in ("bf16", "int8"):
        converted = sorted((service_cache(models_root) / "converted").glob(f"*-{mode}-*.pt"))
        files = converted + [dirs["vad"] / "model.pt"] + ([] if any("punc" in p.name for p in converted) else [dirs["punc"] / "model.pt"])
    else:
        files = [dirs[r] / "model.pt" for r in dirs]
    return sum(f.stat().st_size for f in files if f.exists()) / 1e6


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--run":
        sys.path.insert(0, str(REPO))
        run_one(*sys.argv[2:6])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny models, 20 s of audio, one round, no file written")
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60], help="audio lengths (default 10 60)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (each configuration once per round)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {','.join(MODES)}")
    parser.add_argument("--long-modes", default="funasr,int8", help="modes also run on the longer files")
    parser.add_argument("--long-segment-minutes", type=float, default=10,
                        help="length of the long-segment audio (pauses under VAD's end silence); 0: none")
    parser.add_argument("--segment-modes", default="funasr,int8,onnx-int8", help="modes run on the long-segment audio")
    parser.add_argument("--out", type=Path, default=DOC, help="the doc whose offline block a full run replaces")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "scripts"))
    if args.smoke:
        args.minutes, args.repeat = [20 / 60], 1
    models_root = benchmark_models(args.smoke)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    dirs = model_dirs(models_root)
    onnx: dict[str, Path] | str = "not requested"
    if "onnx-int8" in modes:
        onnx = onnx_python()
        if not isinstance(onnx, str):
            onnx = export_onnx(dirs, CACHE / ("onnx-smoke" if args.smoke else "onnx"))
        if isinstance(onnx, str):
            print(f"onnx-int8 skipped: {onnx}", file=sys.stderr)
            modes.remove("onnx-int8")
    audios = [make_audio(m, CACHE / f"zh_{m:g}min_16k.wav") for m in args.minutes]
    segment_audio = None
    if args.long_segment_minutes:
        minutes = 20 / 60 if args.smoke else args.long_segment_minutes
        segment_audio = make_audio(minutes, CACHE / f"zh_{minutes:g}min_long_segments_16k.wav", LONG_SEGMENT_PAUSES)
        audios.append(segment_audio)
    results: dict[tuple[str, str], list[dict]] = {}
    for audio_index, audio in enumerate(audios):
        later = args.segment_modes if audio == segment_audio else args.long_modes
        run_modes = modes if audio_index == 0 else [m for m in modes if m in later.split(",")]
        for round_ in range(args.repeat):
            for mode in run_modes:  # alternating, so drift in machine speed hits every mode alike
                root = onnx["asr"].parent if mode == "onnx-int8" and isinstance(onnx, dict) else models_root
                result = measure(mode, audio, root)
                results.setdefault((audio.name, mode), []).append(result)
                print(f"{audio.name} round {round_ + 1} {mode}: load {result['load_s']:.2f} s, "
                      f"run {result['run_s']:.2f} s, peak RSS {result['peak_rss'] / 1e9:.2f} GB", file=sys.stderr)
    report = render(results, audios, modes, dirs, onnx, args, models_root, stamp(invocation(argv)), segment_audio)
    publish({"offline": report}, args.out, write=not args.smoke)
    return 0


def render(results, audios, modes, dirs, onnx, args, models_root: Path, stamped: str, segment_audio=None) -> str:
    import soundfile as sf

    lines = [
        stamped, "",
        "Every configuration runs in a fresh process, alternating with the others, "
        f"{args.repeat} time(s); the table shows medians. "
        f"{'Tiny' if args.smoke else 'Full-size'} FunASR architectures with random weights "
        "(speed does not depend on weight values) and espeak-ng Mandarin speech. "
        "**load** = process start to models loaded (and, for this service, warmed); "
        "**run** = the whole file to punctuated text (this service: also ITN and the SRT); **whole** = load + run, "
        "the whole process as a user's command sees it. "
        "**agreement** = 1 − character edit distance to AutoModel's text (punctuation ignored); the audio is 16 kHz, "
        "so every pipeline reads the same samples. With random weights the reduced modes' agreement understates what "
        "real weights give (near-uniform scores flip on small numeric differences), so it is reported, not gated on.", "",
    ]
    if isinstance(onnx, str) and onnx != "not requested":
        lines += [f"funasr-onnx int8 not measured: {onnx}", ""]
    for audio in audios:
        duration = sf.info(str(audio)).duration
        rows = {m: results[(audio.name, m)] for m in modes if (audio.name, m) in results}
        if not rows:
            continue
        med = {m: {k: statistics.median(r[k] for r in rs) for k in ("load_s", "run_s", "peak_rss")} for m, rs in rows.items()}
        for m, rs in rows.items():
            med[m]["whole_s"] = statistics.median(r["load_s"] + r["run_s"] for r in rs)
        # FunASR's own output is the reference; our fp32 text should equal it (it is the same arithmetic).
        reference = rows.get("funasr", rows.get("fp32", [{"text": ""}]))[0]["text"]
        base, whole_base = med.get("funasr", {}).get("run_s"), med.get("funasr", {}).get("whole_s")
        kind = ("of long-segment audio (pauses of 0.1-0.3 s, under FSMN-VAD's 800 ms end silence: the first "
                "minute is cut at the 30 s maximum, the rest at 2-8 s, as FunASR's VAD does too)"
                if audio == segment_audio else "of audio")
        lines += [f"## {duration / 60:g} minutes {kind}", "",
                  "| configuration | load s | run s | RTF | speed-up vs AutoModel | whole s | whole-process speed-up | "
                  "peak RSS GB | model size MB | agreement with AutoModel |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        names = {"funasr": "FunASR AutoModel (fp32, ncpu=2, batch_size_s=300)", "fp32": "this service fp32",
                 "bf16": "this service bf16", "int8": "this service int8", "onnx-int8": "funasr-onnx int8"}
        for mode, m in med.items():
            speedup = f"{base / m['run_s']:.2f}x" if base else "—"
            whole_speedup = f"{whole_base / m['whole_s']:.2f}x" if whole_base else "—"
            agree = f"{agreement(reference, rows[mode][0]['text']) * 100:.1f}%" if reference else "—"
            lines.append(f"| {names[mode]} | {m['load_s']:.2f} | {m['run_s']:.2f} | {m['run_s'] / duration:.4f} | "
                         f"{speedup} | {m['whole_s']:.2f} | {whole_speedup} | {m['peak_rss'] / 1e9:.2f} | {disk_size(mode, dirs, onnx, models_root):.0f} | {agree} |")
        stage_modes = [mode for mode in ("fp32", "bf16", "int8") if mode in rows]
        if stage_modes:
            lines += ["", "Per-stage wall seconds inside this service (decode and VAD run in a thread ahead of ASR, so "
                      "they overlap it):", "", "| mode | decode | VAD | ASR | punctuation | ITN | total |", "|---|---|---|---|---|---|---|"]
            for mode in stage_modes:
                t = {k: statistics.median(r["timings"][k] for r in rows[mode]) for k in rows[mode][0]["timings"]}
                lines.append(f"| {mode} | {t['decode_s']:.2f} | {t['vad_s']:.2f} | {t['asr_s']:.2f} | "
                             f"{t['punc_s']:.2f} | {t.get('itn_s', 0.0):.2f} | {t['total_s']:.2f} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
