"""helpers.data.load_split and the row accessors: the one way the course reads its splits and a row's parts."""

import pytest

from helpers import data, evaluate, train
from helpers.config import TICKETS_DIR


def test_load_split_reads_the_shipped_files():
    rows = data.load_split("test")
    assert rows and all("messages" in r for r in rows)
    assert data.split_path("test") == TICKETS_DIR / "test.jsonl" == train.split_path("test")
    assert train.read_jsonl(train.split_path("validation")) == data.load_split("validation")


def test_unknown_split_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown split 'tset'.*train, validation, test"):
        data.load_split("tset")


def test_missing_split_names_its_path_and_the_rebuild_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train\.jsonl not found.*python -m helpers\.data build"):
        data.load_split("train", tickets_dir=tmp_path)


def test_ticket_text_and_answer_of_agree_with_the_evaluation():
    rows = data.load_split("test")[:5]
    assert [data.ticket_text(r) for r in rows] == evaluate.tickets_from_rows(rows)
    assert [data.answer_of(r) for r in rows] == evaluate.references_from_rows(rows)
    assert data.answer_of({"messages": [{"role": "user", "content": "hi"}]}) is None
    assert data.ticket_text({"messages": [{"role": "system", "content": "s"}]}) == ""
