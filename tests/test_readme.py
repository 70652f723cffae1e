"""`python -m helpers.course readme`: the README's results and the notebooks' runtimes come from a run's report."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from helpers import course, readme
from helpers.config import NOTEBOOKS_DIR, REPO_ROOT

NAMES = [p.stem for p in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))]


def _run(tmp_path, profile="cpu-tiny", fallback=False, failed=None):
    run_dir = tmp_path / "runs" / "20261206-120000"
    run_dir.mkdir(parents=True)
    results = [{"name": name, "status": "failed" if name == failed else "ok", "seconds": 61.0 + i, "failed_cell": 7,
                "error": "", "metrics": {}, "images": []} for i, name in enumerate(NAMES)]
    results[3]["metrics"] = {"json_valid_base": 0.0, "json_valid_tuned": 1.0, "steps": 500,
                             "field_accuracy_base": 0.0, "field_accuracy_tuned": 0.6521, "field_accuracy_majority": 0.445,
                             "order_id_named_tuned": 0.0}
    results[7]["metrics"] = {"pairs": 183, "field_accuracy": {"sft": 0.657, "dpo": 0.647},
                             "json_reward": {"sft": 0.5}, "invented_order_ids": {"sft": 35, "dpo": 30}}
    (run_dir / "report.json").write_text(json.dumps(results))
    (run_dir / readme.RUN_INFO).write_text(json.dumps({"commit": "abc1234", "date": "2026-12-06 12:00 UTC",
                                                       "machine": "a CPU, 2 cores", "profile": profile,
                                                       "fallback": fallback}))
    return run_dir


def _update(run_dir, repo, **kwargs):
    return readme.update_readme(run_dir, repo / "README.md", repo / "notebooks", instructor=repo / "instructor.md",
                                **kwargs)


@pytest.fixture
def repo(tmp_path):
    """A copy of the README and the notebooks to write into."""
    shutil.copy(REPO_ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(NOTEBOOKS_DIR, tmp_path / "notebooks")
    shutil.copy(readme.INSTRUCTOR, tmp_path / "instructor.md")
    return tmp_path


def test_block_table_runtimes_and_time_lines_come_from_the_run(repo, tmp_path):
    run_dir = _run(tmp_path)
    changed = _update(run_dir, repo, note="make test ran beside it")
    text = (repo / "README.md").read_text()
    block = text.split("<!-- course-run:cpu-tiny:begin -->", 1)[1].split("<!-- course-run:cpu-tiny:end -->")[0]
    assert "commit `abc1234`, 2026-12-06 12:00 UTC, on a CPU, 2 cores; make test ran beside it" in block
    assert f"{len(NAMES)} of {len(NAMES)} notebooks ok" in block
    assert "| 03_qlora_training | ok | 1 min 4 s | test valid JSON 0% → 100% after 500 steps; test field accuracy " \
           "0.000 → 0.652 (majority answer 0.445)" in block
    assert "test field accuracy: sft 0.657, dpo 0.647; json_reward: sft 0.500; invented order ids: sft 35, dpo 30" in block
    assert "| 00_setup | ok | 1 min 1 s | — |" in block  # nothing recorded: nothing said, nothing typed
    row = re.search(r"^\| \[notebooks/03_qlora_training\.ipynb\].*$", text, re.M).group(0).split("|")
    assert row[3] == " 1 min 4 s " and "Open in Colab" in row[5]  # the cpu-tiny column; cpu's is the next one
    first = "".join(json.loads((repo / "notebooks" / "03_qlora_training.ipynb").read_text())["cells"][0]["source"])
    assert "`cpu-tiny` about 1 min 4 s on 2 CPU cores" in first
    assert re.search(r"^\| 03_qlora_training \| 1 min 4 s \| [^|]+ \|", (repo / "instructor.md").read_text(), re.M)
    assert repo / "README.md" in changed and len(changed) == 2 + len(NAMES)
    # a second run replaces the block instead of adding one
    assert _update(run_dir, repo, note="make test ran beside it") == []


def test_fallback_and_other_profiles_write_their_own_block_only(repo, tmp_path):
    before = (repo / "README.md").read_text()
    run_dir = _run(tmp_path, fallback=True)
    _update(run_dir, repo)
    after = (repo / "README.md").read_text()
    assert "with `--fallback`" in after.split("<!-- course-run:cpu-tiny-fallback:begin -->")[1]
    assert after.split("<!-- course-run:cpu-tiny-fallback:begin -->")[0] == \
        before.split("<!-- course-run:cpu-tiny-fallback:begin -->")[0]  # the table's (non-fallback) runtimes stay
    first = "".join(json.loads((repo / "notebooks" / "07_preference_tuning.ipynb").read_text())["cells"][0]["source"])
    assert "1 min 8 s with `USE_FALLBACK = True`" in first
    instructor = (repo / "instructor.md").read_text()
    assert re.search(r"^\| 07_preference_tuning \| [^|]+ \| 1 min 8 s \|", instructor, re.M)  # the fallback column
    cpu_run = _run(tmp_path / "cpu", profile="cpu", failed="07_preference_tuning")
    without = re.sub(r"<!-- course-run:cpu:begin -->.*?<!-- course-run:cpu:end -->\n?", "", after, flags=re.S)
    (repo / "README.md").write_text(without)
    with pytest.raises(readme.ReadmeError, match="no <!-- course-run:cpu:begin -->"):
        _update(cpu_run, repo)  # no block for it: named
    (repo / "README.md").write_text(without + "\n<!-- course-run:cpu:begin -->\n<!-- course-run:cpu:end -->\n")
    changed = _update(cpu_run, repo)
    assert changed == [repo / "README.md"]  # another profile: its block, never the cpu-tiny runtimes
    assert "| 07_preference_tuning | FAILED at cell 7 |" in (repo / "README.md").read_text()
    complete = _run(tmp_path / "cpu-ok", profile="cpu")  # a complete cpu run: its own columns and Time figures
    notebooks = [repo / "notebooks" / f"{name}.ipynb" for name in NAMES]
    assert _update(complete, repo) == [repo / "README.md", *notebooks, repo / "instructor.md"]
    row = re.search(r"^\| 07_preference_tuning \|.*$", (repo / "instructor.md").read_text(), re.M).group(0)
    assert row.split("|")[3:5] == [" 1 min 8 s ", " 1 min 8 s "]  # the fallback run's column, then the cpu run's
    table_row = r"^\| \[notebooks/07_preference_tuning\.ipynb\].*$"
    tiny_runtime = re.search(table_row, after, re.M).group(0).split("|")[3]
    assert re.search(table_row, (repo / "README.md").read_text(), re.M).group(0).split("|")[3:5] == \
        [tiny_runtime, " 1 min 8 s "]  # cpu-tiny's column kept, the cpu run's written
    first = "".join(json.loads(notebooks[7].read_text())["cells"][0]["source"])
    assert "1 min 8 s with `USE_FALLBACK = True`, and `cpu` about 1 min 8 s (measured" in first


def test_a_times_row_of_the_wrong_width_is_named(repo, tmp_path):
    guide = repo / "instructor.md"
    guide.write_text(re.sub(r"^(\| 05_iterate \|[^|]+\|).*$", r"\1", guide.read_text(), flags=re.M))
    with pytest.raises(readme.ReadmeError, match=r"no Times row of 5 cells for 05_iterate"):
        _update(_run(tmp_path), repo)


def test_errors_name_the_folder_and_the_fix(tmp_path, repo):
    with pytest.raises(readme.ReadmeError, match="make course"):
        readme.latest_run(tmp_path / "none")
    run_dir = _run(tmp_path)
    (run_dir / readme.RUN_INFO).unlink()
    with pytest.raises(readme.ReadmeError, match="run.json not found"):
        _update(run_dir, repo)
    (run_dir / readme.RUN_INFO).write_text("{")
    with pytest.raises(readme.ReadmeError, match="not the JSON"):
        _update(run_dir, repo)
    with pytest.raises(readme.ReadmeError, match="no <!-- course-run:x:begin -->"):
        readme.replace_block("text", "<!-- course-run:x:begin -->", "<!-- course-run:x:end -->", "b", "README.md")
    assert course.main(["readme", str(tmp_path / "missing")]) == 2


def test_the_readme_holds_a_block_for_each_measured_profile():
    text = (REPO_ROOT / "README.md").read_text()
    for name in ("cpu-tiny", "cpu-tiny-fallback", "cpu"):
        begin, end = f"<!-- course-run:{name}:begin -->", f"<!-- course-run:{name}:end -->"
        assert begin in text and end in text
        assert "Written by `python -m helpers.course readme`" in text.split(begin)[1].split(end)[0]
