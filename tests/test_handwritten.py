"""data/tickets/handwritten.jsonl: hand-written held-out tickets, valid, correct by the course's rules, balanced, and
unlike both the generated splits and the generator's own sentences."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter

import pytest
from jsonschema import Draft202012Validator

from helpers.config import TICKETS_DIR
from helpers.data import HANDWRITTEN, generate, read_jsonl, validate
from helpers.build.dataset import BUILD_FILES, HANDWRITTEN_FILE, build, handwritten_section
from helpers.data.clean import CleanConfig, jaccard, shingles


@pytest.fixture(scope="module")
def rows():
    return read_jsonl(HANDWRITTEN)


def _ticket(row):
    return row["messages"][1]["content"]


def _answer(row):
    return json.loads(row["messages"][2]["content"])


def _norm(text: str) -> str:
    """Lower case, letters, digits and '+' only: 'Aero-Book 14', 'AEROBOOK14' and 'aerobook 14' are one name."""
    return re.sub(r"[^a-z0-9+]", "", text.lower())


def test_every_row_validates_with_the_course_validator_and_the_schema(rows):
    report = validate(HANDWRITTEN)
    assert report.exit_code == 0 and report.n_rows == len(rows) >= 40, report.lines()[:3]
    schema = Draft202012Validator(generate.TICKET_SCHEMA)
    for row in rows:
        assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
        assert row["messages"][0]["content"] == generate.SYSTEM_PROMPT
        answer = _answer(row)
        assert not list(schema.iter_errors(answer)), (row["metadata"]["id"], answer)
        assert tuple(answer) == generate.FIELDS, "the generator's key order"
        assert answer["product"] is None or answer["product"] in generate.PRODUCTS
        assert row["metadata"]["source"] == "handwritten" and row["metadata"]["notes"]
    ids = [r["metadata"]["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    assert len({_ticket(r) for r in rows}) == len(rows), "no ticket twice"


def test_every_order_id_and_product_is_in_the_ticket(rows):
    for row in rows:
        text, answer, hid = _ticket(row), _answer(row), row["metadata"]["id"]
        digits = re.sub(r"(?<=\d)[ -](?=\d)", "", text)  # 'ORD 662 045' names ORD-662045
        if answer["order_id"]:
            assert answer["order_id"][4:] in digits, f"{hid}: {answer['order_id']} is not in the ticket"
        else:
            assert not re.search(r"(?i)(ord|order|#)\D{0,12}\d{6}", digits), f"{hid}: an order id, answer null"
        if answer["product"]:
            forms = {_norm(answer["product"])} | {_norm(a) for a in generate.PRODUCTS[answer["product"]]}
            assert any(f in _norm(text) for f in forms), f"{hid}: {answer['product']} is not named in the ticket"


def test_balance_categories_priorities_orders_products(rows):
    answers = [_answer(r) for r in rows]
    cats, pris = Counter(a["category"] for a in answers), Counter(a["priority"] for a in answers)
    assert set(cats) == set(generate.CATEGORIES) and min(cats.values()) >= 6, cats
    assert set(pris) == set(generate.PRIORITIES) and min(pris.values()) >= 6, pris
    with_order = sum(a["order_id"] is not None for a in answers)
    assert with_order >= 20 and len(answers) - with_order >= 20, "about half name an order"
    assert sum(a["product"] is None for a in answers) >= 5, "some name no product"
    assert sum(r["metadata"]["notes"].startswith("two products") for r in rows) >= 5, "several products, one answer"


def test_not_in_and_not_near_the_generated_splits(rows):
    generated = [_ticket(r) for name in ("train", "validation", "test")
                 for r in read_jsonl(TICKETS_DIR / f"{name}.jsonl")]
    exact = {" ".join(t.lower().split()) for t in generated}
    grams = [shingles(t) for t in generated]
    threshold = CleanConfig().near_threshold  # the course's near-duplicate threshold
    for row in rows:
        text = _ticket(row)
        assert " ".join(text.lower().split()) not in exact
        mine = shingles(text)
        closest = max(jaccard(mine, g) for g in grams)
        # Far below the near-duplicate threshold (measured: at most 0.25); short tickets share some 5-grams with any.
        assert closest < min(threshold, 0.4), f"{row['metadata']['id']}: Jaccard {closest:.2f} to a generated ticket"


def generator_sentences() -> list[str]:
    """Every full sentence the generator renders into a ticket body: issue templates (slots open), every rendered
    urgency cue, and the context and opener sentences of three words or more (short stock phrases left out)."""
    sentences = [s for family in generate.ISSUES.values() for _, ss, _ in family for s in ss]
    sentences += [c for level in generate.PRIORITIES for c in generate.cue_sentences(level)]
    sentences += [s for s in generate.CONTEXT + generate.OPENERS if len(s.split()) >= 3]
    return sentences


def test_handwritten_tickets_use_no_generator_sentence(rows):
    assert len(generator_sentences()) > 300
    patterns = [(s, generate.template_pattern(s)) for s in generator_sentences()]
    for row in rows:
        text = _ticket(row)
        hits = [s for s, p in patterns if p.search(text)]
        assert not hits, f"{row['metadata']['id']} uses generator sentences: {hits}"


def test_readme_describes_the_file_and_build_leaves_it_alone(rows, tmp_path):
    readme = (TICKETS_DIR / "README.md").read_text()
    assert "\n".join(handwritten_section(rows)) in readme, "rerun python -m helpers.data build"
    assert HANDWRITTEN.name == HANDWRITTEN_FILE and HANDWRITTEN_FILE not in BUILD_FILES
    shutil.copy(HANDWRITTEN, tmp_path / HANDWRITTEN_FILE)
    before = (tmp_path / HANDWRITTEN_FILE).read_bytes()
    build(tmp_path, n=120, log=lambda m: None)
    assert (tmp_path / HANDWRITTEN_FILE).read_bytes() == before, "build must never rewrite the hand-written file"
    assert f"## Hand-written tickets (`{HANDWRITTEN_FILE}`)" in (tmp_path / "README.md").read_text()
