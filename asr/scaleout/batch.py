"""Batch transcription of many files into a directory, resumable, with a results manifest.

This module is shared by the local runner (here) and the Ray runner (``asr.scaleout.ray_batch``); it never
imports Ray. The pieces:

* **Inputs** (:func:`list_inputs`): files, directories (recursive, by audio extension) and
  manifests (``.txt``/``.lst``/``.list``: one path per line; ``.jsonl``/``.ndjson``: one
  ``{"path": ..., "id": ...}`` object per line). Every input gets a stable **id**, which names its
  outputs (``OUT/<id>.srt``...) and its manifest entry: the JSONL ``id`` if given, else the path
  relative to the listed directory (or the file's stem), without the extension. Ids that would
  collide get a short hash of the input's absolute path appended, so an id never depends on the
  order of the inputs.
* **Work** (:func:`decode_input`, :func:`transcribe_input`): the same :class:`~asr.core.pipeline.Pipeline`
  as everywhere else; the outcome carries the rendered output files as text.
* **Recording** (:class:`BatchRun`): only the driver writes. Each output is written to a temporary
  file and renamed into place (a reader never sees half a file), then the input's entry is appended
  to ``OUT/results.jsonl`` and flushed to disk. An entry therefore implies complete outputs; an
  output without an entry is simply redone. A second outcome for an id already recorded in this
  run (a retried worker's) is ignored. At the end the manifest is rewritten (atomically) with
  exactly one entry per id; inputs that got no outcome at all (a worker that crashed on them more
  often than Ray retries) are recorded as failed.
* **Resume** (:meth:`BatchRun.is_done`): an input is skipped when its entry is ``ok``, was made
  from the same file (absolute path, size, mtime) with the same output-shaping settings, covers
  every requested format, and each output file still exists with its recorded sha256. Failed
  inputs are tried again on the next run.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from asr.atomic import TMP_MARK, write_atomic
from asr.config import Settings
from asr.errors import AsrError, ConfigError
from asr.models.files import model_spec, sha256_file
from asr.types import TranscribeOptions

logger = logging.getLogger(__name__)

RESULTS_NAME = "results.jsonl"
LOCK_NAME = ".asr-batch.lock"

#: What a directory listing picks up (lower-case suffixes); the decoder decides what really is audio.
AUDIO_EXTENSIONS = frozenset({
    ".wav", ".w64", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".oga", ".opus", ".webm", ".amr", ".wma",
    ".mp4", ".m4v", ".mkv", ".mov", ".aif", ".aiff", ".au", ".caf", ".3gp",
})
PLAIN_MANIFEST_EXTENSIONS = frozenset({".txt", ".lst", ".list"})
JSONL_MANIFEST_EXTENSIONS = frozenset({".jsonl", ".ndjson"})
MANIFEST_EXTENSIONS = PLAIN_MANIFEST_EXTENSIONS | JSONL_MANIFEST_EXTENSIONS

#: Files longer than this are not decoded into the object store by a Ray task: the worker that
#: transcribes them streams them from disk instead (see docs/SCALE_OUT.md). 600 s is 38 MB of samples.
DEFAULT_INLINE_MAX_S = 600.0


# ---- inputs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchInput:
    """One file to transcribe. ``size``/``mtime_ns`` are -1 when the file could not be examined."""

    id: str
    path: str  # absolute
    size: int = -1
    mtime_ns: int = -1

    @classmethod
    def of(cls, id: str, path: str | os.PathLike[str]) -> "BatchInput":
        absolute = os.path.abspath(os.fspath(path))
        try:
            st = os.stat(absolute)
            size, mtime_ns = st.st_size, st.st_mtime_ns
        except OSError:
            size = mtime_ns = -1
        return cls(id, absolute, size, mtime_ns)

    def row(self) -> dict[str, Any]:
        return asdict(self)


def _clean_id(raw: str) -> str:
    """An id that is safe as a relative path below the output directory."""
    parts = []
    for part in str(raw).replace("\\", "/").split("/"):
        part = "".join(ch if ch.isprintable() else "_" for ch in part).strip()
        if part in ("", ".", ".."):
            continue
        parts.append(part[:200])
    return "/".join(parts) or "audio"


def _path_hash(path: str) -> str:
    return hashlib.sha1(path.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def _walk(directory: Path) -> Iterator[Path]:
    """Audio files below ``directory``, sorted, hidden files and directories skipped."""
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS:
                yield Path(root) / name


def _read_manifest(path: Path) -> Iterator[tuple[str | None, str]]:
    """(explicit id or None, path) per entry; relative paths are relative to the manifest."""
    base = path.resolve().parent
    jsonl = path.suffix.lower() in JSONL_MANIFEST_EXTENSIONS
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read manifest {path}: {getattr(e, 'strerror', None) or e}") from None
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if jsonl:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}:{number}: not a JSON object: {e}") from None
            if not isinstance(entry, dict):
                raise ConfigError(f"{path}:{number}: each line must be a JSON object with a \"path\"")
            value = entry.get("path", entry.get("input"))
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{path}:{number}: no \"path\" in this entry")
            explicit = entry.get("id")
            if explicit is not None and not isinstance(explicit, (str, int)):
                raise ConfigError(f"{path}:{number}: \"id\" must be a string")
            yield (None if explicit is None else str(explicit)), str(base / os.path.expanduser(value))
        else:
            yield None, str(base / os.path.expanduser(line))


def list_inputs(sources: Sequence[str | os.PathLike[str]]) -> list[BatchInput]:
    """Every input named by files, directories and manifests, each once, with unique stable ids.

    Raises ConfigError for a source that does not exist or a manifest that cannot be read; a path
    *listed in a manifest* that does not exist is kept (its failure is recorded like any other)."""
    found: list[tuple[str, bool, str]] = []  # (id, explicit, absolute path)
    for source in sources:
        source_path = Path(source).expanduser()
        if source_path.is_dir():
            for file in sorted(_walk(source_path), key=lambda f: f.relative_to(source_path).as_posix()):
                found.append((str(file.relative_to(source_path).with_suffix("")), False, os.path.abspath(file)))
        elif source_path.is_file() and source_path.suffix.lower() in MANIFEST_EXTENSIONS:
            for explicit, path in _read_manifest(source_path):
                if explicit is not None:
                    found.append((explicit, True, os.path.abspath(path)))
                else:
                    found.append((Path(path).stem, False, os.path.abspath(path)))
        elif source_path.exists():
            found.append((source_path.stem, False, os.path.abspath(source_path)))
        else:
            raise ConfigError(f"input not found: {source}")

    seen_paths: set[str] = set()
    unique: list[tuple[str, bool, str]] = []
    for raw_id, explicit, path in found:
        if path in seen_paths:  # the same file named twice (a directory and a manifest)
            continue
        seen_paths.add(path)
        unique.append((_clean_id(raw_id), explicit, path))

    explicit_ids: dict[str, str] = {}
    for id_, explicit, path in unique:
        if explicit:
            if id_ in explicit_ids:
                raise ConfigError(f"id {id_!r} is given to two inputs: {explicit_ids[id_]} and {path}")
            explicit_ids[id_] = path
    counts: dict[str, int] = {}
    for id_, explicit, _ in unique:
        counts[id_] = counts.get(id_, 0) + 1
    items = []
    for id_, explicit, path in unique:
        if not explicit and (counts[id_] > 1 or id_ in explicit_ids):
            id_ = f"{id_}-{_path_hash(path)}"
        items.append(BatchInput.of(id_, path))
    return items


# ---- what a run produces ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchSpec:
    """What every input of a run is turned into."""

    formats: tuple[str, ...]
    options: TranscribeOptions = TranscribeOptions()
    """The same for every input (checked once, by asr.core.options.build_options)."""
    config_key: str = ""
    """Hash of the settings that shape the outputs (models, precision, VAD, cue limits, the options)."""

    @classmethod
    def create(cls, settings: Settings, formats: Iterable[str],
               options: TranscribeOptions = TranscribeOptions()) -> "BatchSpec":
        return cls(tuple(formats), options, config_key(settings, options))

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for a Ray actor's constructor."""
        return {"formats": list(self.formats), "options": asdict(self.options), "config_key": self.config_key}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BatchSpec":
        options = dict(data["options"])
        options["hotwords"] = tuple(options.get("hotwords", ()))
        return cls(tuple(data["formats"]), TranscribeOptions(**options), data["config_key"])


