"""The guides' code, then and now: every row of docs/then_and_now.md, run against the pinned libraries.

Each row is a call that 2023-2024 fine-tuning guides use. ``test_old_call`` runs it and checks that it fails (or
warns) exactly as the table says; ``test_replacement`` runs what replaced it, on a 2-layer random Llama or the
course's data, and checks that it does what the table says. ``test_doc_lists_exactly_these_rows`` renders the table
from ``ROWS`` and compares it with the document line by line, so the document and the tests cannot drift apart.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable

import pytest

from helpers import config, models, train
from helpers.config import REPO_ROOT, TINY_MODEL_DIR

DOC = REPO_ROOT / "docs" / "then_and_now.md"
LIBRARIES = ("transformers", "trl", "peft", "bitsandbytes", "accelerate", "datasets", "torch")
CPU_FLAGS = dict(bf16=False, fp16=False, use_cpu=True, report_to="none", activation_checkpointing=False,
                 dataloader_pin_memory=False)


# ---------------------------------------------------------------------------------------------------- the context


class Ctx:
    """What the calls need: a random 2-layer Llama with the course tokenizer, tiny datasets, a scratch folder."""

    def __init__(self, model_dir: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch):
        from transformers import AutoTokenizer

        self.model_dir, self.tmp, self.monkeypatch = model_dir, tmp, monkeypatch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def model(self, **kwargs: Any):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(self.model_dir, **kwargs)

    def model_4bit(self):
        return self.model(quantization_config=models.bnb_config(config.get_profile("cpu-tiny")), device_map={"": "cpu"})

    def chat_dataset(self, n: int = 4):
        from helpers.data.generate import generate_tickets

        return train.to_dataset(generate_tickets(n))

    def text_dataset(self, column: str = "text"):
        from datasets import Dataset

        return Dataset.from_list([{column: f"Ticket {i}: my order ORD-00{i} arrived late, please help."}
                                  for i in range(4)])

    def preference_dataset(self):
        from datasets import Dataset

        rows = [{"prompt": [{"role": "user", "content": f"Ticket {i}: the order arrived broken."}],
                 "chosen": [{"role": "assistant", "content": '{"category": "returns", "priority": "high"}'}],
                 "rejected": [{"role": "assistant", "content": '{"category": "billing", "priority": "low"}'}]}
                for i in range(4)]
        return Dataset.from_list(rows)

    def sft_config(self, **changes: Any):
        from trl import SFTConfig

        values = dict(output_dir=str(self.tmp / "sft"), max_steps=1, per_device_train_batch_size=2, max_length=256,
                      logging_steps=1, save_strategy="no", **CPU_FLAGS)
        return SFTConfig(**{**values, **changes})

    def training_args(self, **changes: Any):
        from transformers import TrainingArguments

        values = dict(output_dir=str(self.tmp / "ta"), report_to="none", use_cpu=True)
        return TrainingArguments(**{**values, **changes})

    def dpo_config(self, **changes: Any):
        from trl import DPOConfig

        values = dict(output_dir=str(self.tmp / "dpo"), max_steps=1, per_device_train_batch_size=2, logging_steps=1,
                      save_strategy="no", **CPU_FLAGS)
        return DPOConfig(**{**values, **changes})


# ---------------------------------------------------------------------------------------------------- the rows


@dataclass(frozen=True)
class Row:
    """One table row: the old call, what it does now, the replacement, where the course uses the replacement."""

    id: str
    old: str  # markdown: the call as the guides write it
    kind: str  # "error": raises; "warning": runs and warns; "log": runs and logs through transformers' logger
    category: type  # the exception or warning class (type(None) for a log line)
    message: str  # the stable part of the message, matched literally
    replacement: str  # markdown
    course: str  # markdown: notebook / helper that uses the replacement, or why the course does not need it
    call_old: Callable[[Ctx], Any]
    call_new: Callable[[Ctx], None]  # asserts that the replacement does what the table says

    def outcome(self) -> str:
        said = _code(f"{self.category.__name__}: {self.message}")
        return {"error": said, "warning": f"runs; {said}", "log": f"runs; logs {_code(self.message)}"}[self.kind]


def _code(text: str) -> str:
    """Markdown inline code; a double-backtick span when the text holds backticks itself."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _import(statement: str) -> None:
    exec(statement, {})  # noqa: S102 - a fixed import statement from this file


# --- SFTTrainer / SFTConfig


