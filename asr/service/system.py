"""Facts about the machine and the process, for the System tab and ``GET /v1/system``.

Read from /proc, os and shutil (Linux, where the service runs): psutil would be one more compiled
dependency for a handful of numbers. Where a source is missing (another OS, a locked-down
container) the fact is None, never an error: a status page must not fail for want of a number.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

PACKAGE = "asr-service"


def package_version() -> str:
    """The installed package's version (pyproject.toml's), "unknown" when it is not installed."""
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class CpuSampler:
    """This process's CPU use between two calls, as a percentage of one core (200 = two cores busy).

    The first call has nothing to compare with and gives the average since the process started."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: tuple[float, float] | None = None

    def percent(self) -> float | None:
        now, cpu = time.monotonic(), _process_cpu_s()
        with self._lock:
            last, self._last = self._last, (now, cpu)
        if last is None:
            wall = _process_age_s()
            return round(100 * cpu / wall, 1) if wall else None
        wall = now - last[0]
        return round(100 * (cpu - last[1]) / wall, 1) if wall > 0 else None


def cpu_facts(sampler: CpuSampler) -> dict[str, Any]:
    try:
        load: tuple[float, ...] | None = os.getloadavg()
    except OSError:
        load = None
    try:
        usable: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    return {
        "count": os.cpu_count(),
        "usable": usable,  # those this process may run on (a container's or taskset's share)
        "load": [round(x, 2) for x in load] if load is not None else None,  # 1, 5, 15 min
        "process_percent": sampler.percent(),
        "process_seconds": round(_process_cpu_s(), 1),
    }


def memory_facts() -> dict[str, Any]:
    meminfo = _proc_kb("/proc/meminfo", ("MemTotal", "MemAvailable"))
    process = _proc_kb("/proc/self/status", ("VmRSS",))
    return {
        "total_bytes": meminfo.get("MemTotal"),
        "available_bytes": meminfo.get("MemAvailable"),
        "process_rss_bytes": process.get("VmRSS"),
    }


def gpu_facts(device: str | None) -> dict[str, Any] | None:
    """Memory of the CUDA device the models run on; None on CPU.

    Not run by the tests (they run on CPU): mem_get_info is the device's whole memory as the driver
    sees it (other processes' use included), memory_allocated this process's tensors."""
    if not device or not device.startswith("cuda"):
        return None
    try:
        import torch

        index = torch.device(device).index or 0
        free, total = torch.cuda.mem_get_info(index)
        return {
            "name": torch.cuda.get_device_name(index),
            "used_bytes": total - free,
            "total_bytes": total,
            "process_allocated_bytes": torch.cuda.memory_allocated(index),
        }
    except Exception:  # noqa: BLE001 - a status page shows what it can
        return None


def disk_facts(directories: dict[str, Path]) -> dict[str, Any]:
    """Free and total bytes of the file system each named directory lies on."""
    facts: dict[str, Any] = {}
    for name, directory in directories.items():
        try:
            usage = shutil.disk_usage(directory)
        except OSError:
            facts[name] = None
            continue
        facts[name] = {"free_bytes": usage.free, "total_bytes": usage.total}
    return facts


def _process_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def _process_age_s() -> float | None:
    """Seconds since this process started, from /proc (None where there is none)."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime_s = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime_s - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def _proc_kb(path: str, keys: tuple[str, ...]) -> dict[str, int]:
    """``key: N kB`` lines of a /proc file, in bytes."""
    found: dict[str, int] = {}
    try:
        with open(path, encoding="ascii") as file:
            for line in file:
                key, _, value = line.partition(":")
                if key in keys:
                    found[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return found