def config_key(settings: Settings, options: TranscribeOptions = TranscribeOptions()) -> str:
    """Changes when a setting that changes the transcript or its files changes (not the device, not the
    decoder's limits: they only decide whether a file fails, and failed files are always tried again)."""
    m = settings.models
    roles = (("asr", model_spec(m, "asr")), ("vad", m.vad), ("punc", m.punc))
    shaping = {
        "profile": m.profile,
        "models": {role: [spec.id, spec.revision, str(spec.path or "")] for role, spec in roles},
        "precision": settings.runtime.precision,
        "vad": settings.vad.model_dump(mode="json"),
        "output": settings.output.model_dump(mode="json"),
        "punctuate": options.punctuate,
    }
    # Keys that only exist when used, so that a run started before they existed still resumes.
    extra = {k: v for k, v in asdict(options).items() if k not in ("punctuate", "use_vad", "precision")}
    defaults = asdict(TranscribeOptions(itn=False))
    if any(v != defaults[k] for k, v in extra.items()):
        shaping["options"] = extra
        if options.speakers:
            shaping["speakers"] = [m.spk.id, m.spk.revision, str(m.spk.path or ""), settings.speakers.label]
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _failure(item: BatchInput, error: BaseException, decode_s: float = 0.0) -> dict[str, Any]:
    if isinstance(error, AsrError):
        message, code = str(error), error.code
    elif isinstance(error, OSError):
        message, code = f"{Path(item.path).name}: {error.strerror or error}", "os_error"
    else:
        message, code = f"{Path(item.path).name}: internal error: {type(error).__name__}: {error}", "internal_error"
    return {"id": item.id, "status": "failed", "error": message, "error_code": code,
            "audio_s": None, "wall_s": round(decode_s, 3), "rtf": None, "texts": {}, "worker": worker_name()}


