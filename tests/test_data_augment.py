"""helpers.data.augment: answers stay true, synthetic rows are tagged and capped, any str->str generator plugs in."""

from __future__ import annotations

import json
import random

import pytest

from helpers.data import add_typos, augment, drop_order_id, generate, llm_rewrite, reorder_sentences, synthetic_share
from helpers.data.clean import user_text


@pytest.fixture(scope="module")
def rows():
    return generate.generate_tickets(n=300)


def answer(row):
    return json.loads(row["messages"][-1]["content"])


def test_drop_order_id_nulls_the_answer_and_removes_every_mention(rows):
    with_order = [r for r in rows if answer(r)["order_id"]]
    assert len(with_order) > 30
    rng = random.Random(0)
    for row in with_order:
        child = drop_order_id(row, rng)
        assert child is not None, user_text(row)
        digits = answer(row)["order_id"][4:]
        assert digits not in user_text(child) and digits not in child["messages"][-1]["content"]
        new = answer(child)
        assert new["order_id"] is None and {k: v for k, v in new.items() if k not in ("order_id", "summary")} == {
            k: v for k, v in answer(row).items() if k not in ("order_id", "summary")}
        assert generate.TICKET_SCHEMA["properties"]["summary"]["minLength"] <= len(new["summary"])
    assert drop_order_id(next(r for r in rows if not answer(r)["order_id"]), rng) is None


def test_typos_and_reordering_keep_the_answer_and_the_facts(rows):
    rng = random.Random(1)
    for row in rows[:100]:
        for perturb in (add_typos, reorder_sentences):
            child = perturb(row, rng)
            if child is None:
                continue
            assert child["messages"][-1] == row["messages"][-1] and user_text(child) != user_text(row)
            oid = answer(row)["order_id"]
            if oid:
                assert oid[4:] in user_text(child)
            if perturb is reorder_sentences:
                assert sorted(user_text(child).split()) == sorted(user_text(row).split())


def test_augment_tags_caps_and_keeps_groups(rows):
    synthetic = augment(rows, [add_typos, reorder_sentences, drop_order_id], max_share=0.2, seed=0)
    assert 0 < len(synthetic) and synthetic_share(rows + synthetic) <= 0.2
    groups = {r["metadata"]["group"] for r in rows}
    for row in synthetic:
        meta = row["metadata"]
        assert meta["synthetic"] is True and meta["augmentation"] in {"add_typos", "reorder_sentences", "drop_order_id"}
        assert meta["group"] in groups and meta["parent"].startswith(meta["group"] + "/")
    assert augment(rows, [add_typos], max_share=0.2, seed=0) == augment(rows, [add_typos], max_share=0.2, seed=0)
    assert augment(rows, [add_typos], max_share=0.0) == []
    with pytest.raises(ValueError):
        augment(rows, [add_typos], max_share=1.0)


def test_llm_rewrite_plugs_in_any_callable_and_refuses_lost_facts(rows):
    row = next(r for r in rows if answer(r)["order_id"])
    ticket = user_text(row)

    def polite(prompt: str) -> str:  # a deterministic stand-in for an LLM
        return "Dear team, " + prompt.split("\n\n", 1)[1]

    def forgetful(prompt: str) -> str:
        return "My order is late."

    child = llm_rewrite(polite)(row, random.Random(0))
    assert user_text(child) == "Dear team, " + ticket and child["messages"][-1] == row["messages"][-1]
    assert llm_rewrite(forgetful)(row, random.Random(0)) is None
    synthetic = augment(rows, [llm_rewrite(polite, name="polite")], max_share=0.1)
    assert synthetic and {r["metadata"]["augmentation"] for r in synthetic} == {"polite"}
