"""Notebook 07's building blocks: preference pairs from the model's mistakes, and the verifiable JSON rewards."""

from __future__ import annotations

import json

import pytest

from helpers import data, evaluate

REF = {"summary": "Charged twice for ORD-123456", "category": "billing", "product": None,
       "order_id": "ORD-123456", "priority": "high"}
TICKET = "Hi, I was charged twice for order ORD-123456, please fix this quickly."
SYSTEM = "You turn customer support tickets into JSON."


def row(ticket=TICKET, ref=REF, group="g1"):
    return {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": ticket},
                         {"role": "assistant", "content": json.dumps(ref)}], "metadata": {"group": group}}


def answer(**changes):
    return json.dumps({**REF, **changes})


# ------------------------------------------------------------------------------------------------------ rewards


def test_reference_scores_one_and_invalid_scores_zero():
    assert evaluate.json_reward(json.dumps(REF), json.dumps(REF), TICKET) == pytest.approx(1.0)
    for invalid in ("", "not json", "[1, 2]", '{"summary": "x"', "```json\n{oops}\n```"):
        assert evaluate.json_reward(invalid, json.dumps(REF), TICKET) == 0.0, invalid
        for func in evaluate.REWARD_FUNCS:
            assert func(completions=[invalid], reference=[json.dumps(REF)], ticket=[TICKET]) == [0.0]


def test_each_reward_on_hand_made_answers():
    refs, tickets = [json.dumps(REF)] * 4, [TICKET] * 4
    answers = [answer(), answer(category="shipping"), answer(category="shipping", priority="low"),
               answer(order_id="ORD-999999")]
    assert evaluate.field_reward(completions=answers, reference=refs) == [1.0, 0.75, 0.5, 0.75]
    assert evaluate.schema_reward(completions=answers) == [1.0] * 4
    # an id the ticket does not contain is invented: half of the grounded fields (order_id, product)
    assert evaluate.grounding_penalty(completions=answers, ticket=tickets) == [0.0, 0.0, 0.0, -0.5]
    totals = [evaluate.json_reward(a, r, t) for a, r, t in zip(answers, refs, tickets)]
    assert totals == pytest.approx([1.0, 0.8125, 0.625, 0.8125 - 0.5])


def test_schema_violation_is_valid_json_but_no_schema_reward():
    wrong_enum = answer(priority="asap")
    assert evaluate.schema_reward(completions=[wrong_enum]) == [0.0]
    assert evaluate.field_reward(completions=[wrong_enum], reference=[json.dumps(REF)]) == [0.75]


def test_rewards_read_conversational_completions_as_trl_passes_them():
    conversational = [[{"role": "assistant", "content": answer()}]]
    assert evaluate.field_reward(prompts=[[]], completions=conversational, reference=[json.dumps(REF)],
                                 completion_ids=[[1, 2]], trainer_state=None) == [1.0]
    assert evaluate.completion_text(conversational[0]) == answer()


def test_rewards_name_a_missing_column_and_a_length_mismatch():
    with pytest.raises(evaluate.EvaluationError, match="column 'reference'.*grpo_rows"):
        evaluate.field_reward(completions=[answer()])
    with pytest.raises(evaluate.EvaluationError, match="2 completions but 1 ticket"):
        evaluate.grounding_penalty(completions=[answer(), answer()], ticket=[TICKET])
    with pytest.raises(evaluate.EvaluationError, match="not a JSON object"):
        evaluate.field_reward(completions=[answer()], reference=["oops"])


def test_reward_weights_follow_the_functions_and_the_table_averages():
    assert [f.__name__ for f in evaluate.REWARD_FUNCS] == list(evaluate.REWARD_WEIGHTS)
    table = evaluate.reward_table({"good": [answer(), answer()], "bad": ["x", answer(order_id="ORD-999999")]},
                                  [json.dumps(REF)] * 2, [TICKET] * 2)
    assert table.loc["good", "total"] == pytest.approx(1.0)
    assert table.loc["bad", "total"] == pytest.approx((0 + 0.3125) / 2)
    assert table.loc["bad", "grounding_penalty"] == pytest.approx(-0.25)


# ------------------------------------------------------------------------------------------------------ pairs


def test_mistake_labels():
    assert data.mistake_of(answer(), REF) is None
    assert data.mistake_of("nope", REF) == "invalid"
    assert data.mistake_of(json.dumps({"category": "billing"}), REF) == "invalid"  # keys missing
    assert data.mistake_of(answer(category="shipping", priority="low"), REF) == "wrong_category"
    assert data.mistake_of(answer(order_id=None), REF) == "missed_order_id"
    no_order = {**REF, "order_id": None}
    assert data.mistake_of(json.dumps({**no_order, "order_id": "ORD-1"}), no_order) == "hallucinated_order_id"