def _sft(ctx: Ctx, dataset=None, model=None, **trainer_kwargs: Any):
    from trl import SFTTrainer

    trainer_kwargs.setdefault("args", ctx.sft_config())
    return SFTTrainer(model=model if model is not None else ctx.model(),
                      train_dataset=dataset if dataset is not None else ctx.chat_dataset(), **trainer_kwargs)


def new_sft_processing_class(ctx: Ctx) -> None:
    trainer = _sft(ctx, processing_class=ctx.tokenizer)
    assert trainer.processing_class is ctx.tokenizer
    assert trainer.train().global_step == 1


def new_sft_max_length(ctx: Ctx) -> None:
    trainer = _sft(ctx, args=ctx.sft_config(max_length=32), processing_class=ctx.tokenizer)
    lengths = [len(ids) for ids in trainer.train_dataset["input_ids"]]
    assert max(lengths) == 32  # the tickets are longer than 32 tokens: every row was truncated to max_length


def new_sft_text_field(ctx: Ctx) -> None:
    dataset = ctx.text_dataset("body")
    trainer = _sft(ctx, dataset=dataset, args=ctx.sft_config(dataset_text_field="body"), processing_class=ctx.tokenizer)
    first = ctx.tokenizer(dataset[0]["body"])["input_ids"]
    assert trainer.train_dataset[0]["input_ids"][:len(first)] == first


def new_sft_packing(ctx: Ctx) -> None:
    dataset = ctx.chat_dataset(6)
    plain = _sft(ctx, dataset=dataset, args=ctx.sft_config(max_length=512), processing_class=ctx.tokenizer)
    packed = _sft(ctx, dataset=dataset, args=ctx.sft_config(max_length=512, packing=True),
                  processing_class=ctx.tokenizer)
    tokens = sum(len(ids) for ids in plain.train_dataset["input_ids"])
    assert len(packed.train_dataset) < len(plain.train_dataset)  # several tickets per packed row
    assert sum(len(ids) for ids in packed.train_dataset["input_ids"]) == tokens  # no token lost


def _trained_text(ctx: Ctx, row: dict) -> tuple[str, int]:
    """The text of the tokens that carry a label (the loss), and how many tokens carry none."""
    trained = [label for label in row["labels"] if label != -100]
    return ctx.tokenizer.decode(trained), len(row["labels"]) - len(trained)


def new_assistant_only_loss(ctx: Ctx) -> None:
    from datasets import Dataset

    dataset = ctx.chat_dataset(2)
    trainer = _sft(ctx, dataset=dataset, args=ctx.sft_config(assistant_only_loss=True, max_length=512),
                   processing_class=ctx.tokenizer)
    text, masked = _trained_text(ctx, trainer.train_dataset[0])
    assert text == dataset[0]["messages"][-1]["content"] + models.EOS and masked > 0  # the answer and its end only
    completions = Dataset.from_list([{"prompt": "Ticket: my order is late.", "completion": " shipping"}] * 2)
    trainer = _sft(ctx, dataset=completions, args=ctx.sft_config(completion_only_loss=True),
                   processing_class=ctx.tokenizer)
    text, masked = _trained_text(ctx, trainer.train_dataset[0])
    assert text == " shipping" + models.EOS and masked > 0  # the completion and its end only


def new_clone_chat_template(ctx: Ctx) -> None:
    from transformers import AutoTokenizer
    from trl import clone_chat_template

    plain = AutoTokenizer.from_pretrained(ctx.model_dir)
    plain.chat_template = None
    _model, tokenizer, _added = clone_chat_template(ctx.model(), plain, str(TINY_MODEL_DIR))
    assert tokenizer.chat_template == AutoTokenizer.from_pretrained(TINY_MODEL_DIR).chat_template


def new_cpu_flags(ctx: Ctx) -> None:
    from trl import SFTConfig

    args = SFTConfig(output_dir=str(ctx.tmp / "cpu"), bf16=False, report_to="none")
    assert args.bf16 is False and args.fp16 is False


# --- TrainingArguments


def new_eval_strategy(ctx: Ctx) -> None:
    args = ctx.training_args(eval_strategy="steps", eval_steps=5)
    assert args.eval_strategy == "steps" and args.eval_steps == 5


