"""Logging set-up for entry points (the CLI, the server). Library modules only get loggers."""

from __future__ import annotations

import logging
import logging.config
import os

# FunASR and modelscope configure the root logger or print chatter on import; our own
# configuration must win, and their INFO lines are noise for an operator.
_NOISY = ("funasr", "modelscope", "modelscope_hub", "jieba", "urllib3", "httpx", "numba", "matplotlib")


def setup_logging(level: str = "INFO") -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
            "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
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
