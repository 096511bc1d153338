#!/usr/bin/env python3
"""Speaker labels: what they cost. Prints markdown tables; a full run also writes them into docs/BENCHMARKS.md.

    .venv/bin/python scripts/bench_speakers.py                    # everything, test models (~10 min)
    .venv/bin/python scripts/bench_speakers.py --smoke            # test models, 15 s, 600 windows: nothing written
    .venv/bin/python scripts/bench_speakers.py --skip-funasr      # without FunASR's UMAP + HDBSCAN (slow)
    .venv/bin/python scripts/bench_speakers.py --models .cache/full-models --minutes 10   # RTF on full ASR

1. CAM++ embeddings per audio minute (espeak-ng speech in two voices): our batched ``Diarizer.add`` vs
   FunASR's way (one window per call, as ``AutoModel`` does on a CPU). CAM++ is always built full size,
   so the test model times like the real one.
2. Clustering on synthetic embeddings with known speakers, 2 h (9600 windows) and 15 h (72 000): ours
   (``speaker_clustering.cluster``) and FunASR's ``ClusterBackend`` (spectral below 2048 windows, UMAP +
   HDBSCAN above, k-means when the count is known), each in a process of its own for its peak RSS;
   wall and CPU seconds, window accuracy after the best speaker mapping, speakers found.
3. The whole pipeline with speakers on and off on the same file: RTF, and the speaker stage's share of
   the ASR stage (the target is at most 15 % on a CPU).

Timings on a shared machine are noisy: the CPU seconds are the steadier column.

Each part run replaces its own block of the doc and nothing else: ``speakers-embeddings``,
``speakers-clustering`` and ``speakers-pipeline-PRECISION`` (so an fp32 and an int8 run keep both tables).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_report import DOC, invocation, publish, stamp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
#: one 1.5 s window every 0.75 s of speech (asr.core.speaker_clustering)
WINDOW_STEP_S = 0.75

#: espeak-ng voices for two speakers: a high female and a low male variant of the Mandarin voice.
VOICES = (("cmn+f3", 70), ("cmn+m3", 30))
DIALOGUE = (
    "今天天气很好，我们去公园散步吧。", "你觉得这个主意怎么样？", "语音识别服务可以离线运行。",
    "会议将在下午三点开始，请大家准时参加。", "这个季度的销售额比去年同期增长了百分之二十。",
    "请把文件发到我的邮箱，我明天上午回复你。", "人工智能正在改变我们的工作方式和生活习惯。",
    "火车站离这里不远，走路大概十分钟就到了。",
)


# ---- inputs ----------------------------------------------------------------------------------------


def synthetic_embeddings(windows: int, speakers: int, seed: int = 0, within: float = 0.5,
                         between: float = 0.3, content: float = 0.15, turn: float = 8.0,
                         weights: list[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """CAM++-like embeddings with known speakers: ``(windows, 192)`` float32 and the true labels.

    Each speaker has a direction (cosine ``between`` to the others'); a window is its speaker's direction
    (share ``within``), one of 30 "content" directions shared by all speakers (share ``content``) and
    noise; same-speaker windows come out near cosine 0.5, different speakers' near 0.2. Speakers take
    turns of ``turn`` windows on average (``weights``: how often each speaks); a window across a turn
    change mixes both voices, in a random proportion. Lengths vary as CAM++'s do."""
    rng = np.random.default_rng(seed)
    dim = 192
    common = rng.standard_normal(dim)
    common /= np.linalg.norm(common)
    own = rng.standard_normal((speakers, dim))
    own /= np.linalg.norm(own, axis=1, keepdims=True)
    voices = np.sqrt(between) * common + np.sqrt(1 - between) * own
    voices /= np.linalg.norm(voices, axis=1, keepdims=True)
    share = np.ones(speakers) if weights is None else np.asarray(weights, dtype=float)
    labels = np.empty(windows, dtype=int)
    i = 0
    while i < windows:
        length = max(1, int(rng.geometric(1 / turn)))
        labels[i : i + length] = rng.choice(speakers, p=share / share.sum())
        i += length
    voice = voices[labels]
    change = np.nonzero(labels[1:] != labels[:-1])[0]
    mix = rng.uniform(0, 1, (len(change), 1))  # how much of the window the next speaker has
    voice[change] = (1 - mix) * voices[labels[change]] + mix * voices[labels[change + 1]]
    voice[change] /= np.linalg.norm(voice[change], axis=1, keepdims=True)
    topics = rng.standard_normal((30, dim))
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    noise = rng.standard_normal((windows, dim))
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    x = (np.sqrt(within) * voice + np.sqrt(content) * topics[rng.integers(0, 30, windows)]
         + np.sqrt(1 - within - content) * noise)
    x *= rng.uniform(5, 15, (windows, 1))
    return x.astype(np.float32), labels


def window_accuracy(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of windows labelled right under the best one-to-one mapping of found to true speakers."""
    from scipy.optimize import linear_sum_assignment

    a, b = np.unique(found, return_inverse=True)[1].ravel(), np.unique(truth, return_inverse=True)[1].ravel()
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / len(truth))


def speak(text: str, voice: str, pitch: int, path: Path) -> np.ndarray:
    """One sentence from espeak-ng in ``voice`` at ``pitch``, as 16 kHz float32."""
    from asr.core.audio import load_audio

    subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-w", str(path), text], check=True, timeout=60)
    return load_audio(path)


def dialogue(directory: Path, turns: int, pause_s: float = 0.6, lead_s: float = 0.5) -> tuple[np.ndarray, list[int]]:
    """``turns`` sentences, the two voices taking turns, with pauses: the audio and who spoke each turn."""
    silence = np.zeros(int(pause_s * 16000), dtype=np.float32)
    lead = np.zeros(int(lead_s * 16000), dtype=np.float32)
    parts, who, cache = [lead], [], {}
    for i in range(turns):
        speaker, text = i % 2, DIALOGUE[i % len(DIALOGUE)]
        if (speaker, text) not in cache:
            voice, pitch = VOICES[speaker]
            cache[speaker, text] = speak(text, voice, pitch, directory / f"turn{len(cache)}.wav")
        parts += [cache[speaker, text], silence]
        who.append(speaker)
    parts[-1] = lead
    return np.concatenate(parts), who


# ---- 1. embeddings ------------------------------------------------------------------------------------


def load(config: Path, models: Path | None, precision: str = "fp32"):
    from asr.config import load_settings
    from asr.models.loading import load_models

    overrides = {"profile": "vad+asr+punc+spk"}
    if models is not None:
        overrides["cache_dir"] = str(models)
    settings = load_settings(config, models=overrides, runtime={"precision": precision})
    return settings, load_models(settings)


def bench_embeddings(models, audio: np.ndarray) -> list[dict]:
    import torch

    from asr.core import speaker_clustering as clustering
    from asr.core.speakers import BATCH_WINDOWS, Diarizer
    from asr.types import SpeechSegment

    minutes = len(audio) / 16000 / 60
    segments = [(s, audio[s * 16 : e * 16]) for s, e in _fixed_segments(len(audio) // 16)]
    rows = []
    warm = Diarizer(models.spk, models.device)
    warm.add(SpeechSegment(0, 3000), audio[:48000])
    warm.embeddings()
    t, c = time.perf_counter(), time.process_time()
    diarizer = Diarizer(models.spk, models.device)
    for start, wave in segments:
        diarizer.add(SpeechSegment(start, start + len(wave) // 16), wave)
    windows = len(diarizer.embeddings())
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    rows.append({"way": f"ours: batches of {BATCH_WINDOWS}", "windows": windows,
                 "s_per_min": wall / minutes, "cpu_per_min": cpu / minutes, "ms_per_window": 1000 * wall / windows})
    # FunASR on a CPU: AutoModel embeds every window alone (batch_size 1), features window by window
    from funasr.models.campplus.utils import extract_feature

    t, c = time.perf_counter(), time.process_time()
    count = 0
    with torch.no_grad():
        for start, wave in segments:
            for _, _, first, last in clustering.window_spans(start, len(wave)):
                chunk = np.pad(wave[first:last], (0, clustering.WINDOW_SAMPLES - (last - first)))
                feats, _, _ = extract_feature([torch.from_numpy(chunk)])
                models.spk.module(feats.to(models.device))
                count += 1
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    rows.append({"way": "FunASR's: one window per call (as `AutoModel` runs it on a CPU)", "windows": count,
                 "s_per_min": wall / minutes, "cpu_per_min": cpu / minutes, "ms_per_window": 1000 * wall / count})
    return rows


def _fixed_segments(total_ms: int, length_ms: int = 8000, gap_ms: int = 700) -> list[tuple[int, int]]:
    """Speech segments as VAD gives them on continuous speech: ~8 s with short gaps."""
    out, start = [], 0
    while start < total_ms:
        out.append((start, min(start + length_ms, total_ms)))
        start += length_ms + gap_ms
    return out


# ---- 2. clustering ------------------------------------------------------------------------------------


def cluster_child(way: str, data: Path, known: bool) -> None:
    """Runs in a process of its own, on embeddings saved by the parent (so that making them does not
    count in the peak RSS); prints one JSON line."""
    saved = np.load(data)
    x, truth = saved["x"], saved["truth"]
    windows, speakers = len(x), len(np.unique(truth))
    if way == "ours":
        import scipy.linalg  # noqa: F401  (imports are not the clustering's memory)
        import sklearn.cluster  # noqa: F401

        from asr.core.speaker_clustering import cluster

        def run():
            return cluster(x, speakers if known else None)
    else:
        from asr.models.funasr_import import import_registered

        import_registered("CAMPPlus")
        import torch
        import umap  # noqa: F401
        from funasr.models.campplus.cluster_backend import ClusterBackend

        def run():
            kwargs = {"oracle_num": speakers} if known else {}
            return np.asarray(ClusterBackend()(torch.from_numpy(x), **kwargs))
    base = _memory_mb("VmRSS")
    t, c = time.perf_counter(), time.process_time()
    labels = run()
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    peak = _memory_mb("VmHWM")
    print(json.dumps({"way": way, "windows": windows, "speakers": speakers, "known": known, "wall": wall,
                      "cpu": cpu, "found": int(len(np.unique(labels))), "noise": int((labels < 0).sum()),
                      "accuracy": window_accuracy(labels, truth), "peak_mb": peak,
                      "extra_mb": peak - base}))


def _memory_mb(field: str) -> float:
    """This process's resident memory (VmRSS) or its peak (VmHWM), from /proc: unlike ru_maxrss, the
    peak starts afresh at exec, so a child does not inherit its parent's."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def bench_clustering(ways: list[str], sizes: list[int], speakers: int, timeout: float) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-speakers-") as tmp:
        for windows in sizes:
            data = Path(tmp) / f"{windows}.npz"
            x, truth = synthetic_embeddings(windows, speakers, seed=windows + speakers,
                                            weights=[2.0 ** -i for i in range(speakers)])
            np.savez(data, x=x, truth=truth)
            for known in (False, True):
                for way in ways:
                    rows.append(_cluster_row(way, data, windows, speakers, known, timeout))
    return rows


def _cluster_row(way: str, data: Path, windows: int, speakers: int, known: bool, timeout: float) -> dict:
    command = [sys.executable, __file__, "--cluster-child", way, str(data), str(known)]
    failed = {"way": way, "windows": windows, "speakers": speakers, "known": known}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        return {**failed, "error": f"not done after {timeout:.0f} s"}
    except subprocess.CalledProcessError as e:
        return {**failed, "error": " ".join((e.stderr or "").strip().splitlines()[-1:])}


# ---- 3. the pipeline ------------------------------------------------------------------------------------


def bench_pipeline(settings, models, audio: np.ndarray) -> list[dict]:
    from asr.core.pipeline import Pipeline
    from asr.types import TranscribeOptions

    pipeline = Pipeline(models, settings)
    pipeline.warm_up()
    rows = []
    for speakers in (False, True, False, True):
        result = pipeline.transcribe(audio, TranscribeOptions(speakers=speakers))
        t = result.timings
        rows.append({"speakers": speakers, "rtf": result.rtf, "total": t.total_s, "asr": t.asr_s,
                     "speakers_s": getattr(t, "speakers_s", None), "count": len(result.speakers)})
    return rows


# ---- report -----------------------------------------------------------------------------------------------


def render(embeddings: list[dict], clusters: list[dict], pipeline: list[dict], precision: str,
           stamped: str) -> dict[str, str]:
    """The doc's blocks for the parts that ran, each starting with ``stamped``."""
    tables = {}
    if embeddings:
        tables["speakers-embeddings"] = embedding_table(embeddings)
    if pipeline:
        tables[f"speakers-pipeline-{precision}"] = pipeline_table(pipeline, precision)
    if clusters:
        tables["speakers-clustering"] = cluster_table(clusters)
    return {key: f"{stamped}\n\n{table}" for key, table in tables.items()}


def embedding_table(rows: list[dict]) -> str:
    lines = ["| way | windows | wall s per audio min | CPU s per audio min | ms per window |", "|---|---|---|---|---|"]
    lines += [f"| {r['way']} | {r['windows']} | {r['s_per_min']:.2f} | {r['cpu_per_min']:.2f} | "
              f"{r['ms_per_window']:.1f} |" for r in rows]
    return "\n".join(lines)


def pipeline_table(rows: list[dict], precision: str) -> str:
    """A line each for speakers off and on, their rounds side by side ("a / b"): they ran alternating."""
    def stage(r: dict) -> str:
        return "—" if r["speakers_s"] is None else f"{r['speakers_s']:.1f}"

    def share(r: dict) -> str:
        return f"{r['speakers_s'] / r['asr']:.0%}" if r["speakers_s"] is not None and r["asr"] else "—"

    lines = ["| precision | speakers | RTF | total s | ASR s | speaker stage s | speaker stage / ASR |",
             "|---|---|---|---|---|---|---|"]
    for on in (False, True):
        runs = [r for r in rows if r["speakers"] == on]
        cells = [" / ".join(f"{r[key]:{spec}}" for r in runs) for key, spec in (("rtf", ".4f"), ("total", ".1f"),
                                                                                 ("asr", ".1f"))]
        cells += [" / ".join(stage(r) for r in runs), " / ".join(share(r) for r in runs)] if on else ["—", "—"]
        lines.append(f"| {precision} | {'on' if on else 'off'} | {' | '.join(cells)} |")
    return "\n".join(lines)


def cluster_table(rows: list[dict]) -> str:
    lines = [("| way | windows (speech) | count given | wall s | CPU s | peak RSS MB (+ clustering) | speakers found "
              "| window accuracy |"), "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        head = f"| {cluster_way(r)} | {windows_and_speech(r['windows'])} | {'yes' if r['known'] else 'no'} |"
        if "error" in r:
            lines.append(f"{head} {r['error']} | | | | |")
            continue
        noise = f" ({r['noise']} noise)" if r["noise"] else ""
        lines.append(f"{head} {r['wall']:.1f} | {r['cpu']:.1f} | {r['peak_mb']:.0f} (+{r['extra_mb']:.0f}) | "
                     f"{r['found']}{noise} | {r['accuracy']:.3f} |")
    return "\n".join(lines)


def cluster_way(row: dict) -> str:
    """FunASR's ClusterBackend picks its method by size and count (spectral below 2048 windows): named."""
    if row["way"] == "ours":
        return "ours"
    method = "spectral" if row["windows"] < 2048 else "k-means" if row["known"] else "UMAP + HDBSCAN"
    return f"FunASR `ClusterBackend` ({method})"


def windows_and_speech(windows: int) -> str:
    count = f"{windows:,}".replace(",", " ") if windows >= 10000 else str(windows)
    hours = windows * WINDOW_STEP_S / 3600
    return f"{count} ({hours:g} h)" if hours >= 1 else f"{count} ({hours * 60:g} min)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--cluster-child"]:
        way, data, known = argv[1:4]
        cluster_child(way, Path(data), known == "True")
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "config.test-models.yaml")
    parser.add_argument("--models", type=Path, default=None, help="model cache root (default: the config's)")
    parser.add_argument("--precision", default="fp32", help="runtime.precision for the pipeline rows")
    parser.add_argument("--minutes", type=float, default=2.0, help="audio for the embedding and pipeline rows")
    parser.add_argument("--windows", type=int, nargs="+", default=[9600, 72000])
    parser.add_argument("--speakers", type=int, default=6, help="speakers in the synthetic sets (unequal shares)")
    parser.add_argument("--skip-funasr", action="store_true", help="leave out FunASR's clustering (UMAP is slow)")
    parser.add_argument("--funasr-timeout", type=float, default=3600)
    parser.add_argument("--only", choices=("embeddings", "clustering", "pipeline"), nargs="+",
                        default=["embeddings", "clustering", "pipeline"])
    parser.add_argument("--smoke", action="store_true",
                        help="test models, 15 s of audio, 600 windows: checks the script runs, nothing written")
    parser.add_argument("--out", type=Path, default=DOC, help="the doc whose speakers-* blocks a full run replaces")
    args = parser.parse_args(argv)
    if args.smoke:  # the parts asked for, at a size that runs in a minute or two
        args.models, args.minutes, args.windows = None, 0.25, [600]
        args.funasr_timeout = min(args.funasr_timeout, 300)
        build_test_models()

    embeddings, clusters, pipeline = [], [], []
    if {"embeddings", "pipeline"} & set(args.only):
        with tempfile.TemporaryDirectory() as tmp:
            once, _ = dialogue(Path(tmp), 8)
        audio = np.tile(once, int(np.ceil(args.minutes * 60 * 16000 / len(once))))[: int(args.minutes * 60 * 16000)]
        settings, models = load(args.config, args.models, args.precision)
        if "embeddings" in args.only:
            embeddings = bench_embeddings(models, audio)
        if "pipeline" in args.only:
            pipeline = bench_pipeline(settings, models, audio)
    if "clustering" in args.only:
        ways = ["ours"] + ([] if args.skip_funasr else ["funasr"])
        clusters = bench_clustering(ways, args.windows, args.speakers, args.funasr_timeout)
    sections = render(embeddings, clusters, pipeline, args.precision, stamp(invocation(argv)))
    publish(sections, args.out, write=not args.smoke)
    return 0


def build_test_models() -> None:
    """The tiny models config.test-models.yaml points at (CAM++ full size), as the other smoke runs build them."""
    sys.path.insert(0, str(REPO / "scripts"))
    import make_test_models

    make_test_models.main(["--out", str(REPO / ".cache" / "test-models")])

if __name__ == "__main__":
    sys.exit(main())
