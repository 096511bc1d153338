"""The engine service: loaded models, a bounded job queue, workers, and the job history.

One worker owns each loaded model set (FunASR models are not re-entrant). A submit beyond
``queue.max_size`` waiting jobs is refused at once with EngineBusyError. Every job is a row
in SQLite that is committed before the caller learns of it; results are committed before a
job is reported done. Nothing here knows about HTTP or Gradio.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import shutil
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from asr.config import Settings
from asr.errors import (
    AsrError,
    EditError,
    EngineBusyError,
    EngineNotReadyError,
    FatalDeviceError,
    JobActiveError,
    JobAlreadyFinishedError,
    JobCancelledError,
    JobNotCompletedError,
    JobNotFoundError,
    RequestError,
    StorageFullError,
    StorageUnavailableError,
)
from asr.service.edits import SentenceEdit, apply_edits
from asr.service.jobs import JobKind, JobRecord, JobState, JobStore
from asr.service.live import LiveHub
from asr.service.system import CpuSampler, cpu_facts, disk_facts, gpu_facts, memory_facts, package_version
from asr.types import ProgressCallback, TranscribeOptions, Transcript, VadResult

if TYPE_CHECKING:
    from asr.core.pipeline import AudioSource

logger = logging.getLogger(__name__)

DB_NAME = "jobs.sqlite3"
_SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
#: Longest text the history is searched for (a file name or a phrase, not a document).
MAX_QUERY_CHARS = 200
#: Completed jobs whose real-time factor the time estimates use (their median, per kind): a few,
#: so that one odd job (a cold cache, a file of silence) does not swing them.
RTF_WINDOW = 5
#: A job's own pace estimates its time left only once this share is done (with no completed job to go by).
OWN_PACE_AFTER = 0.05


class Runner(Protocol):
    """What a worker runs its jobs on: the local pipeline (asr.core.pipeline.Pipeline), a Ray actor
    (asr.scaleout.ray_serve.RayPipeline), or the tests' gated pipeline. One job at a time."""

    @property
    def models(self) -> Any:
        """The loaded model set, as asr.models.loading.describe reads it (the System tab, /metrics)."""

    def warm_up(self) -> None:
        """Run every stage once, so that the first job is not the slow one."""

    def transcribe(self, source: AudioSource, options: TranscribeOptions = ..., progress: ProgressCallback | None = None,
                   name: str | None = None) -> Transcript: ...

    def detect_speech(self, source: AudioSource, progress: ProgressCallback | None = None,
                      name: str | None = None) -> VadResult: ...


@dataclass
class _LiveJob:
    """What only the running process knows about a job: progress, cancellation, completion."""

    id: str
    kind: JobKind
    path: Path
    options: TranscribeOptions
    filename: str
    audio_s: float | None = None  # what the file's container says (the probe's); None if it does not
    stage: str = "queued"
    progress: float = 0.0
    started: float | None = None  # perf_counter when its runner began
    cancel_requested: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    on_done: list[Callable[[], None]] = field(default_factory=list)  # guarded by the engine's lock
    unsaved: JobRecord | None = None  # a finished job the history could not record (disk full, database gone)


@dataclass
class _Worker:
    index: int
    thread: threading.Thread | None = None
    job_id: str | None = None
    state: str = "starting"
    # A job handed straight to this idle worker at submit: it never waits in the queue, so it never
    # shows a queue place (the worker takes it when its thread next runs).
    assigned: _LiveJob | None = None


def _default_on_fatal(error: BaseException) -> None:
    logger.critical("fatal device error, exiting so that the supervisor restarts the service: %s", error)
    logging.shutdown()
    os._exit(70)