def new_warmup_fraction(ctx: Ctx) -> None:
    assert ctx.training_args(warmup_steps=0.03).get_warmup_steps(1000) == 30  # < 1: a fraction of the steps
    assert ctx.training_args(warmup_steps=30).get_warmup_steps(1000) == 30  # >= 1: a number of steps


def new_activation_checkpointing(ctx: Ctx) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        args = ctx.training_args(activation_checkpointing=True)
    assert args.activation_checkpointing is True


def new_activation_checkpointing_enable(ctx: Ctx) -> None:
    model = ctx.model()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        model.activation_checkpointing_enable()
    assert model.is_activation_checkpointing


def new_peft_config_on_4bit(ctx: Ctx) -> None:
    trainer = _sft(ctx, model=ctx.model_4bit(), processing_class=ctx.tokenizer,
                   peft_config=train.lora_config(config.get_profile("cpu-tiny").replace(lora_r=4, lora_alpha=8)))
    trainable = {name for name, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)  # the 4-bit base stays frozen
    assert trainer.train().global_step == 1


def new_group_by_length(ctx: Ctx) -> None:
    from transformers import Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    dataset = ctx.text_dataset().map(lambda row: ctx.tokenizer(row["text"]), remove_columns=["text"])
    trainer = Trainer(model=ctx.model(), args=ctx.training_args(train_sampling_strategy="group_by_length"),
                      train_dataset=dataset, processing_class=ctx.tokenizer)
    assert isinstance(trainer._get_train_sampler(), LengthGroupedSampler)


def new_tensorboard_dir(ctx: Ctx) -> None:
    def events(trainer_dir: Path, log_dir: Path | None) -> list[Path]:
        if log_dir is not None:
            ctx.monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(log_dir))
        _sft(ctx, args=ctx.sft_config(output_dir=str(trainer_dir), report_to="tensorboard"),
             processing_class=ctx.tokenizer).train()
        ctx.monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
        return sorted((log_dir or trainer_dir).rglob("events.out.tfevents.*"))

    assert events(ctx.tmp / "default", None)  # default: under output_dir, where 05 reads them
    assert train.tensorboard_scalars(ctx.tmp / "default", "train/loss")
    assert events(ctx.tmp / "run", ctx.tmp / "tb")  # the environment variable moves them
    assert not list((ctx.tmp / "run").rglob("events.out.tfevents.*"))


def new_trainer_processing_class(ctx: Ctx) -> None:
    from transformers import Trainer

    trainer = Trainer(model=ctx.model(), args=ctx.training_args(), processing_class=ctx.tokenizer)
    assert trainer.processing_class is ctx.tokenizer


def new_torch_optim(ctx: Ctx) -> None:
    import torch
    from transformers import Trainer

    optim = config.get_profile("cpu-tiny").optim
    trainer = Trainer(model=ctx.model(), args=ctx.training_args(optim=optim), processing_class=ctx.tokenizer)
    assert optim == "adamw_torch" and type(trainer.create_optimizer()) is torch.optim.AdamW


# --- from_pretrained


def _transformers_log(fn: Callable[[], Any]) -> tuple[Any, str]:
    """Run ``fn`` and return its result and what it logged through transformers' logger (warning_once reset)."""
    logging.Logger.warning_once.cache_clear()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger("transformers")
    root.addHandler(handler)
    try:
        return fn(), stream.getvalue()
    finally:
        root.removeHandler(handler)


def new_dtype(ctx: Ctx) -> None:
    import torch

    model, logged = _transformers_log(lambda: ctx.model(dtype=torch.bfloat16))
    assert model.dtype == torch.bfloat16 and "deprecated" not in logged


def new_bnb_4bit(ctx: Ctx) -> None:
    import bitsandbytes as bnb

    model = ctx.model_4bit()
    assert isinstance(model.model.layers[0].self_attn.q_proj, bnb.nn.Linear4bit)
    assert model.model.layers[0].self_attn.q_proj.weight.quant_state.quant_type == "nf4"


def new_bnb_8bit(ctx: Ctx) -> None:
    import bitsandbytes as bnb
    import torch
    from transformers import BitsAndBytesConfig

    model = ctx.model(quantization_config=BitsAndBytesConfig(load_in_8bit=True), device_map={"": "cpu"})
    layer = model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, bnb.nn.Linear8bitLt) and layer.weight.dtype == torch.int8


def new_token(ctx: Ctx) -> None:
    import torch

    assert ctx.model(token="hf_not_a_real_token").dtype == torch.float32  # accepted (unused for a local folder)


