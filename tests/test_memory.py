"""Tests of helpers.memory: exact parameter counts, the estimate's structure, verdicts, config resolution, CLI."""

from __future__ import annotations

import json
import math
import re

import pytest

from helpers import config, memory
from helpers.memory import GIB, PRESETS, MemoryEstimateError, MemoryPreflightError, TrainSetup, estimate


def test_nf4_double_quant_bits_match_the_qlora_paper():
    assert math.isclose(memory.NF4_DQ_BITS, 4.127, abs_tol=5e-4)


def test_preset_parameter_counts_match_the_published_models():
    assert PRESETS["llama-7b"].total_params() == 6_738_415_616  # LLaMA 7B
    assert PRESETS["llama-3-8b"].total_params() == 8_030_261_248  # Meta-Llama-3-8B


def test_lora_trainable_count_matches_peft_on_a_real_model():
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    hf = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = get_peft_model(LlamaForCausalLM(hf), LoraConfig(r=8, target_modules="all-linear"))
    counted = sum(p.numel() for p in model.parameters() if p.requires_grad)
    shape = memory.resolve_shape(hf)
    assert estimate(shape, TrainSetup(method="lora", lora_r=8)).trainable_params == counted
    assert shape.total_params() == sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)


def test_qlora_weights_are_about_a_quarter_of_16_bit():
    shape = PRESETS["llama-65b"]
    q = estimate(shape, TrainSetup(method="qlora")).components["weights"]
    lora = estimate(shape, TrainSetup(method="lora")).components["weights"]
    assert 0.25 < q / lora < 0.28  # 4.127/16 for the linears, 16-bit embeddings/head on top
    assert 32 < q / memory.GIB < 34


def test_each_knob_moves_the_component_it_should():
    shape = PRESETS["llama-7b"]
    base = estimate(shape, TrainSetup(method="qlora", seq_len=512, batch=4))
    ckpt = estimate(shape, TrainSetup(method="qlora", seq_len=512, batch=4, grad_checkpointing=True))
    eight = estimate(shape, TrainSetup(method="qlora", seq_len=512, batch=4, optimizer="paged_adamw_8bit"))
    longer = estimate(shape, TrainSetup(method="qlora", seq_len=1024, batch=4))
    full = estimate(shape, TrainSetup(method="full", seq_len=512, batch=4))
    assert ckpt.components["activations"] < base.components["activations"] / 5
    assert eight.components["optimizer"] == base.components["optimizer"] / 4
    assert longer.components["logits"] == 2 * base.components["logits"]
    assert full.components["optimizer"] == shape.total_params() * 12  # fp32 m, v + master copy of 16-bit weights
    assert full.total > 100 * memory.GIB > base.total


def test_verdicts_fit_change_and_refuse():
    small = memory.verdict(PRESETS["llama-7b"], TrainSetup(method="qlora", seq_len=512, batch=1,
                                                            grad_checkpointing=True), 15.0)
    assert small["verdict"] == "fits"
    tight = memory.verdict(PRESETS["llama-7b"], TrainSetup(method="qlora", seq_len=2048, batch=16), 15.0)
    assert tight["verdict"] == "fits with these changes"
    assert any("gradient checkpointing" in c for c in tight["changes"])
    assert tight["changed_gib"] <= 15.0 * memory.HEADROOM < tight["total_gib"], "total: as asked; changed: after"
    huge = memory.verdict(PRESETS["llama-65b"], TrainSetup(method="qlora"), 15.0)
    assert huge["verdict"] == "does not fit" and huge["smallest_gib"] > 15.0


def test_report_covers_every_gpu():
    rep = memory.report(PRESETS["llama-3-8b"], TrainSetup(method="qlora", seq_len=512, batch=4))
    assert set(rep["gpus"]) == {g.name for g in memory.GPUS}
    assert math.isclose(sum(v for k, v in rep["components_gib"].items() if k != "total"),
                        rep["components_gib"]["total"], abs_tol=0.01)


