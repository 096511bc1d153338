"""Hotwords for SeACo-Paraformer: a request's own, merged with the deployment's file, within limits.

Where they come from and how they are split:

* a request **string** is split the way FunASR splits its ``hotword=`` string
  (``SeacoParaformer.generate_hotwords_list``: ``text.strip().split()``), so every
  whitespace-separated word is one hotword;
* a request **sequence** (a JSON list, the lines of a ``--hotwords-file``) holds one hotword per
  item, which may contain spaces (``New York``): FunASR's hotword-file form, one per line, where
  a line's words are tokenised together as one hotword;
* the deployment's ``hotwords.file`` (UTF-8, one per line, blank lines skipped).

Merged **deployment first, then the request**: the deployment's list is the base every request
shares (so the recogniser's cached embedding for it is reused), and a request adds to it.
Duplicates are dropped, ignoring case (the model lowercases hotwords before tokenising them, so
``GPU`` and ``gpu`` are the same hotword to it); the first spelling stays. The limits then apply to
what the model would get: every hotword at most ``hotwords.max_chars`` characters, and at most
``hotwords.max_count`` of them, the file's included.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from asr.config import HotwordsConfig
from asr.errors import HotwordsError

logger = logging.getLogger(__name__)

_file_cache: dict[str, tuple[tuple[int, int], tuple[str, ...]]] = {}
_file_lock = threading.Lock()


def _normalised(hotword: str) -> str:
    return " ".join(hotword.split())


def read_hotword_file(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """The hotwords of a UTF-8 file, one per line (inner spaces kept, blank lines skipped), in
    file order, as given (not deduplicated or limited: ``resolve_hotwords`` does that).

    Raises HotwordsError naming the path when it cannot be read or is not UTF-8 text."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise HotwordsError(f"hotword file {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise HotwordsError(f"cannot read the hotword file {path}: {e.strerror or e}") from None
    return tuple(word for word in (_normalised(line) for line in text.splitlines()) if word)


def _deployment_hotwords(path: Path) -> tuple[str, ...]:
    """The deployment file's hotwords, read again only when the file changes."""
    try:
        stat = path.stat()
    except OSError as e:
        raise HotwordsError(f"cannot read the hotword file {path} (hotwords.file): {e.strerror or e}") from None
    key, version = str(path), (stat.st_mtime_ns, stat.st_size)
    with _file_lock:
        cached = _file_cache.get(key)
    if cached is not None and cached[0] == version:
        return cached[1]
    words = read_hotword_file(path)
    with _file_lock:
        _file_cache[key] = (version, words)
    logger.info("read %d hotwords from %s", len(words), path)
    return words


def _requested(request: str | Sequence[str] | None) -> tuple[str, ...]:
    if request is None:
        return ()
    if isinstance(request, str):
        return tuple(request.split())
    if not isinstance(request, Sequence):
        raise HotwordsError(f"hotwords must be a string or a list of strings, not {type(request).__name__}")
    words = []
    for item in request:
        if not isinstance(item, str):
            raise HotwordsError(f"hotwords must be strings; got {type(item).__name__} {item!r}")
        word = _normalised(item)
        if word:
            words.append(word)
    return tuple(words)


def resolve_hotwords(request: str | Sequence[str] | None, config: HotwordsConfig) -> tuple[str, ...]:
    """The hotwords one request decodes with: the deployment's file, then the request's own, without
    duplicates, within the configured limits.

    Args:
        request: a whitespace-separated string (as FunASR's ``hotword=``), a sequence with one
            hotword per item, or None.
        config: ``settings.hotwords`` (the file, ``max_count``, ``max_chars``).

    Raises:
        HotwordsError: the file cannot be read, a hotword is too long, or there are too many;
            the message names the limit and its config key.

    Example::

        resolve_hotwords("魔搭 达摩院", settings.hotwords)  # ('魔搭', '达摩院')
    """
    deployment = _deployment_hotwords(config.file) if config.file is not None else ()
    requested = _requested(request)
    merged: dict[str, str] = {}
    for word in (*deployment, *requested):
        merged.setdefault(word.lower(), word)
    words = tuple(merged.values())
    for word in words:
        if len(word) > config.max_chars:
            where = f" in {config.file}" if word in deployment else ""
            raise HotwordsError(
                f"hotword {word!r}{where} has {len(word)} characters; at most {config.max_chars} (hotwords.max_chars)"
            )
    if len(words) > config.max_count:
        from_file = len({w.lower() for w in deployment})
        detail = f", {from_file} of them from {config.file} (hotwords.file)" if from_file else ""
        raise HotwordsError(f"{len(words)} hotwords{detail}; at most {config.max_count} (hotwords.max_count)")
    return words