def new_prepare_kbit(ctx: Ctx) -> None:
    from peft import prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(ctx.model(), use_gradient_checkpointing=False)
    assert not any(p.requires_grad for p in model.parameters())  # the base is frozen, ready for an adapter


# --- DPO


def _dpo(ctx: Ctx, args=None):
    from trl import DPOTrainer

    return DPOTrainer(model=ctx.model(), args=args or ctx.dpo_config(), train_dataset=ctx.preference_dataset(),
                      processing_class=ctx.tokenizer)


def new_dpo_beta(ctx: Ctx) -> None:
    trainer = _dpo(ctx, ctx.dpo_config(beta=0.25))
    assert trainer.args.beta == 0.25
    trainer.train()
    assert any("rewards/margins" in entry for entry in trainer.state.log_history)


def new_dpo_processing_class(ctx: Ctx) -> None:
    trainer = _dpo(ctx)
    assert trainer.processing_class is ctx.tokenizer
    assert trainer.train().global_step == 1


def new_dpo_max_length(ctx: Ctx) -> None:
    row = _dpo(ctx).train_dataset[0]  # default max_length (1024): nothing cut
    prompt, chosen = len(row["prompt_ids"]), len(row["chosen_ids"])
    trainer = _dpo(ctx, ctx.dpo_config(max_length=prompt + 2))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    assert chosen > 2 and batch["input_ids"].shape[1] == prompt + 2  # prompt + completion cut to max_length
    assert len(_dpo(ctx, ctx.dpo_config(max_length=prompt)).train_dataset) == 0  # a prompt that fills it: dropped


# --- datasets


def _jsonl(ctx: Ctx) -> Path:
    path = ctx.tmp / "rows.jsonl"
    path.write_text('{"text": "hello"}\n', encoding="utf-8")
    return path


def _script_dataset(ctx: Ctx) -> Path:
    folder = ctx.tmp / "my_dataset"
    folder.mkdir(exist_ok=True)
    (folder / "my_dataset.py").write_text("import datasets\n", encoding="utf-8")
    return folder


def new_dataset_token(ctx: Ctx) -> None:
    from datasets import load_dataset

    assert len(load_dataset("json", data_files=str(_jsonl(ctx)), split="train", token="hf_not_a_real_token")) == 1


def new_jsonl_dataset(ctx: Ctx) -> None:
    from datasets import load_dataset

    dataset = load_dataset("json", data_files=str(train.split_path("train")), split="train")
    assert len(dataset) > 100 and dataset[0]["messages"][-1]["role"] == "assistant"


# --- the table


def _sft_kw(**kwargs: Any) -> Callable[[Ctx], Any]:
    return lambda ctx: _sft(ctx, **kwargs)