def test_shapes_from_config_json_file_folder_and_errors(tmp_path, monkeypatch):
    cfg = {"vocab_size": 1000, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": True}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert memory.resolve_shape(tmp_path) == memory.resolve_shape(tmp_path / "config.json")
    assert memory.resolve_shape(tmp_path).kv_size == 64
    bad = tmp_path / "bad.json"
    bad.write_text('{"vocab_size": 10,\n oops}')
    with pytest.raises(MemoryEstimateError, match=r"bad.json:2"):
        memory.resolve_shape(bad)
    with pytest.raises(MemoryEstimateError, match="lacks"):
        memory.shape_from_config({"hidden_size": 8})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MemoryEstimateError, match="preset"):
        memory.resolve_shape("nobody/no-such-model-xyz")
    assert memory.resolve_shape("meta-llama/Meta-Llama-3-8B-Instruct") == PRESETS["llama-3-8b"]


def test_bad_setup_values_raise():
    with pytest.raises(MemoryEstimateError, match="method"):
        TrainSetup(method="prefix")
    with pytest.raises(MemoryEstimateError, match="LoRA targets"):
        TrainSetup(lora_targets=("qkv",))


def test_preflight_refuses_before_loading_and_passes_when_it_fits():
    cfg = config.get_profile("a100")
    shape = PRESETS["qwen2.5-7b"]
    with pytest.raises(MemoryPreflightError) as err:
        memory.preflight(cfg.replace(per_device_batch_size=64, max_seq_length=4096), model=shape, limit_gib=40,
                         log=lambda _m: None)
    needed, usable, after = (float(x) for x in re.findall(r"~?([0-9.]+) GiB", str(err.value))[:3])
    assert needed > usable >= after, f"the message must not contradict itself: {err.value}"
    assert "with these changes it needs" in str(err.value) and "gradient_accumulation_steps" in str(err.value)
    assert memory.preflight(cfg, model=shape, limit_gib=80, log=lambda _m: None)["verdict"] == "fits"


def test_a_24gb_card_was_refused_the_a100_recipe_with_a_self_contradicting_message():
    """L4 / A10G / RTX 3090-4090 (22.5 GiB): the a100 recipe now fits (chunked loss), the l4 recipe fits with room."""
    for name in ("a100", "l4"):
        assert memory.preflight(config.get_profile(name), limit_gib=22.5, log=lambda _m: None)["verdict"] == "fits"


def test_trl_chunked_loss_has_no_full_logits_term():
    """TRL's SFTTrainer scores the LM head in tiles: the [batch, seq, vocab] logits of a plain loss never exist."""
    shape = PRESETS["qwen2.5-1.5b"]
    chunked = memory.estimate(shape, TrainSetup(method="qlora", seq_len=768, batch=4, dtype="float16"))
    full = memory.estimate(shape, TrainSetup(method="qlora", seq_len=768, batch=4, dtype="float16", loss="full"))
    assert full.components["logits"] / GIB > 5 > 0.5 > chunked.components["logits"] / GIB
    assert {k: v for k, v in chunked.components.items() if k != "logits"} == \
        {k: v for k, v in full.components.items() if k != "logits"}
    tile = min(768 * 4, memory.LOSS_TILE[0]) * memory.LOSS_TILE[1] * 2  # 3,072 tokens x 32,768 entries in fp16
    assert tile <= chunked.components["logits"] < 1.5 * tile, "one tile, plus the hidden states' fp32 gradient"
    with pytest.raises(memory.MemoryEstimateError, match="loss"):
        TrainSetup(loss="fused")


