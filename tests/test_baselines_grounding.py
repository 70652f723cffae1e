"""Baselines that show chance and the grounding (hallucination) metric."""

import json
import math

import pytest

from helpers.evaluate import baselines, grounding


def _ref(**kw):
    base = {"summary": "s", "category": "billing", "product": None, "order_id": None, "priority": "medium"}
    return json.dumps({**base, **kw})


REFS = [_ref(order_id="ORD-123456", priority="urgent"), _ref(), _ref(), _ref(product="GlideMouse", category="technical")]


def test_majority_answer_is_the_most_frequent_value_per_field():
    majority = baselines.majority_answer(REFS)
    assert majority["order_id"] is None and majority["priority"] == "medium" and majority["category"] == "billing"
    with pytest.raises(ValueError, match="at least one"):
        baselines.majority_answer([])


def test_names_it_rules():
    assert baselines.names_it("order_id", REFS[0]) and not baselines.names_it("order_id", REFS[1])
    assert baselines.names_it("priority", REFS[0]) and not baselines.names_it("priority", REFS[1])
    assert baselines.names_it("category", REFS[1])
    assert set(baselines.NAMED_RULES) == {"category", "product", "order_id", "priority"}


def test_breakdown_shows_that_always_null_scores_the_unnamed_share():
    majority = baselines.majority_answer(REFS)
    outputs = {"majority": baselines.majority_outputs(majority, len(REFS)), "copies": list(REFS),
               "garbage": ["not json"] * len(REFS)}
    table = baselines.field_breakdown(outputs, REFS)
    row = table[(table.field == "order_id") & (table.system == "majority")].iloc[0]
    assert row["all"] == 0.75 and row["named"] == 0.0 and row["not named"] == 1.0
    assert row["n named"] == 1 and row["n not named"] == 3
    assert (table[table.system == "copies"][["all", "named"]] == 1.0).all().all()
    assert (table[table.system == "garbage"]["all"] == 0.0).all()
    cat = table[(table.field == "category") & (table.system == "majority")].iloc[0]
    assert math.isnan(cat["not named"]) and cat["n not named"] == 0
    wide = baselines.breakdown_table(table)
    assert list(wide.columns) == ["n", "majority", "copies", "garbage"]
    assert wide.loc[("order_id", "named"), "n"] == 1 and wide.loc[("order_id", "all"), "n"] == 4
    with pytest.raises(ValueError, match="one per reference"):
        baselines.field_breakdown({"x": ["{}"]}, REFS)


@pytest.mark.parametrize("ticket, value, ok", [
    ("my order no. 123456 is late", "ORD-123456", True),
    ("order #123456 is late", "ORD-123456", True),
    ("order ORD-123456 is late", "ORD-123456", True),
    ("order 1234567 is late", "ORD-123456", False),  # part of a longer number
    ("order 654321 is late", "ORD-123456", False),
    ("no order here", "ORD-123456", False),
])
def test_order_id_grounding(ticket, value, ok):
    assert grounding.is_grounded("order_id", value, ticket) is ok


@pytest.mark.parametrize("ticket, value, ok", [
    ("my aerobook pro keeps crashing", "AeroBook Pro 16", True),
    ("the Glide Mouse is broken", "GlideMouse", True),
    ("the Glide Mouse is broken", "Vista 27 Monitor", False),
    ("the Glide Mouse is broken", "Banana Phone", False),  # not in the catalogue, not in the ticket
])
def test_product_grounding(ticket, value, ok):
    assert grounding.is_grounded("product", value, ticket) is ok


def test_grounding_report_counts_base_and_tuned():
    tickets = ["order #123456 late", "my GlideMouse died"]
    tuned = [json.dumps({"order_id": "ORD-123456", "product": None}),
             json.dumps({"order_id": "ORD-999999", "product": "GlideMouse"})]
    base = ["nonsense", json.dumps({"product": "Vista 27 Monitor", "order_id": None})]
    report = grounding.grounding_report({"base": base, "tuned": tuned}, tickets).set_index(["system", "field"])
    assert report.loc[("tuned", "order_id"), "extracted"] == 2 and report.loc[("tuned", "order_id"), "ungrounded"] == 1
    assert report.loc[("tuned", "order_id"), "hallucination_rate"] == 0.5
    assert report.loc[("base", "product"), "hallucination_rate"] == 1.0
    assert math.isnan(report.loc[("base", "order_id"), "hallucination_rate"])
    examples = grounding.ungrounded_examples(tuned, tickets)
    assert examples.iloc[0]["value"] == "ORD-999999" and "GlideMouse" in examples.iloc[0]["ticket"]
    with pytest.raises(ValueError, match="one output per ticket"):
        grounding.grounding_records(["{}"], tickets)
    with pytest.raises(ValueError, match="grounding is defined"):
        grounding.is_grounded("priority", "high", "x")
