"""helpers.data.distill: provenance, the filter (JSON, schema, grounding), accounting, and the stand-in teachers."""

from __future__ import annotations

import json

import pytest

from helpers import data, evaluate
from helpers.data import distillation as D

TICKET = "Hi, my order ORD-123456 of the GlideMouse never arrived. Please help asap."
GOOD = {"summary": "Order ORD-123456 has not arrived", "category": "shipping", "product": "GlideMouse",
        "order_id": "ORD-123456", "priority": "high"}


def answers(mapping):
    return lambda ticket: mapping[ticket]


def test_kept_rows_carry_provenance_and_the_answer_in_the_course_key_order():
    reordered = json.dumps(dict(reversed(list(GOOD.items()))))
    result = D.distill([TICKET], answers({TICKET: reordered}), teacher_name="big-model", groups=["t00001"])
    assert result.stats["kept"] == 1 and result.kept_index == [0]
    row = result.kept[0]
    assert row["metadata"]["source"] == "distilled" and row["metadata"]["teacher"] == "big-model"
    assert row["metadata"]["group"] == "t00001" and row["metadata"]["synthetic"] is True
    assert row["metadata"]["teacher_output"] == reordered
    assert list(json.loads(data.answer_of(row))) == list(data.generate.FIELDS)
    assert data.ticket_text(row) == TICKET
    from helpers.data.validation import check_row

    assert [p for p in check_row(row, 1) if p.is_error] == []


@pytest.mark.parametrize("answer, reason", [
    ("Sure! The category is shipping.", "not_json"),
    (json.dumps({**GOOD, "priority": "critical"}), "schema"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "summary"}), "schema"),
    (json.dumps({**GOOD, "order_id": "ORD-999999"}), "ungrounded_order_id"),
    (json.dumps({**GOOD, "product": "SnapCam 4K"}), "ungrounded_product"),
])
def test_the_filter_rejects_with_a_reason(answer, reason):
    result = D.distill([TICKET], answers({TICKET: answer}))
    assert result.stats["kept"] == 0 and result.rejects[0]["reject"]["reason"] == reason
    assert result.outputs == [answer]


def test_a_failing_teacher_is_recorded_not_raised_and_the_books_balance():
    def flaky(ticket):
        if "boom" in ticket:
            raise TimeoutError("the server did not answer")
        return json.dumps(GOOD)

    result = D.distill([TICKET, "boom", TICKET], flaky)
    assert result.stats == {"teacher": "flaky", "asked": 3, "kept": 2, "rejected": 1,
                            "kept_share": pytest.approx(2 / 3),
                            "reasons": {"teacher_error": 1}}
    assert "TimeoutError" in result.rejects[0]["reject"]["detail"]
    with pytest.raises(ValueError, match="one group id per ticket"):
        D.distill([TICKET], flaky, groups=[])


def test_rule_teacher_beats_the_majority_answer_on_generated_tickets_and_never_invents_values():
    rows = data.load_split("validation")[:80]
    tickets, refs = [data.ticket_text(r) for r in rows], [data.answer_of(r) for r in rows]
    result = D.distill(tickets, D.rule_teacher)
    teacher = evaluate.score(result.outputs, refs)["field_accuracy"]
    majority = evaluate.majority_answer([data.answer_of(r) for r in data.load_split("train")])
    chance = evaluate.score(evaluate.majority_outputs(majority, len(refs)), refs)["field_accuracy"]
    assert teacher > chance + 0.2
    assert not any(r.startswith("ungrounded") for r in result.stats["reasons"])


def test_noisy_teacher_logs_its_damage_and_the_filter_catches_all_but_wrong_categories():
    rows = data.load_split("validation")[:100]
    tickets = [data.ticket_text(r) for r in rows]
    noisy = D.noisy_teacher(D.rule_teacher, rate=0.5, seed=1)
    result = D.distill(tickets, noisy)
    kinds = [kind for _ticket, kind in noisy.log]
    assert len(kinds) == len(tickets) and set(kinds) - {None} == set(D.NOISE_KINDS)
    kept = set(result.kept_index)
    for i, kind in enumerate(kinds):
        if kind == "wrong_category":
            assert i in kept  # valid, grounded and wrong: no filter can see it
        elif kind is not None:
            assert i not in kept, (kind, tickets[i])
    with pytest.raises(ValueError, match="between 0 and 1"):
        D.noisy_teacher(D.rule_teacher, rate=1.5)