ROWS: list[Row] = [
    Row("sft-tokenizer", "`SFTTrainer(model, train_dataset=ds, tokenizer=tokenizer)`", "error", TypeError,
        "SFTTrainer.__init__() got an unexpected keyword argument 'tokenizer'",
        "`SFTTrainer(..., processing_class=tokenizer)`", "03 (`SFTTrainer` cell), `helpers.train.train_adapter`",
        lambda ctx: _sft(ctx, tokenizer=ctx.tokenizer), new_sft_processing_class),
    Row("sft-max-seq-length", "`SFTTrainer(..., max_seq_length=512)`", "error", TypeError,
        "SFTTrainer.__init__() got an unexpected keyword argument 'max_seq_length'",
        "`SFTConfig(max_length=512)`", "03 (`max_length=cfg.max_seq_length`), `helpers.train.sft_config`",
        _sft_kw(max_seq_length=512), new_sft_max_length),
    Row("sftconfig-max-seq-length", "`SFTConfig(..., max_seq_length=512)`", "error", TypeError,
        "SFTConfig.__init__() got an unexpected keyword argument 'max_seq_length'",
        "`SFTConfig(max_length=512)`", "03, `helpers.train.sft_config`",
        lambda ctx: ctx.sft_config(max_seq_length=512), new_sft_max_length),
    Row("sft-text-field", "`SFTTrainer(..., dataset_text_field=\"text\")`", "error", TypeError,
        "SFTTrainer.__init__() got an unexpected keyword argument 'dataset_text_field'",
        "`SFTConfig(dataset_text_field=\"text\")`",
        "not needed: the course's rows are chat `messages`, which `SFTTrainer` reads without it "
        "(`helpers.train.to_dataset`)",
        lambda ctx: _sft(ctx, dataset=ctx.text_dataset(), dataset_text_field="text"), new_sft_text_field),
    Row("sft-packing", "`SFTTrainer(..., packing=True)`", "error", TypeError,
        "SFTTrainer.__init__() got an unexpected keyword argument 'packing'",
        "`SFTConfig(packing=True)`", "03 (`packing=packing`, from `train.packing_helps`), `helpers.train.sft_config`",
        _sft_kw(packing=True), new_sft_packing),
    Row("completion-collator", "`from trl import DataCollatorForCompletionOnlyLM`", "error", ImportError,
        "cannot import name 'DataCollatorForCompletionOnlyLM' from 'trl'",
        "`SFTConfig(assistant_only_loss=True)` (chat rows, template with `{% generation %}`); "
        "`SFTConfig(completion_only_loss=True)` (prompt/completion rows)",
        "03 (`assistant_only_loss=True`), `helpers.train.sft_config`",
        lambda ctx: _import("from trl import DataCollatorForCompletionOnlyLM"), new_assistant_only_loss),
    Row("setup-chat-format", "`from trl import setup_chat_format`", "error", ImportError,
        "cannot import name 'setup_chat_format' from 'trl'",
        "`trl.clone_chat_template(model, tokenizer, source_tokenizer_path)`",
        "not needed: the tiny model ships its template; `helpers.models.load_tokenizer` gives a hub model whose "
        "template lacks `{% generation %}` markers TRL's marked copy of that same template",
        lambda ctx: _import("from trl import setup_chat_format"), new_clone_chat_template),
    Row("sftconfig-cpu", "`SFTConfig(output_dir=...)` (TRL's defaults) on a machine without a GPU", "error",
        ValueError, "Your setup doesn't support bf16/gpu. You need to assign use_cpu if you want to train the model "
        "on CPU.",
        "`SFTConfig(..., bf16=False)` (or `fp16=True` on a GPU without bf16)",
        "03 and `helpers.train.sft_config` (`**flags` from `helpers.train.precision`)",
        lambda ctx: __import__("trl").SFTConfig(output_dir=str(ctx.tmp / "cpu"), report_to="none"), new_cpu_flags),
    Row("evaluation-strategy", "`TrainingArguments(..., evaluation_strategy=\"steps\")`", "error", TypeError,
        "TrainingArguments.__init__() got an unexpected keyword argument 'evaluation_strategy'",
        "`eval_strategy=\"steps\"`", "03 (`eval_strategy=\"steps\"`), `helpers.train.sft_config`",
        lambda ctx: ctx.training_args(evaluation_strategy="steps"), new_eval_strategy),
    Row("warmup-ratio", "`TrainingArguments(..., warmup_ratio=0.03)`", "error", TypeError,
        "TrainingArguments.__init__() got an unexpected keyword argument 'warmup_ratio'",
        "`warmup_steps=0.03` (below 1: a fraction of the total steps)",
        "03 and 07 (`warmup_steps=0.05`), `helpers.train.TrainDefaults`, 05's schedules "
        "(`helpers.train.learning_rate_schedule`)",
        lambda ctx: ctx.training_args(warmup_ratio=0.03), new_warmup_fraction),
    Row("gradient-checkpointing", "`TrainingArguments(..., gradient_checkpointing=True)`", "warning", FutureWarning,
        "`gradient_checkpointing` is deprecated and will be removed in v6. Use `activation_checkpointing` instead.",
        "`activation_checkpointing=True` (the old name is deprecated, not removed; its removal is announced for v6)",
        "03 and 07 (`activation_checkpointing=cfg.gradient_checkpointing`), `helpers.train.sft_config`",
        lambda ctx: ctx.training_args(gradient_checkpointing=True), new_activation_checkpointing),
    Row("gradient-checkpointing-enable", "`model.gradient_checkpointing_enable()`", "warning", FutureWarning,
        "`gradient_checkpointing_enable` is deprecated and will be removed in v6. Use "
        "`activation_checkpointing_enable` instead.",
        "`model.activation_checkpointing_enable()`, or `activation_checkpointing=True` and the trainer turns it on",
        "not called: the trainers turn it on from `activation_checkpointing` (03, 07)",
        lambda ctx: ctx.model().gradient_checkpointing_enable(), new_activation_checkpointing_enable),
    Row("prepare-kbit", "`peft.prepare_model_for_kbit_training(model)` on a 4-bit model", "warning", FutureWarning,
        "`gradient_checkpointing_enable` is deprecated and will be removed in v6. Use "
        "`activation_checkpointing_enable` instead.",
        "still in peft; or skip it: `SFTTrainer(..., peft_config=lora)` freezes the 4-bit base and adds the adapter, "
        "`activation_checkpointing` checkpoints",
        "03 (`SFTTrainer(..., peft_config=peft_config)`), `helpers.train.train_adapter`",
        lambda ctx: __import__("peft").prepare_model_for_kbit_training(ctx.model_4bit()), new_peft_config_on_4bit),
    Row("prepare-int8", "`from peft import prepare_model_for_int8_training`", "error", ImportError,
        "cannot import name 'prepare_model_for_int8_training' from 'peft'",
        "`peft.prepare_model_for_kbit_training(model)`, or `SFTTrainer(..., peft_config=lora)` on the quantized model",
        "03 (`SFTTrainer(..., peft_config=peft_config)` on the 4-bit base)",
        lambda ctx: _import("from peft import prepare_model_for_int8_training"), new_prepare_kbit),
    Row("group-by-length", "`TrainingArguments(..., group_by_length=True)`", "error", TypeError,
        "TrainingArguments.__init__() got an unexpected keyword argument 'group_by_length'",
        "`train_sampling_strategy=\"group_by_length\"`",
        "not used: 03 packs instead when padding would waste tokens (`helpers.train.packing_helps`)",
        lambda ctx: ctx.training_args(group_by_length=True), new_group_by_length),
    Row("logging-dir", "`TrainingArguments(..., logging_dir=\"logs\")`", "error", TypeError,
        "TrainingArguments.__init__() got an unexpected keyword argument 'logging_dir'",
        "drop it: TensorBoard files go under `output_dir`; the `TENSORBOARD_LOGGING_DIR` environment variable "
        "moves them", "05 (`report_to=\"tensorboard\"`, read back by `helpers.train.tensorboard_scalars`)",
        lambda ctx: ctx.training_args(logging_dir=str(ctx.tmp / "logs")), new_tensorboard_dir),
    Row("trainer-tokenizer", "`Trainer(model, args, tokenizer=tokenizer)`", "error", TypeError,
        "Trainer.__init__() got an unexpected keyword argument 'tokenizer'",
        "`Trainer(..., processing_class=tokenizer)`", "03 and 07: every trainer gets `processing_class=tokenizer`",
        lambda ctx: __import__("transformers").Trainer(model=ctx.model(), args=ctx.training_args(),
                                                       tokenizer=ctx.tokenizer), new_trainer_processing_class),
    Row("trainer-dot-tokenizer", "`trainer.tokenizer.save_pretrained(out)`", "error", AttributeError,
        "'Trainer' object has no attribute 'tokenizer'",
        "`trainer.processing_class`", "not used: the course saves its own `tokenizer` (`helpers.train.train_adapter`)",
        lambda ctx: __import__("transformers").Trainer(model=ctx.model(), args=ctx.training_args(),
                                                       processing_class=ctx.tokenizer).tokenizer,
        new_trainer_processing_class),
    Row("transformers-adamw", "`from transformers import AdamW`", "error", ImportError,
        "cannot import name 'AdamW' from 'transformers'",
        "`torch.optim.AdamW`, or `optim=\"adamw_torch\"` in the training arguments",
        "every profile's `optim` (`helpers.config`: `adamw_torch` on CPU, `paged_adamw_8bit` on GPUs) in "
        "`helpers.train.sft_config`", lambda ctx: _import("from transformers import AdamW"), new_torch_optim),
    Row("torch-dtype", "`AutoModelForCausalLM.from_pretrained(id, torch_dtype=torch.bfloat16)`", "log", type(None),
        "`torch_dtype` is deprecated! Use `dtype` instead!",
        "`from_pretrained(id, dtype=torch.bfloat16)`",
        "03 (`from_pretrained(..., dtype=...)`), `helpers.models.load_model`",
        lambda ctx: ctx.model(torch_dtype=__import__("torch").bfloat16), new_dtype),
    Row("load-in-4bit", "`from_pretrained(id, load_in_4bit=True)`", "error", TypeError,
        "LlamaForCausalLM.__init__() got an unexpected keyword argument 'load_in_4bit'",
        "`from_pretrained(id, quantization_config=BitsAndBytesConfig(load_in_4bit=True, ...))`",
        "03 (`BitsAndBytesConfig` cell), `helpers.models.bnb_config` and `load_model`",
        lambda ctx: ctx.model(load_in_4bit=True), new_bnb_4bit),
    Row("load-in-8bit", "`from_pretrained(id, load_in_8bit=True)`", "error", TypeError,
        "LlamaForCausalLM.__init__() got an unexpected keyword argument 'load_in_8bit'",
        "`quantization_config=BitsAndBytesConfig(load_in_8bit=True)`",
        "not used: the course quantizes to 4-bit NF4 (`helpers.models.bnb_config`)",
        lambda ctx: ctx.model(load_in_8bit=True), new_bnb_8bit),
    Row("use-auth-token", "`from_pretrained(id, use_auth_token=True)`", "error", TypeError,
        "LlamaForCausalLM.__init__() got an unexpected keyword argument 'use_auth_token'",
        "`from_pretrained(id, token=...)`", "not used: the course's models are public and nothing logs in",
        lambda ctx: ctx.model(use_auth_token=True), new_token),
    Row("datasets-use-auth-token", "`load_dataset(\"json\", data_files=..., use_auth_token=True)`", "error",
        TypeError, "JsonConfig.__init__() got an unexpected keyword argument 'use_auth_token'",
        "`load_dataset(..., token=...)`", "not used: the course's data is in the repository",
        lambda ctx: __import__("datasets").load_dataset("json", data_files=str(_jsonl(ctx)), split="train",
                                                        use_auth_token=True), new_dataset_token),
    Row("dataset-script", "`load_dataset(\"my_dataset\", trust_remote_code=True)`, a dataset with a loading script "
        "`my_dataset.py`", "error", RuntimeError, "Dataset scripts are no longer supported, but found my_dataset.py",
        "data files in a standard format (Parquet, JSON Lines, CSV): `load_dataset(\"json\", data_files=...)`",
        "the splits are JSON Lines (`data/tickets/*.jsonl`), read by `helpers.data` and turned into a `Dataset` by "
        "`helpers.train.to_dataset`",
        lambda ctx: __import__("datasets").load_dataset(str(_script_dataset(ctx)), trust_remote_code=True),
        new_jsonl_dataset),
    Row("dpo-beta", "`DPOTrainer(model, ref_model, args=args, beta=0.1, ...)`", "error", TypeError,
        "DPOTrainer.__init__() got an unexpected keyword argument 'beta'",
        "`DPOConfig(beta=0.1)`", "07 (`DPOConfig(beta=DPO_BETA)`)",
        lambda ctx: __import__("trl").DPOTrainer(ctx.model(), None, args=ctx.dpo_config(),
                                                 train_dataset=ctx.preference_dataset(), beta=0.1), new_dpo_beta),
    Row("dpo-tokenizer", "`DPOTrainer(..., tokenizer=tokenizer)`", "error", TypeError,
        "DPOTrainer.__init__() got an unexpected keyword argument 'tokenizer'",
        "`DPOTrainer(..., processing_class=tokenizer)`", "07 (`DPOTrainer(..., processing_class=tokenizer)`)",
        lambda ctx: __import__("trl").DPOTrainer(ctx.model(), None, args=ctx.dpo_config(),
                                                 train_dataset=ctx.preference_dataset(), tokenizer=ctx.tokenizer),
        new_dpo_processing_class),
    Row("dpo-max-prompt-length", "`DPOConfig(..., max_prompt_length=512, max_length=1024)`", "error", TypeError,
        "DPOConfig.__init__() got an unexpected keyword argument 'max_prompt_length'",
        "`DPOConfig(max_length=1024)`: one cap on prompt + completion",
        "07 (`DPOConfig(max_length=cfg.max_seq_length)`)",
        lambda ctx: ctx.dpo_config(max_prompt_length=512, max_length=1024), new_dpo_max_length),
]