def test_cli_json(capsys):
    code = memory.main(["--model", "llama-7b", "--method", "qlora", "--seq-len", "512", "--batch", "4",
                        "--grad-checkpointing", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["setup"]["grad_checkpointing"] is True
    assert out["components_gib"]["weights"] > 3 and out["gpus"]["T4 16 GB"]["verdict"] == "fits"
    assert memory.main(["--model", "./missing-folder"]) == 2


def test_trainable_share_matches_a_hand_count_and_depends_on_width():
    # the tiny model: 4 layers, hidden 256, MLP 704, 2 of 4 heads for K/V (64 each), vocabulary 4,096, tied head
    tiny = memory.ModelShape("tiny", 4096, 256, 704, 4, 4, 2, tie_word_embeddings=True)
    lora = 4 * 16 * ((256 + 256) * 2 + (256 + 128) * 2 + (256 + 704) * 3)  # r=16 on q, o, k, v, gate, up, down
    assert tiny.total_params() == 4_000_000 and lora == 299_008
    setup = TrainSetup(method="qlora", lora_r=16)
    assert memory.trainable_share(tiny, setup) == pytest.approx(100 * lora / (4_000_000 + lora))
    big = memory.trainable_share(PRESETS["llama-3-8b"], setup)
    assert big < memory.trainable_share(tiny, setup) / 10  # wide matrices: a rank-16 adapter is a small share
    qv = memory.trainable_share(PRESETS["llama-3-8b"], TrainSetup(method="qlora", lora_r=16,
                                                                  lora_targets=("q_proj", "v_proj")))
    assert qv < big
    assert memory.trainable_share(PRESETS["llama-3-8b"], TrainSetup(method="full")) == 100


def test_method_rows_order_memory_as_the_lesson_says_on_an_8b_model():
    rows = {r["method"]: r for r in memory.method_rows(PRESETS["llama-3-8b"], TrainSetup(seq_len=384, batch=4))}
    assert list(rows) == list(memory.METHODS)
    assert rows["full"]["est_peak_gib"] > rows["lora"]["est_peak_gib"] > rows["qlora"]["est_peak_gib"]
    assert rows["lora"]["trainable_params"] == rows["qlora"]["trainable_params"] < rows["full"]["trainable_params"]
    assert rows["qlora"]["weights_mb (estimated)"] < rows["lora"]["weights_mb (estimated)"] / 2  # 16-bit embeddings stay


def test_verdict_grid_shows_all_three_verdicts_for_the_notebook_cases():
    headline = TrainSetup(method="qlora", seq_len=1024, batch=8)
    paper = TrainSetup(method="qlora", seq_len=512, batch=1, grad_checkpointing=True, optimizer="paged_adamw_8bit")
    grid = memory.verdict_grid({"8b": (PRESETS["llama-3-8b"], headline),
                                "8b ckpt": (PRESETS["llama-3-8b"], TrainSetup(method="qlora", seq_len=1024, batch=8,
                                                                             grad_checkpointing=True)),
                                "65b": (PRESETS["llama-65b"], paper)})
    assert set(grid["8b"]) == {gpu.name for gpu in memory.GPUS}
    assert {v for row in grid.values() for v in row.values()} == {"fits", "fits with these changes", "does not fit"}


def test_llama_3_70b_preset_matches_the_published_count():
    assert PRESETS["llama-3-70b"].total_params() == 70_553_706_496  # Meta-Llama-3-70B


def test_per_device_shares_what_each_strategy_shards():
    est = estimate(PRESETS["llama-3-8b"], TrainSetup(method="full", seq_len=512, batch=2, grad_checkpointing=True))
    whole = est.gib()
    ddp = memory.per_device(est, 8, "ddp")
    assert ddp == whole  # every GPU holds everything
    zero2 = memory.per_device(est, 8, "zero2")
    assert zero2["weights"] == whole["weights"] and zero2["optimizer"] == pytest.approx(whole["optimizer"] / 8, abs=1e-3)
    assert zero2["gradients"] == pytest.approx(whole["gradients"] / 8, abs=1e-3)
    fsdp = memory.per_device(est, 8, "fsdp")
    assert fsdp["weights"] == pytest.approx(whole["weights"] / 8, abs=1e-3)
    assert fsdp["activations"] == whole["activations"] and fsdp["gathered_layers"] > 0
    assert fsdp["total"] < zero2["total"] < ddp["total"]
    assert memory.per_device(est, 1, "fsdp")["total"] == whole["total"]  # one GPU: nothing to shard
    with pytest.raises(MemoryEstimateError, match="strategy 'zero4'"):
        memory.per_device(est, 2, "zero4")


def test_a_full_precision_load_says_what_it_takes_and_refuses_what_cannot_fit(monkeypatch, capsys):
    """06 loads 16-bit copies: two of a 7B model do not fit a 24 GB card; the load is refused before it starts."""
    from helpers import config, models

    cfg = config.get_profile("cpu-tiny")
    need = memory.load_preflight(cfg)
    assert 0 < need < 0.1 and "GiB of weights" in capsys.readouterr().out  # the 4 M-parameter model in fp32
    monkeypatch.setattr(memory.device, "free_gib", lambda device: ("NVIDIA L4 (free now)", need / 2))
    with pytest.raises(memory.MemoryPreflightError, match="free the models you are done with first"):
        models.load_model(cfg, quantized=False)
    seven_b = memory.PRESETS["qwen2.5-7b"]
    assert 14 < memory.weights_gib(seven_b, "bfloat16") < 15.5 and memory.weights_gib(seven_b, "bfloat16", True) < 6
