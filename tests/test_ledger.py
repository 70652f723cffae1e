"""The test ledger (issue 28): every read of a held-out split is recorded with its question; a second look is said."""

from __future__ import annotations

import pytest

from helpers import config, course, evaluate
from helpers.evaluate import ledger


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    """A course run's metrics folder, as the runner sets it for each notebook."""
    monkeypatch.setenv(ledger.METRICS_DIR_VAR, str(tmp_path / "metrics"))
    monkeypatch.setenv(ledger.NOTEBOOK_VAR, "05_iterate")
    return tmp_path


def test_a_read_is_recorded_with_its_question_and_capped_by_the_profile(run_dir, capsys):
    cfg = config.get_profile("cpu-tiny")
    rows = evaluate.test_split("05: does the fix hold?", cfg)
    assert len(rows) == cfg.eval_limit and rows == evaluate.ledger.load_split("test")[: cfg.eval_limit]
    [entry] = evaluate.read_ledger()
    assert entry | {"at": None, "pid": None} == {"notebook": "05_iterate", "question": "05: does the fix hold?",
                                                 "split": "test", "rows": cfg.eval_limit, "profile": "cpu-tiny",
                                                 "at": None, "pid": None}
    assert evaluate.ledger_path() == run_dir / "metrics" / ledger.LEDGER_NAME
    out = capsys.readouterr().out
    assert "read 1 for this question" in out and "note:" not in out


def test_a_second_look_for_the_same_question_is_said_and_counted(run_dir, capsys):
    cfg = config.get_profile("cpu-tiny")
    evaluate.test_split("05: does the fix hold?", cfg)
    evaluate.test_split("05: does the fix hold?", cfg)
    out = capsys.readouterr().out
    assert "note: 05_iterate already read the test split for this question" in out and "look 2" in out
    table = evaluate.ledger_table()
    assert table.to_dict("records") == [{"notebook": "05_iterate", "question": "05: does the fix hold?",
                                         "split": "test", "rows": cfg.eval_limit, "reads": 2, "profile": "cpu-tiny"}]
    assert "**2** (a second look)" in evaluate.ledger_markdown()


def test_another_question_notebook_or_profile_is_not_a_second_look(run_dir, capsys, monkeypatch):
    evaluate.test_split("05: does the fix hold?", config.get_profile("cpu-tiny"))
    evaluate.test_split("05: another question", config.get_profile("cpu-tiny"))
    evaluate.test_split("05: does the fix hold?", config.get_profile("cpu"))
    monkeypatch.setenv(ledger.NOTEBOOK_VAR, "07_preference_tuning")
    evaluate.test_split("05: does the fix hold?", config.get_profile("cpu-tiny"))
    evaluate.test_split("04: hand-written", split="handwritten")
    assert "note:" not in capsys.readouterr().out
    assert len(evaluate.read_ledger()) == 5 and set(evaluate.ledger_table()["reads"]) == {1}
    assert evaluate.read_ledger()[-1]["rows"] == len(evaluate.ledger.load_split("handwritten"))


@pytest.mark.parametrize("kwargs, words", [({"split": "validation"}, "is not held out"),
                                           ({"split": "train"}, "is not held out")])
def test_only_held_out_splits_go_through_the_ledger(run_dir, kwargs, words):
    with pytest.raises(ValueError, match=words):
        evaluate.test_split("05: q", **kwargs)


def test_a_read_must_say_its_question(run_dir):
    with pytest.raises(ValueError, match="say which question"):
        evaluate.test_split("  ")
    assert evaluate.read_ledger() == []


def test_the_course_report_lists_the_ledger(run_dir):
    evaluate.test_split("05: does the fix hold?", config.get_profile("cpu-tiny"))
    evaluate.test_split("05: does the fix hold?", config.get_profile("cpu-tiny"))
    result = course.NotebookResult(name="05_iterate", status="ok", seconds=1.0)
    md, page = course.write_report([result], run_dir, "cpu-tiny", bench=run_dir / "no-bench.md")
    text = md.read_text()
    assert "## Test ledger" in text and "| 05_iterate | 05: does the fix hold? | test | 100 | **2** (a second look) |" in text
    assert "Test ledger" in page.read_text()


def test_a_run_without_reads_says_so(tmp_path):
    md, _ = course.write_report([course.NotebookResult(name="00_setup", status="ok", seconds=1.0)], tmp_path,
                                "cpu-tiny", bench=tmp_path / "no-bench.md")
    assert "Nothing read a held-out split in this run." in md.read_text()


def test_the_training_script_records_its_test_scoring(run_dir, capsys):
    evaluate.note_read("train script cpu-tiny.yaml: test scores of its run", "test", 100, "cpu-tiny")
    assert evaluate.read_ledger()[0]["question"].startswith("train script")
