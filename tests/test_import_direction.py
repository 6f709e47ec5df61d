"""Imports run one way: every module imports only rooms of its own rank or lower.

The map (ARCHITECTURE.md, "Layout"), highest rank first:

    cli, api, devstack          entry points
    starter, workers            the client library, the worker pools
    workflows                   deterministic workflow code
    activities                  thin Temporal wrappers
    models, mdoc                inference runtime and model lifecycle; mdoc issuance
    store                       everything at rest
    security, imaging           transport and access; untrusted-image decoding
    domain, settings            vocabulary and configuration

Every module of the project is parsed (not imported) and each import it makes
(``import x``, ``from x import y``, at any depth, also inside functions) is
checked against that order; ``importlib.import_module("x")`` with a literal
name counts too, so a hidden import cannot go round the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from settings import PROJECT_ROOT

RANKS: dict[str, int] = {
    "cli": 7,
    "api": 7,
    "devstack": 7,
    "starter": 6,
    "workers": 6,
    "workflows": 5,
    "activities": 4,
    "models": 3,
    "mdoc": 3,
    "store": 2,
    "security": 1,
    "imaging": 1,
    "domain": 0,
    "settings": 0,
}


def room_of(module: str) -> str:
    return module.split(".", 1)[0]


def imported_modules(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``tree``; ``package`` resolves
    relative imports."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def wrong_way_imports(root: Path) -> list[str]:
    """Every import under ``root`` that runs from a room to a higher-ranked one."""
    problems = []
    for room, rank in RANKS.items():
        for path in sorted((root / room).rglob("*.py")):
            relative = path.relative_to(root).with_suffix("")
            module = ".".join(relative.parts)
            package = module if path.name == "__init__.py" else module.rpartition(".")[0]
            tree = ast.parse(path.read_text(), str(path))
            for line, name in imported_modules(tree, package):
                target = room_of(name)
                if RANKS.get(target, -1) > rank:
                    problems.append(
                        f"{relative}.py:{line}: {room} (rank {rank}) imports {name} "
                        f"({target}, rank {RANKS[target]})"
                    )
    return problems


def test_every_import_runs_downward() -> None:
    assert wrong_way_imports(PROJECT_ROOT) == []


def test_every_project_room_has_a_rank() -> None:
    rooms = {
        path.parent.name
        for path in PROJECT_ROOT.glob("*/__init__.py")
        if path.parent.name not in {"tests", "bench"}
    }
    assert rooms <= set(RANKS), f"rooms without a rank: {sorted(rooms - set(RANKS))}"


@pytest.mark.parametrize(
    ("room", "module", "source", "wrong"),
    [
        ("store", "blobs", "from security.keys import BLOB\n", False),
        ("store", "blobs", "from models.lifecycle import registry\n", True),
        ("domain", "policy", "import workflows.identity_verification\n", True),
        ("models", "serving", "def f():\n    from cli.main import run\n", True),
        ("store", "engine", "import importlib\nimportlib.import_module('models.registry')\n", True),
        ("models", "lifecycle/cards", "from ..serving import ModelServer\n", False),
        ("models", "lifecycle/cards", "from ...workers import pools\n", True),
    ],
)
def test_a_wrong_way_import_is_found(
    tmp_path: Path, room: str, module: str, source: str, wrong: bool
) -> None:
    path = tmp_path / room / f"{module}.py"
    path.parent.mkdir(parents=True)
    path.write_text(source)
    found = wrong_way_imports(tmp_path)
    assert bool(found) is wrong, found
    if wrong:
        assert found[0].startswith(f"{room}/{module}.py:")