def decode_input(item: BatchInput, settings: Settings, inline_max_s: float = DEFAULT_INLINE_MAX_S):
    """Probe and decode one input for transfer to a worker, as a Ray read task does.

    Returns ``(audio, error, decode_s)``: ``audio`` is the whole file as 16 kHz float32, or None when
    the file is longer than ``inline_max_s`` (or of unknown length) and the worker should stream it
    from disk itself; ``error`` is the failure outcome when the file cannot be used."""
    from asr.core.isolation import open_audio
    from asr.core.pipeline import CHUNK_S

    started = time.perf_counter()
    try:
        # as the pipeline opens a file: in a child process with limits when so configured
        info, stream = open_audio(Path(item.path), settings.audio, Path(item.path).name, CHUNK_S)
        if info.duration_s is None or info.duration_s > inline_max_s:
            stream.close()  # a generator or the child's chunks: either way nothing keeps decoding
            return None, None, time.perf_counter() - started
        chunks = list(stream)
        audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        return audio.astype(np.float32, copy=False), None, time.perf_counter() - started
    except Exception as e:  # one bad file never stops the batch
        decode_s = time.perf_counter() - started
        return None, _failure(item, e, decode_s), decode_s


def transcribe_input(
    pipeline: Any, item: BatchInput, spec: BatchSpec, settings: Settings,
    audio: np.ndarray | None = None, decode_s: float = 0.0,
) -> dict[str, Any]:
    """Transcribe one input (from ``audio`` if given, else streamed from its path) and render every
    requested format. Returns the outcome (a JSON-able dict); never raises for a bad file."""
    from asr.core.writers import render
    from asr.errors import FatalDeviceError

    started = time.perf_counter()
    try:
        transcript = pipeline.transcribe(item.path if audio is None else audio, spec.options,
                                         name=Path(item.path).name)
        texts = {fmt: render(transcript, fmt, settings.output).body.decode("utf-8") for fmt in spec.formats}
    except FatalDeviceError:
        raise  # the worker's device is broken: the worker must go, not the file
    except Exception as e:
        return _failure(item, e, decode_s + time.perf_counter() - started)
    wall = decode_s + time.perf_counter() - started
    audio_s = transcript.duration_s
    return {"id": item.id, "status": "ok", "error": None, "error_code": None, "audio_s": round(audio_s, 3),
            "wall_s": round(wall, 3), "rtf": round(wall / audio_s, 5) if audio_s > 0 else None, "texts": texts,
            "worker": worker_name()}


# ---- files on disk -------------------------------------------------------------------------------------


