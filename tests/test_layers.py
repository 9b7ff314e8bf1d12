"""The folders are the layers, and the layers point one way (docs/architecture.md).

Every module of ``server/`` and ``adapters/`` belongs to one layer of LAYERS; a
module may import its own layer or a lower one, never a higher one, and no
chain of imports comes back to where it started. Imports inside functions count
(they run); an import under ``if TYPE_CHECKING:`` is exempt from the layer rule
(it never runs: ``booking/`` names the ``Runtime`` it is handed that way) but
still counts for cycles.
"""

from __future__ import annotations

import ast
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("server", "adapters")

# Lowest first. A pattern is a module name, or "pkg.*" for everything in a folder.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("adapters", ("adapters", "adapters.*")),  # upstreams; imports nothing of server/
    ("kit", ("server", "server.kit", "server.kit.*")),  # small pieces with no domain
    ("errors", ("server.errors",)),  # the exception hierarchy (extends adapters.base's)
    ("config", ("server.config", "server.config.*")),  # read by everything above
    ("store", ("server.store", "server.store.*")),
    ("sync", ("server.sync", "server.sync.*")),
    ("booking", ("server.booking", "server.booking.*")),  # reads busy rows and sync's schedule
    ("runtime", ("server.runtime",)),  # builds and holds the running parts
    ("outputs", ("server.outputs", "server.outputs.*")),  # HTTP: routes, renders, guards
    ("app", ("server.app", "server.cli")),
]


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module
    line: int
    type_only: bool  # under `if TYPE_CHECKING:`


def module_files(root: Path) -> dict[str, Path]:
    """Each module of the checked packages under root, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, type_only: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node, and whether it sits under `if TYPE_CHECKING:` (not its else)."""
    for child in ast.iter_child_nodes(node):
        if _type_checking_block(child):
            assert isinstance(child, ast.If)
            for inner in child.body:
                yield inner, True
                yield from _walk(inner, True)
            for inner in child.orelse:
                yield inner, type_only
                yield from _walk(inner, type_only)
            continue
        yield child, type_only
        yield from _walk(child, type_only)


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module an imported name lives in (a name may be a function of a module)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    found = []
    is_package = path.name == "__init__.py"
    for node, type_only in _walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative (ruff bans them, but resolve them all the same)
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, base] if base else package)
            names = [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            target = _resolve(name, modules)
            if target is not None and target != module:
                found.append(Import(module, target, node.lineno, type_only))
    return found


def layer_of(module: str) -> int | None:
    for rank, (_name, patterns) in enumerate(LAYERS):
        if any(fnmatchcase(module, pattern) for pattern in patterns):
            return rank
    return None


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One path round each strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups


def problems(root: Path) -> list[str]:
    """Every module outside the layers, import up a layer, and import cycle under root."""
    modules = module_files(root)
    found = []
    edges: dict[str, set[str]] = {module: set() for module in modules}
    for module, path in modules.items():
        rank = layer_of(module)
        if rank is None:
            found.append(f"{module}: in no layer (add its folder to LAYERS)")
            continue
        for imp in imports_of(module, path, modules):
            edges[module].add(imp.target)
            target_rank = layer_of(imp.target)
            if imp.type_only or target_rank is None or target_rank <= rank:
                continue
            found.append(f"{module}:{imp.line} imports {imp.target}: layer "
                         f"{LAYERS[rank][0]} may not import {LAYERS[target_rank][0]}")
    found += [f"import cycle: {' -> '.join(group)}" for group in _cycles(edges)]
    return found


def test_layers_point_one_way_and_modules_import_no_cycle() -> None:
    assert problems(ROOT) == []


def test_every_module_is_in_a_role_folder() -> None:
    top = sorted(p.stem for p in (ROOT / "server").glob("*.py") if p.stem != "__init__")
    assert top == ["app", "cli", "errors", "runtime"]


# -- the checker itself --------------------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checker_flags_an_import_up_a_layer(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "server/__init__.py": "",
        "server/booking/__init__.py": "",
        "server/booking/slots.py": "def later():\n    from server.outputs.web import routes\n",
        "server/outputs/__init__.py": "",
        "server/outputs/web.py": "from server.booking import slots\nroutes = 1\n",
        "adapters/__init__.py": "",
        "adapters/base.py": "import server.errors\n",
        "server/errors.py": "",
    })
    assert problems(root) == [
        "server.booking.slots:2 imports server.outputs.web: layer booking may not import outputs",
        "adapters.base:1 imports server.errors: layer adapters may not import errors",
        "import cycle: server.booking.slots -> server.outputs.web",
    ]


def test_the_checker_exempts_type_checking_imports_from_layers_not_cycles(
        tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "server/__init__.py": "",
        "server/runtime.py": "from server.booking import busy\n",
        "server/booking/__init__.py": "",
        "server/booking/busy.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from server.runtime import Runtime\n"),
        "adapters/__init__.py": "",
    })
    assert problems(root) == ["import cycle: server.booking.busy -> server.runtime"]


def test_the_checker_flags_a_module_in_no_layer(tmp_path: Path) -> None:
    root = _write(tmp_path, {"server/__init__.py": "", "server/helpers.py": "",
                             "adapters/__init__.py": ""})
    assert problems(root) == ["server.helpers: in no layer (add its folder to LAYERS)"]


@pytest.mark.parametrize(("module", "wrong"), [
    ("server/booking/slots.py", "from server.outputs.feeds import render_freebusy"),
    ("server/store/records.py", "import server.sync.loop"),
    ("adapters/ics.py", "from server.kit.clock import iso"),
    ("server/kit/clock.py", "from server.config.model import Config"),
])
def test_the_checker_fails_on_a_wrong_import_in_a_copy_of_the_tree(
        tmp_path: Path, module: str, wrong: str) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__", "templates", "static"))
    assert problems(tmp_path) == []
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n{wrong}\n")
    found = problems(tmp_path)  # the wrong import, and any cycle it closes
    assert found
    assert found[0].startswith(module.removesuffix(".py").replace("/", ".") + ":")
    assert "may not import" in found[0]
