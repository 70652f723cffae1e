"""helpers.decide: every path of the decision tree, the prompt baselines, and that they score with helpers.evaluate."""

from __future__ import annotations

import itertools
import json

import pytest

from helpers import config, decide, evaluate
from helpers.data.generate import CATEGORIES, TICKET_SCHEMA, generate_tickets

# One hand-written set of answers per leaf: the test documents how to reach each end of the tree.
LEAF_CASES = {
    "rag_live": dict(specialised_knowledge=True, knowledge_static=True, needs_current_data=True, n_examples=50),
    "rag_ft_live": dict(specialised_knowledge=True, knowledge_static=True, needs_current_data=True, n_examples=5000),
    "rag_static": dict(specialised_knowledge=True, knowledge_static=True, needs_current_data=False, n_examples=300),
    "rag_ft_static": dict(specialised_knowledge=True, knowledge_static=True, needs_current_data=False, n_examples=1000),
    "rag_fresh": dict(specialised_knowledge=True, knowledge_static=False, consistent_format=False),
    "rag_prompted": dict(specialised_knowledge=True, knowledge_static=False, consistent_format=True,
                         prompting_suffices=True),
    "rag_collect": dict(specialised_knowledge=True, knowledge_static=False, consistent_format=True,
                        prompting_suffices=False, n_examples=99),
    "rag_ft_format": dict(specialised_knowledge=True, knowledge_static=False, consistent_format=True,
                          prompting_suffices=False, n_examples=100),
    "prompt_general": dict(specialised_knowledge=False, consistent_format=False),
    "prompt_format": dict(consistent_format=True, prompting_suffices=True, latency_cost_pressure=False),
    "prompt_collect": dict(consistent_format=True, prompting_suffices=True, latency_cost_pressure=True, n_examples=999),
    "ft_distil": dict(consistent_format=True, prompting_suffices=True, latency_cost_pressure=True, n_examples=2000),
    "prompt_fewshot": dict(consistent_format=True, prompting_suffices=False, n_examples=10),
    "ft_lora": dict(consistent_format=True, prompting_suffices=False, n_examples=400),
    "ft_format": dict(consistent_format=True, prompting_suffices=False, n_examples=1800),
}
EXPECTED_APPROACH = {
    "rag_live": "rag", "rag_ft_live": "rag+fine-tuning", "rag_static": "rag", "rag_ft_static": "rag+fine-tuning",
    "rag_fresh": "rag", "rag_prompted": "rag", "rag_collect": "rag", "rag_ft_format": "rag+fine-tuning",
    "prompt_general": "prompting", "prompt_format": "prompting", "prompt_collect": "prompting",
    "ft_distil": "fine-tuning", "prompt_fewshot": "prompting", "ft_lora": "fine-tuning", "ft_format": "fine-tuning",
}


def test_every_leaf_has_a_case():
    assert set(LEAF_CASES) == {leaf.id for leaf in decide.LEAVES} == set(EXPECTED_APPROACH)


@pytest.mark.parametrize("leaf_id", sorted(LEAF_CASES))
def test_recommend_reaches_each_leaf(leaf_id):
    rec = decide.recommend(LEAF_CASES[leaf_id])
    assert rec.leaf == leaf_id
    assert rec.approach == EXPECTED_APPROACH[leaf_id]
    assert rec.path[0] == decide.ROOT and rec.path[-1] == leaf_id
    assert len(rec.reasons) == len(rec.path)  # one reason per question plus the leaf's own
    assert rec.reasons[-1] == decide.TREE[leaf_id].reason


def test_tree_is_well_formed_and_exhaustive_enumeration_reaches_every_leaf():
    assert decide.tree_problems() == []
    flags = [f for f in decide.Answers.__dataclass_fields__ if f != "n_examples"]
    reached = set()
    for bits in itertools.product([False, True], repeat=len(flags)):
        for n in (0, 500, 5000):
            reached.add(decide.recommend(decide.Answers(**dict(zip(flags, bits)), n_examples=n)).leaf)
    assert reached == {leaf.id for leaf in decide.LEAVES}
    assert {leaf.approach for leaf in decide.LEAVES} == set(decide.APPROACHES)


@pytest.mark.parametrize("n, label", [(0, "<100"), (99, "<100"), (100, "100-999"), (999, "100-999"), (1000, ">=1000")])
def test_size_thresholds(n, label):
    node = decide.TREE["data_format"]
    assert decide.answer_label(node, decide.Answers(n_examples=n)) == label


def test_bad_answers_fail_clearly():
    with pytest.raises(ValueError, match="unknown answer field"):
        decide.recommend({"specialized": True})
    with pytest.raises(ValueError, match="n_examples"):
        decide.recommend(dict(consistent_format=True, prompting_suffices=False, n_examples=-1))