# TrainingArguments keywords of 4.x guides that transformers 5 removed too; the document lists them in one sentence.
ALSO_REMOVED = ("overwrite_output_dir", "no_cuda", "per_gpu_train_batch_size", "save_safetensors", "fp16_backend",
                "push_to_hub_token", "include_inputs_for_metrics", "include_tokens_per_second", "use_mps_device")


# ---------------------------------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def model_dir(random_llama) -> Path:
    return random_llama()


@pytest.fixture
def ctx(model_dir, tmp_path, monkeypatch) -> Ctx:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return Ctx(model_dir, tmp_path, monkeypatch)


def test_rows_have_unique_ids_and_known_kinds():
    assert len({row.id for row in ROWS}) == len(ROWS)
    assert {row.kind for row in ROWS} <= {"error", "warning", "log"}


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_old_call(row: Row, ctx: Ctx):
    """The guide's call fails, warns or logs exactly as the table says."""
    if row.id == "sftconfig-cpu":
        import torch

        if torch.cuda.is_available():
            pytest.skip("with a GPU, TRL's bf16 default is accepted")
    if row.kind == "error":
        with pytest.raises(row.category) as caught:
            row.call_old(ctx)
        assert row.message in str(caught.value), str(caught.value)
    elif row.kind == "warning":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            row.call_old(ctx)  # runs: no exception
        said = [str(w.message) for w in caught if issubclass(w.category, row.category)]
        assert row.message in said, said
    else:
        _, logged = _transformers_log(lambda: row.call_old(ctx))
        assert row.message in logged, logged


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_replacement(row: Row, ctx: Ctx):
    """What replaced the call works with the pinned libraries (each replacement asserts its own effect)."""
    row.call_new(ctx)


