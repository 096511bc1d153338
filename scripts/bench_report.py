"""What every benchmark script shares to publish its tables in docs/BENCHMARKS.md.

Each script owns blocks of the doc between ``<!-- bench:KEY -->`` and ``<!-- /bench:KEY -->`` and replaces
only those, so one script's run never touches another's tables or the prose written around them. Each block
starts with ``stamp(invocation())``: the date, the machine and the command that produced it.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "BENCHMARKS.md"


def machine() -> str:
    """CPU model, CPUs, RAM, Python, torch and the GPU (or "no GPU"): what the numbers depend on."""
    import torch  # here, not at the top: bench.py's funasr-onnx child imports this module without torch

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    except OSError:
        cpu = platform.processor() or "?"
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{cpu}, {os.cpu_count()} CPUs, {ram:.0f} GiB RAM, Python {platform.python_version()}, "
            f"torch {torch.__version__}, {_gpu(torch)}")


def _gpu(torch: ModuleType) -> str:
    if not torch.cuda.is_available():
        return "no GPU"
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return f"GPU {names[0]}" if len(names) == 1 else f"{len(names)} GPUs ({', '.join(names)})"


def stamp(command: str) -> str:
    """The line each block starts with, so every table says when, where and how it was measured."""
    return f"Measured {datetime.date.today().isoformat()} on {machine()}. Command: `{command}`"


def invocation(argv: list[str] | None = None) -> str:
    """The running script's command line as a user would type it from the repository root.

    ``argv`` is the argument list when a script's ``main(argv)`` was called with one, else ``sys.argv[1:]``."""
    args = sys.argv[1:] if argv is None else argv
    return shlex.join([".venv/bin/python", f"scripts/{Path(sys.argv[0]).name}", *args])


def markers(key: str) -> tuple[str, str]:
    return f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"


def block(key: str, markdown: str) -> str:
    """``markdown`` between ``key``'s markers, as it stands in the doc (no trailing newline). The blank lines
    keep the markers apart from the tables: in GitHub's Markdown a line right under a table can join it."""
    start, end = markers(key)
    return f"{start}\n\n{markdown.strip(chr(10))}\n\n{end}"


def write_section(out: Path, key: str, markdown: str) -> None:
    """Replaces ``key``'s block in ``out`` (markers included), or appends it when ``out`` has none.

    Everything outside the block stays byte for byte: the file is read and written as bytes-decoded text,
    so not even its line endings change. The write is atomic: a reader never sees half a doc."""
    from asr.atomic import write_atomic

    text = out.read_bytes().decode("utf-8") if out.exists() else "# Benchmarks\n"
    write_atomic(out, replace_block(text, key, markdown))


def replace_block(text: str, key: str, markdown: str) -> str:
    start, end = (re.escape(m) for m in markers(key))
    found = list(re.finditer(rf"^{start}[ \t]*\r?$.*?^{end}[ \t]*(?=\r?$)", text, flags=re.MULTILINE | re.DOTALL))
    if len(found) > 1:  # which one is meant is a guess; the doc needs fixing by hand
        raise ValueError(f"bench:{key} appears {len(found)} times")
    if found:
        span = found[0].span()
        return text[:span[0]] + block(key, markdown) + text[span[1]:]
    if re.search(rf"^{start}", text, flags=re.MULTILINE):  # an opening marker without its end: do not guess
        raise ValueError(f"bench:{key} is opened but never closed")
    if not text:
        return block(key, markdown) + "\n"
    return text + ("\n" if text.endswith("\n") else "\n\n") + block(key, markdown) + "\n"


def publish(sections: dict[str, str], out: Path, write: bool) -> None:
    """Prints each block as the doc gets it; writes them into ``out`` only when ``write`` (not a smoke run)."""
    for key, markdown in sections.items():
        print(block(key, markdown) + "\n")
        if write:
            write_section(out, key, markdown)
