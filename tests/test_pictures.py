"""The teaching pictures: each figure is drawn from the course's own objects, and its content says the facts."""

from __future__ import annotations

import math

import pytest
import torch

from helpers import config, decide, evaluate, memory, models, train
from helpers.evaluate.common import INVALID


def texts(fig) -> str:
    return "\n".join(t.get_text() for ax in fig.axes for t in [*ax.texts, ax.title])


# ------------------------------------------------------------------------------------------------ LoRA


class OneLayer(torch.nn.Module):
    def __init__(self, d_out: int, d_in: int):
        super().__init__()
        self.gate_proj = torch.nn.Linear(d_in, d_out, bias=False, device="meta")  # shape only, no memory


def test_lora_picture_labels_dims_and_counts_and_draws_to_scale():
    fig = train.plot_lora(OneLayer(14336, 4096), r=16)
    label = texts(fig)
    for fact in ("14336 x 4096", "14336 x 16", "16 x 4096", f"{14336 * 4096:,}", f"{14336 * 16:,}",
                 f"{16 * 4096:,}", f"{16 * (14336 + 4096):,}", "drawn wider"):
        assert fact in label, fact
    rects = {p.get_gid(): p for p in fig.axes[0].patches}
    assert (rects["W"].get_width(), rects["W"].get_height()) == (4096, 14336)
    assert rects["B"].get_height() == 14336 and rects["A"].get_width() == 4096
    wide = train.plot_lora(OneLayer(64, 32), r=16)  # r is not a sliver here: drawn to scale, no caveat
    rects = {p.get_gid(): p for p in wide.axes[0].patches}
    assert rects["B"].get_width() == 16 and rects["A"].get_height() == 16 and "drawn wider" not in texts(wide)


def test_lora_picture_reads_the_tiny_models_4bit_layer():
    cfg = config.get_profile("cpu-tiny")
    model = models.load_model(cfg, quantized=True)
    name, d_out, d_in = train.linear_dims(model, "gate_proj")
    assert (d_out, d_in) == (model.config.intermediate_size, model.config.hidden_size) and name.endswith("gate_proj")
    assert f"{d_out} x {d_in}" in texts(train.plot_lora(model, cfg.lora_r))
    with pytest.raises(train.TrainingSetupError, match="q_proj"):
        train.linear_dims(model, "no_such_layer")


# ------------------------------------------------------------------------------------------------ NF4


def test_nf4_picture_has_bitsandbytes_16_levels_over_block_normalised_weights():
    from bitsandbytes.functional import get_4bit_type

    torch.manual_seed(0)
    weight = torch.randn(96, 70) * 0.02  # 6,720 values: 105 full blocks of 64
    fig = models.plot_nf4(weight, "w")
    ax = fig.axes[0]
    levels = [line for line in ax.lines if line.get_gid() == "nf4-level"]
    assert len(levels) == 16
    assert [line.get_xdata()[0] for line in levels] == get_4bit_type("nf4", device="cpu").tolist()
    assert sum(p.get_height() * p.get_width() for p in ax.patches) == pytest.approx(1.0)  # a density histogram
    assert "6,720 values" in "\n".join(t.get_text() for t in ax.get_legend().get_texts())


def test_absmax_normalise_divides_each_block_of_64_by_its_absmax():
    weight = torch.arange(1, 131, dtype=torch.float32).view(10, 13)  # 130 values: two full blocks and 2 left over
    normed = models.absmax_normalise(weight)
    assert normed.shape == (130,)
    assert torch.allclose(normed[:64], weight.flatten()[:64] / 64)
    assert torch.allclose(normed[64:128], weight.flatten()[64:128] / 128)
    assert torch.allclose(normed[128:], torch.tensor([129 / 130, 1.0]))
    assert models.absmax_normalise(torch.zeros(64)).abs().sum() == 0  # no 0 / 0



@pytest.mark.parametrize("shape", [(96, 70), (10, 13)])  # whole blocks of 64; a last, shorter block
def test_nearest_level_times_block_absmax_is_what_bitsandbytes_dequantizes(shape):
    import bitsandbytes.functional as F

    torch.manual_seed(1)
    weight = torch.randn(*shape) * 0.02
    packed, state = F.quantize_4bit(weight, blocksize=models.NF4_BLOCKSIZE, quant_type="nf4")
    levels = torch.tensor(models.nf4_levels())
    normed = models.absmax_normalise(weight)
    nearest = levels[(normed[:, None] - levels[None]).abs().argmin(1)]
    scale = state.absmax.repeat_interleave(models.NF4_BLOCKSIZE)[: weight.numel()]
    assert torch.allclose(nearest * scale, F.dequantize_4bit(packed, state).flatten(), atol=1e-7)