def test_comparison_table_covers_every_approach_and_property():
    table = decide.comparison_table()
    assert list(table.index) == list(decide.APPROACHES)
    assert list(table.columns) == ["update_cost", "knowledge_freshness", "latency", "cost_per_query", "consistency"]
    assert table.notna().all().all()


def test_decision_form_updates_live():
    form = decide.decision_form()
    controls = {c.description: c for c in form.children[:-1]}
    out = form.children[-1]
    assert "<b>prompting</b>" in out.value  # the defaults: a general task
    controls["specialised knowledge"].value = True
    controls["knowledge static"].value = False
    assert "<b>rag</b>" in out.value


# ------------------------------------------------------------------------------------------------ prompts


@pytest.fixture(scope="module")
def rows():
    return generate_tickets(n=120, seed=5)


def test_prompt_builders(rows):
    ticket = "My PulseBuds won't turn on."
    zero = decide.zero_shot_messages(ticket)
    assert [m["role"] for m in zero] == ["system", "user"] and zero[-1]["content"] == ticket
    schema = decide.schema_messages(ticket)
    assert json.dumps(TICKET_SCHEMA) in schema[0]["content"]
    examples = decide.pick_examples(rows, 3, seed=1)
    few = decide.few_shot_messages(ticket, examples)
    assert [m["role"] for m in few] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert few[2]["content"] == examples[0]["messages"][-1]["content"]


def test_pick_examples_covers_categories_and_repeats(rows):
    picked = decide.pick_examples(rows, len(CATEGORIES), seed=3)
    assert {json.loads(r["messages"][-1]["content"])["category"] for r in picked} == set(CATEGORIES)
    assert picked == decide.pick_examples(rows, len(CATEGORIES), seed=3)
    assert decide.pick_examples(rows, 0) == []
    with pytest.raises(ValueError, match="k=999"):
        decide.pick_examples(rows, 999)


def test_cost_per_1k_by_hand():
    # 1,000 requests x (200 prompt tokens x $0.5/M + 50 completion tokens x $1.5/M) = $0.1 + $0.075
    assert decide.cost_per_1k(200, 50, 0.5, 1.5) == pytest.approx(0.175)


class WordTokenizer:
    """A stand-in tokenizer: one token per whitespace word, a chat template that joins the turns."""

    chat_template = "words"

    def apply_chat_template(self, conversation, tokenize=False, add_generation_prompt=True):
        return " ".join(m["content"] for m in conversation) + (" <assistant>" if add_generation_prompt else "")

    def __call__(self, texts, add_special_tokens=False):
        if isinstance(texts, str):
            return {"input_ids": list(range(len(texts.split())))}
        return {"input_ids": [list(range(len(t.split()))) for t in texts]}


def test_baselines_score_with_the_evaluation_function(rows, monkeypatch):
    """run_baseline must call helpers.evaluate.score itself (the function object the evaluation stage uses)."""
    test_rows = rows[:4]
    references = evaluate.references_from_rows(test_rows)
    calls = []
    real_score = evaluate.score

    def spy_score(predictions, refs, schema=None):
        calls.append((list(predictions), list(refs), schema))
        return real_score(predictions, refs, schema=schema)

    monkeypatch.setattr(evaluate, "generate", lambda model, tok, convs, max_new_tokens, batch_size=16,
                        progress=True: list(references))  # a perfect "model"
    monkeypatch.setattr(evaluate, "score", spy_score)
    convs = [decide.zero_shot_messages(t) for t in evaluate.tickets_from_rows(test_rows)]
    run = decide.run_baseline("zero-shot", None, WordTokenizer(), convs, references, max_new_tokens=8,
                              price_in_per_m=1.0, price_out_per_m=2.0)
    assert calls == [(references, references, TICKET_SCHEMA)]
    assert run.row["json_valid"] == run.row["schema_valid"] == run.row["field_accuracy"] == 1.0
    expected_prompt = sum(len(decide.zero_shot_messages(t)[0]["content"].split()) + len(t.split()) + 1
                          for t in evaluate.tickets_from_rows(test_rows)) / 4
    assert run.row["prompt_tokens"] == pytest.approx(expected_prompt)
    expected_completion = sum(len(r.split()) + 1 for r in references) / 4  # + the EOS token
    assert run.row["cost_per_1k"] == pytest.approx(decide.cost_per_1k(expected_prompt, expected_completion, 1.0, 2.0))


def test_baseline_metrics_equal_a_direct_score_call(rows, monkeypatch):
    test_rows = rows[:6]
    references = evaluate.references_from_rows(test_rows)
    predictions = ['{"category": "billing"}', "not json", *references[2:]]
    monkeypatch.setattr(evaluate, "generate", lambda *a, **k: list(predictions))
    convs = evaluate.conversations_from_rows(test_rows)
    run = decide.run_baseline("x", None, WordTokenizer(), convs, references, max_new_tokens=8)
    direct = evaluate.score(predictions, references, schema=TICKET_SCHEMA)
    for key in ("json_valid", "schema_valid", "field_accuracy", "exact_match"):
        assert run.row[key] == pytest.approx(direct[key])
    assert run.predictions == predictions


