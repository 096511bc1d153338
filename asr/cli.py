"""The ``asr`` command: transcribe, vad, download, verify, info, bundle, install-bundle (and serve).

Heavy imports (torch, FunASR) happen only in the commands that need them, after the
arguments are parsed, so ``asr --help`` and ``asr verify`` stay instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from asr.config import Profile, Settings, load_settings
from asr.errors import AsrError, ConfigError

if TYPE_CHECKING:
    import torch

    from asr.types import TranscribeOptions

logger = logging.getLogger("asr.cli")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="config file (default: $ASR_CONFIG or ./config.yaml)")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="override log_level")


def _runtime_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=get_args(Profile), help="models to load")
    parser.add_argument("--asr-model", choices=["paraformer", "seaco"],
                        help="the ASR model: paraformer, or seaco for hotwords (default from config)")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16", "int8"], help="numeric mode")
    parser.add_argument("--threads", type=int, help="CPU threads for torch")


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "profile", None):
        overrides.setdefault("models", {})["profile"] = args.profile
    if getattr(args, "asr_model", None):
        overrides.setdefault("models", {})["asr_model"] = args.asr_model
    for flag in ("device", "precision", "threads"):
        if getattr(args, flag, None) is not None:
            overrides.setdefault("runtime", {})[flag] = getattr(args, flag)
    if getattr(args, "log_level", None):
        overrides["log_level"] = args.log_level
    return load_settings(args.config, **overrides)


def _text_flags(parser: argparse.ArgumentParser) -> None:
    """What a transcription is asked for: the same choices as the API's fields and the UI's."""
    parser.add_argument("--no-punc", action="store_true", help="skip punctuation")
    itn = parser.add_mutually_exclusive_group()
    itn.add_argument("--itn", dest="itn", action="store_true", default=None,
                     help="numbers, dates and money as digits (default from config: text.itn)")
    itn.add_argument("--no-itn", dest="itn", action="store_false", help="keep numbers as spoken")
    parser.add_argument("--hotwords", metavar="WORDS", help="names and jargon to favour, space-separated "
                        "(needs --asr-model seaco)")
    parser.add_argument("--hotwords-file", type=Path, metavar="FILE", help="hotwords, one per line")
    parser.add_argument("--speakers", action="store_true", help="label sentences with speakers "
                        "(needs --profile vad+asr+punc+spk)")
    parser.add_argument("--num-speakers", type=int, metavar="N", help="the number of speakers, when known")
    parser.add_argument("--min-speakers", type=int, metavar="N", help="at least this many speakers")
    parser.add_argument("--max-speakers", type=int, metavar="N", help="at most this many speakers")


def _options(args: argparse.Namespace, settings: Settings) -> "TranscribeOptions":
    from asr.core.hotwords import read_hotword_file
    from asr.core.options import build_options

    words: list[str] = []
    if args.hotwords_file is not None:
        words.extend(read_hotword_file(args.hotwords_file))
    if args.hotwords:
        words.extend(args.hotwords.split())
    return build_options(
        settings, punctuate=not args.no_punc, itn=args.itn, hotwords=words or None, speakers=args.speakers,
        num_speakers=args.num_speakers, min_speakers=args.min_speakers, max_speakers=args.max_speakers,
    )


def _ray_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray", metavar="ADDRESS", help="run on a Ray cluster (needs `pip install .[ray]`): "
                        "auto (the one this machine belongs to), HOST:PORT, or local (a private one)")
    parser.add_argument("--workers", type=int, help="Ray: engine actors (default: one per GPU, else CPUs/4)")
    parser.add_argument("--gpus-per-worker", type=float, help="Ray: GPUs per actor (default 1 if the cluster has GPUs)")
    parser.add_argument("--cpus-per-worker", type=float, help="Ray: CPUs per actor (default: 1 with a GPU, "
                        "else the cluster's CPUs split between the actors)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asr", description="Offline Chinese speech recognition (FunASR Paraformer-large)."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("transcribe", help="transcribe audio or video files")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--format", default="txt,srt", help="comma-separated: txt,srt,vtt,json,tsv (default txt,srt)")
    p.add_argument("--out", type=Path, default=Path("."), help="output directory (default: current)")
    _text_flags(p)
    _runtime_flags(p)
    _common(p)

    p = sub.add_parser("vad", help="speech segments only (the FSMN-VAD service)")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--format", default="txt", help="comma-separated: txt,json,csv (default txt)")
    p.add_argument("--out", type=Path, default=None, help="write files here instead of printing")
    _runtime_flags(p)
    _common(p)

    p = sub.add_parser("live", help="live captions of a file, streamed as a microphone would send it "
                                    "(needs --profile vad+asr+punc+live)")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--mode", choices=["2pass", "online", "offline"], default="2pass",
                   help="2pass: partials, then each sentence's final (default); online: partials only; "
                        "offline: finals only")
    p.add_argument("--realtime", action="store_true", help="send at the pace of the audio (default: as fast "
                   "as it is recognised)")
    _text_flags(p)
    _runtime_flags(p)
    _common(p)

    p = sub.add_parser("batch", help="transcribe many files into a directory, resumable (locally or on Ray)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, directories (recursive) or manifests "
                   "(.txt/.lst: one path per line; .jsonl: {\"path\": ..., \"id\": ...} per line)")
    p.add_argument("--out", type=Path, required=True, help="output directory (also holds results.jsonl)")
    p.add_argument("--format", default="txt,srt", help="comma-separated: txt,srt,vtt,json,tsv (default txt,srt)")
    _text_flags(p)
    p.add_argument("--inline-max-s", type=float, default=600.0, help="Ray: files up to this long are decoded "
                   "by read tasks, longer ones streamed from disk by the worker (default 600)")
    _ray_flags(p)
    _runtime_flags(p)
    _common(p)

    p = sub.add_parser("serve", help="run the web app and the HTTP API")
    p.add_argument("--host", help="bind address (default from config: 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default from config: 6006)")
    _ray_flags(p)
    p.add_argument("--check", action="store_true",
                   help="check the config, model files (sha256), device and directories, then exit; starts nothing")
    _common(p)

    p = sub.add_parser("download", help="fetch the pinned models into the cache (needs the network)")
    _common(p)
    p = sub.add_parser("verify", help="check the cached models against their sha256 manifests (offline)")
    _common(p)
    p = sub.add_parser("bundle", help="pack the pinned models into one file for a machine without network")
    p.add_argument("--out", type=Path, default=Path("asr-models.tar"),
                   help="bundle file to write (default asr-models.tar; .tar.gz compresses)")
    _common(p)
    p = sub.add_parser("install-bundle", help="install the models of a bundle into the cache, verified (offline)")
    p.add_argument("bundle_file", type=Path, metavar="FILE", help="a bundle made by `asr bundle`")
    p.add_argument("--sha256", help="the bundle's sha256 as `asr bundle` printed it; checked first")
    _common(p)
    p = sub.add_parser("info", help="device, precision, models and versions")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _runtime_flags(p)
    _common(p)
    return parser


# ---- commands ------------------------------------------------------------------------------


def _progress_bar(name: str):
    from tqdm import tqdm

    bar = tqdm(total=100, desc=name[:30], unit="%", leave=False, file=sys.stderr,
               bar_format="{desc} {percentage:3.0f}%|{bar}| {postfix}", disable=not sys.stderr.isatty())

    def update(stage: str, fraction: float) -> None:
        bar.n = round(fraction * 100)
        bar.set_postfix_str(stage, refresh=False)
        bar.refresh()

    return bar, update


def _unique_stem(path: Path, used: set[str]) -> str:
    stem, n = path.stem or "audio", 1
    candidate = stem
    while candidate in used:
        n += 1
        candidate = f"{stem}-{n}"
    used.add(candidate)
    return candidate


def _make_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AsrError(f"cannot use --out {out} as the output directory: {e.strerror or e}") from None


def _reason(error: Exception) -> str:
    """What went wrong with one input file, without repeating its name."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