def test_pairs_differ_only_where_the_model_was_wrong():
    rows = [row(), row(group="g2"), row(group="g3")]
    answers = [answer(summary="Double charge", priority="low"), answer(), "not json"]
    pairs = data.preference_pairs(rows, answers)
    assert len(pairs) == 2  # the right answer gives no pair
    first, invalid = pairs
    chosen, rejected = (json.loads(first[s][0]["content"]) for s in ("chosen", "rejected"))
    assert chosen == {**rejected, "priority": "high"}  # the model's own summary is kept: one field differs
    assert chosen["summary"] == "Double charge" and first["kind"] == "wrong_priority"
    assert json.loads(invalid["chosen"][0]["content"]) == REF and invalid["rejected"][0]["content"] == "not json"
    assert [m["role"] for m in first["prompt"]] == ["system", "user"]
    assert first["metadata"] == {"group": "g1", "row": 0} and invalid["metadata"]["row"] == 2


def test_pair_builder_rejects_bad_input():
    with pytest.raises(data.PreferenceDataError, match="2 rows but 1 answers"):
        data.preference_pairs([row(), row()], [answer()])
    no_answer = {"messages": [{"role": "user", "content": TICKET}]}
    with pytest.raises(data.PreferenceDataError, match="row 0: its last message is not an assistant JSON answer"):
        data.preference_pairs([no_answer], [answer()])


def test_check_pairs_passes_good_pairs_and_names_each_problem():
    pairs = data.preference_pairs([row(), row(ticket="My HomeHub Max will not start.", group="g2")],
                                  [answer(category="shipping"), "not json"])
    other = row(ticket="Where is my parcel? It was due last week.", group="g9")
    report = data.check_pairs(pairs, {"test": [other]})
    assert report.ok, report.summary()
    assert "2 pairs, 0 problems" in report.summary()

    same = dict(pairs[0], chosen=pairs[0]["rejected"])
    bad_role = dict(pairs[0], rejected=[{"role": "robot", "content": "x"}])
    bad_chosen = dict(pairs[0], chosen=[{"role": "assistant", "content": '{"priority": "asap"}'}])
    leaked = pairs[1]
    report = data.check_pairs([same, bad_role, bad_chosen, leaked], {"test": [row(ticket="My HomeHub Max will not "
                                                                                  "start.", group="g7")]})
    text = "\n".join(report.problems)
    assert not report.ok
    assert "pair 0 (wrong_category): chosen and rejected are the same answer" in text
    assert "pair 1 (wrong_category), rejected:" in text and "robot" in text
    assert "pair 2 (wrong_category): the chosen answer is not a schema-valid JSON object" in text
    assert "pair 3: its ticket is in test (leakage)" in text


def test_pairs_table_shows_the_changed_fields():
    pairs = data.preference_pairs([row(), row(group="g2")], [answer(category="shipping"), "oops"])
    table = data.pairs_table(pairs)
    assert list(table["kind"]) == ["wrong_category", "invalid"]
    assert table.loc[0, "rejected -> chosen"] == "category: 'shipping' -> 'billing'"
    assert table.loc[1, "rejected -> chosen"] == "rejected is not a valid object"


def test_grpo_rows_carry_what_the_rewards_read():
    (out,) = data.grpo_rows([row()])
    assert out["reference"] == json.dumps(REF) and out["ticket"] == TICKET
    assert [m["role"] for m in out["prompt"]] == ["system", "user"]
    assert evaluate.field_reward(completions=[out["reference"]], reference=[out["reference"]]) == [1.0]
    with pytest.raises(data.PreferenceDataError, match="row 0: no assistant JSON answer"):
        data.grpo_rows([{"messages": [{"role": "user", "content": "hi"}]}])


# ------------------------------------------------------------------------------------------------------ logs


def test_log_series_reads_any_trainer_key_and_names_the_logged_ones():
    from helpers import train

    log = [{"loss": 0.7, "rewards/margins": 0.0, "step": 5}, {"loss": 0.6, "rewards/margins": 0.2, "step": 10},
           {"train_runtime": 3.0, "step": 10}]
    assert train.log_series(log, "rewards/margins") == [(5, 0.0), (10, 0.2)]
    with pytest.raises(train.TrainingSetupError, match="'reward' was never logged; logged keys: loss, "
                                                       "rewards/margins, train_runtime"):
        train.log_series(log, "reward")
    fig = train.plot_log(log, {"margin": ["rewards/margins"], "loss": ["loss"]}, "DPO")
    assert [ax.get_title() for ax in fig.axes] == ["margin", "loss"]


def test_sampled_reward_refuses_nothing_to_sample():
    with pytest.raises(evaluate.EvaluationError, match="needs rows and samples >= 1"):
        evaluate.sampled_reward(None, None, [row()], 0, 0.8, 8)
