"""The job history: SQLite (WAL, synchronous=FULL), so a finished result survives crashes,
restarts and dropped browser connections.

Every state change is committed before anyone is told about it. Rows left ``queued`` or
``running`` by a crash become ``interrupted`` when the service starts again.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from asr.errors import JobNotFoundError, StorageFullError, StorageUnavailableError, storage_error
from asr.types import StageTimings, Transcript, VadResult

logger = logging.getLogger(__name__)


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


class JobKind(str, Enum):
    TRANSCRIBE = "transcribe"
    VAD = "vad"


@dataclass(frozen=True)
class JobRecord:
    id: str
    kind: JobKind
    state: JobState
    filename: str
    created_at: float
    options: dict[str, Any] = field(default_factory=dict)
    started_at: float | None = None
    finished_at: float | None = None
    duration_s: float | None = None
    error: str | None = None
    error_code: str | None = None
    result: Transcript | VadResult | None = None
    timings: StageTimings | None = None
    owner: str | None = None
    edited: Transcript | None = None
    """The user's corrected version of ``result`` (which is kept as recognised); None if never edited."""
    edited_at: float | None = None
    """When the corrections were last saved (listings carry this, not ``edited`` itself)."""
    # live, not stored:
    stage: str | None = None
    """The furthest stage reached (asr.types.STAGES), or ``queued`` / ``starting``; names: asr.service.stages."""
    progress: float = 0.0
    """The share of the job done, 0 to 1; it only grows."""
    queue_position: int | None = None
    """1 for the next job to start, and so on; None unless the job waits behind others for a worker."""
    eta_s: float | None = None
    """Estimated seconds until the job is done (from the recent real-time factor); None when unknown."""

    @property
    def is_edited(self) -> bool:
        return self.edited_at is not None

    @property
    def current(self) -> Transcript | VadResult | None:
        """The version to show and export: the edited transcript if there is one, else the result."""
        return self.edited if self.edited is not None else self.result

    @property
    def rtf(self) -> float | None:
        if self.timings is None or not self.duration_s:
            return None
        return self.timings.total_s / self.duration_s


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    filename TEXT NOT NULL,
    owner TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    options TEXT NOT NULL DEFAULT '{}',
    duration_s REAL,
    error TEXT,
    error_code TEXT,
    timings TEXT,
    result TEXT
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
"""
#: Columns added since the first schema, each by ALTER TABLE where it is missing: a database made
#: by an older release gains them when it is opened, with its jobs as they were.
_ADDED_COLUMNS = (
    ("edited", "TEXT"),  # the user's corrected transcript, as `result` holds the recognised one
    ("edited_at", "REAL"),
)


def _migrate(db: sqlite3.Connection) -> None:
    present = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    for name, declaration in _ADDED_COLUMNS:
        if name not in present:
            try:
                db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {declaration}")
            except sqlite3.OperationalError as e:
                if "duplicate column" not in str(e):  # another process added it first: fine
                    raise
            logger.info("job history: added the column %s", name)


def _is_disk_full(error: sqlite3.Error) -> bool:
    return isinstance(error, sqlite3.OperationalError) and "full" in str(error).lower()


class JobStore:
    """Thread-safe access to the jobs table (one connection, one lock)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
            self._db.row_factory = sqlite3.Row
            with self._lock:
                self._db.execute("PRAGMA journal_mode=WAL")
                # FULL: a commit survives power loss, not just a crash of this process.
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(_SCHEMA)
                _migrate(self._db)
            # The file this connection writes: if the path later names another file (or none),
            # every write would go into the void, so check() compares against this.
            identity = os.stat(path)
        except OSError as e:
            raise storage_error(e, f"the job history cannot be opened in {path.parent}", path.parent) from e
        except sqlite3.Error as e:
            raise StorageUnavailableError(
                f"the job history {path} cannot be opened: {e} (the service user needs write access to "
                f"{path.parent}; or set storage.state_dir)"
            ) from e
        self._identity = (identity.st_dev, identity.st_ino)

    def check(self) -> None:
        """Raise StorageUnavailableError unless writes will reach the database at ``path``.

        Cheap (two stats and two access checks), so it runs before every write and in the health
        check: a database deleted, replaced or made read-only under the service is seen at once."""
        problem = self._problem()
        if problem is not None:
            logger.error("%s", problem)  # repeats are rate-limited by the log set-up
            raise StorageUnavailableError(problem + "; no job is accepted until it is fixed")

    def _problem(self) -> str | None:
        directory = self.path.parent
        if not directory.is_dir():
            return f"the state directory {directory} is gone"
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return f"the job database {self.path} was deleted while the service ran (restart the service)"
        except OSError as e:
            return f"the job database {self.path} cannot be read: {e.strerror}"
        if (current.st_dev, current.st_ino) != self._identity:
            return f"the job database {self.path} was replaced while the service ran (restart the service)"
        if not os.access(self.path, os.W_OK) or not os.access(directory, os.W_OK | os.X_OK):
            return f"the job database {self.path} or its directory is not writable"
        return None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, params: tuple) -> int:
        self.check()
        with self._lock:
            try:
                cursor = self._db.execute(sql, params)
            except sqlite3.Error as e:
                if _is_disk_full(e):
                    raise StorageFullError(
                        f"the job history could not be saved: the disk holding {self.path.parent} is full"
                    ) from e
                if isinstance(e, sqlite3.OperationalError):  # read-only, I/O error, unable to open...
                    logger.error("the job database %s cannot be written: %s", self.path, e)
                    raise StorageUnavailableError(
                        f"the job history could not be saved: {self.path} cannot be written ({e})"
                    ) from e
                raise
            return cursor.rowcount

    # ---- writes (each one its own committed transaction) -------------------------------------

    def create(self, job: JobRecord) -> None:
        self._write(
            "INSERT INTO jobs (id, kind, state, filename, owner, created_at, options) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (job.id, job.kind.value, job.state.value, job.filename, job.owner, job.created_at,
             json.dumps(job.options, ensure_ascii=False)),
        )

    def mark_running(self, job_id: str) -> bool:
        """queued → running; False if the job was cancelled meanwhile."""
        return self._write(
            "UPDATE jobs SET state = ?, started_at = ? WHERE id = ? AND state = ?",
            (JobState.RUNNING.value, time.time(), job_id, JobState.QUEUED.value),
        ) == 1

    def complete(self, job_id: str, result: Transcript | VadResult) -> None:
        payload = _payload(result)
        self._write(
            "UPDATE jobs SET state = ?, finished_at = ?, duration_s = ?, timings = ?, result = ? WHERE id = ?",
            (JobState.COMPLETED.value, time.time(), result.duration_s, json.dumps(asdict(result.timings)), payload,
             job_id),
        )

    def save_edited(self, job_id: str, edited: Transcript | None) -> None:
        """Keep the user's corrected transcript of a completed job (None: back to the original)."""
        payload = None if edited is None else _payload(edited)
        changed = self._write(
            "UPDATE jobs SET edited = ?, edited_at = ? WHERE id = ? AND state = ?",
            (payload, None if edited is None else time.time(), job_id, JobState.COMPLETED.value),
        )
        if changed != 1:  # deleted or pruned meanwhile
            raise JobNotFoundError(f"no job with id {job_id!r} (it may have expired from the history)")

    def fail(self, job_id: str, state: JobState, error: str, code: str | None) -> None:
        self._write(
            "UPDATE jobs SET state = ?, finished_at = ?, error = ?, error_code = ? WHERE id = ?",
            (state.value, time.time(), error, code, job_id),
        )

    def delete(self, job_id: str) -> bool:
        """Remove a job's row (the caller has checked that it has finished); False if there was none."""
        return self._write("DELETE FROM jobs WHERE id = ?", (job_id,)) == 1

    def cancel_if_queued(self, job_id: str) -> bool:
        return self._write(
            "UPDATE jobs SET state = ?, finished_at = ?, error = ? WHERE id = ? AND state = ?",
            (JobState.CANCELLED.value, time.time(), "cancelled before it started", job_id, JobState.QUEUED.value),
        ) == 1

    def mark_unfinished_interrupted(self) -> int:
        """At start: jobs a crash left queued or running become interrupted."""
        count = self._write(
            "UPDATE jobs SET state = ?, finished_at = ?, error = ?, error_code = ? WHERE state IN (?, ?)",
            (JobState.INTERRUPTED.value, time.time(),
             "the service stopped or restarted while this job was waiting or running; please submit it again",
             "interrupted", JobState.QUEUED.value, JobState.RUNNING.value),
        )
        if count:
            logger.warning("%d job(s) left unfinished by the previous run marked interrupted", count)
        return count

    def prune(self, keep_jobs: int, keep_days: float) -> int:
        """Delete the oldest finished jobs beyond the retention limits."""
        cutoff = time.time() - keep_days * 86400
        finished = tuple(s.value for s in JobState if s.finished)
        marks = ",".join("?" * len(finished))
        removed = self._write(f"DELETE FROM jobs WHERE state IN ({marks}) AND created_at < ?", (*finished, cutoff))
        removed += self._write(
            f"DELETE FROM jobs WHERE state IN ({marks}) AND id NOT IN "
            f"(SELECT id FROM jobs WHERE state IN ({marks}) ORDER BY created_at DESC LIMIT ?)",
            (*finished, *finished, keep_jobs),
        )
        return removed

    # ---- reads --------------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(f"no job with id {job_id!r} (it may have expired from the history)")
        return _record(row)

    def list(
        self,
        limit: int = 100,
        offset: int = 0,
        owner: str | None = None,
        with_results: bool = False,
        query: str | None = None,
    ) -> list[JobRecord]:
        """Jobs, newest first; ``owner``'s only when given; with ``query``, those whose file name or
        text (the edited version where there is one) contains it, ignoring case (ASCII letters:
        SQLite's LIKE folds no other)."""
        columns = "*" if with_results else "id, kind, state, filename, owner, created_at, started_at, finished_at, " \
            "options, duration_s, error, error_code, timings, NULL AS result, NULL AS edited, edited_at"
        conditions, params = [], []
        if owner is not None:
            conditions.append("owner IS ?")
            params.append(owner)
        if query:
            pattern = f"%{_like_escaped(query)}%"
            conditions.append("(filename LIKE ? ESCAPE '\\' OR "
                              "json_extract(COALESCE(edited, result), '$.data.text') LIKE ? ESCAPE '\\')")
            params += [pattern, pattern]
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {columns} FROM jobs {where} ORDER BY created_at DESC LIMIT ? OFFSET ?", (*params, limit, offset)
            ).fetchall()
        return [_record(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {state: n for state, n in rows}

    def integrity_check(self) -> str:
        with self._lock:
            return self._db.execute("PRAGMA integrity_check").fetchone()[0]


def _like_escaped(text: str) -> str:
    """``text`` matched literally by LIKE ... ESCAPE '\\': its own % and _ are not wildcards."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _payload(result: Transcript | VadResult) -> str:
    return json.dumps({"type": type(result).__name__, "data": result.to_dict()}, ensure_ascii=False)


def _parsed(text: str | None) -> Transcript | VadResult | None:
    if not text:
        return None
    payload = json.loads(text)
    cls = VadResult if payload["type"] == "VadResult" else Transcript
    return cls.from_dict(payload["data"])


def _record(row: sqlite3.Row) -> JobRecord:
    edited = _parsed(row["edited"])
    return JobRecord(
        id=row["id"],
        kind=JobKind(row["kind"]),
        state=JobState(row["state"]),
        filename=row["filename"],
        owner=row["owner"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        options=json.loads(row["options"] or "{}"),
        duration_s=row["duration_s"],
        error=row["error"],
        error_code=row["error_code"],
        timings=StageTimings(**json.loads(row["timings"])) if row["timings"] else None,
        result=_parsed(row["result"]),
        edited=edited if isinstance(edited, Transcript) else None,
        edited_at=row["edited_at"],
        progress=1.0 if row["state"] == JobState.COMPLETED.value else 0.0,
    )
