"""Habit 16: layers are checked by a tool, not by memory.

import-linter (the contracts in pyproject.toml, run by `make lint`) checks which app may import
which. This test reads every module under carnet/ with `ast` for the two rules it cannot see:

- no module takes another module's `_private` name: neither `from x import _name` nor `x._name`
  through a module it imported (tests included: a helper other test modules share is public);
- an import inside a function says why (a comment on the lines of its block of imports or the
  line above it, e.g. `# late: …`): the app registry is not ready, a cycle at import time, a
  heavy optional import. Tests and conftest too: a module's imports at its top show what it
  needs (one hidden in a test helper once named a model that no longer existed).
"""

from __future__ import annotations

import ast
from pathlib import Path

import carnet

ROOT = Path(carnet.__file__).parent


def _modules():
    """(dotted name, is a package, path relative to the repository, tree, source lines)."""
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        source = path.read_text()
        yield (
            name,
            is_package,
            path.relative_to(ROOT.parent),
            ast.parse(source),
            source.splitlines(),
        )


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The module a `from … import` reads, relative imports resolved."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_module(dotted: str) -> bool:
    if not dotted.startswith("carnet."):
        return False
    path = ROOT.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _in_functions(tree: ast.AST):
    """Runs of adjacent import statements (one block of imports) in the body of a function."""

    def runs(body):
        run = []
        for statement in body:
            if isinstance(statement, (ast.Import, ast.ImportFrom)):
                run.append(statement)
                continue
            if run:
                yield run
            run = []
        if run:
            yield run

    def walk(node, inside):
        for field in ("body", "orelse", "finalbody", "handlers"):
            body = getattr(node, field, None)
            if inside and isinstance(body, list):
                yield from runs(body)
        for child in ast.iter_child_nodes(node):
            yield from walk(
                child,
                inside or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)),
            )

    yield from walk(tree, False)


def private_names_taken() -> list[str]:
    found = []
    for module, is_package, path, tree, _lines in _modules():
        modules_imported = {}  # local name -> the carnet module it stands for
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = _absolute(module, is_package, node)
                for alias in node.names:
                    if _is_private(alias.name) and source != module:
                        found.append(f"{path}:{node.lineno}: from {source} import {alias.name}")
                    if _is_module(f"{source}.{alias.name}"):
                        modules_imported[alias.asname or alias.name] = f"{source}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname and _is_module(alias.name):
                        modules_imported[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and _is_private(node.attr)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules_imported
            ):
                source = modules_imported[node.value.id]
                found.append(f"{path}:{node.lineno}: {node.value.id}.{node.attr} ({source})")
    return found


def imports_in_functions_unexplained() -> list[str]:
    found = []
    for _module, _is_package, path, tree, lines in _modules():
        for run in _in_functions(tree):
            first, last = run[0].lineno, run[-1].end_lineno
            above = lines[first - 2].strip() if first > 1 else ""
            if not (any("#" in line for line in lines[first - 1 : last]) or above.startswith("#")):
                found += [f"{path}:{node.lineno}: {lines[node.lineno - 1].strip()}" for node in run]
    return found


def test_no_module_takes_another_modules_private_name():
    taken = private_names_taken()
    assert not taken, "Give these a public name in the module that owns them:\n" + "\n".join(taken)


def test_an_import_inside_a_function_says_why():
    unexplained = imports_in_functions_unexplained()
    assert not unexplained, (
        "Move these imports to the top of their module, or say on the line above why they wait"
        " (# late: …):\n" + "\n".join(unexplained)
    )


def test_the_checks_see_what_they_look_for(tmp_path, monkeypatch):
    """The two readers flag a private name taken and an unexplained late import (a check that
    cannot fail is a defect), and let the explained and the module's own names pass."""
    package = tmp_path / "carnet"
    (package / "app").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "app" / "__init__.py").write_text("")
    (package / "app" / "low.py").write_text("_SECRET = 1\n\n\ndef _helper():\n    return _SECRET\n")
    (package / "app" / "high.py").write_text(
        "from . import low\n"
        "from .low import _SECRET\n"
        "\n\n"
        "def late():\n"
        "    import json\n"
        "\n"
        "    late = json.dumps(1)\n"
        "    # late: the registry is not ready when this module loads\n"
        "    import csv\n"
        "\n"
        "    return low._helper(), late, csv\n"
    )
    (package / "app" / "tests").mkdir()
    (package / "app" / "tests" / "__init__.py").write_text("")
    (package / "app" / "tests" / "test_high.py").write_text(
        "def test_late():\n    import json\n\n    assert json\n"
    )
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", package)
    assert private_names_taken() == [
        "carnet/app/high.py:2: from carnet.app.low import _SECRET",
        "carnet/app/high.py:12: low._helper (carnet.app.low)",
    ]
    assert imports_in_functions_unexplained() == [
        "carnet/app/high.py:6: import json",
        "carnet/app/tests/test_high.py:2: import json",
    ]