def _formats(spec: str, registry: dict) -> list[str]:
    from asr.core.writers import parse_formats

    try:
        return parse_formats(spec, registry)
    except ValueError as e:
        raise ConfigError(f"--format: {e}") from None


def _error_line(path: Path, error: BaseException) -> str:
    reason = _reason(error).removeprefix(f"{path.name}: ")  # audio errors start with the name
    return f"{path}: error: {reason}"


def cmd_transcribe(args: argparse.Namespace, settings: Settings) -> int:
    from asr.atomic import write_atomic
    from asr.core.writers import WRITERS, render

    formats = _formats(args.format, WRITERS)
    if settings.models.profile == "vad":
        raise AsrError("the vad profile cannot transcribe; use `asr vad` or another --profile")
    options = _options(args, settings)  # a bad request fails before the slow model load
    _make_out_dir(args.out)
    pipeline = _load_pipeline(settings)
    failures, used = 0, set()
    for path in args.files:
        bar, update = _progress_bar(path.name)
        started = time.perf_counter()
        try:
            transcript = pipeline.transcribe(path, options, progress=update)
        except (AsrError, OSError) as e:  # OSError: no such file, a directory, no permission
            print(_error_line(path, e), file=sys.stderr)
            failures += 1
            continue
        finally:
            bar.close()
        stem = _unique_stem(path, used)
        written = []
        for fmt in formats:
            rendered = render(transcript, fmt, settings.output, stem)
            write_atomic(args.out / rendered.filename, rendered.body)
            written.append(str(args.out / rendered.filename))
        wall = time.perf_counter() - started
        rtf = wall / transcript.duration_s if transcript.duration_s else 0.0
        print(f"{path}: audio {transcript.duration_s:.1f} s, wall {wall:.2f} s, RTF {rtf:.4f} -> {', '.join(written)}")
    return 1 if failures else 0


