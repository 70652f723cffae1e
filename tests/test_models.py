"""Tier 2: the embedded tiny model loads offline, in 4-bit, generates, and trains adapters only."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from helpers import config, models

TINY = config.TINY_MODEL_DIR
CFG = config.get_profile("cpu-tiny")


def test_shipped_files_match_their_checksums_and_budget():
    sums = dict(reversed(line.split("  ")) for line in (TINY / "SHA256SUMS").read_text().splitlines())
    assert {"model.safetensors", "tokenizer.json", "config.json", "recipe.json", "training_log.csv"} <= set(sums)
    for name, digest in sums.items():
        assert models.sha256(TINY / name) == digest, f"{name} differs from SHA256SUMS: rebuild or restore it"
    total = sum(p.stat().st_size for p in TINY.iterdir())
    assert total <= 25 * 2**20, f"the tiny model takes {total / 2**20:.1f} MB (budget 25 MB)"


def test_generation_config_names_the_tokenizers_special_tokens():
    """Otherwise every Trainer start re-aligns them and logs a warning (notebook 03 once showed it four times)."""
    generation = json.loads((TINY / "generation_config.json").read_text())
    tokenizer = models.load_tokenizer(CFG, log=lambda _m: None)
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        assert generation.get(key) == getattr(tokenizer, key), f"generation_config.json: {key}"


def test_recipe_records_perplexity_against_uniform():
    recipe = json.loads((TINY / "recipe.json").read_text())
    assert recipe["uniform_perplexity"] == recipe["recipe"]["vocab_size"]
    assert recipe["heldout_perplexity"] < recipe["uniform_perplexity"] / 10
    assert recipe["recipe"]["seed"] == __import__("helpers.build.tiny", fromlist=["TinyRecipe"]).TinyRecipe().seed


def test_loads_with_auto_classes_from_a_local_path():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TINY)
    model = AutoModelForCausalLM.from_pretrained(TINY)
    assert model.config.model_type == "llama"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert "{% generation %}" in tokenizer.chat_template


def test_assistant_mask_covers_the_answer_and_its_end_token():
    tokenizer = models.load_tokenizer(CFG)
    chat = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
            {"role": "assistant", "content": '{"a": 1}'}]
    enc = tokenizer.apply_chat_template(chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    masked = [t for t, m in zip(enc["input_ids"], enc["assistant_masks"]) if m]
    assert tokenizer.decode(masked) == '{"a": 1}<|end|>'


@pytest.fixture(scope="module")
def model_4bit():
    return models.load_model(CFG, quantized=True)


def test_loads_in_4bit_nf4_with_double_quant(model_4bit):
    import bitsandbytes as bnb

    layers = [m for m in model_4bit.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(layers) == 7 * model_4bit.config.num_hidden_layers  # q, k, v, o, gate, up, down
    state = layers[0].weight.quant_state
    assert state.quant_type == "nf4" and state.nested, "NF4 with double quantization"
    assert state.dtype == torch.float32, "fp32 compute on CPU"


def test_generates_and_stops_within_the_cap(model_4bit):
    tokenizer = models.load_tokenizer(CFG)
    inputs = tokenizer("Return the number of items in the", return_tensors="pt")
    out = model_4bit.generate(**inputs, max_new_tokens=12, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1]:]
    assert 1 <= len(new) <= 12
    assert tokenizer.decode(new, skip_special_tokens=True).strip()


def test_qlora_step_with_sfttrainer_changes_only_adapter_weights(tmp_path):
    from datasets import Dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from trl import SFTConfig, SFTTrainer

    from helpers.data.generate import generate_tickets

    tokenizer = models.load_tokenizer(CFG)
    model = prepare_model_for_kbit_training(models.load_model(CFG, quantized=True),
                                            use_gradient_checkpointing=False)
    rows = [{"messages": r["messages"]} for r in generate_tickets(16, seed=5)]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    peft_config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    training_args = SFTConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4,
                              learning_rate=1e-2, assistant_only_loss=True, max_length=256, report_to="none",
                              save_strategy="no", logging_steps=1, use_cpu=True, seed=0)
    trainer = SFTTrainer(model=model, args=training_args, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, peft_config=peft_config)
    trainer.train()
    assert trainer.state.log_history[0]["loss"] > 0, "assistant-only loss is not zero"
    after = dict(trainer.model.named_parameters())
    lora = {n: p for n, p in after.items() if "lora_" in n}
    assert lora and all(p.requires_grad for p in lora.values())
    # LoRA's B matrices start at zero: after two steps every one of them has moved.
    assert all(p.detach().abs().sum() > 0 for n, p in lora.items() if "lora_B" in n), "adapter weights changed"
    frozen = {n: p for n, p in after.items() if "lora_" not in n}
    assert not any(p.requires_grad for p in frozen.values())
    for name, param in frozen.items():
        original = before[name.replace("base_model.model.", "", 1).replace(".base_layer", "")]
        assert torch.equal(original, param.detach()), f"frozen weight {name} changed"


def test_missing_model_path_is_one_line_with_the_fix(tmp_path):
    with pytest.raises(models.ModelLoadError) as err:
        models.load_model(CFG.replace(model_id=str(tmp_path / "nowhere")))
    assert "build-tiny" in str(err.value) and "\n" not in str(err.value)


def test_hub_id_while_offline_is_one_line_with_the_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(models.ModelLoadError) as err:
        models.load_tokenizer("some-org/not-cached-model")
    assert "HF_HUB_OFFLINE" in str(err.value) and "cpu-tiny" in str(err.value) and "\n" not in str(err.value)


def test_info_command():
    out = subprocess.run([sys.executable, "-m", "helpers.models", "info"], capture_output=True, text=True)
    assert out.returncode == 0 and "heldout_perplexity" in out.stdout
