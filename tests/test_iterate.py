"""05_iterate's helpers: tracked runs and their comparison, failure groups, the targeted data fix, label noise,
the learning-rate schedule and general-text cross-entropy (forgetting as a number)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from helpers import data, evaluate, train
from helpers.data.generate import CATEGORIES, PRIORITIES, generate_tickets
from helpers.train import TrainingSetupError


# ------------------------------------------------------------------------------------------- hand-made manifests


def write_run(runs: Path, name: str, written_at: str, **row) -> Path:
    folder = runs / name
    folder.mkdir(parents=True)
    full = {"run": name, "changes": "recipe", "eval_loss": 1.0, "field_accuracy": 0.5, **row}
    manifest = {"written_at": written_at, "run": {"name": name, "row": full,
                                                  "curves": {"train": [[1, 2.0], [2, 1.5]], "eval": [[2, 1.7]]}}}
    (folder / train.MANIFEST_NAME).write_text(json.dumps(manifest))
    return folder


def test_compare_runs_reads_every_run_manifest_in_the_order_written(tmp_path):
    write_run(tmp_path, "b-second", "2026-01-02T00:00:00Z", field_accuracy=0.7)
    write_run(tmp_path, "a-first", "2026-01-01T00:00:00Z", field_accuracy=0.6)
    (tmp_path / "adapter-only").mkdir()  # a folder without a manifest is not a run
    (tmp_path / "adapter-only" / "adapter_config.json").write_text("{}")
    other = tmp_path / "from-03"  # 03's manifest has no "run" entry: not one of 05's runs
    other.mkdir()
    (other / train.MANIFEST_NAME).write_text(json.dumps({"written_at": "2026-01-03T00:00:00Z", "metrics": {}}))
    table = train.compare_runs(tmp_path)
    assert list(table.index) == ["a-first", "b-second"]
    assert table.loc["b-second", "field_accuracy"] == 0.7
    assert "written_at" not in table.columns


def test_compare_runs_names_an_unreadable_manifest(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / train.MANIFEST_NAME).write_text("{not json")
    with pytest.raises(TrainingSetupError, match="broken"):
        train.compare_runs(tmp_path)


def test_compare_runs_of_an_empty_folder_is_an_empty_table(tmp_path):
    table = train.compare_runs(tmp_path)
    assert table.empty and "field_accuracy" in table.columns


def test_best_run_takes_the_highest_metric_and_breaks_ties_on_eval_loss(tmp_path):
    write_run(tmp_path, "high-loss", "1", field_accuracy=0.8, eval_loss=0.9)
    write_run(tmp_path, "low-loss", "2", field_accuracy=0.8, eval_loss=0.4)
    write_run(tmp_path, "worse", "3", field_accuracy=0.6, eval_loss=0.1)
    write_run(tmp_path, "unscored", "4", field_accuracy=None, eval_loss=0.05)
    table = train.compare_runs(tmp_path)
    assert train.best_run(table) == "low-loss"
    assert train.best_run(table, metric="eval_loss", tiebreak="field_accuracy") == "high-loss"  # higher is "better"
    assert train.best_run(table, candidates=["worse", "unscored"]) == "worse"
    with pytest.raises(TrainingSetupError, match="field_accuracy"):
        train.best_run(table, candidates=["unscored"])


def test_run_curves_come_from_the_manifests(tmp_path):
    write_run(tmp_path, "one", "1")
    curves = train.run_curves(tmp_path, ["one"])
    assert curves["one"]["eval"] == [[2, 1.7]]
    with pytest.raises(TrainingSetupError, match="missing"):
        train.run_curves(tmp_path, ["missing"])
    fig = train.plot_curves(curves, "t")
    assert len(fig.axes[0].lines) == 2


def test_plot_runs_draws_one_panel_per_metric(tmp_path):
    write_run(tmp_path, "one", "1", json_valid=1.0, train_s=3.0)
    write_run(tmp_path, "two", "2", json_valid=0.5, train_s=float("nan"))
    fig = train.plot_runs(train.compare_runs(tmp_path))
    assert len(fig.axes) == 4
    assert [bar.get_width() for bar in fig.axes[1].patches] == [1.0, 0.5]


# ------------------------------------------------------------------------------------------- the schedule


def test_learning_rate_schedule_warms_up_then_decays():
    rates = train.learning_rate_schedule(1e-3, 100, warmup_steps=0.1, scheduler="cosine")
    assert len(rates) == 100 and rates[0] == 0.0
    assert max(rates) == pytest.approx(1e-3) and rates.index(max(rates)) == 10
    assert rates[-1] < 1e-5 and all(a >= b for a, b in zip(rates[10:], rates[11:]))
    constant = train.learning_rate_schedule(1e-3, 50, warmup_steps=5, scheduler="constant_with_warmup")
    assert constant[5:] == [pytest.approx(1e-3)] * 45
    assert train.learning_rate_schedule(2e-4, 10, warmup_steps=0)[0] == pytest.approx(2e-4)


# ------------------------------------------------------------------------------------------- failure groups


def answer(category="billing", product=None, order_id=None, priority="medium", summary="s"):
    return json.dumps({"summary": summary, "category": category, "product": product, "order_id": order_id,
                       "priority": priority})


def test_failure_groups_split_each_field_error_by_the_reference_value():
    refs = [answer(priority="urgent"), answer(priority="urgent"), answer(priority="urgent"), answer(priority="high"),
            answer(order_id="ORD-123456"), answer()]
    outs = [answer(priority="high"), answer(priority="high"), answer(priority="urgent"), answer(priority="urgent"),
            answer(order_id="ORD-999999"), answer(order_id="ORD-111111")]
    groups = evaluate.failure_groups(evaluate.score_rows(outs, refs))
    top = groups.iloc[0]
    assert (top["kind"], top["reference"], top["count"]) == ("wrong_priority", "urgent", 2)
    assert top["share_of_value"] == pytest.approx(2 / 3) and top["examples"] == [0, 1]
    keyed = groups.set_index(["kind", "reference"])
    assert keyed.loc[("wrong_priority", "high"), "count"] == 1
    assert keyed.loc[("wrong_order_id", "named"), "share_of_value"] == 1.0
    assert keyed.loc[("hallucinated_order_id", "none"), "share_of_value"] == pytest.approx(1 / 5)
    assert "wrong_category" not in set(groups["kind"])


def test_failure_groups_of_perfect_answers_is_empty():
    refs = [answer(), answer(category="returns")]
    assert evaluate.failure_groups(evaluate.score_rows(refs, refs)).empty


def test_reference_group_names_order_ids_by_presence():
    assert evaluate.reference_group({"order_id": "ORD-1"}, "order_id") == "named"
    assert evaluate.reference_group({"order_id": None}, "order_id") == "none"
    assert evaluate.reference_group({"product": None}, "product") == "None"
    assert evaluate.reference_group({"priority": "low"}, "priority") == "low"


def test_group_counts_put_systems_side_by_side():
    refs = [answer(priority="urgent")] * 3
    table = evaluate.group_counts({"a": [answer(priority="high")] * 3, "b": [answer(priority="high"), *refs[:2]]},
                                  refs)
    assert table.loc[("wrong_priority", "priority", "urgent")].tolist() == [3, 1]


# ------------------------------------------------------------------------------------------- data fix and noise


def urgent(row) -> bool:
    return json.loads(data.answer_of(row))["priority"] == "urgent"


def test_targeted_rows_are_fresh_tickets_of_the_kind_with_provenance(tmp_path):
    rows = data.targeted_rows(urgent, 12, seed=505, reason="priority=urgent")
    assert len(rows) == 12 and all(urgent(r) for r in rows)
    meta = [r["metadata"] for r in rows]
    assert all(m["synthetic"] and m["augmentation"] == "targeted" and m["reason"] == "priority=urgent" for m in meta)
    assert all(m["group"].startswith("fix505-") for m in meta) and len({m["group"] for m in meta}) == 12
    assert data.targeted_rows(urgent, 12, seed=505, reason="x")[3]["messages"] == rows[3]["messages"]
    course_groups = {r["metadata"]["group"] for r in generate_tickets(200)}
    assert not course_groups & {m["group"] for m in meta}
    report = data.validate(data.write_jsonl(rows, Path(tmp_path) / "fix.jsonl"))
    assert report.n_valid == 12 and report.n_invalid == 0, "the fix's rows pass the course validator"


def test_targeted_rows_says_when_the_filter_is_too_narrow():
    with pytest.raises(ValueError, match="only 0"):
        data.targeted_rows(lambda row: False, 3, seed=1, reason="never", max_tries=50)
    with pytest.raises(ValueError, match="at least one"):
        data.targeted_rows(urgent, 0, seed=1, reason="none")


def test_corrupt_labels_changes_one_allowed_label_in_the_asked_share():
    rows = generate_tickets(50)
    noisy = data.corrupt_labels(rows, 0.4, seed=3)
    changed = [(a, b) for a, b in zip(rows, noisy) if a["messages"] != b["messages"]]
    assert len(changed) == 20 and len(noisy) == 50
    for before, after in changed:
        old, new = json.loads(data.answer_of(before)), json.loads(data.answer_of(after))
        diff = [k for k in old if old[k] != new[k]]
        assert len(diff) == 1 and diff[0] == after["metadata"]["noisy_label"]
        assert new[diff[0]] in (CATEGORIES if diff[0] == "category" else PRIORITIES)
        assert data.ticket_text(before) == data.ticket_text(after)
    assert sum("noisy_label" in r["metadata"] for r in noisy) == 20
    assert not any("noisy_label" in r["metadata"] for r in rows), "the input rows are not modified"
    with pytest.raises(ValueError, match="product"):
        data.corrupt_labels(rows, 0.1, fields=("product",))
    with pytest.raises(ValueError, match="share"):
        data.corrupt_labels(rows, 1.5)


# ------------------------------------------------------------------------------------------- forgetting


def test_text_loss_is_the_mean_token_cross_entropy():
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from helpers.config import TINY_MODEL_DIR

    tok = AutoTokenizer.from_pretrained(TINY_MODEL_DIR)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    texts = ["Return the number of items.", "The weather was warm and sunny today."]
    total = count = 0
    for text in texts:
        ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            total += float(model(input_ids=ids, labels=ids).loss) * (ids.shape[1] - 1)
        count += ids.shape[1] - 1
    assert evaluate.text_loss(model, tok, texts) == pytest.approx(total / count, rel=1e-5)
    assert math.log(len(tok)) * 0.8 < evaluate.text_loss(model, tok) < math.log(len(tok)) * 1.2  # random: ~chance
    with pytest.raises(evaluate.EvaluationError):
        evaluate.text_loss(model, tok, [])


# ------------------------------------------------------------------------------------------- a tracked run


@pytest.fixture(scope="module")
def tiny_dir(random_llama) -> Path:
    return random_llama()


def test_experiment_trains_scores_and_records_a_run_that_compare_runs_reads(tiny_dir, tmp_path):
    from helpers import config

    cfg = config.get_profile("cpu-tiny").replace(model_id=str(tiny_dir), per_device_batch_size=2, lora_r=4,
                                                 lora_alpha=8, max_new_tokens=8)
    rows = generate_tickets(24)
    run = train.experiment(cfg, "first", tmp_path, rows[:16], rows[16:20], rows[20:24], changes={"lora_r": 4},
                           general_texts=evaluate.GENERAL_TEXTS[:2], max_steps=4, eval_steps=2, logging_steps=1,
                           report_to="tensorboard")
    assert run.row["steps"] == 4 and run.row["changes"] == "lora_r=4" and len(run.outputs) == 4
    assert 0 <= run.row["field_accuracy"] <= 1 and run.row["general_ce"] > 0 and run.row["eval_loss"] > 0
    assert (run.dir / "adapter_model.safetensors").is_file() and not list(run.dir.rglob("checkpoint-*"))
    assert [step for step, _ in run.curves["eval"]] == [2, 4]
    assert [step for step, _ in train.tensorboard_scalars(run.dir, "train/loss")] == [1, 2, 3, 4]
    continued = train.experiment(cfg, "second", tmp_path, rows[:16], rows[16:20], (), init_adapter=run.dir,
                                 max_steps=2, eval_steps=2)
    assert continued.row["field_accuracy"] is None and continued.row["trainable_params"] == run.row["trainable_params"]
    table = train.compare_runs(tmp_path)
    assert list(table.index) == ["first", "second"] and table.loc["first", "changes"] == "lora_r=4"
    manifest = json.loads((run.dir / train.MANIFEST_NAME).read_text())
    assert manifest["run"]["scored_rows"] == 4 and manifest["configs"]["peft"]["r"] == 4
    with pytest.raises(TrainingSetupError, match="tensorboard"):
        train.tensorboard_scalars(continued.dir)
    with pytest.raises(TrainingSetupError, match="not both"):
        train.fit(cfg, tmp_path / "x", rows[:4], None, peft_config=train.lora_config(cfg), init_adapter=run.dir)
    with pytest.raises(TrainingSetupError, match="adapter_config.json"):
        train.fit(cfg, tmp_path / "x", rows[:4], None, init_adapter=tmp_path)
