"""The course runner: parameters injected, executed copies and a report, failures named with their cell."""

from __future__ import annotations

import json
import subprocess
import sys

import nbformat
import pytest

from helpers import course


def make_notebook(path, cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for i, (tags, source) in enumerate(cells):
        cell = nbformat.v4.new_code_cell(source, metadata={"tags": tags})
        cell["id"] = f"c{i}"
        nb.cells.append(cell)
    nbformat.write(nb, path)


@pytest.fixture
def tiny_course(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    make_notebook(folder / "00_ok.ipynb", [
        (["parameters"], 'PROFILE = "auto"  # profile'),
        ([], "from helpers import course\ncourse.record(seen_profile=PROFILE, score=0.123456)"),
        ([], "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()"),
    ])
    make_notebook(folder / "01_fails.ipynb", [
        (["parameters"], 'PROFILE = "auto"  # profile'),
        ([], "x = 1"),
        ([], "raise ValueError('boom')"),
    ])
    make_notebook(folder / "02_after.ipynb", [(["parameters"], 'PROFILE = "auto"  # profile'), ([], "y = 2")])
    return folder


def test_inject_parameters_goes_right_after_the_parameters_cell(tiny_course):
    nb = course.inject_parameters(nbformat.read(tiny_course / "00_ok.ipynb", as_version=4), {"PROFILE": "t4"})
    assert nb.cells[1].metadata["tags"] == ["injected-parameters"] and "PROFILE = 't4'" in nb.cells[1].source


def test_run_reports_metrics_images_and_names_the_failing_cell(tiny_course, tmp_path, capsys):
    status = course.run_course("cpu-tiny", folder=tiny_course, runs_dir=tmp_path / "runs", timeout=120)
    assert status == 1
    out = capsys.readouterr().out
    assert "01_fails.ipynb failed at cell 4: ValueError: boom" in out
    run_dir = next((tmp_path / "runs").iterdir())
    results = {r["name"]: r for r in json.loads((run_dir / "report.json").read_text())}
    assert results["00_ok"]["status"] == "ok"
    assert results["00_ok"]["metrics"] == {"seen_profile": "cpu-tiny", "score": 0.1235}
    assert results["00_ok"]["images"] == ["00_ok_1.png"] and (run_dir / "00_ok_1.png").stat().st_size > 0
    assert results["01_fails"]["status"] == "failed" and results["01_fails"]["failed_cell"] == 4
    assert results["02_after"]["status"] == "skipped", "stops at the first failure by default"
    report = (run_dir / "report.md").read_text()
    assert "FAILED at cell 4: ValueError: boom" in report and "score=0.123" in report
    assert "data:image/png;base64," in (run_dir / "report.html").read_text()
    executed = nbformat.read(run_dir / "01_fails.ipynb", as_version=4)
    assert executed.cells[3].outputs[0]["ename"] == "ValueError"


def test_keep_going_and_only(tiny_course, tmp_path):
    assert course.run_course("cpu-tiny", only=["00", "02"], folder=tiny_course, runs_dir=tmp_path / "a") == 0
    assert course.run_course("cpu-tiny", keep_going=True, folder=tiny_course, runs_dir=tmp_path / "b") == 1
    results = json.loads(next((tmp_path / "b").iterdir()).joinpath("report.json").read_text())
    assert [r["status"] for r in results] == ["ok", "failed", "ok"]


def test_bad_profile_is_one_line_and_exit_2():
    out = subprocess.run([sys.executable, "-m", "helpers.course", "run", "--profile", "gpu-huge"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stdout.strip().startswith("error: unknown profile 'gpu-huge'")
    assert "Traceback" not in out.stdout + out.stderr


def test_record_merges_into_the_notebook_file(tmp_path, monkeypatch):
    monkeypatch.setenv(course.METRICS_DIR_VAR, str(tmp_path))
    monkeypatch.setenv(course.NOTEBOOK_VAR, "03_x")
    course.record(a=1)
    course.record(b=2.5)
    assert json.loads((tmp_path / "03_x.json").read_text()) == {"a": 1, "b": 2.5}