def cmd_vad(args: argparse.Namespace, settings: Settings) -> int:
    from asr.atomic import write_atomic
    from asr.core.writers import VAD_WRITERS, output_name, render

    formats = _formats(args.format, VAD_WRITERS)
    settings = settings.model_copy(update={"models": settings.models.model_copy(update={"profile": "vad"})})
    if args.out is not None:
        _make_out_dir(args.out)  # before the slow model load
    pipeline = _load_pipeline(settings)
    failures, used = 0, set()
    for path in args.files:
        try:
            result = pipeline.detect_speech(path)
        except (AsrError, OSError) as e:  # OSError: no such file, a directory, no permission
            print(_error_line(path, e), file=sys.stderr)
            failures += 1
            continue
        if args.out is None:
            # the summary would corrupt csv/json on stdout (`asr vad x.wav --format csv > x.csv`)
            print(f"# {path}: {len(result.segments)} speech segments in {result.duration_s:.1f} s",
                  file=sys.stdout if formats == ["txt"] else sys.stderr)
            for fmt in formats:
                sys.stdout.write(render(result, fmt, settings.output).body.decode("utf-8"))
            continue
        stem = _unique_stem(path, used)
        for fmt in formats:
            rendered = render(result, fmt, settings.output, stem)
            write_atomic(args.out / rendered.filename, rendered.body)
        print(f"{path}: {len(result.segments)} speech segments -> {args.out}/{output_name(stem, '{' + ','.join(formats) + '}', vad=True)}")
    return 1 if failures else 0


def cmd_live(args: argparse.Namespace, settings: Settings) -> int:
    """The file through a live session, frame by frame (60 ms, as FunASR's clients send), in this process:
    partials as they come, then each sentence's final with its times."""
    from dataclasses import replace

    import numpy as np

    from asr.core.isolation import open_audio
    from asr.core.live import LiveOptions, online_recognizer, open_session
    from asr.core.writers import format_timestamp

    live = settings.model_copy(update={"models": settings.models.model_copy(update={"profile": "vad+asr+punc+live"})})
    options = LiveOptions(mode=args.mode, wav_name=args.file.name,
                          final=replace(_options(args, live), use_vad=False))  # a bad request fails first
    pipeline = _load_pipeline(live)
    session = open_session(pipeline, online_recognizer(pipeline.models), options)
    started, sent, frame = time.monotonic(), 0, 960

    def show(captions) -> None:
        for caption in captions:
            if caption.source == "online":
                print(f"… {caption.text}", flush=True)
            else:
                print(f"[{format_timestamp(caption.start_ms, '.')} → {format_timestamp(caption.end_ms, '.')}] "
                      f"{caption.text}", flush=True)

    held = np.zeros(0, dtype=np.float32)
    try:
        _, chunks = open_audio(args.file, live.audio, args.file.name)
        for chunk in chunks:
            held = np.concatenate([held, chunk])
            while len(held) >= frame:
                piece, held = held[:frame], held[frame:]
                if args.realtime:
                    time.sleep(max(0.0, started + sent / 16000 - time.monotonic()))
                sent += frame
                show(session.audio((np.clip(piece, -1, 1) * 32767).astype("<i2").tobytes()))
    except (AsrError, OSError) as e:  # as transcribe reports a file that cannot be used
        print(_error_line(args.file, e), file=sys.stderr)
        return 1
    if len(held):
        show(session.audio((np.clip(held, -1, 1) * 32767).astype("<i2").tobytes()))
    show(session.end())
    return 0


