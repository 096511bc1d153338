"""``asr serve --check``: will the service start here? Checked without starting it.

Run before enabling or upgrading the service (or from a deploy script): it reads the config,
verifies every model file against its sha256 manifest, resolves the device and precision (and
runs one tiny op on a GPU), and makes sure the state and cache directories are writable. It
loads no model and binds no port, so it is safe beside a running service.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from asr.config import Settings, find_config_file
from asr.errors import AsrError
from asr.models.files import LOCAL_NOTE, check_model, is_local, locate_model, roles_for_profile

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def _config(config_file: str | None) -> CheckResult:
    path = find_config_file(config_file)
    where = str(path) if path is not None else "no config file: defaults"
    return CheckResult("config", True, f"{where} (+ ASR_* environment) is valid")


def _model(settings: Settings, role: str) -> CheckResult:
    try:
        location = locate_model(settings.models, role)  # type: ignore[arg-type]
        manifest = check_model(location)
        if manifest is None:
            detail = f"{location.directory} (no manifest: files present, checksums not checked)"
        else:
            detail = f"{location.spec.id}@{location.spec.revision}, {len(manifest['files'])} files sha256-verified"
            if is_local(manifest):
                detail += f" ({LOCAL_NOTE})"
        if location.is_test_model:
            detail += " [RANDOM WEIGHTS: test model]"
        return CheckResult(f"model {role}", True, detail)
    except AsrError as e:
        return CheckResult(f"model {role}", False, str(e))


def _device(settings: Settings) -> CheckResult:
    try:
        import torch

        from asr.models.loading import resolve_device
        from asr.models.precision import resolve_precision

        device = resolve_device(settings.runtime.device)
        precision, why = resolve_precision(settings.runtime.precision, device)
        if device.type == "cuda":
            # A visible GPU is not a usable one: a broken driver or a missing /dev node only shows
            # when memory is allocated and a kernel runs.
            value = (torch.ones(8, device=device) * 2).sum().item()
            if value != 16:
                return CheckResult("device", False, f"{device}: a test computation gave {value}, not 16")
            name = torch.cuda.get_device_name(device)
            detail = f"{device} ({name}), precision {precision} ({why})"
        else:
            detail = f"cpu, precision {precision} ({why})"
        return CheckResult("device", True, detail)
    except AsrError as e:
        return CheckResult("device", False, str(e))
    except RuntimeError as e:  # CUDA initialisation errors
        return CheckResult("device", False, f"{settings.runtime.device}: {e}")


def _writable(name: str, directory: Path) -> CheckResult:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".asr-check-"):
            pass
    except OSError as e:
        return CheckResult(name, False, f"{directory} is not writable: {e.strerror or e}")
    free_mib = _free_mib(directory)
    return CheckResult(name, True, f"{directory} is writable ({free_mib} MiB free)")


def _free_mib(directory: Path) -> int:
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize // 2**20


def _ui(settings: Settings) -> CheckResult:
    from asr.service.server import ui_file

    try:
        return CheckResult("web UI", True, str(ui_file(settings)))
    except AsrError as e:
        return CheckResult("web UI", False, str(e))


def _hotwords(settings: Settings) -> CheckResult | None:
    """The deployment's hotword file: readable, within the limits, and for a model that can use it."""
    from asr.core.hotwords import resolve_hotwords

    path = settings.hotwords.file
    if path is None:
        return None
    if settings.models.asr_model != "seaco":
        return CheckResult("hotwords", False, f"hotwords.file is {path}, but only SeACo-Paraformer uses hotwords: "
                                              "set models.asr_model: seaco, or hotwords.file: null")
    try:
        words = resolve_hotwords(None, settings.hotwords)
    except AsrError as e:
        return CheckResult("hotwords", False, str(e))
    return CheckResult("hotwords", True, f"{path}: {len(words)} hotwords")


def preflight(settings: Settings, config_file: str | None = None) -> list[CheckResult]:
    """Every check, in order; each failure says what is wrong and how to fix it."""
    results = [_config(config_file), _ui(settings)]
    results.extend(_model(settings, role) for role in roles_for_profile(settings.models.profile))
    hotwords = _hotwords(settings)
    if hotwords is not None:
        results.append(hotwords)
    results.append(_device(settings))
    results.append(_writable("state dir", settings.storage.state_path()))
    results.append(_writable("cache dir", settings.storage.cache_path()))
    return results
