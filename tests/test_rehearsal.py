"""Tier 4: the GPU profiles rehearsed on CPU.

Each GPU profile's model-family-specific code runs here on a stand-in: a random-initialised, tiny model of the
profile's real architecture (Qwen2, from the committed ``data/model-configs/*/config.json``) with a tokenizer that
carries Qwen2.5's real chat template (the copy TRL ships) and special tokens, built by ``models.build_stand_in``.
It goes through the calls notebooks 03 and 04 make: load_tokenizer, the mask check, SFTTrainer steps with
assistant-only loss on the 4-bit base, batched generation that stops on the right EOS ids, scoring and a merge. The
configs every profile builds (BitsAndBytesConfig, LoraConfig, SFTConfig flags) and its pre-flight verdict on the GPU
it names are checked too. What only a GPU can show (fp16/bf16 kernels, real memory, speed) is ``bench/gpu_check.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import config, env, evaluate, memory, models, train

GPU_PROFILES = [name for name, p in config.PROFILES.items() if p.device == "cuda"]
CAPABILITY = {"T4 16 GB": (7, 5), "L4 24 GB": (8, 9), "A100 40 GB": (8, 0), "H100 80 GB": (9, 0)}
SHORT_ANSWER = '{"category": "billing"}'


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    """One tiny stand-in per hub model the GPU profiles use."""
    root = tmp_path_factory.mktemp("stand_ins")
    ids = sorted({config.PROFILES[name].model_id for name in GPU_PROFILES})
    return {model_id: models.build_stand_in(model_id, root / model_id.split("/")[-1]) for model_id in ids}


def on_cpu(name: str, stand_ins: dict[str, Path], **changes) -> config.Profile:
    """The GPU profile ``name`` pointed at its stand-in and moved to the CPU (fp32 compute: no fp16/bf16 kernels here)."""
    cfg = config.PROFILES[name]
    return cfg.replace(model_id=str(stand_ins[cfg.model_id]), device="cpu", torch_dtype="float32",
                       bnb_compute_dtype="float32", optim="adamw_torch", **changes)


@pytest.fixture(scope="module")
def rows():
    return train.read_jsonl(train.split_path("train"))[:24], train.read_jsonl(train.split_path("test"))[:6]


# ---------------------------------------------------------------------------------------------------- template


def test_stand_in_carries_the_real_template_and_special_tokens(stand_ins):
    import trl

    original = (Path(trl.__file__).parent / "chat_templates" / "qwen2_5.jinja").read_text()
    for path in stand_ins.values():
        saved = json.loads((path / "tokenizer_config.json").read_text())
        assert saved["eos_token"] == "<|im_end|>" and saved["pad_token"] == "<|endoftext|>"
        assert models.saved_chat_template(path) == original, "the stand-in ships Qwen2.5's unmarked hub template"
        gen = json.loads((path / "generation_config.json").read_text())
        assert gen["repetition_penalty"] > 1 and gen["do_sample"], "Qwen's sampling defaults come along"


def test_load_tokenizer_swaps_in_the_training_template(stand_ins, rows, capsys):
    import trl

    original = (Path(trl.__file__).parent / "chat_templates" / "qwen2_5.jinja").read_text()
    tokenizer = models.load_tokenizer(next(iter(stand_ins.values())))
    assert "TRL's training copy" in capsys.readouterr().out, "the swap is printed"
    assert models.has_generation_markers(tokenizer.chat_template)
    for row in rows[0][:5]:  # the training copy renders exactly the text of the hub template
        assert tokenizer.apply_chat_template(row["messages"], tokenize=False) == \
            tokenizer.apply_chat_template(row["messages"], tokenize=False, chat_template=original)


def test_assistant_mask_covers_exactly_the_answer_and_its_end_of_turn_token(stand_ins, rows):
    tokenizer = models.load_tokenizer(next(iter(stand_ins.values())), log=lambda _m: None)
    row = rows[0][0]
    answer = row["messages"][-1]["content"]
    out = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    trained = tokenizer.decode([t for t, keep in zip(ids, mask) if keep])
    # Qwen2.5's template puts "\n" after "<|im_start|>assistant" and after "<|im_end|>"; TRL's copy marks both
    assert trained.strip("\n") == answer + "<|im_end|>"
    first = mask.index(1)
    assert tokenizer.decode(ids[:first]).endswith("<|im_start|>assistant"), "nothing of the prompt is trained"
    report = train.check_assistant_masks(tokenizer, rows[0], config.PROFILES["t4"].max_seq_length)
    assert report.fully_masked == [] and report.mean_trained_tokens > 10


def test_env_check_no_longer_calls_an_unmarked_template_fine(stand_ins):
    tokenizer = models.load_tokenizer(next(iter(stand_ins.values())), log=lambda _m: None)
    marked = {f.level for f in env.tokenizer_findings(tokenizer)}
    tokenizer.chat_template = models.saved_chat_template(next(iter(stand_ins.values())))
    assert "add_generation_prompt" in tokenizer.chat_template  # the substring the old check was fooled by
    unmarked = [f for f in env.tokenizer_findings(tokenizer) if f.level == "warn"]
    assert marked == {"ok"} and any("generation" in f.what for f in unmarked)


def test_an_unknown_unmarked_template_is_reported_not_crashed_on(stand_ins, capsys):
    tokenizer = models.load_tokenizer(next(iter(stand_ins.values())), log=lambda _m: None)
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    assert models.use_training_template(tokenizer) is False
    assert "TRL has no training copy" in capsys.readouterr().out
    with pytest.raises(train.TrainingSetupError, match="generation"):
        train.check_assistant_masks(tokenizer, [{"messages": [{"role": "user", "content": "a"},
                                                              {"role": "assistant", "content": "b"}]}], 64)


def test_a_qwen_template_that_drifted_from_trls_copy_gets_the_courses_marked_copy(stand_ins, capsys):
    """If the hub's Qwen2.5 template changes (a new default system prompt, a whitespace fix), TRL no longer recognises
    it and has no training copy: the course marks the template itself, checks identical rendering, and 03's mask still
    covers exactly the answer and <|im_end|> (issue 26)."""
    import trl

    tokenizer = models.load_tokenizer(next(iter(stand_ins.values())), log=lambda _m: None)
    hub = (Path(trl.__file__).parent / "chat_templates" / "qwen2_5.jinja").read_text()
    drifted = hub.replace("You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
                          "You are Qwen, created by Alibaba Cloud. You are a helpful, honest assistant.")
    assert drifted != hub
    tokenizer.chat_template = drifted
    assert models.use_training_template(tokenizer) is True
    assert "the course's marked copy" in capsys.readouterr().out
    assert models.has_generation_markers(tokenizer.chat_template)
    assert models.rendering_differences(tokenizer, drifted, tokenizer.chat_template) == []
    answer = '{"category": "shipping", "order_id": "ORD-123456"}'
    row = {"messages": [{"role": "system", "content": "Reply in JSON."},
                        {"role": "user", "content": "Where is ORD-123456?"}, {"role": "assistant", "content": answer}]}
    encoded = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
    trained = tokenizer.decode([t for t, keep in zip(encoded["input_ids"], encoded["assistant_masks"]) if keep])
    assert trained == answer + "<|im_end|>"


# ---------------------------------------------------------------------------------------------------- decoding


def test_course_decoding_is_plain_greedy_despite_the_generation_config(stand_ins):
    import torch

    cfg = on_cpu("t4", stand_ins)
    tokenizer = models.load_tokenizer(cfg, log=lambda _m: None)
    model = models.load_model(cfg, quantized=False)
    conv = [[{"role": "user", "content": "My order ORD-123123 never came, order ORD-123123 please"}]]
    n = 24
    ours = evaluate.generate(model, tokenizer, conv, n, progress=False)[0]
    ids = tokenizer(tokenizer.apply_chat_template(conv[0], tokenize=False, add_generation_prompt=True),
                    add_special_tokens=False, return_tensors="pt")["input_ids"]
    eos = set(evaluate.decoding_kwargs(model, tokenizer, n)["eos_token_id"])
    greedy = []
    with torch.no_grad():  # plain greedy by hand: argmax of the logits, no penalty, no sampling
        for _ in range(n):
            nxt = int(model(input_ids=ids).logits[0, -1].argmax())
            if nxt in eos:
                break
            greedy.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    assert ours == tokenizer.decode(greedy, skip_special_tokens=True).strip()
    # what generate() would run with: the course's settings win over Qwen's generation_config...
    used, _ = model._prepare_generation_config(None, **evaluate.decoding_kwargs(model, tokenizer, n))
    assert (used.repetition_penalty, used.do_sample, used.num_beams) == (1.0, False, 1)
    # ...while do_sample=False alone keeps Qwen's repetition_penalty (1.1 / 1.05): penalised greedy
    plain, _ = model._prepare_generation_config(None, do_sample=False, max_new_tokens=n)
    assert plain.repetition_penalty == model.generation_config.repetition_penalty > 1.0


def test_both_qwen_end_tokens_stop_generation(stand_ins):
    cfg = on_cpu("t4", stand_ins)
    tokenizer = models.load_tokenizer(cfg, log=lambda _m: None)
    model = models.load_model(cfg, quantized=False)
    eos = evaluate.decoding_kwargs(model, tokenizer, 8)["eos_token_id"]
    assert set(eos) == {tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")}


# ---------------------------------------------------------------------------------------------------- the 03-04 path


def _short_prompt(row):
    return [{**m, "content": m["content"][:80]} if m["role"] == "user" else m for m in row["messages"]]


@pytest.mark.parametrize("name", ["t4", "a100"])
def test_qlora_sft_generation_scoring_and_merge_on_the_stand_in(name, stand_ins, rows, tmp_path):
    """Notebook 03-04's calls on the profile's architecture: 4-bit load, mask check, SFTTrainer, generate, score, merge."""
    import torch
    from peft import PeftModel
    from trl import SFTTrainer

    cfg = on_cpu(name, stand_ins, max_seq_length=256, per_device_batch_size=4, gradient_accumulation_steps=1,
                 learning_rate=1e-2, lora_r=8, lora_alpha=16)
    tokenizer = models.load_tokenizer(cfg, log=lambda _m: None)
    # a short fixed answer the tiny random model can learn in a few dozen steps, so that it learns to stop
    # (tickets cut to 80 characters: a random 2-layer model memorises reliably only after a short prompt)
    train_rows = [{"messages": _short_prompt(r)[:-1] + [{"role": "assistant", "content": SHORT_ANSWER}]}
                  for r in rows[0][:8]]
    mask_report = train.check_assistant_masks(tokenizer, train_rows, cfg.max_seq_length)
    assert not mask_report.fully_masked
    model = models.load_model(cfg, quantized=True)
    assert any(type(m).__name__ == "Linear4bit" for m in model.modules()), "the QLoRA path: a 4-bit base"
    cfg, flags = train.precision(cfg)
    args = train.sft_config(cfg, tmp_path / "ckpt", flags=flags, max_steps=40, eval_strategy="no",
                            save_strategy="no", load_best_model_at_end=False, logging_steps=10, disable_tqdm=True,
                            warmup_steps=0)
    assert args.assistant_only_loss and args.activation_checkpointing == config.PROFILES[name].gradient_checkpointing
    trainer = SFTTrainer(model=model, args=args, train_dataset=train.to_dataset(train_rows),
                         processing_class=tokenizer, peft_config=train.lora_config(cfg))
    train.match_adapter_dtype(trainer.model, cfg)
    train.keep_4bit_trainable(trainer.model)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < losses[0] / 4, f"the stand-in should memorise one short answer: {losses}"
    after = dict(trainer.model.named_parameters())
    assert all(not torch.equal(before[n], after[n]) for n in before if "lora_B" in n), "every adapter moved"

    conversations = evaluate.conversations_from_rows([{"messages": _short_prompt(r)} for r in rows[1]])
    outputs = evaluate.generate(trainer.model, tokenizer, conversations, max_new_tokens=48, progress=False)
    assert outputs == [SHORT_ANSWER] * len(outputs), f"answers end at <|im_end|>: {outputs}"
    scores = evaluate.score(outputs, [SHORT_ANSWER] * len(outputs))
    assert scores["json_valid"] == 1.0 and scores["exact_match"] == 1.0

    adapter_dir = tmp_path / "adapter"
    trainer.save_model(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    assert models.saved_chat_template(adapter_dir) == tokenizer.chat_template, "the adapter keeps its template"
    full = models.load_model(cfg, quantized=False)  # merge into a full-precision copy, never the 4-bit one
    unmerged = PeftModel.from_pretrained(full, str(adapter_dir))
    unmerged_out = evaluate.generate(unmerged, tokenizer, conversations, 48, progress=False)
    merged = unmerged.merge_and_unload()
    assert evaluate.generate(merged, tokenizer, conversations, 48, progress=False) == unmerged_out


def test_fp16_overflow_is_caught_right_after_loading(stand_ins):
    import torch

    cfg = on_cpu("t4", stand_ins)
    model = models.load_model(cfg, quantized=False)
    assert models.check_finite_logits(model) > 0
    with torch.no_grad():
        model.model.norm.weight.fill_(float("inf"))  # what an fp16 overflow inside the network looks like
    with pytest.raises(models.ModelLoadError, match=r"overflows in fp16.*config\.fp32_compute\(cfg\).*bf16"):
        models.check_finite_logits(model)


# ---------------------------------------------------------------------------------------------------- configs


@pytest.mark.parametrize("name", GPU_PROFILES)
def test_every_gpu_profile_builds_consistent_configs(name, tmp_path):
    import torch

    cfg = config.PROFILES[name]
    capability = CAPABILITY[cfg.gpu]
    checked, flags = train.precision(cfg, capability=capability, log=lambda _m: None)
    assert checked == cfg, f"{name} already suits its own GPU ({cfg.gpu}): nothing to switch"
    half = {"float16": "fp16", "bfloat16": "bf16"}[cfg.bnb_compute_dtype]
    assert flags == {"bf16": half == "bf16", "fp16": half == "fp16"}
    assert (half == "bf16") == (capability[0] >= 8), "bf16 only where compute capability >= 8"
    bnb = models.bnb_config(cfg)
    assert bnb.load_in_4bit and bnb.bnb_4bit_quant_type == "nf4" and bnb.bnb_4bit_use_double_quant
    assert bnb.bnb_4bit_compute_dtype == getattr(torch, cfg.bnb_compute_dtype)
    lora = train.lora_config(cfg)
    assert lora.r == cfg.lora_r and lora.lora_alpha == cfg.lora_alpha and lora.task_type == "CAUSAL_LM"
    overrides = {"use_cpu": True} if flags["bf16"] else {}  # this CPU has no bf16 GPU to validate against
    args = train.sft_config(cfg, tmp_path, flags=flags, **overrides)
    assert (args.fp16, args.bf16) == (flags["fp16"], flags["bf16"])
    assert args.optim == "paged_adamw_8bit" and args.activation_checkpointing
    assert args.assistant_only_loss and args.report_to in ("none", [], ["none"])
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == 16, "same effective batch"


@pytest.mark.parametrize("name", GPU_PROFILES)
def test_every_gpu_profile_fits_on_the_gpu_it_names(name):
    cfg = config.PROFILES[name]
    gpu = next(g for g in memory.GPUS if g.name == cfg.gpu)
    shape = memory.resolve_shape(cfg.model_id)
    setup = memory.setup_from_profile(cfg)
    assert memory.verdict(shape, setup, gpu.memory_gib)["verdict"] == "fits"
    # the committed config.json is the shape the estimator sizes
    folder = models.stand_in_dir(cfg.model_id)
    assert memory.resolve_shape(str(folder / "config.json")).total_params() == shape.total_params()
    assert memory.preflight(cfg, limit_gib=gpu.memory_gib, log=lambda _m: None)["verdict"] == "fits"


def test_the_gpu_check_script_runs_end_to_end_on_cpu_stand_ins(tmp_path):
    """bench/gpu_check.py is the one command for a GPU machine; its CPU rehearsal keeps it from rotting."""
    import subprocess
    import sys

    out = tmp_path / "results.md"
    run = subprocess.run([sys.executable, str(config.REPO_ROOT / "bench" / "gpu_check.py"), "--cpu-rehearsal",
                          "--profiles", "t4", "--steps", "2", "--real-steps", "2", "--out", str(out)],
                         capture_output=True, text=True,
                         timeout=1200, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(next(line[len("RESULT "):] for line in run.stdout.splitlines() if line.startswith("RESULT ")))
    assert result["profile"] == "t4" and result["finite_losses"] and result["s_per_step"] > 0
    assert result["peak_gib"] is None, "no GPU, no measured GPU peak"
    # the course's rows as they are (about 175 stand-in tokens, none cut at the rehearsal's 256) beside the filled ones
    assert result["real_s_per_step"] > 0 and 120 < result["real_row_tokens_mean"] < result["seq_len"] == 256
    assert result["real_row_tokens_max"] < 256 and result["real_steps_timed"] == 2
    text = out.read_text()
    assert "CPU (rehearsal)" in text and "| t4 | Qwen/Qwen2.5-1.5B-Instruct |" in text and "s/step (real)" in text
    assert "libraries: torch" in run.stdout and "warning:" not in run.stdout  # the carried packages' needs are met


PREFIX_QWEN2 = pytest.mark.xfail(strict=True, raises=RuntimeError, reason=(
    "prefix tuning on Qwen2 under TRL 1.16's SFTTrainer (transformers 5.23, peft 0.21.2): scaled_dot_product_attention "
    "gets a mask for the input length only (178 vs 182 keys with 4 virtual tokens); a plain forward of the same model "
    "works. 05_iterate reports the failure instead of crashing. Strict: this test fails once a library fixes it."))


@pytest.mark.parametrize("method", ["lora", "prompt-tuning", pytest.param("prefix-tuning", marks=PREFIX_QWEN2)])
def test_notebook_05_runs_on_the_qwen2_stand_in(method, stand_ins, rows, tmp_path):
    """05_iterate's tracked run on the t4 architecture: train.experiment with each PEFT method it compares, then a
    continued run from the saved adapter (the data fix), scored, with general-text cross-entropy and a manifest."""
    from peft import PrefixTuningConfig, PromptTuningConfig

    cfg = on_cpu("t4", stand_ins, max_seq_length=256, per_device_batch_size=2, gradient_accumulation_steps=1,
                 lora_r=4, lora_alpha=8, max_new_tokens=8)
    peft_config = {"lora": None, "prompt-tuning": PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4),
                   "prefix-tuning": PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)}[method]
    train_rows, score_rows = rows[0][:8], rows[1][:3]
    run = train.experiment(cfg, method, tmp_path, train_rows, score_rows, score_rows, peft_config=peft_config,
                           general_texts=evaluate.GENERAL_TEXTS[:2], max_steps=2, eval_steps=2, logging_steps=1)
    assert run.row["steps"] == 2 and len(run.outputs) == 3 and run.row["general_ce"] > 0
    assert run.row["json_valid"] is not None and (run.dir / "adapter_config.json").is_file()
    if method == "lora":  # the data fix continues the saved adapter
        more = train.experiment(cfg, "continued", tmp_path, train_rows, score_rows, (), init_adapter=run.dir,
                                max_steps=1, eval_steps=1)
        assert more.row["steps"] == 1 and more.row["trainable_params"] == run.row["trainable_params"]
    assert method in train.compare_runs(tmp_path).index


def test_notebook_07_dpo_and_grpo_run_on_the_qwen2_stand_in(stand_ins, rows, tmp_path):
    """07_preference_tuning's two trainers on the t4 architecture and Qwen2.5's real chat template: pairs built from
    the stand-in's own (random) answers, DPO with the adapter's frozen copy as reference, GRPO with the course's
    verifiable rewards, on the 4-bit base."""
    from datasets import Dataset
    from peft import PeftModel
    from trl import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer

    from helpers import data

    cfg = on_cpu("t4", stand_ins, max_seq_length=256, per_device_batch_size=2, gradient_accumulation_steps=1,
                 lora_r=4, lora_alpha=8, max_new_tokens=8)
    cfg, flags = train.precision(cfg)
    adapter = tmp_path / "sft"
    train.train_adapter(cfg, adapter, rows[0][:4], None, max_steps=1)
    tokenizer = models.load_tokenizer(cfg)
    model = PeftModel.from_pretrained(models.load_model(cfg), str(adapter), is_trainable=True)
    answers = evaluate.generate(model, tokenizer, evaluate.conversations_from_rows(rows[0][:4]), cfg.max_new_tokens,
                                progress=False)
    pairs = data.preference_pairs(rows[0][:4], answers)
    assert len(pairs) == 4 and {p["kind"] for p in pairs} == {"invalid"}  # 8 random tokens are no JSON object
    assert data.check_pairs(pairs, {"test": rows[1]}).ok
    assert cfg.gradient_checkpointing  # the t4 profile's setting, passed on as in the notebook
    common = dict(max_steps=2, logging_steps=1, save_strategy="no", report_to="none", seed=0,
                  activation_checkpointing=cfg.gradient_checkpointing, **flags)
    dpo = DPOTrainer(model=model, args=DPOConfig(output_dir=str(tmp_path / "dpo"), per_device_train_batch_size=2,
                                                 max_length=cfg.max_seq_length, **common),
                     train_dataset=Dataset.from_list(pairs), processing_class=tokenizer)
    assert set(dpo.model.peft_config) == {"default", "ref"}  # the reference is a frozen copy of the SFT adapter
    train.match_adapter_dtype(dpo.model, cfg, dpo.args.learning_rate)  # as 07 does
    train.keep_4bit_trainable(dpo.model)
    dpo.train()
    assert len(train.log_series(dpo.state.log_history, "rewards/margins")) == 2

    grpo = GRPOTrainer(model=PeftModel.from_pretrained(models.load_model(cfg), str(adapter), is_trainable=True),
                       reward_funcs=list(evaluate.REWARD_FUNCS), train_dataset=Dataset.from_list(
                           data.grpo_rows(rows[0][:4])), processing_class=tokenizer,
                       args=GRPOConfig(output_dir=str(tmp_path / "grpo"), num_generations=2,
                                       per_device_train_batch_size=4, max_completion_length=8,
                                       reward_weights=list(evaluate.REWARD_WEIGHTS.values()), **common))
    train.match_adapter_dtype(grpo.model, cfg, grpo.args.learning_rate)
    train.keep_4bit_trainable(grpo.model)
    grpo.train()
    assert [v for _, v in train.log_series(grpo.state.log_history, "reward")] == [0.0, 0.0]  # no valid JSON yet
    assert evaluate.sampled_reward(grpo.model, tokenizer, rows[1][:2], 2, 0.8, cfg.max_new_tokens) == 0.0


def test_turn_tokens_train_every_assistant_turn_with_the_hub_template(stand_ins, rows):
    """Notebook 02's multi-turn claims (2.10) on Qwen2.5's training template: every assistant turn is trained."""
    from helpers import data

    tokenizer = models.load_tokenizer(next(iter(stand_ins.values())), log=lambda _m: None)
    messages = rows[0][0]["messages"] + [{"role": "user", "content": "Sorry, it is the KeyFlow Keyboard."},
                                         {"role": "assistant", "content": SHORT_ANSWER}]
    turns = data.turn_tokens(messages, tokenizer)
    full = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    assert sum(t["tokens"] for t in turns) == len(full["input_ids"])
    assert [t["trained"] > 0 for t in turns] == [m["role"] == "assistant" for m in messages]


def _overflowing_copy(stand_in: Path, folder: Path) -> Path:
    """The stand-in saved with one final-norm weight above fp16's largest value (65504): finite in fp32, inf in fp16."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(stand_in, dtype=torch.float32)
    with torch.no_grad():
        model.model.norm.weight[0] = 7e4
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(stand_in).save_pretrained(folder)
    return folder