def read_results(path: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """The entries of a results manifest, last one per id winning, and the number of unreadable
    lines (a line torn by a crash mid-write is skipped, and so is its input's entry: it is redone)."""
    entries: dict[str, dict[str, Any]] = {}
    bad = 0
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return entries, 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            entries[entry["id"]] = entry
        else:
            bad += 1
    return entries, bad


def _json_line(entry: dict[str, Any]) -> str:
    return json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n"


# ---- progress ------------------------------------------------------------------------------------------


class BatchProgress:
    """Files done of the total, audio hours, failures and an ETA: a tqdm bar on a terminal, a log
    line every ``interval_s`` otherwise (a batch of thousands of files runs under nohup or a scheduler)."""

    def __init__(self, total: int, enabled: bool = True, interval_s: float = 30.0):
        self.total = total
        self.done = self.failed = 0
        self.audio_s = 0.0
        self.started = time.monotonic()
        self._interval, self._last_line = interval_s, self.started
        self._enabled = enabled
        self._bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="file", file=sys.stderr, dynamic_ncols=True, smoothing=0.05,
                             desc="batch")

    def update(self, outcome: dict[str, Any]) -> None:
        self.done += 1
        if outcome["status"] != "ok":
            self.failed += 1
        self.audio_s += outcome.get("audio_s") or 0.0
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.update(1)
        elif self._enabled and time.monotonic() - self._last_line >= self._interval:
            self._last_line = time.monotonic()
            print(f"batch: {self.line()}", file=sys.stderr, flush=True)

    def _postfix(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return f"{self.audio_s / 3600:.2f} h audio, {self.audio_s / elapsed:.1f}x real time, {self.failed} failed"

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        eta = ""
        if 0 < self.done < self.total:
            eta = f", ETA {_hms(elapsed / self.done * (self.total - self.done))}"
        return f"{self.done}/{self.total} files, {self._postfix()}, elapsed {_hms(elapsed)}{eta}"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _hms(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# ---- one run -------------------------------------------------------------------------------------------


@dataclass
class BatchSummary:
    total: int
    skipped: int
    done: int = 0
    failed: int = 0
    lost: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0
    manifest: Path | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)

    def line(self) -> str:
        speed = f" ({self.audio_s / self.wall_s:.1f}x real time)" if self.audio_s > 0 and self.wall_s > 0 else ""
        return (f"{self.total} inputs: {self.done - self.failed} transcribed, {self.failed} failed, "
                f"{self.skipped} already done (skipped); {self.audio_s / 3600:.3f} h of audio in "
                f"{self.wall_s:.1f} s{speed} -> {self.manifest}")


class BatchRun:
    """The driver's side of one run over ``OUT``: which inputs are pending, and recording outcomes.

    Use as a context manager: it takes an exclusive lock on the output directory (a second batch on
    the same directory is refused), and on exit rewrites the manifest with one entry per input."""

    def __init__(self, out_dir: Path, items: Sequence[BatchInput], spec: BatchSpec, progress: bool = True):
        self.out_dir = Path(out_dir)
        self.items = list(items)
        self.spec = spec
        self.manifest_path = self.out_dir / RESULTS_NAME
        self._show_progress = progress
        self._lock_file = None
        self._manifest = None
        self._recorded: set[str] = set()
        self._by_id = {item.id: item for item in self.items}
        self.entries: dict[str, dict[str, Any]] = {}
        self.pending: list[BatchInput] = []
        self.summary = BatchSummary(total=len(self.items), skipped=0, manifest=self.manifest_path)
        self.progress: BatchProgress | None = None
        self._started = 0.0

    # life cycle
    def __enter__(self) -> "BatchRun":
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AsrError(f"cannot use --out {self.out_dir} as the output directory: {e.strerror or e}") from None
        self._lock()
        self._sweep_temp_files()
        self.entries, bad = read_results(self.manifest_path)
        if bad:
            logger.warning("%s: %d unreadable line(s) skipped (an interrupted write); those inputs are redone",
                           self.manifest_path, bad)
        self.pending = [item for item in self.items if not self.is_done(item)]
        self.summary.skipped = len(self.items) - len(self.pending)
        self._manifest = open(self.manifest_path, "a+b")
        self._manifest.seek(0, os.SEEK_END)
        if self._manifest.tell() > 0:  # a torn last line must not swallow the next entry
            self._manifest.seek(-1, os.SEEK_END)
            if self._manifest.read(1) != b"\n":
                self._manifest.write(b"\n")
        self.progress = BatchProgress(len(self.pending), enabled=self._show_progress)
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.progress is not None:
                self.progress.close()
            if exc[0] is None:  # every pending input was handed out and every outcome received
                for item in self.pending:
                    if item.id not in self._recorded:
                        self.summary.lost += 1
                        self.record({
                            "id": item.id, "status": "failed", "error_code": "worker_lost",
                            "error": f"{Path(item.path).name}: no result: the worker processing this file "
                                     "failed more often than it was retried (see the Ray logs)",
                            "audio_s": None, "wall_s": None, "rtf": None, "texts": {}, "worker": None,
                        })
            if self._manifest is not None:
                self._manifest.close()
                self._manifest = None
            self.reconcile()
            self.summary.wall_s = time.perf_counter() - self._started
        finally:
            self._unlock()

    def _lock(self) -> None:
        import fcntl

        self._lock_file = open(self.out_dir / LOCK_NAME, "a")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            self._lock_file.close()
            self._lock_file = None
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise AsrError(f"another `asr batch` is writing to {self.out_dir}; wait for it or use another --out") \
                    from None
            raise

    def _unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the flock
            self._lock_file = None

    def _sweep_temp_files(self) -> None:
        """Temporary outputs an interrupted run left behind (only we write here: we hold the lock)."""
        for root, _, files in os.walk(self.out_dir):
            for name in files:
                if TMP_MARK in name:
                    try:
                        os.unlink(os.path.join(root, name))
                    except OSError:
                        pass

    # resume
    def output_path(self, item_id: str, fmt: str) -> str:
        from asr.core.writers import output_name

        return output_name(item_id, fmt)

    def is_done(self, item: BatchInput) -> bool:
        entry = self.entries.get(item.id)
        if not entry or entry.get("status") != "ok" or item.size < 0:
            return False
        if (entry.get("input"), entry.get("size"), entry.get("mtime_ns"), entry.get("config")) != (
                item.path, item.size, item.mtime_ns, self.spec.config_key):
            return False
        outputs, digests = entry.get("outputs") or {}, entry.get("sha256") or {}
        for fmt in self.spec.formats:
            if fmt not in outputs or outputs[fmt] != self.output_path(item.id, fmt):
                return False
            try:
                if sha256_file(self.out_dir / outputs[fmt]) != digests.get(fmt):
                    return False
            except OSError:  # deleted or unreadable: redo it
                return False
        return True

    # recording
    def record(self, outcome: dict[str, Any]) -> dict[str, Any] | None:
        """Write an outcome's files and its manifest entry. Returns the entry, or None if this input
        already has one from this run (a duplicate from a retried worker) or is not part of the run."""
        item = self._by_id.get(outcome["id"])
        if item is None or item.id in self._recorded:
            return None
        outputs, digests = {}, {}
        if outcome["status"] == "ok":
            try:
                for fmt, text in outcome["texts"].items():
                    data = text.encode("utf-8")
                    relative = self.output_path(item.id, fmt)
                    write_atomic(self.out_dir / relative, data)
                    outputs[fmt], digests[fmt] = relative, hashlib.sha256(data).hexdigest()
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    raise AsrError(f"the disk of {self.out_dir} is full; free space and run the same command "
                                   "again to resume") from None
                outcome = {**outcome, "status": "failed", "error_code": "os_error",
                           "error": f"cannot write the outputs: {e.strerror or e}"}
                outputs, digests = {}, {}
        entry = {
            "id": item.id, "input": item.path, "size": item.size, "mtime_ns": item.mtime_ns,
            "config": self.spec.config_key, "status": outcome["status"], "outputs": outputs, "sha256": digests,
            "audio_s": outcome.get("audio_s"), "wall_s": outcome.get("wall_s"), "rtf": outcome.get("rtf"),
            "error": outcome.get("error"), "error_code": outcome.get("error_code"), "worker": outcome.get("worker"),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        }
        self._manifest.write(_json_line(entry).encode("utf-8"))
        self._manifest.flush()
        os.fsync(self._manifest.fileno())
        self._recorded.add(item.id)
        self.entries[item.id] = entry
        self.summary.done += 1
        if entry["status"] != "ok":
            self.summary.failed += 1
            self.summary.failures.append(entry)
        self.summary.audio_s += entry["audio_s"] or 0.0
        if self.progress is not None:
            self.progress.update(entry)
        return entry

    def reconcile(self) -> None:
        """Rewrite the manifest with exactly one entry per id (sorted), atomically."""
        # self.entries is what the file held when the run began (under the lock) plus every line since
        data = "".join(_json_line(self.entries[key]) for key in sorted(self.entries)).encode("utf-8")
        write_atomic(self.manifest_path, data)


# ---- the local runner ------------------------------------------------------------------------------------


def run_local(
    items: Sequence[BatchInput], out_dir: Path, settings: Settings, spec: BatchSpec, *,
    pipeline: Any = None, progress: bool = True,
) -> BatchSummary:
    """Transcribe the pending inputs one after the other with one loaded model set (all CPU threads
    or the GPU). ``pipeline`` may be given (tests, or a caller that already loaded one)."""
    with BatchRun(out_dir, items, spec, progress=progress) as run:
        if run.pending:
            if pipeline is None:
                from asr.core.pipeline import build_pipeline

                pipeline = build_pipeline(settings)
            for item in run.pending:
                outcome = transcribe_input(pipeline, item, spec, settings)
                run.record(outcome)
    return run.summary
