"""Probe and decode in a child process with limits, so hostile or broken files cannot hurt the service.

FFmpeg's decoders keep getting memory-safety bugs, and PyAV has crashed this very process on
a damaged AAC file. Here a child (:mod:`asr.core.decode_worker`) does the work under an
address-space limit (``audio.decoder_memory_mb``), a CPU-time limit and wall-clock timeouts
(``audio.decode_timeout_s`` of waiting for it in all, not counting the consumer's time between
chunks; ``audio.decode_stall_s`` without output), in its own session so that a timeout kills
everything it started. A child that hangs, crashes or runs out of
memory fails that one job with a DecoderFailedError; the service carries on. The audio
streams back through a pipe, one chunk at a time.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from asr import errors
from asr.config import AudioConfig
from asr.core.audio import AudioInfo, probe_audio, stream_audio
from asr.errors import AudioError, DecoderFailedError

logger = logging.getLogger(__name__)

_HEADER = struct.Struct(">cI")
_ERRORS = {name: getattr(errors, name) for name in dir(errors)
           if isinstance(getattr(errors, name), type) and issubclass(getattr(errors, name), AudioError)}


class _Child:
    """One decoder process and the frames it sends."""

    def __init__(self, mode: str, path: Path, name: str | None, limits: AudioConfig, chunk_s: float = 10.0):
        self.name = name or path.name
        self.limits = limits
        os.stat(path)  # a missing or unreadable file is the caller's OSError, as without isolation
        command = [
            sys.executable, "-I", "-m", "asr.core.decode_worker", mode, str(Path(path).resolve()),
            "--name", self.name, "--max-duration", str(limits.max_duration_s),
            "--max-bytes", str(int(limits.max_file_mb * 1024 * 1024)), "--chunk-s", str(chunk_s),
            "--memory-mb", str(limits.decoder_memory_mb), "--cpu-s", str(int(limits.decode_timeout_s) + 5),
        ]
        # argv list, no shell; the path is the server's own, absolute, never the user's file name
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, start_new_session=True)
        # Seconds spent waiting for the child: the decode timeout counts these, not the time the consumer
        # (VAD, recognition) takes between chunks, which for a long file is far longer than decoding it.
        self.waited = 0.0
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.process.stdout, selectors.EVENT_READ)
        self._buffer = bytearray()

    def _read_exactly(self, size: int) -> bytes | None:
        fd = self.process.stdout.fileno()
        while len(self._buffer) < size:
            left = self.limits.decode_timeout_s - self.waited
            if left <= 0:
                self._timed_out()
            started = time.monotonic()
            ready = self._selector.select(min(left, self.limits.decode_stall_s))
            self.waited += time.monotonic() - started
            if not ready:
                if self.waited >= self.limits.decode_timeout_s:
                    self._timed_out()
                self.kill()
                raise DecoderFailedError(
                    f"{self.name}: the decoder stopped making progress ({self.limits.decode_stall_s:g} s without "
                    "output) and was stopped; the file may be damaged"
                )
            data = os.read(fd, max(size - len(self._buffer), 1 << 16))
            if not data:
                return None
            self._buffer += data
        result = bytes(self._buffer[:size])
        del self._buffer[:size]
        return result

    def _timed_out(self) -> None:
        self.kill()
        raise DecoderFailedError(
            f"{self.name}: decoding took longer than {self.limits.decode_timeout_s:g} s and was stopped; "
            "the file may be damaged"
        )

    def frames(self) -> Iterator[tuple[bytes, bytes]]:
        while True:
            header = self._read_exactly(_HEADER.size)
            if header is None:
                self._died()
            kind, length = _HEADER.unpack(header)
            payload = self._read_exactly(length) if length else b""
            if payload is None:
                self._died()
            if kind == b"E":
                self.finish()
                detail = json.loads(payload)
                raise _ERRORS.get(detail["type"], DecoderFailedError)(detail["message"])
            yield kind, payload
            if kind == b"D":
                self.finish()
                return

    def _died(self) -> None:
        code = self.process.wait()
        stderr = self.process.stderr.read().decode("utf-8", "replace")[-500:]
        logger.warning("decoder for %s ended with code %s: %s", self.name, code, stderr.strip())
        what = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        raise DecoderFailedError(f"{self.name}: the decoder crashed on this file ({what}); the file may be damaged")

    def finish(self) -> None:
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            return
        # The child logs to its stderr what the file lacked (skipped packets, truncation, NaN
        # samples): a few lines at most, read once it has exited; they belong in the service's log.
        for line in self.process.stderr.read(1 << 16).decode("utf-8", "replace").splitlines():
            if line.strip():
                logger.warning("%s", line.strip())
        self.close()

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self.close()

    def close(self) -> None:
        self._selector.close()
        for stream in (self.process.stdout, self.process.stderr):
            if stream and not stream.closed:
                stream.close()


def probe_isolated(path: Path, limits: AudioConfig, name: str | None = None) -> AudioInfo:
    """probe_audio in a child process."""
    child = _Child("probe", path, name, limits)
    info: AudioInfo | None = None
    try:
        for kind, payload in child.frames():
            if kind == b"I":
                info = AudioInfo(**json.loads(payload))
        if info is None:
            raise DecoderFailedError(f"{child.name}: the decoder returned no description of the file")
        return info
    finally:
        if child.process.poll() is None:
            child.kill()


def stream_isolated(path: Path, limits: AudioConfig, name: str | None = None,
                    chunk_s: float = 10.0) -> tuple[AudioInfo, Iterator[np.ndarray]]:
    """The file's AudioInfo, and its 16 kHz mono float32 chunks decoded in a child process."""
    child = _Child("stream", path, name, limits, chunk_s)
    frames = child.frames()
    try:
        kind, payload = next(frames)
    except BaseException:
        if child.process.poll() is None:
            child.kill()
        raise
    return AudioInfo(**json.loads(payload)), _ChildChunks(child, frames)


