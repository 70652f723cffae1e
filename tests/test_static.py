"""Tier 1: static checks of every notebook and of the repo's promises, without torch."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

import nbformat
import pytest

from helpers.config import NOTEBOOKS_DIR, REPO_ROOT

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and "skip-execution" not in c.metadata.get("tags", [])]


def test_course_has_notebooks():
    assert [p.stem for p in NOTEBOOKS][:1] == ["00_setup"]
    for path in NOTEBOOKS:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), f"{path.name}: use NN_snake_case.ipynb"


class Notebook:
    """A notebook read from disk, with the path it came from."""

    def __init__(self, path: Path):
        self.path = path
        self.node = nbformat.read(path, as_version=4)
        self.cells = self.node.cells


@pytest.fixture(params=NOTEBOOKS, ids=IDS)
def nb(request):
    return Notebook(request.param)


def test_valid_and_stripped(nb):
    nbformat.validate(nb.node)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs, f"{nb.path.name} cell {i}: outputs committed (strip them)"
            assert cell.execution_count is None, f"{nb.path.name} cell {i}: execution count committed"


def test_opening_and_parameters(nb):
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "starts with an H1 title"
    assert "colab.research.google.com/github/" in first.source and nb.path.name in first.source, "Colab badge"
    assert "What you will learn" in first.source
    assert re.search(r"\*\*Time:\*\* `cpu-tiny` [^;]+; GPU profiles: ", first.source), "how long it takes, per profile"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{nb.path.name}: exactly one cell tagged 'parameters', found {len(tagged)}"
    lines = [ln for ln in tagged[0].source.splitlines() if ln.strip()]
    assert lines[0].startswith('PROFILE = "auto"'), "the first parameter is PROFILE = \"auto\""
    for line in lines:
        assert re.fullmatch(r"[A-Z][A-Z0-9_]* = .+  # .+", line), f"{nb.path.name}: '{line}' is not UPPER = value  # why"
    sources = [c.source for c in code_cells(nb)]
    assert any("config.get_profile(PROFILE)" in s for s in sources), "resolves the profile"
    assert any("env.check(" in s for s in sources), "runs the environment check"


def test_structure(nb):
    name = nb.path.name
    headings = [ln for c in nb.cells if c.cell_type == "markdown" for ln in c.source.splitlines()]
    assert "## Summary" in headings and "## Exercises" in headings, f"{name}: Summary and Exercises"
    numbered = [h for h in headings if re.match(r"## \d+\.\d+ ", h)]
    assert len(numbered) >= 3, f"{name}: numbered '## N.x' sections"
    summary = next(i for i, c in enumerate(nb.cells)
                   if c.cell_type == "markdown" and "## Summary" in c.source.splitlines())
    before = [c for c in code_cells(nb) if nb.cells.index(c) < summary]
    last_code = before[-1].source
    assert "assert " in last_code and "course.record(" in last_code, \
        f"{name}: the last code cell before '## Summary' asserts and records"
    after = nb.cells[summary + 1:]
    assert after and after[0].cell_type == "markdown" and after[0].source.startswith("## Exercises"), \
        f"{name}: '## Exercises' comes right after '## Summary'"
    check_exercises(nb, after)


def check_exercises(nb, cells):
    """Each '### Exercise' has a solution cell with a starter, a checker call and a hidden check of that checker."""
    from helpers import check

    name, nn = nb.path.name, nb.path.name[:2]
    starts = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith("### Exercise")]
    assert len(starts) >= 2, f"{name}: at least 2 '### Exercise' headings after '## Exercises'"
    for number, (start, end) in enumerate(zip(starts, starts[1:] + [len(cells)]), 1):
        block = cells[start + 1:end]
        block = block[:next((i for i, c in enumerate(block) if c.cell_type == "markdown" and c.source.startswith("#")),
                            len(block))]
        key = f"{nn}_{number}"
        where = f"{name}: exercise {key} ({cells[start].source.splitlines()[0]})"
        solutions = [c for c in block if "solution" in c.metadata.get("tags", [])]
        assert len(solutions) == 1, f"{where}: one code cell tagged 'solution'"
        assert str(solutions[0].metadata.get("starter", "")).strip(), f"{where}: the solution cell has no 'starter'"
        assert any(f"check.exercise_{key}(" in c.source for c in block if c.cell_type == "code"), \
            f"{where}: no cell calls check.exercise_{key}("
        hidden = [c for c in block if "hidden-check" in c.metadata.get("tags", [])]
        assert hidden and f'check.RESULTS["{key}"]' in hidden[0].source and "assert " in hidden[0].source, \
            f"{where}: a 'hidden-check' cell asserting check.RESULTS[\"{key}\"]"
        assert callable(getattr(check, f"exercise_{key}", None)), f"{where}: helpers.check has no exercise_{key}"
    imports = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert re.search(r"^from helpers import [^\n]*\bcheck\b", imports, re.M), f"{name}: import check from helpers"


def test_cell_budgets(nb):
    sizes = [len(c.source.splitlines()) for c in code_cells(nb)]
    assert max(sizes) <= 25, f"{nb.path.name}: a code cell has {max(sizes)} lines (max 25): move it to a helper"
    assert statistics.median(sizes) <= 6, f"{nb.path.name}: median code cell {statistics.median(sizes)} lines (<= 6)"
    assert 60 <= sum(sizes) <= 300, f"{nb.path.name}: {sum(sizes)} code lines (60-300)"


def test_no_login_and_offline(nb):
    for cell in code_cells(nb):
        assert "login(" not in cell.source, "nothing logs in during execution"
        assert "evaluate.load(" not in cell.source or "helpers" in cell.source, "evaluate.load downloads code"
        assert not re.search(r"^\s*[!%]", cell.source, re.M), "shell/magic lines only in skip-execution cells"


def test_relative_links_resolve(nb):
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for target in re.findall(r"\]\(([^)#\s]+)", cell.source):
            if target.startswith(("http://", "https://", "mailto:", "data:")):
                continue
            assert (nb.path.parent / target).exists(), f"{nb.path.name}: broken link {target}"


def test_readme_links_resolve():
    readme = (REPO_ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#\s]+)", readme):
        if not target.startswith(("http://", "https://")):
            assert (REPO_ROOT / target).exists(), f"README.md: broken link {target}"


def test_readme_lists_every_notebook():
    readme = (REPO_ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        assert f"notebooks/{path.name}" in readme, f"README's notebook table misses {path.name}"


def test_no_cell_rebinds_a_helpers_module(nb):
    # `for name, check in ...` once replaced the exercise checkers' module with a DataFrame, three cells before its use
    imported = set()
    for cell in code_cells(nb):
        for line in cell.source.splitlines():
            if line.startswith("from helpers import "):
                imported |= {name.strip() for name in line.removeprefix("from helpers import ").split(",")}
    pattern = re.compile(r"^\s*(?:for\s+([\w\s,]+?)\s+in\b|([\w\s,]+?)\s*=(?!=))", re.M)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for match in pattern.finditer(cell.source):
            names = {n.strip() for n in (match.group(1) or match.group(2) or "").split(",")}
            assert not names & imported, f"{nb.path.name} cell {i}: rebinds {names & imported} (a helpers module)"