def _load_pipeline(settings: Settings):
    from asr.core.pipeline import build_pipeline

    return build_pipeline(settings)


def cmd_download(args: argparse.Namespace, settings: Settings) -> int:
    from asr.models.download import download_models

    for report in download_models(settings):
        state = "downloaded" if report.downloaded else "already complete (no network used)"
        print(f"{report.role}: {report.model_id}@{report.revision} {state} -> {report.directory}")
    return 0


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    from asr.models.download import verify_models
    from asr.models.files import LOCAL_NOTE, is_local

    for manifest in verify_models(settings):
        local = f"; {LOCAL_NOTE}" if is_local(manifest) else ""
        print(f"{manifest['role']}: {manifest['model_id']}@{manifest['revision']} ok "
              f"({len(manifest['files'])} files{local})")
    return 0


def gather_info(settings: Settings) -> dict[str, Any]:
    """What `asr info` reports, without loading the models."""
    import platform

    from asr import __version__
    from asr.models.files import check_required_files, locate_model, model_spec, roles_for_profile

    info: dict[str, Any] = {
        "asr_service": __version__,
        "python": platform.python_version(),
        "profile": settings.models.profile,
        "cache_dir": str(settings.models.resolved_cache_dir()),
        "models": {},
    }
    device = None
    try:
        import torch

        from asr.models.loading import resolve_device

        info["torch"] = torch.__version__
        info["cuda_available"] = torch.cuda.is_available()
        device = resolve_device(settings.runtime.device)
        info["device"] = str(device)
    except AsrError as e:
        info["device"] = f"error: {e}"
    from asr.models.funasr_import import funasr_version

    info["funasr"] = funasr_version()
    info.update(_precision_info(settings.runtime.precision, device))
    for role in roles_for_profile(settings.models.profile):
        spec = model_spec(settings.models, role)
        entry: dict[str, Any] = {"id": spec.id, "revision": spec.revision}
        try:
            location = locate_model(settings.models, role)
            check_required_files(location)
            entry.update(path=str(location.directory), status="ok", random_weights=location.is_test_model)
        except AsrError as e:
            entry.update(status=f"missing: {e}")
        info["models"][role] = entry
    return info


def _precision_info(setting: str, device: torch.device | None) -> dict[str, str]:
    """The mode the models would run in on ``device`` (what ``auto`` resolves to), and why; the
    same rule loading applies, so info never shows a mode the service would not use."""
    info = {"precision": setting, "precision_setting": setting}
    if device is None:
        return info
    from asr.models.precision import resolve_precision

    try:
        info["precision"], info["precision_reason"] = resolve_precision(setting, device)
    except AsrError as e:
        info["precision"] = f"error: {e}"
    return info


def cmd_info(args: argparse.Namespace, settings: Settings) -> int:
    info = gather_info(settings)
    ok = all(e["status"] == "ok" for e in info["models"].values())
    if args.json:
        print(json.dumps(info, ensure_ascii=False, indent=2))
        return 0 if ok else 1
    shown = dict(info)
    if "precision_reason" in info:
        shown["precision"] = f"{info['precision']} ({info['precision_reason']})"  # "int8 (auto: CPU with ...)"
    for key in ("asr_service", "python", "torch", "funasr", "device", "cuda_available", "precision", "profile", "cache_dir"):
        if key in shown:
            print(f"{key:14} {shown[key]}")
    for role, entry in info["models"].items():
        flag = "  [RANDOM WEIGHTS: test model]" if entry.get("random_weights") else ""
        print(f"{role:14} {entry['id']}@{entry['revision']}")
        print(f"{'':14} {entry.get('path', '')} {entry['status']}{flag}")
    return 0 if ok else 1


def cmd_bundle(args: argparse.Namespace, settings: Settings) -> int:
    from asr.models.bundle import create_bundle
    from asr.models.files import LOCAL_NOTE, LOCAL_SOURCE, MANIFEST_NAME

    summary = create_bundle(settings, args.out)
    local = [model for model in summary.models if model.get("source") == LOCAL_SOURCE]
    for model in summary.models:
        note = f", {LOCAL_NOTE}" if model in local else ""
        print(f"{model['role']}: {model['model_id']}@{model['revision']} ({len(model['files'])} files{note})")
    if local:
        # These prove only that the files do not change after this point, not that they are the
        # published model: say so where the operator decides whether to ship the bundle.
        print(f"bundled with locally computed checksums (no {MANIFEST_NAME} in their directories): "
              f"{', '.join(m['role'] for m in local)}; `asr verify` where they are installed checks "
              f"the files against these, not against the hub")
    print(f"wrote {summary.path} ({summary.path.stat().st_size / 2**20:.1f} MiB)")
    print(f"sha256 {summary.sha256}")
    print(f"install it with: asr install-bundle {summary.path.name} --sha256 {summary.sha256}")
    return 0


