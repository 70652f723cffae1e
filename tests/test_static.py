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


# ------------------------------------------------------------------- choose on validation, report on test once (28)

HELD_OUT_READ = re.compile(r"""(?:test|handwritten)\.jsonl|(?:load_split|split_path)\(\s*["'](?:test|handwritten)["']""")
# Functions that choose among candidates (a run, a fix, a target) and methods that pick an argmax: none may see rows
# read from a held-out split, or anything computed from them.
CHOOSERS = {"train.best_run", "evaluate.ship_rule", "evaluate.failure_groups"}
CHOOSING_METHODS = {"idxmax", "idxmin", "nlargest", "nsmallest"}


def _dotted(node) -> str:
    import ast

    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def _propagate(body, tainted: set[str], outer: set[str]) -> None:
    """Taint, in source order, the names assigned from ``evaluate.test_split`` or from tainted names; ``outer`` holds
    the names tainted by an enclosing ``for``/``with`` (what a loop over held-out rows assigns depends on them)."""
    import ast

    for stmt in body:
        targets, value = [], None
        if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets, value = (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]), stmt.value
        elif isinstance(stmt, ast.For):
            targets, value = [stmt.target], stmt.iter
        if value is not None:
            # a subscript or attribute store (scores[k] = ...) changes the container: it counts as its name
            names = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
            reads = any(isinstance(n, ast.Call) and _dotted(n.func) == "evaluate.test_split" for n in ast.walk(value))
            uses = {n.id for n in ast.walk(value) if isinstance(n, ast.Name)} & tainted
            if reads or uses or outer:
                tainted |= names
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign)) and all(isinstance(t, ast.Name) for t in targets):
                tainted -= names  # a plain name re-assigned from clean values is clean again
        for field in ("body", "orelse", "finalbody", "handlers"):
            inner = getattr(stmt, field, None)
            if isinstance(inner, list) and inner and isinstance(inner[0], ast.AST):
                loop_taint = outer | ({"<loop>"} if isinstance(stmt, ast.For) and value is not None and (
                    {n.id for n in ast.walk(value) if isinstance(n, ast.Name)} & tainted) else set())
                _propagate([s for s in inner if isinstance(s, ast.stmt)] if field != "handlers" else
                           [s for h in inner for s in h.body], tainted, loop_taint)


def held_out_problems(cells: list[tuple[int, str]]) -> list[str]:
    """Where notebook code reads a held-out split other than through ``evaluate.test_split``, or lets what it read
    reach a choice. ``cells`` are (index, source) of code cells in order; the taint follows assignments across cells
    (a name assigned from an expression that uses a tainted name is tainted; a name re-assigned cleanly is not)."""
    import ast

    problems, tainted = [], set()
    for index, source in cells:
        if HELD_OUT_READ.search(source):
            problems.append(f"cell {index}: reads a held-out split directly ({HELD_OUT_READ.search(source).group(0)}): "
                            f"use evaluate.test_split(question, cfg)")
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue  # IPython magics: test_valid_and_stripped and nbmake report real syntax errors
        for node in ast.walk(tree):  # choices: a chooser given tainted names, an argmax of tainted data
            if not isinstance(node, ast.Call):
                continue
            name = _dotted(node.func)
            used = {n.id for arg in [*node.args, *(k.value for k in node.keywords)] for n in ast.walk(arg)
                    if isinstance(n, ast.Name)}
            method = node.func.attr if isinstance(node.func, ast.Attribute) else ""
            receiver = ({n.id for n in ast.walk(node.func.value) if isinstance(n, ast.Name)}
                        if isinstance(node.func, ast.Attribute) else set())
            if name in CHOOSERS and used & tainted:
                problems.append(f"cell {index}: {name} chooses from held-out rows ({', '.join(sorted(used & tainted))})"
                                f": choose on validation")
            if method in CHOOSING_METHODS and receiver & tainted:
                problems.append(f"cell {index}: .{method}() picks from held-out rows "
                                f"({', '.join(sorted(receiver & tainted))}): choose on validation")
        _propagate(tree.body, tainted, outer=set())
    return problems


def test_notebooks_read_the_test_split_only_through_the_ledger_and_choose_on_validation(nb):
    cells = [(i, c.source) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    problems = held_out_problems(cells)
    assert not problems, f"{nb.path.name}: " + "; ".join(problems)
    reads = [c.source for _, c in enumerate(nb.cells) if c.cell_type == "code" and "evaluate.test_split(" in c.source]
    for source in reads:
        question = re.search(r"evaluate\.test_split\(\s*\"([^\"]+)\"", source)
        assert question and question.group(1)[:2] == nb.path.name[:2] or question.group(1).startswith("01+04"), \
            f"{nb.path.name}: a test_split question starts with its notebook's number: {source[:120]!r}"


@pytest.mark.parametrize("cells, expected", [
    ([(3, 'rows = data.load_split("test")')], "reads a held-out split directly"),
    ([(3, "rows = read_jsonl('data/tickets/test.jsonl')")], "reads a held-out split directly"),
    ([(3, 'hand = data.load_split("handwritten")')], "reads a held-out split directly"),
    ([(3, 'rows = evaluate.test_split("05: q", cfg)'), (4, "refs = evaluate.references_from_rows(rows)"),
      (5, "best = train.best_run(compare(refs))")], "train.best_run chooses from held-out rows"),
    ([(3, 'rows = evaluate.test_split("05: q", cfg)'), (4, "scores = {}"),
      (5, "for run in runs:\n    scores[run] = evaluate.score(gen(run, rows), refs)"),
      (6, "table = pd.DataFrame(scores)"), (7, "pick = table.loc['field_accuracy'].idxmax()")], ".idxmax() picks"),
    ([(3, 'rows = evaluate.test_split("05: q", cfg)'), (4, "keep, why = evaluate.ship_rule((1, 0), score(rows))")],
     "evaluate.ship_rule chooses"),
])
def test_the_held_out_check_fails_on_a_notebook_that_breaks_the_rule(cells, expected):
    problems = held_out_problems(cells)
    assert any(expected in p for p in problems), problems


def test_the_held_out_check_passes_choices_on_validation_and_a_clean_rebinding():
    cells = [(3, 'rows = evaluate.test_split("05: q", cfg)'), (4, "val = data.load_split('validation')"),
             (5, "best = train.best_run(table_of(val))"), (6, "rows = data.load_split('train')"),
             (7, "pick = frame(rows).idxmax()")]
    assert held_out_problems(cells) == []


REPO_LIMIT_BYTES = 45_000_000  # Colab clones the repository and a GPU check carries it (64 MiB with what it needs)


def test_the_repository_stays_small_and_each_fallback_within_its_limit():
    import subprocess

    from helpers.build.fallback import too_big
    from helpers.config import FALLBACK_DIR

    for folder in sorted(p for p in FALLBACK_DIR.iterdir() if p.is_dir()):
        assert too_big(folder) is None, f"{folder.name}: {too_big(folder)}"
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, timeout=60)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: the tracked files cannot be listed")
    sizes = {name: (REPO_ROOT / name).stat().st_size for name in listed.stdout.decode().split("\0")
             if name and (REPO_ROOT / name).is_file()}
    total = sum(sizes.values())
    largest = sorted(sizes, key=sizes.get, reverse=True)[:3]
    assert total <= REPO_LIMIT_BYTES, (f"the tracked files take {total / 1e6:.1f} MB, over {REPO_LIMIT_BYTES / 1e6:.0f} "
                                       f"MB (largest: {', '.join(largest)})")