class Engine:
    """Owns the models, the queue and the history. Thread-safe."""

    def __init__(
        self,
        settings: Settings,
        *,
        pipeline_factory: Callable[[Settings], Runner] | None = None,
        on_fatal: Callable[[BaseException], None] = _default_on_fatal,
    ):
        self.settings = settings
        self._pipeline_factory = pipeline_factory or _load_pipeline
        self._on_fatal = on_fatal
        self._state_dir = settings.storage.state_path()
        self._jobs_dir = settings.storage.cache_path() / "jobs"
        self.store = JobStore(self._state_dir / DB_NAME)
        self._lock = threading.Condition()
        self._waiting: collections.deque[_LiveJob] = collections.deque()
        self._reserved = 0
        self._live: dict[str, _LiveJob] = {}
        self._workers = [_Worker(i) for i in range(settings.queue.workers)]
        self._rtfs: dict[JobKind, collections.deque[float]] = {
            kind: collections.deque(maxlen=RTF_WINDOW) for kind in JobKind
        }
        self._pipelines: list[Runner] = []
        self._stopping = False
        self.ready = threading.Event()
        self.started_at = time.time()
        self.load_seconds = 0.0
        self.warmup_seconds = 0.0
        self.listeners: list[Callable[[str, JobRecord], None]] = []
        self._edit_lock = threading.Lock()
        #: Folders with a ``<job id>/`` of files made from a job's result (the UI's downloads: the
        #: server adds its folder); deleting the job deletes them too.
        self.result_dirs: list[Path] = []
        self._cpu = CpuSampler()
        #: live captions (asr.service.live), with the live profile: its own thread and models
        self.live: LiveHub | None = LiveHub(settings) if settings.models.profile.endswith("+live") else None

    # ---- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Recover from the last run, load one model set per worker, warm up, start the workers."""
        self.store.mark_unfinished_interrupted()
        self._sweep_job_dirs()
        self.store.prune(self.settings.storage.keep_jobs, self.settings.storage.keep_days)
        t0 = time.perf_counter()
        self._pipelines = [self._pipeline_factory(self.settings) for _ in self._workers]
        self.load_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        for pipeline in self._pipelines:
            pipeline.warm_up()
        if self.live is not None:
            self.live.start()
        self.warmup_seconds = time.perf_counter() - t0
        for worker, pipeline in zip(self._workers, self._pipelines):
            worker.state = "idle"
            worker.thread = threading.Thread(
                target=self._work, args=(worker, pipeline), name=f"asr-worker-{worker.index}", daemon=True
            )
            worker.thread.start()
        self.ready.set()
        logger.info(
            "engine ready: %d worker(s), models loaded in %.2f s, warm-up %.2f s",
            len(self._workers), self.load_seconds, self.warmup_seconds,
        )

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking work; jobs still waiting become interrupted (they are in the history)."""
        with self._lock:
            self._stopping = True
            waiting = list(self._waiting) + [w.assigned for w in self._workers if w.assigned is not None]
            self._waiting.clear()
            for worker in self._workers:
                if worker.assigned is not None:
                    worker.assigned, worker.job_id, worker.state = None, None, "idle"
            self._lock.notify_all()
        for job in waiting:
            self._finish_unsaved_safe(job, JobState.INTERRUPTED, "the service was stopped before this job started", "interrupted")
            self._release(job)
            logger.info("%s", _job_log_line(self.get(job.id), "interrupted"))
        for worker in self._workers:
            if worker.thread is not None:
                worker.thread.join(timeout)
        if self.live is not None:
            self.live.stop()
        self.ready.clear()

    def _sweep_job_dirs(self) -> None:
        """Per-job upload copies a crash left behind."""
        if self._jobs_dir.exists():
            leftovers = list(self._jobs_dir.iterdir())
            for path in leftovers:
                shutil.rmtree(path, ignore_errors=True)
            if leftovers:
                logger.info("removed %d leftover job director(ies) from %s", len(leftovers), self._jobs_dir)
        self._jobs_dir.mkdir(parents=True, exist_ok=True)

    @property
    def pipelines(self) -> list[Runner]:
        return self._pipelines

    # ---- submitting -----------------------------------------------------------------------------

    def submit(
        self,
        source: Path,
        filename: str,
        kind: JobKind = JobKind.TRANSCRIBE,
        options: TranscribeOptions | None = None,
        owner: str | None = None,
        move: bool = False,
    ) -> JobRecord:
        """Queue a file. Raises an AudioError at once for unusable audio, EngineBusyError when full.

        The file is copied (or moved) into a directory of the job's own, removed when it ends.
        """
        if not self.ready.is_set() or self._stopping:
            raise EngineNotReadyError("the service is starting or stopping; try again in a moment")
        self.store.check()  # a job the history cannot record is refused before anything is kept
        options = options or TranscribeOptions()
        # A place first: a busy service answers at once, before it looks at the file, and a file
        # being probed holds its place, so a burst cannot overfill the queue. The places are the
        # queue's plus one per worker: a job for an idle worker does not wait.
        with self._lock:
            waiting = len(self._waiting) + self._reserved
            running = sum(1 for w in self._workers if w.job_id is not None)
            if waiting + running >= self.settings.queue.max_size + len(self._workers):
                raise EngineBusyError(f"busy: {waiting} jobs waiting; try again later")
            self._reserved += 1
        job_id = uuid.uuid4().hex
        try:
            info = self._probe(source, _display_name(filename))
            job_dir = self._jobs_dir / job_id
            job_dir.mkdir(parents=True)
            suffix = Path(filename).suffix.lower()
            target = job_dir / ("input" + (suffix if _SAFE_SUFFIX.match(suffix) else ""))
            try:
                (shutil.move if move else shutil.copyfile)(source, target)
            except OSError as e:
                shutil.rmtree(job_dir, ignore_errors=True)
                full = StorageFullError.from_os_error(e, "the upload could not be kept")
                if full is not None:
                    raise full from e
                raise
            record = JobRecord(
                id=job_id, kind=kind, state=JobState.QUEUED, filename=_display_name(filename),
                created_at=time.time(), options=asdict(options), owner=owner,
            )
            try:
                self.store.create(record)
            except BaseException:  # full, unwritable, gone: the copy must not outlive the refusal
                shutil.rmtree(job_dir, ignore_errors=True)
                raise
            live = _LiveJob(job_id, kind, target, options, record.filename, audio_s=info.duration_s)
            with self._lock:
                self._live[job_id] = live
                self._hand_over(live)
        finally:
            with self._lock:
                self._reserved -= 1
        logger.info("job %s queued: %s (%s)", job_id, record.filename, kind.value)
        return self.get(job_id)

    def _hand_over(self, job: _LiveJob) -> None:
        """To an idle worker at once when nothing waits before it, else to the back of the queue.

        Called with the lock held. Handing it over here, not when the worker's thread next runs,
        is what keeps a job for an idle worker from showing "waiting in queue (position 1)"."""
        idle = next((w for w in self._workers if w.state == "idle" and w.job_id is None), None)
        if idle is not None and not self._waiting:
            idle.assigned, idle.job_id, idle.state = job, job.id, "busy"
            job.stage = "starting"
        else:
            self._waiting.append(job)
        self._lock.notify_all()  # the worker given the job must wake, not just any waiting one

    def _probe(self, source: Path, name: str) -> Any:
        """Refuse an unusable file at once, before it waits in the queue; its AudioInfo otherwise."""
        from asr.core.isolation import probe

        return probe(source, self.settings.audio, name)

    # ---- watching ---------------------------------------------------------------------------------

    def has_job(self, job_id: str) -> bool:
        """Whether the history has this job; True when it cannot tell (a database problem), so that a
        caller cleaning up after deleted jobs never removes a live job's files."""
        try:
            self.store.get(job_id)
        except JobNotFoundError:
            return False
        except AsrError:
            return True
        return True

    def get(self, job_id: str) -> JobRecord:
        with self._lock:
            live = self._live.get(job_id)
        if live is not None and live.unsaved is not None:
            return live.unsaved
        record = self.store.get(job_id)
        if live is None or record.state.finished:
            return record
        # the live state read after the row: a job a worker took meanwhile shows no stale queue place
        with self._lock:
            position = next((i + 1 for i, j in enumerate(self._waiting) if j.id == job_id), None)
            return self._live_view(record, live, position)

    def _live_view(self, record: JobRecord, live: _LiveJob, position: int | None) -> JobRecord:
        """The stored row with what only this process knows. Called with the lock held.

        A job a worker holds has stage ``starting`` and no queue place from that moment; its state
        stays the row's (``queued``) until the worker has recorded its start, as clients expect."""
        return replace(record, stage=live.stage, progress=live.progress, queue_position=position,
                       eta_s=self._eta(live))

    def _eta(self, job: _LiveJob) -> float | None:
        """Seconds left: the audio still to do times the median RTF of the last few completed jobs
        of its kind; before there are any, the job's own pace once it has made progress."""
        if job.started is None:
            return None
        left = max(0.0, 1.0 - job.progress)
        recent = self._rtfs[job.kind]
        if recent and job.audio_s:
            return round(left * job.audio_s * statistics.median(recent), 1)
        if job.progress >= OWN_PACE_AFTER:  # sooner, start-up costs make it hours for a minute of audio
            return round((time.perf_counter() - job.started) * left / job.progress, 1)
        return None

    def recent_rtf(self, kind: JobKind = JobKind.TRANSCRIBE) -> float | None:
        """The RTF the time estimates use for jobs of ``kind``; None before one has completed."""
        with self._lock:
            recent = self._rtfs[kind]
            return statistics.median(recent) if recent else None

    def wait(self, job_id: str, timeout: float | None = None) -> JobRecord:
        """Block until the job has finished (or the timeout passes); returns its record."""
        with self._lock:
            live = self._live.get(job_id)
        if live is not None:
            live.done.wait(timeout)
        return self.get(job_id)

    def add_done_callback(self, job_id: str, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from a worker thread) once the job has finished, or now if it has.

        For callers that must not block a thread while they wait (the HTTP API's event loop)."""
        with self._lock:
            live = self._live.get(job_id)
            if live is not None and not live.done.is_set():
                live.on_done.append(callback)
                return
        callback()

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a queued job at once, or a running one at its next batch boundary."""
        with self._lock:
            live = self._live.get(job_id)
            if live is None:
                record = self.store.get(job_id)
                if record.state.finished:
                    raise JobAlreadyFinishedError(f"job {job_id} has already finished ({record.state.value})")
                raise JobNotFoundError(f"job {job_id} is not active in this process")
            live.cancel_requested = True
            queued = live in self._waiting
            if queued:
                self._waiting.remove(live)
            for worker in self._workers:
                if worker.assigned is live:  # handed over, not yet taken: as good as queued
                    worker.assigned, worker.job_id, worker.state = None, None, "idle"
                    live.stage, queued = "queued", True
        if queued and self.store.cancel_if_queued(job_id):
            record = self.get(job_id)
            logger.info("%s", _job_log_line(record, "cancelled"))
            self._emit(job_id, record)
            self._release(live)
        return self.get(job_id)

    # ---- a finished job: edits ------------------------------------------------------------------

    def owned(self, job_id: str, owner: str | None) -> JobRecord:
        """The job, if ``owner`` may see it (None: anyone, as when logins are off); else JobNotFoundError,
        the same answer as for a job that does not exist, so that ids of others' jobs are not confirmed."""
        record = self.get(job_id)
        if owner is not None and record.owner != owner:
            raise JobNotFoundError(f"no job with id {job_id!r}")
        return record

    def record_live(self, filename: str, transcript: Transcript, owner: str | None = None) -> JobRecord:
        """A finished live session as a completed transcription job in the history (it ran outside the queue)."""
        record = JobRecord(id=uuid.uuid4().hex, kind=JobKind.TRANSCRIBE, state=JobState.QUEUED,
                           filename=_display_name(filename), created_at=time.time(),
                           options={"live": True}, owner=owner)
        self.store.create(record)
        self.store.mark_running(record.id)
        self.store.complete(record.id, transcript)
        logger.info("job %s recorded: live session %s (%.1f s)", record.id, record.filename, transcript.duration_s)
        return self.store.get(record.id)

    def edit_transcript(
        self,
        job_id: str,
        sentences: Sequence[SentenceEdit] = (),
        speaker_names: Sequence[str] | None = None,
        owner: str | None = None,
    ) -> JobRecord:
        """Correct a completed transcript: sentences' texts or speakers, speakers' names.

        The edits apply to the current version (earlier edits kept) and are saved with the job; the
        recognised transcript stays as it was (``revert_transcript``). Raises EditError for a bad
        edit, JobNotCompletedError for a job without a result."""
        with self._edit_lock:  # read, change, write: two edits at once must not lose one
            record = self._editable(job_id, owner)
            edited = apply_edits(record.current, sentences, speaker_names, self._speaker_label)
            self.store.save_edited(job_id, edited)
        logger.info("job %s: transcript edited (%d sentence(s))", job_id, len(sentences))
        return self.get(job_id)

    def revert_transcript(self, job_id: str, owner: str | None = None) -> JobRecord:
        """Drop a transcript's edits: the job shows and exports what was recognised again."""
        with self._edit_lock:
            record = self._editable(job_id, owner)
            if record.is_edited:
                self.store.save_edited(job_id, None)
        return self.get(job_id)

    def _editable(self, job_id: str, owner: str | None) -> JobRecord:
        record = self.owned(job_id, owner)
        if record.kind is JobKind.VAD:
            raise EditError(f"job {job_id} is a VAD job: it has speech segments, no transcript to edit")
        if record.state is not JobState.COMPLETED or not isinstance(record.result, Transcript):
            raise JobNotCompletedError(f"job {job_id} is {record.state.value}, not completed")
        return record

    def _speaker_label(self, index: int) -> str:
        return self.settings.speakers.label.format(n=index + 1)

    # ---- the history ------------------------------------------------------------------------------

    def jobs(
        self, limit: int = 50, offset: int = 0, owner: str | None = None, query: str | None = None
    ) -> list[JobRecord]:
        """The history, newest first: ``owner``'s jobs when given, with ``query`` those whose file name
        or text (as edited) contains it, ignoring case."""
        query = (query or "").strip()
        if len(query) > MAX_QUERY_CHARS:
            raise RequestError(f"the search text has {len(query)} characters, more than the {MAX_QUERY_CHARS} allowed")
        records = self.store.list(limit=limit, offset=offset, owner=owner, query=query or None)
        with self._lock:
            positions = {j.id: i + 1 for i, j in enumerate(self._waiting)}
            return [self._listed(r, self._live.get(r.id), positions.get(r.id)) for r in records]

    def delete_job(self, job_id: str, owner: str | None = None) -> None:
        """Remove a finished job from the history, with the files made from its result.

        A job still waiting or running is refused (JobActiveError): cancel it first, so that a
        worker never finishes into a row that is gone."""
        record = self.owned(job_id, owner)
        if not record.state.finished:
            raise JobActiveError(f"job {job_id} is {record.state.value}: cancel it first, then delete it")
        self.store.delete(job_id)
        with self._lock:
            live = self._live.get(job_id)
            if live is not None and live.unsaved is not None:  # finished, kept in memory: its row was not saved
                del self._live[job_id]
        if _JOB_ID.match(job_id):  # ids are ours, but a path is built from it: never a "../"
            for directory in self.result_dirs:
                shutil.rmtree(directory / job_id, ignore_errors=True)
        logger.info("job %s deleted: %s", job_id, record.filename)

    def _listed(self, record: JobRecord, live: _LiveJob | None, position: int | None) -> JobRecord:
        """A history row as get() would give it. Called with the lock held."""
        if live is None:
            return record
        if live.unsaved is not None:
            return replace(live.unsaved, result=None)  # listings carry no result
        return record if record.state.finished else self._live_view(record, live, position)

    def status(self) -> dict[str, Any]:
        from asr.models.loading import describe

        with self._lock:
            waiting = len(self._waiting)
            workers = [{"index": w.index, "state": w.state, "job": w.job_id} for w in self._workers]
        models = describe(self._pipelines[0].models) if self._pipelines else {}
        return {
            "ready": self.ready.is_set(),
            "version": package_version(),
            "queue_waiting": waiting,
            "queue_max_size": self.settings.queue.max_size,
            "workers": workers,
            "load_seconds": round(self.load_seconds, 3),
            "warmup_seconds": round(self.warmup_seconds, 3),
            "uptime_s": round(time.time() - self.started_at, 1),
            "logins_on": bool(self.settings.server.auth),
            **self._job_counts(),
            "cpu": cpu_facts(self._cpu),
            "memory": memory_facts(),
            "gpu": gpu_facts(models.get("device")),
            "disk": disk_facts({"state_dir": self._state_dir, "cache_dir": self.settings.storage.cache_path()}),
            **models,
        }

    def _job_counts(self) -> dict[str, Any]:
        """Jobs in the history by how they ended (what the retention limits have kept)."""
        try:
            counts = self.store.counts()
        except Exception as e:  # noqa: BLE001 - a status page (and the health check) shows what it can
            logger.warning("job counts unavailable: %s", e)
            return {"jobs_completed": None, "jobs_failed": None, "jobs_by_state": None}
        return {
            "jobs_completed": counts.get(JobState.COMPLETED.value, 0),
            "jobs_failed": counts.get(JobState.FAILED.value, 0),
            "jobs_by_state": {state.value: counts.get(state.value, 0) for state in JobState},
        }

    # ---- working ------------------------------------------------------------------------------------

    def _next(self, worker: _Worker) -> _LiveJob | None:
        with self._lock:
            while worker.assigned is None and not self._waiting and not self._stopping:
                self._lock.wait()
            if self._stopping:
                return None  # stop() has taken a job handed to this worker, with the queue
            job = worker.assigned or self._waiting.popleft()
            worker.assigned, worker.job_id, worker.state = None, job.id, "busy"
            job.stage = "starting"
            return job

    def _work(self, worker: _Worker, pipeline: Runner) -> None:
        while (job := self._next(worker)) is not None:
            try:
                self._run(job, pipeline)
            finally:
                with self._lock:
                    worker.job_id, worker.state = None, "idle"
        worker.state = "stopped"

    def _run(self, job: _LiveJob, pipeline: Runner) -> None:
        try:
            started = self.store.mark_running(job.id)
        except AsrError as e:  # the history broke while the job waited: say so, keep the worker
            logger.error("job %s not started: %s", job.id, e)
            self._finish_unsaved_safe(job, JobState.FAILED, str(e), e.code)
            self._release(job)
            return
        if not started:  # cancelled while it waited: the row says so already
            self._release(job)
            return
        self._emit(job.id)

        def progress(stage: str, fraction: float) -> None:
            if job.cancel_requested:
                raise JobCancelledError("cancelled while running")
            job.stage, job.progress = stage, max(job.progress, fraction)

        started = job.started = time.perf_counter()
        fatal: BaseException | None = None
        outcome = "failed"
        try:
            if job.kind is JobKind.VAD:
                result: Transcript | VadResult = pipeline.detect_speech(job.path, progress=progress, name=job.filename)
            else:
                result = pipeline.transcribe(job.path, job.options, progress=progress, name=job.filename)
            if job.cancel_requested:  # asked after its last progress report (or the runner made none)
                raise JobCancelledError("cancelled while running")
            self._finish_completed(job, result)
            self._measured(job.kind, result)
            outcome = "completed"
        except JobCancelledError:
            self._finish_unsaved_safe(job, JobState.CANCELLED, "cancelled while running", "cancelled")
            outcome = "cancelled"
        except FatalDeviceError as e:
            self._finish_unsaved_safe(job, JobState.INTERRUPTED, f"the service's device failed: {e}", e.code)
            outcome, fatal = "interrupted", e
        except AsrError as e:
            self._finish_unsaved_safe(job, JobState.FAILED, str(e), e.code)
            outcome = "failed"
        except Exception:  # a bug: keep serving, log everything, tell the user little
            logger.exception("job %s failed unexpectedly", job.id)
            self._finish_unsaved_safe(job, JobState.FAILED, "internal error while processing this file", "internal_error")
            outcome = "failed"
        finally:
            # prune before `done` is set, so a caller that waited sees the history it will keep
            try:
                self.store.prune(self.settings.storage.keep_jobs, self.settings.storage.keep_days)
            except AsrError as e:
                logger.warning("could not prune the job history: %s", e)
            # and log and tell the listeners (metrics) before it too, so that a caller that
            # waited finds the job's log line and its metrics already there
            try:
                record = self.get(job.id)
                logger.info("%s", _job_log_line(record, outcome, time.perf_counter() - started))
                self._emit(job.id, record)
            except Exception:
                logger.exception("could not report the end of job %s", job.id)
            self._release(job)
        if fatal is not None:
            self._on_fatal(fatal)

    def _finish_completed(self, job: _LiveJob, result: Transcript | VadResult) -> None:
        try:
            self.store.complete(job.id, result)
        except (StorageFullError, StorageUnavailableError) as e:
            # The result exists: keep it in memory so the user still gets it from this process.
            logger.error("job %s finished but could not be saved: %s", job.id, e)
            record = self.store.get(job.id)
            job.unsaved = replace(record, state=JobState.COMPLETED, result=result, duration_s=result.duration_s,
                                  timings=result.timings, finished_at=time.time(),
                                  error=f"completed, but not saved to the history: {e}")

    def _measured(self, kind: JobKind, result: Transcript | VadResult) -> None:
        """Keep a completed job's RTF for the time estimates of the jobs after it."""
        if result.duration_s > 0:
            with self._lock:
                self._rtfs[kind].append(result.timings.total_s / result.duration_s)

    def _finish_unsaved_safe(self, job: _LiveJob, state: JobState, error: str, code: str | None) -> None:
        try:
            self.store.fail(job.id, state, error, code)
        except (StorageFullError, StorageUnavailableError):
            record = self.store.get(job.id)
            job.unsaved = replace(record, state=state, error=error, error_code=code, finished_at=time.time())

    def _release(self, job: _LiveJob) -> None:
        shutil.rmtree(job.path.parent, ignore_errors=True)
        with self._lock:
            job.done.set()
            callbacks, job.on_done = job.on_done, []
            if job.unsaved is None:
                self._live.pop(job.id, None)
        for callback in callbacks:
            try:
                callback()
            except Exception:
                logger.exception("a job's done callback failed")

    def _emit(self, job_id: str, record: JobRecord | None = None) -> None:
        if not self.listeners:
            return
        record = record or self.get(job_id)
        for listener in self.listeners:
            try:
                listener(job_id, record)
            except Exception:
                logger.exception("job listener failed")


def _job_log_line(record: JobRecord, outcome: str, wall_s: float | None = None) -> str:
    """The one line logged per finished job, as ``job_done key=value ...`` (logfmt).

    Numbers are bare, a missing value is left out, and the file name comes last and is always
    JSON-quoted, so that a log shipper (or ``shlex.split``) gets the fields back unambiguously.
    """
    fields: dict[str, str | None] = {
        "id": record.id,
        "kind": record.kind.value,
        "outcome": outcome,
        "audio_s": f"{record.duration_s:.3f}" if record.duration_s is not None else None,
        "wall_s": f"{wall_s:.3f}" if wall_s is not None else None,
        "rtf": f"{record.rtf:.5f}" if record.rtf is not None else None,
        "queue_s": (f"{max(0.0, record.started_at - record.created_at):.3f}"
                    if record.started_at is not None else None),
    }
    if record.timings is not None:
        for stage, seconds in asdict(record.timings).items():
            fields[stage] = f"{seconds:.3f}"
    fields["error_code"] = record.error_code
    fields["file"] = json.dumps(record.filename, ensure_ascii=False)
    return "job_done " + " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)


def _display_name(filename: str) -> str:
    """The user's file name for display: base name only, no control characters, bounded length."""
    name = os.path.basename(filename.replace("\\", "/")) or "audio"
    name = "".join(ch if ch.isprintable() else "?" for ch in name)
    return name[:200]


def _load_pipeline(settings: Settings) -> Runner:
    from asr.core.pipeline import build_pipeline

    return build_pipeline(settings)