@pytest.mark.parametrize("name", ALSO_REMOVED)
def test_also_removed_training_arguments(name: str, ctx: Ctx):
    with pytest.raises(TypeError, match=f"unexpected keyword argument '{name}'"):
        ctx.training_args(**{name: True})


def render_table() -> list[str]:
    """The document's table, rendered from ROWS."""
    lines = ["| old call (2023-2024 guides) | with the pinned versions | replacement | where the course uses it |",
             "|---|---|---|---|"]
    for row in ROWS:
        cells = (row.old, row.outcome(), row.replacement, row.course)
        assert not any("|" in cell for cell in cells), row.id  # a pipe would split the markdown cell
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def test_doc_lists_exactly_these_rows():
    text = DOC.read_text(encoding="utf-8")
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table == render_table(), "docs/then_and_now.md's table differs from ROWS: regenerate it with " \
        "`python -c 'from tests.test_then_and_now import render_table; print(*render_table(), sep=chr(10))'`"
    also = re.search(r"Also removed from `TrainingArguments`[^:]*: (.+?)\.\n", text, re.S)
    assert also, "the sentence listing the other removed TrainingArguments keywords is missing"
    names = re.sub(r"\([^)]*\)", "", also.group(1))  # without the parenthesised replacements
    assert re.findall(r"`(\w+)`", names) == list(ALSO_REMOVED)


