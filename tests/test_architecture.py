"""The import rules of docs/ARCHITECTURE.md, checked on the source so that they cannot drift.

Every ``import`` counts, including the ones inside functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "asr"

#: The top-level modules every room may use: they depend on nothing but each other, as listed.
BASICS = {"asr.config": {"asr.errors"}, "asr.errors": set(), "asr.types": set(), "asr.logs": set(),
          "asr.atomic": set(), "asr.faults": set()}
#: Which rooms a room may import, besides the basics (and itself).
ROOMS = {
    "core": {"models"},
    "models": set(),
    "service": {"core", "models"},
    "scaleout": {"core", "models", "service"},
}
#: Third-party packages that only some places may import.
CONFINED = {
    "ray": ("asr/scaleout/",),
    "gradio": ("asr/service/server.py", "asr/service/uploads.py"),
    "fastapi": ("asr/service/",),
    "starlette": ("asr/service/",),
    "uvicorn": ("asr/service/",),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports: ``from asr.core import audio`` counts as asr.core.audio."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
OURS = set(MODULES)


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS else None


def _internal(module: str) -> set[str]:
    return {m for m in _imports(MODULES[module]) if m in OURS and m != module}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module):
    imported = _internal(module)
    if module in ("asr", "asr.__main__", "asr.cli"):
        return  # the entry points: they wire everything together
    if module in BASICS:
        assert imported <= BASICS[module], f"{module} imports {sorted(imported - BASICS[module])}"
        return
    room = _room(module)
    assert room is not None, f"{module} is in no room: put it in core, models, service or scaleout"
    allowed = ROOMS[room] | {room}
    wrong = sorted(m for m in imported if m not in BASICS and m != "asr" and _room(m) not in allowed)
    assert not wrong, f"{module} ({room}) may not import {wrong}"


def test_third_party_packages_stay_in_their_rooms():
    for module, path in MODULES.items():
        where = str(path.relative_to(REPO))
        top = {m.split(".")[0] for m in _imports(path)}
        for package, places in CONFINED.items():
            if package in top:
                assert where.startswith(places), f"{where} imports {package}, which belongs in {places}"


def test_nothing_in_the_package_imports_the_ui():
    for module, path in MODULES.items():
        assert "app" not in {m.split(".")[0] for m in _imports(path)}, f"{module} imports app"


def test_no_import_cycles():
    graph = {m: _internal(m) - {"asr"} for m in MODULES}
    done: set[str] = set()

    def visit(module: str, trail: list[str]) -> None:
        if module in trail:
            cycle = trail[trail.index(module):] + [module]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for target in sorted(graph[module]):
            if target in graph and not target.startswith(module + "."):
                visit(target, [*trail, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