# ------------------------------------------------------------------------------------------------ decision tree


def test_tree_picture_has_one_box_per_node_and_leaf():
    fig = decide.plot_tree()
    boxes = [p.get_gid() for p in fig.axes[0].patches]
    assert sorted(boxes) == sorted(decide.TREE)
    label = texts(fig)
    assert all(node.text.split()[0] in label for node in decide.NODES)
    assert all(f"({leaf.id})" in label for leaf in decide.LEAVES)
    where = decide.tree_layout()
    assert where[decide.ROOT][0] == 0 and len({where[leaf.id][0] for leaf in decide.LEAVES}) == 1
    for node in decide.NODES:  # every question sits left of where its answers lead
        assert all(where[t][0] > where[node.id][0] for t in node.branches.values())


# ------------------------------------------------------------------------------------------------ memory


@pytest.mark.parametrize("case", ["tiny", "llama"])
def test_memory_bars_add_up_to_each_estimate_and_capacity_is_drawn(case):
    if case == "tiny":
        cfg = config.get_profile("cpu-tiny")
        shape, setup = memory.resolve_shape(cfg.model_id), memory.setup_from_profile(cfg)
    else:
        shape, setup = memory.PRESETS["llama-3-8b"], memory.TrainSetup(method="qlora", seq_len=1024, batch=8)
    fig = memory.plot_memory(shape, setup)
    ax = fig.axes[0]
    expected = [memory.estimate(shape, setup)] + [e for _, e in memory.gpu_estimates(shape, setup).values()]
    heights = [0.0] * len(expected)
    for container in ax.containers:  # one stack level per component
        for k, bar in enumerate(container):
            heights[k] += bar.get_height()
    assert heights == pytest.approx([e.total_gib for e in expected])
    drawn = {a.get_gid() for a in [*ax.collections, *ax.texts]}
    assert all(f"capacity {gpu.name}" in drawn for gpu in memory.GPUS)
    for gpu in memory.GPUS:  # each GPU's bar is what its verdict says
        v = memory.verdict(shape, setup, gpu.memory_gib)
        bar = memory.gpu_estimates(shape, setup)[gpu.name][1].total_gib
        assert round(bar, 2) == v.get("changed_gib", v.get("smallest_gib", v["total_gib"]))
    if case == "llama":  # as asked it fits nowhere; each GPU's bar is the changed setup, under its capacity
        assert all(v["verdict"] == "fits with these changes"
                   for v in (memory.verdict(shape, setup, g.memory_gib) for g in memory.GPUS))
        assert all(h < g.memory_gib for h, g in zip(heights[1:], memory.GPUS)) and heights[0] > 80


# ------------------------------------------------------------------------------------------------ confusion


def record(ref: str, pred: str) -> dict:
    return {"ref_category": ref, "pred_category": pred}


def test_confusion_counts_match_a_hand_made_example():
    records = [record("billing", "billing"), record("billing", "shipping"), record("shipping", "shipping"),
               record("shipping", INVALID), record("returns", "refunds"), record("billing", "billing")]
    table = evaluate.category_confusion(records)
    assert list(table.index) == ["billing", "shipping", "returns"]
    assert list(table.columns) == ["billing", "shipping", "returns", "refunds", INVALID]
    assert table.loc["billing", "billing"] == 2 and table.loc["billing", "shipping"] == 1
    assert table.loc["shipping", INVALID] == 1 and table.loc["returns", "refunds"] == 1
    assert table.loc["returns", "returns"] == 0 and table.to_numpy().sum() == len(records)
    fig = evaluate.plot_confusion(records)
    cells = [int(t.get_text()) for t in fig.axes[0].texts]
    assert cells == table.to_numpy().flatten().tolist() and "3 of 6 right" in texts(fig)


def test_confusion_of_scored_answers_sums_to_the_records_and_has_no_invalid_column_when_all_parse():
    refs = ['{"category": "billing"}', '{"category": "shipping"}', '{"category": "technical"}']
    good = evaluate.score_rows(['{"category": "billing"}', '{"category": "billing"}', '{"category": "technical"}'],
                               refs, schema=None)
    table = evaluate.category_confusion(good)
    assert INVALID not in table.columns and table.to_numpy().sum() == 3 and table.loc["shipping", "billing"] == 1
    bad = evaluate.category_confusion(evaluate.score_rows(["not json", "{}", '{"category": 3}'], refs, schema=None))
    assert list(bad.columns)[-1] == INVALID and bad[INVALID].sum() == 3
    assert math.isclose(bad.to_numpy().sum(), 3)
    with pytest.raises(evaluate.EvaluationError):
        evaluate.category_confusion([])
