"""Logging set-up for entry points (the CLI, the server). Library modules only get loggers."""

from __future__ import annotations

import logging
import logging.config
import os
import threading
import time

# FunASR and modelscope configure the root logger or print chatter on import; our own
# configuration must win, and their INFO lines are noise for an operator.
_NOISY = ("funasr", "modelscope", "modelscope_hub", "jieba", "urllib3", "httpx", "numba", "matplotlib")


class RepeatFilter(logging.Filter):
    """Let a warning or error through once per ``interval_s`` per call site and message template.

    A broken disk or a client that repeats a bad request would otherwise write the same line
    many times a second and flood the journal; the next line that passes says how many were
    held back. INFO and below (one line per job) always pass."""

    def __init__(self, interval_s: float = 60.0):
        super().__init__()
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or record.levelno >= logging.CRITICAL:
            return True
        key = (record.pathname, record.lineno, str(record.msg))
        now = time.monotonic()
        with self._lock:
            last, held = self._seen.get(key, (float("-inf"), 0))
            if now - last < self.interval_s:
                self._seen[key] = (last, held + 1)
                return False
            self._seen[key] = (now, 0)
            if len(self._seen) > 4096:  # bounded: forget the oldest call sites
                for stale in sorted(self._seen, key=lambda k: self._seen[k][0])[:1024]:
                    del self._seen[stale]
        if held:
            record.msg = f"{record.msg} ({held} similar message(s) held back in the last {self.interval_s:g} s)"
        return True


def setup_logging(level: str = "INFO") -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
            "filters": {"repeats": {"()": RepeatFilter}},
            "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain",
                                    "filters": ["repeats"]}},
            "root": {"level": level, "handlers": ["stderr"]},
        }
    )
    for name in _NOISY:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # Third-party telemetry and update checks stay off in every entry point.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
