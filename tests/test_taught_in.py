"""Every "Taught in NN" tag in helpers/ names a notebook whose code really uses that function, class or module.

A tag on a function or class holds when the notebook's code cells mention its name; a tag on a module holds when
they mention the module's name or one of its public names (``evaluate.score`` uses ``helpers/evaluate/metrics.py``).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from helpers.config import NOTEBOOKS_DIR, REPO_ROOT

HELPERS = REPO_ROOT / "helpers"
TAG = re.compile(r"Taught in (\d\d)(?:_([A-Za-z0-9_]+))?")


def notebook_code(number: str, name: str | None) -> tuple[Path | None, str]:
    """The notebook a tag names (``NN_name`` or just ``NN``) and the text of its code cells."""
    pattern = f"{number}_{name}.ipynb" if name else f"{number}_*.ipynb"
    found = sorted(NOTEBOOKS_DIR.glob(pattern))
    if len(found) != 1:
        return None, ""
    cells = json.loads(found[0].read_text(encoding="utf-8"))["cells"]
    return found[0], "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def module_name(path: Path) -> str:
    """``train`` for helpers/train.py, ``evaluate`` for helpers/evaluate/__init__.py, ``data`` for __main__.py."""
    return path.parent.name if path.stem in ("__init__", "__main__") else path.stem


def public_defs(tree: ast.Module) -> list[ast.FunctionDef | ast.ClassDef]:
    """Public module-level functions and classes, and the public methods of public classes."""
    out = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            out.append(node)
            if isinstance(node, ast.ClassDef):
                out += [m for m in node.body if isinstance(m, ast.FunctionDef) and not m.name.startswith("_")]
    return out


def tags() -> list[tuple[str, str, list[str], str, str | None]]:
    """(where, what, names that count as a mention, notebook number, notebook name) for every tag."""
    found = []
    for path in sorted(HELPERS.rglob("*.py")):
        if path.stem.startswith("_") and path.stem not in ("__init__", "__main__"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        rel = path.relative_to(REPO_ROOT).as_posix()
        defs = public_defs(tree)
        module_names = [module_name(path)] + [d.name for d in defs if d in tree.body]
        for number, name in TAG.findall(ast.get_docstring(tree) or ""):
            found.append((rel, f"module {module_name(path)}", module_names, number, name or None))
        for node in defs:
            for number, name in TAG.findall(ast.get_docstring(node) or ""):
                found.append((f"{rel}:{node.lineno}", node.name, [node.name], number, name or None))
    return found


def test_the_scan_finds_the_tags():
    assert len(tags()) > 100


def test_every_taught_in_tag_names_a_notebook_that_uses_it():
    lies = []
    for where, what, names, number, name in tags():
        notebook, code = notebook_code(number, name)
        label = f"{number}_{name}" if name else number
        if notebook is None:
            lies.append(f"{where}: {what}: 'Taught in {label}' names no notebook in notebooks/")
        elif not any(re.search(rf"\b{re.escape(n)}\b", code) for n in names):
            lies.append(f"{where}: {what}: 'Taught in {label}' but {notebook.name}'s code cells never use it")
    assert not lies, f"{len(lies)} 'Taught in' tags lie (fix or remove them):\n" + "\n".join(lies)