class _ChildChunks(Iterator[np.ndarray]):
    """The chunks a decoding child streams back. When they end, fail, or are closed (even before the
    first one: a generator's ``finally`` would not run then), the child is made to go."""

    def __init__(self, child: _Child, frames: Iterator[tuple[bytes, bytes]]) -> None:
        self._child, self._frames = child, frames

    def __next__(self) -> np.ndarray:
        try:
            for kind, payload in self._frames:
                if kind == b"A":
                    return np.frombuffer(payload, dtype="<f4").astype(np.float32, copy=True)
        except BaseException:
            self.close()
            raise
        self.close()
        raise StopIteration

    def close(self) -> None:
        if self._child.process.poll() is None:
            self._child.kill()

    def __del__(self) -> None:
        self.close()


def probe(path: Path, limits: AudioConfig, name: str | None = None) -> AudioInfo:
    """Describe a file (or raise its AudioError) as the configuration says: in a limited child
    process (``audio.isolate_decoder``) or in this one."""
    if limits.isolate_decoder:
        return probe_isolated(path, limits, name)
    return _probe_here(path, limits, name)


def _probe_here(path: Path, limits: AudioConfig, name: str | None) -> AudioInfo:
    return probe_audio(path, max_duration_s=limits.max_duration_s,
                       max_file_bytes=int(limits.max_file_mb * 1024 * 1024), display_name=name)


def open_audio(path: Path, limits: AudioConfig, name: str | None = None,
               chunk_s: float = 10.0) -> tuple[AudioInfo, Iterator[np.ndarray]]:
    """Probe and stream a file as the configuration says: in a limited child process
    (``audio.isolate_decoder``) or in this one. Close the chunks to give up on the file early."""
    if limits.isolate_decoder:
        return stream_isolated(path, limits, name, chunk_s)
    info = _probe_here(path, limits, name)
    return info, stream_audio(path, max_duration_s=limits.max_duration_s, chunk_s=chunk_s, display_name=name)
