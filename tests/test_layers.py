"""helpers stays in layers: the import-linter contract holds, and helpers imports sit at module top.

The layer map is in CONTRIBUTING.md and the contract in pyproject.toml (``[tool.importlinter]``). An import inside a
function is for a heavy or optional third-party library (torch, transformers, ...); a helpers import there hides a
circle, so at most a few are allowed, each with its reason in a comment on the same line.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.config import REPO_ROOT

HELPERS = REPO_ROOT / "helpers"
MAX_IN_FUNCTION = 15


def in_function_helpers_imports() -> list[tuple[str, int, str]]:
    """(file, line, source line) of every helpers import (absolute or relative) inside a function body."""
    found = []
    for path in sorted(HELPERS.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()

        def walk(node: ast.AST, in_function: bool) -> None:
            for child in ast.iter_child_nodes(node):
                inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                helpers = (isinstance(child, ast.ImportFrom) and (child.level > 0 or (child.module or "").split(".")[0]
                                                                 == "helpers")) or \
                          (isinstance(child, ast.Import) and any(a.name.split(".")[0] == "helpers" for a in child.names))
                if in_function and helpers:
                    found.append((path.relative_to(REPO_ROOT).as_posix(), child.lineno, lines[child.lineno - 1]))
                walk(child, inside)

        walk(ast.parse(text), False)
    return found


def test_helpers_imports_inside_functions_are_few_and_explained():
    found = in_function_helpers_imports()
    unexplained = [f"{f}:{n}: {line.strip()}" for f, n, line in found if "#" not in line]
    assert len(found) <= MAX_IN_FUNCTION, f"{len(found)} helpers imports inside functions (at most {MAX_IN_FUNCTION})"
    assert not unexplained, "helpers imports inside functions without their reason:\n" + "\n".join(unexplained)


def test_the_layers_contract_holds():
    pytest.importorskip("importlinter", reason="import-linter is a dev dependency: make install")
    lint = Path(sys.executable).parent / "lint-imports"
    command = [str(lint)] if lint.is_file() else [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]
    run = subprocess.run([*command, "--no-cache"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


def test_every_module_of_helpers_is_in_a_layer():
    import tomllib

    contract = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    layered = {m.strip() for layer in contract["layers"] for m in layer.replace(":", "|").split("|")}
    modules = {".".join(p.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")
               for p in HELPERS.rglob("*.py")}
    containers = {"helpers", "helpers.build"}  # packages whose __init__ holds nothing but a docstring and setup
    outside = sorted(m for m in modules - containers
                     if not any(m == layer or m.startswith(layer + ".") for layer in layered))
    assert not outside, f"modules in no layer of pyproject.toml's [tool.importlinter] contract: {outside}"