def test_a_model_that_overflows_in_fp16_is_loaded_again_in_fp32_and_recorded(stand_ins, tmp_path, monkeypatch,
                                                                               capsys):
    import torch

    monkeypatch.setenv(config.ARTIFACTS_ENV_VAR, str(tmp_path / "artifacts"))
    base = on_cpu("t4", stand_ins)
    overflowing = base.replace(model_id=str(_overflowing_copy(Path(base.model_id), tmp_path / "overflows")),
                               torch_dtype="float16", bnb_compute_dtype="float16")
    with pytest.raises(models.NonFiniteLogitsError):  # what the check sees in fp16
        models.check_finite_logits(models._load_model(overflowing, False, None))
    model = models.load_model(overflowing, quantized=False)  # checked, recorded, loaded again in fp32
    assert model.dtype == torch.float32 and models.check_finite_logits(model) > 0
    assert "loaded again with fp32 compute" in capsys.readouterr().out
    assert models.recorded_fp16_verdict(overflowing)["finite"] is False
    assert models.load_model(overflowing, quantized=False).dtype == torch.float32  # the record: fp32 at once
    assert "recorded" in capsys.readouterr().out
    messages: list[str] = []
    switched, flags = train.precision(overflowing, capability=(7, 5), log=messages.append,
                                      fp16_check=models.fp16_verdict)
    assert (switched.torch_dtype, switched.bnb_compute_dtype, flags) == ("float32", "float32",
                                                                         {"bf16": False, "fp16": False})
    assert "switched to fp32 compute" in messages[0]
    # the same model without the overflow keeps fp16 (checked once in 4-bit, as training loads it)
    fine = base.replace(torch_dtype="float16", bnb_compute_dtype="float16")
    kept, flags = train.precision(fine, capability=(7, 5), log=messages.append, fp16_check=models.fp16_verdict)
    assert kept == fine and flags == {"bf16": False, "fp16": True}
    assert models.recorded_fp16_verdict(fine)["finite"] is True
