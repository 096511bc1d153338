"""The decoder child process: probes or decodes one file and streams the result to stdout.

Run by :mod:`asr.core.isolation`, never by hand. It limits its own address space and CPU time
before it imports FFmpeg's libraries, so a decoder bug or a hostile file can only take this
process down. Frames on stdout: one type byte, a 4-byte big-endian length, the payload:
``I`` JSON AudioInfo, ``A`` float32 16 kHz mono samples, ``E`` JSON error, ``D`` done.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import struct
import sys


def _limit(memory_mb: int, cpu_s: int) -> None:
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if cpu_s > 0:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core dumps of users' audio


def _send(out, kind: bytes, payload: bytes) -> None:
    out.write(kind + struct.pack(">I", len(payload)) + payload)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["probe", "stream"])
    parser.add_argument("path")
    parser.add_argument("--name", default=None)
    parser.add_argument("--max-duration", type=float, default=None)
    parser.add_argument("--max-bytes", type=int, default=None)
    parser.add_argument("--chunk-s", type=float, default=10.0)
    parser.add_argument("--memory-mb", type=int, default=0)
    parser.add_argument("--cpu-s", type=int, default=0)
    args = parser.parse_args(argv)
    _limit(args.memory_mb, args.cpu_s)
    out = sys.stdout.buffer
    try:
        from asr import faults

        faults.strike_decoder()
        import dataclasses

        from asr.core.audio import probe_audio, stream_audio

        info = probe_audio(args.path, max_duration_s=args.max_duration, max_file_bytes=args.max_bytes,
                           display_name=args.name)
        _send(out, b"I", json.dumps(dataclasses.asdict(info)).encode())
        if args.mode == "stream":
            for chunk in stream_audio(args.path, max_duration_s=args.max_duration, chunk_s=args.chunk_s,
                                      display_name=args.name):
                _send(out, b"A", chunk.astype("<f4", copy=False).tobytes())
        _send(out, b"D", b"")
    except MemoryError:
        name = args.name or os.path.basename(args.path)
        _send(out, b"E", json.dumps({"type": "DecoderFailedError", "message":
                                     f"{name}: decoding this file needed more memory than the decoder is "
                                     "allowed"}).encode())
    except Exception as e:  # every failure goes back to the parent, which maps it to an AsrError
        _send(out, b"E", json.dumps({"type": type(e).__name__, "message": str(e)}).encode())
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