def test_doc_names_the_installed_versions():
    text = DOC.read_text(encoding="utf-8")
    for name in LIBRARIES:
        installed = version(name).split("+")[0]  # torch's local tag (+cpu, +cu124) is not part of the pin
        assert f"{name} {installed}" in text, f"docs/then_and_now.md does not name {name} {installed}"


def test_what_else_changed(ctx: Ctx):
    """The claims of the document's "What else changed" section."""
    import torch
    from transformers import AutoTokenizer, pipeline
    from trl import DPOConfig, GRPOConfig, SFTConfig

    for config_class in (SFTConfig, DPOConfig, GRPOConfig):  # checkpointing on by default, under the old name
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            args = config_class(output_dir=str(ctx.tmp / "defaults"), use_cpu=True, report_to="none")
        assert args.activation_checkpointing is True and args.bf16 is True, config_class.__name__
        assert any("`gradient_checkpointing` is deprecated" in str(w.message) for w in caught), config_class.__name__
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        assert SFTConfig(output_dir=str(ctx.tmp / "set"), activation_checkpointing=False, **{
            k: v for k, v in CPU_FLAGS.items() if k != "activation_checkpointing"}).activation_checkpointing is False
    generator, logged = _transformers_log(lambda: pipeline("text-generation", model=str(ctx.model_dir),
                                                           torch_dtype=torch.bfloat16))
    assert generator.model.dtype == torch.bfloat16 and "`torch_dtype` is deprecated! Use `dtype` instead!" in logged
    tokenizer = AutoTokenizer.from_pretrained(ctx.model_dir, use_auth_token="hf_not_a_real_token")
    assert tokenizer.chat_template == ctx.tokenizer.chat_template