def cmd_install_bundle(args: argparse.Namespace, settings: Settings) -> int:
    from asr.models.bundle import install_bundle
    from asr.models.files import LOCAL_NOTE

    for report in install_bundle(settings, args.bundle_file, args.sha256):
        state = "installed" if report.installed else "already installed (identical)"
        note = f" ({LOCAL_NOTE})" if report.local_checksums else ""
        print(f"{report.role}: {report.model_id}@{report.revision} {state} -> {report.directory}{note}")
    return 0


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    from asr.service.check import preflight

    results = preflight(settings, args.config)
    for result in results:
        print(f"{'ok' if result.ok else 'FAIL':4}  {result.name:10} {result.detail}")
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"asr serve --check: {len(failed)} check(s) failed; the service would not start", file=sys.stderr)
        return 1
    print("asr serve --check: all checks passed")
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    if args.check:
        return cmd_check(args, settings)
    if args.ray:
        from asr.scaleout import require_ray

        require_ray()
        from asr.scaleout.ray_serve import serve as serve_on_ray

        overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v}
        settings = settings.model_copy(update={"server": settings.server.model_copy(update=overrides)})
        return serve_on_ray(settings, address=args.ray, workers=args.workers,
                            gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker)
    from asr.service.server import load_ui, serve

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v}
    if overrides:
        settings = settings.model_copy(update={"server": settings.server.model_copy(update=overrides)})
    return serve(settings, load_ui(settings))


def cmd_batch(args: argparse.Namespace, settings: Settings) -> int:
    """``asr batch``: locally, or on Ray with ``--ray``."""
    from asr.core.writers import WRITERS
    from asr.scaleout.batch import BatchSpec, list_inputs, run_local

    formats = _formats(args.format, WRITERS)
    if settings.models.profile == "vad":
        raise ConfigError("the vad profile cannot transcribe; choose another --profile")
    ray_flags = {"--workers": args.workers, "--gpus-per-worker": args.gpus_per_worker,
                 "--cpus-per-worker": args.cpus_per_worker}
    if not args.ray and any(v is not None for v in ray_flags.values()):
        used = ", ".join(k for k, v in ray_flags.items() if v is not None)
        raise ConfigError(f"{used} need --ray (a local batch runs one worker on all CPU threads or the GPU)")
    items = list_inputs(args.inputs)
    spec = BatchSpec.create(settings, formats, _options(args, settings))
    if args.ray:
        from asr.scaleout import require_ray

        require_ray()
        from asr.scaleout.ray_batch import run_on_ray

        summary = run_on_ray(
            items, args.out, settings, spec, address=args.ray, workers=args.workers,
            gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker,
            inline_max_s=args.inline_max_s,
        )
    else:
        from asr.models.files import locate_all

        locate_all(settings)  # a missing model fails before the listing is examined
        summary = run_local(items, args.out, settings, spec)
    for entry in summary.failures[:20]:
        print(_error_line(Path(entry["input"]), AsrError(entry["error"] or "")), file=sys.stderr)
    if len(summary.failures) > 20:
        print(f"... and {len(summary.failures) - 20} more failures: see {summary.manifest}", file=sys.stderr)
    print(summary.line())
    return 1 if summary.failed else 0


COMMANDS = {
    "serve": cmd_serve,
    "batch": cmd_batch,
    "transcribe": cmd_transcribe,
    "vad": cmd_vad,
    "live": cmd_live,
    "download": cmd_download,
    "verify": cmd_verify,
    "bundle": cmd_bundle,
    "install-bundle": cmd_install_bundle,
    "info": cmd_info,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from asr.logs import setup_logging

    try:
        settings = _settings(args)
        quiet = args.command in ("transcribe", "vad", "batch") and not args.log_level  # their output is the summary
        setup_logging("WARNING" if quiet else settings.log_level)
        return COMMANDS[args.command](args, settings)
    except AsrError as e:
        print(f"asr {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. --out names a file, or the disk is full
        print(f"asr {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
