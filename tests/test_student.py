"""The student version (student/) and the answer keys (docs/solutions/) are generated, current and leak nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helpers import course
from helpers.config import NOTEBOOKS_DIR, REPO_ROOT

NOTEBOOKS = course.find_notebooks(NOTEBOOKS_DIR)
STUDENT = REPO_ROOT / course.STUDENT_DIRNAME
SOLUTIONS = REPO_ROOT / course.SOLUTIONS_DIRNAME


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def strings(node) -> list[str]:
    """Every string anywhere in a notebook's JSON (sources joined), metadata and outputs included."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        out = ["".join(node["source"])] if isinstance(node.get("source"), list) else []
        return out + [s for key, value in node.items() if key != "source" for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return []


def test_the_generated_files_are_up_to_date():
    stale = course.write_student(REPO_ROOT, check=True)
    assert not stale, f"stale or missing: {stale}: run `make student` (python -m helpers.course student)"


def test_check_reports_stale_files_and_writing_fixes_them(tmp_path, capsys):
    assert course.main(["student", "--out", str(tmp_path), "--check"]) == 1
    assert "student/00_setup.ipynb" in capsys.readouterr().out and not (tmp_path / "student").exists()
    assert course.main(["student", "--out", str(tmp_path)]) == 0
    assert course.main(["student", "--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "docs" / "solutions" / "00_setup.md").write_text("edited by hand\n")
    (tmp_path / "student" / "99_gone.ipynb").write_text("{}\n")
    assert course.main(["student", "--out", str(tmp_path), "--check"]) == 1
    out = capsys.readouterr().out
    assert "docs/solutions/00_setup.md" in out and "student/99_gone.ipynb" in out


@pytest.mark.parametrize("source", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_student_version_has_starters_and_no_solutions(source):
    nb, student = load(source), load(STUDENT / source.name)
    assert not [c for c in student["cells"] if {"solution", "hidden-check"} & set(tags(c))], \
        f"student/{source.name}: a solution or hidden-check cell is left"
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in student["cells"] if c["cell_type"] == "code"), f"student/{source.name}: outputs left"
    text = "\n".join(strings(student))
    solutions = [c for c in nb["cells"] if "solution" in tags(c)]
    # code the notebook shows outside its solutions (a call section 3.2 makes too, a line the exercise's statement
    # quotes as a hint) gives nothing away
    shown = "\n".join("".join(c["source"]) for c in nb["cells"] if "solution" not in tags(c))
    for cell in solutions:
        starter = cell["metadata"].get("starter", "")
        assert starter.strip(), f"{source.name}: a solution cell has no starter"
        for line in "".join(cell["source"]).splitlines():
            if len(line.strip()) > 20 and line.strip() not in shown and line.strip() not in starter:
                assert line.strip() not in text, f"student/{source.name} still holds solution code: {line.strip()!r}"
    starters = ["".join(c["source"]) for c in student["cells"] if "answer" in tags(c)]
    assert starters == [c["metadata"]["starter"] for c in solutions], f"student/{source.name}: starters out of order"
    assert f"/blob/main/student/{source.name}" in "".join(student["cells"][0]["source"]), "the Colab badge"
    assert "Student version" in "".join(student["cells"][0]["source"])
    boot = "".join(next(c for c in student["cells"] if c["cell_type"] == "code")["source"])
    assert 'os.chdir("/content/course/student")' in boot, "the bootstrap cell opens in student/ on Colab"


@pytest.mark.parametrize("source", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_exercise_is_in_its_answer_key(source):
    key = SOLUTIONS / f"{source.stem}.md"
    assert key.is_file(), f"{key} is missing: run `make student`"
    text = key.read_text(encoding="utf-8")
    for ex in course.exercises_of(load(source)):
        assert f"## {ex['heading']}" in text and ex["solution"].strip() in text, f"{key.name}: {ex['heading']}"
        assert ex["checker"] and f"check.{ex['checker']}" in text, f"{key.name}: {ex['heading']} names no checker"


@pytest.fixture(scope="session")
def student_artifacts(tmp_path_factory):
    """One artifacts folder for all the student runs (in order 00..08), so they never touch the repo's artifacts/."""
    return tmp_path_factory.mktemp("student-artifacts")


@pytest.mark.parametrize("name", [p.name for p in NOTEBOOKS], ids=[f"run-{p.stem}" for p in NOTEBOOKS])
def test_the_student_notebook_runs(name, student_artifacts, monkeypatch):
    """Under nbmake's own runner, on cpu-tiny with the shipped fallback results: every cell runs, and each checker
    answers the untouched starter with a hint (03-07 need data/fallback/cpu-tiny)."""
    from nbmake.nb_run import NotebookRun

    monkeypatch.setenv("COURSE_PROFILE", "cpu-tiny")
    monkeypatch.setenv("COURSE_FALLBACK", "1")
    monkeypatch.setenv("COURSE_ARTIFACTS", str(student_artifacts))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    result = NotebookRun(STUDENT / name, default_timeout=1800).execute()
    assert result.error is None, f"student/{name}: {result.error.summary}\n{result.error.trace[-3000:]}"
    for cell in result.nb.cells:
        if cell.cell_type == "code" and "check.exercise_" in cell.source:
            printed = "".join(o.get("text", "") for o in cell.outputs)
            assert "not yet" in printed, f"student/{name}: the checker should answer the starter with a hint"


def test_a_solution_without_a_starter_is_refused(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nb = load(NOTEBOOKS[0])
    solution = next((c for c in nb["cells"] if "solution" in tags(c)), None)
    assert solution is not None, f"{NOTEBOOKS[0].name} has no solution cell"
    solution["metadata"].pop("starter")
    (notebooks / NOTEBOOKS[0].name).write_text(json.dumps(nb, indent=1), encoding="utf-8")
    with pytest.raises(SystemExit, match="has no metadata 'starter'"):
        course.write_student(tmp_path / "out", notebooks=notebooks)