def test_decision_table_columns_and_files(tmp_path, monkeypatch):
    rows = [{"approach": a, "json_valid": 0.5, "schema_valid": 0.4, "field_accuracy": 0.3, "prompt_tokens": p,
             "latency_s": 0.1 * p, "cost_per_1k": 0.01, "extra": 1} for a, p in (("zero-shot", 80), ("few-shot", 400))]
    df = decide.decision_table(rows)
    assert list(df.columns[:len(decide.DECISION_COLUMNS)]) == list(decide.DECISION_COLUMNS)
    with pytest.raises(ValueError, match="latency_s"):
        decide.decision_table([{k: v for k, v in rows[0].items() if k != "latency_s"}])
    monkeypatch.setattr(config, "ARTIFACTS_DIR", tmp_path)
    paths = decide.save_decision_table(df, config.get_profile("cpu-tiny"))
    assert paths["csv"].parent == tmp_path / "cpu-tiny" and paths["png"].stat().st_size > 0
    assert list(__import__("pandas").read_csv(paths["csv"])["approach"]) == ["zero-shot", "few-shot"]


def test_pick_examples_rejects_rows_without_a_json_answer():
    bad = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "not json"}]}]
    with pytest.raises(ValueError, match="training row 0"):
        decide.pick_examples(bad, 1)


# ------------------------------------------------------------------------------------------------ choosing a base


def test_candidate_table_counts_parameters_from_the_configs_and_gives_verdicts():
    from helpers import memory

    setup = memory.setup_from_profile(config.PROFILES["l4"])
    table = decide.candidate_table(decide.read_candidates(), setup)
    assert {"kind", "licence", "qlora GiB", *decide.CANDIDATE_GPUS} <= set(table.columns)
    assert set(table["kind"]) == set(decide.KINDS)
    # every profile's model fits the GPU the profile is sized for; a 70B model fits none of the three
    assert table.loc["Qwen/Qwen2.5-1.5B-Instruct", "T4 16 GB"] == "fits"
    assert table.loc["Qwen/Qwen2.5-7B-Instruct", "L4 24 GB"] == "fits"
    assert (table.loc["meta-llama/Meta-Llama-3-70B-Instruct", list(decide.CANDIDATE_GPUS)] == "does not fit").all()
    # the count from config.json agrees with what the model card says, where the card's number was verified
    cited = table.dropna(subset=["params_b (card)"])
    assert len(cited) >= 5
    ratio = cited["params_b (config)"] / cited["params_b (card)"]
    assert ratio.between(0.95, 1.05).all(), ratio
    assert table.loc["Qwen/Qwen2.5-7B-Instruct", "params_b (config)"] == pytest.approx(7.615, abs=0.01)
    # a base and its instruct version have the same architecture, so the same memory
    assert table.loc["meta-llama/Meta-Llama-3-8B", "qlora GiB"] == table.loc["meta-llama/Meta-Llama-3-8B-Instruct",
                                                                            "qlora GiB"]


def test_every_candidate_cites_a_source():
    for row in decide.read_candidates():
        assert row["source"].startswith(("https://huggingface.co/", "data/")), row
        assert row["evidence"], row


def test_card_params():
    assert decide.card_params("1.54B") == pytest.approx(1.54e9)
    assert decide.card_params("4.00M") == pytest.approx(4e6)
    assert decide.card_params("6.74B (hub's safetensors count)") == pytest.approx(6.74e9)
    assert decide.card_params("not verified") is None


def test_read_candidates_names_bad_rows(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("model_id,kind\nx,base\n", encoding="utf-8")
    with pytest.raises(ValueError, match="missing column"):
        decide.read_candidates(path)
    header = ",".join(decide.CANDIDATE_COLUMNS)
    path.write_text(header + "\nm,chat,MIT,1B,4k,,llama-7b,https://huggingface.co/m,e\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"c\.csv:2: kind 'chat'"):
        decide.read_candidates(path)
    path.write_text(header + "\nm,base,MIT,1B,4k,,,https://huggingface.co/m,e\n", encoding="utf-8")
    with pytest.raises(ValueError, match="needs a shape"):
        decide.read_candidates(path)


def test_candidate_table_refuses_an_unknown_gpu():
    from helpers import memory

    with pytest.raises(ValueError, match="unknown GPU"):
        decide.candidate_table(decide.read_candidates()[:1], memory.TrainSetup(), gpus=("RTX 9090",))
