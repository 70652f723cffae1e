"""helpers.data.report and the built dataset: token statistics with the real template, files, determinism."""

from __future__ import annotations

import hashlib
import json

import pytest

from helpers.config import TICKETS_DIR
from helpers.data import check_leakage, data_report, generate, read_jsonl, split_rows, validate, write_report
from helpers.build.dataset import BUILD_FILES, build


@pytest.fixture(scope="module")
def tokenizer():
    from helpers.build.tiny import TinyRecipe, train_tokenizer

    return train_tokenizer(generate.pretraining_texts(200), TinyRecipe(vocab_size=350))


def test_report_counts_tokens_with_the_chat_template(tokenizer, tmp_path):
    rows = generate.generate_tickets(n=60)
    splits = split_rows(rows)
    report = data_report(splits, tokenizer, max_length=96, clean_stats={"kept": 60, "rejected": 0})
    row = splits["test"][0]
    ids = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True)["input_ids"]
    assert report.tokens["test"][0] == len(ids)
    table = {r["split"]: r for r in report.table()}
    assert table["train"]["rows"] == len(splits["train"])
    assert table["train"]["max_tokens"] == max(report.tokens["train"]) >= table["train"]["p95_tokens"]
    assert table["train"]["over_max_length"] == sum(n > 96 for n in report.tokens["train"])
    paths = write_report(report, tmp_path)
    assert paths["token_lengths"].stat().st_size > 1000 and paths["balance"].stat().st_size > 1000
    assert "| split | rows |" in paths["markdown"].read_text()


def test_build_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    info = build(a, n=300, log=lambda m: None)
    build(b, n=300, log=lambda m: None)
    for name in BUILD_FILES + ("README.md",):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert info["clean"]["valid_in"] == info["clean"]["kept"] + info["clean"]["rejected"]


def test_shipped_dataset_matches_its_readme_and_promises():
    readme = (TICKETS_DIR / "README.md").read_text()
    for name in BUILD_FILES:
        digest = hashlib.sha256((TICKETS_DIR / name).read_bytes()).hexdigest()
        assert f"| `{name}` |" in readme and digest in readme, f"{name} changed: rerun python -m helpers.data build"
    splits = {name: read_jsonl(TICKETS_DIR / f"{name}.jsonl") for name in ("train", "validation", "test")}
    total = sum(map(len, splits.values()))
    assert len(splits["train"]) >= 1300 and abs(len(splits["test"]) / total - 0.1) < 0.01
    assert check_leakage(splits).ok
    for name in ("tickets", "clean", "train", "validation", "test"):
        assert validate(TICKETS_DIR / f"{name}.jsonl").exit_code == 0
    raw = read_jsonl(TICKETS_DIR / "tickets.jsonl")
    assert len(raw) >= 1500 and all(r["messages"][0]["content"] == generate.SYSTEM_PROMPT for r in raw)
    assert json.loads((TICKETS_DIR / "schema.json").read_text()) == generate.TICKET_SCHEMA
