"""Load the embedded tiny model or a hub model, in 4-bit or not, and build the tiny model itself. Taught in 00_setup.

``python -m helpers.models build-tiny`` pretrains the course's offline model from text the project derives on any
machine (the Python standard library's docstrings and unlabelled support tickets); ``python -m helpers.models info``
prints what is shipped in ``data/tiny-llama``.
"""

from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import inspect
import json
import logging
import math
import os
import platform
import random
import re
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpers.config import TINY_MODEL_DIR, Profile

if TYPE_CHECKING:  # heavy imports stay out of module import time
    from transformers import BitsAndBytesConfig, PreTrainedModel, PreTrainedTokenizerBase

SPECIAL_TOKENS = ("<|end|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|bos|>")
EOS, PAD = "<|end|>", "<|pad|>"

# Assistant turns sit inside {% generation %} so trainers can compute assistant-only loss masks; the <|end|> that
# closes an answer is inside the block, so the model learns to stop. System and user turns end with a newline, not
# <|end|>: pretraining put <|end|> between unrelated documents, so a template that closed the ticket's turn with it
# would tell the model that nothing before the answer matters.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|assistant|>\n' }}{% generation %}{{ message['content'] + '<|end|>' }}{% endgeneration %}{{ '\n' }}"
    "{%- else -%}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\n' }}{%- endif -%}"
)


class ModelLoadError(RuntimeError):
    """A model or tokenizer that cannot be loaded; the message names it and the fix."""


GENERATION_MARKER = re.compile(r"\{%-?\s*generation\s*-?%\}")  # {% generation %}, {%- generation -%}, ...


def has_generation_markers(template: str | dict[str, str] | None) -> bool:
    """Does a chat template wrap assistant turns in ``{% generation %}`` (what assistant-only loss needs)? Taught in 03."""
    if isinstance(template, dict):  # templates shipped as named variants: the default one is used
        template = template.get("default", "")
    return bool(template) and GENERATION_MARKER.search(template) is not None


def use_training_template(tokenizer: "PreTrainedTokenizerBase", log: Any = print) -> bool:
    """Give a tokenizer TRL's training copy of its chat template (same text, assistant turns marked). Taught in 02.

    Hub instruct models (Qwen2.5, Llama 3, ...) ship templates without ``{% generation %}`` markers, so
    assistant-only loss would train on nothing. TRL ships marked copies that render the same text; the course uses
    the copy everywhere (training, evaluation, the saved adapter), so the model is served with the template it was
    trained with. Returns True when the template was replaced.
    """
    template = getattr(tokenizer, "chat_template", None)
    if not template or has_generation_markers(template):
        return False
    from trl.chat_template_utils import get_training_chat_template

    name = getattr(tokenizer, "name_or_path", "") or "this tokenizer"
    try:
        patched = get_training_chat_template(tokenizer)
    except ValueError:
        log(f"warning: the chat template of {name} has no {{% generation %}} markers and TRL has no training copy of "
            "it: assistant-only loss is impossible until you add the markers around the assistant turns yourself")
        return False
    if patched is None:
        return False
    tokenizer.chat_template = patched
    log(f"chat template of {name}: no {{% generation %}} markers, replaced by TRL's training copy of the same "
        "template (identical text, assistant turns marked for the loss mask)")
    return True


@dataclass(frozen=True)
class TinyRecipe:
    """Everything that decides the embedded tiny model: architecture, tokenizer and pretraining run."""

    seed: int = 1234
    vocab_size: int = 4096
    hidden_size: int = 256
    intermediate_size: int = 704
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2  # grouped-query attention, as in Llama 3
    max_position_embeddings: int = 1024
    seq_len: int = 256
    batch_size: int = 16
    steps: int = 1000
    learning_rate: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.1
    heldout_fraction: float = 0.02
    ticket_texts: int = 8000


# ---------------------------------------------------------------------------------------------------- loading


def bnb_config(cfg: Profile) -> "BitsAndBytesConfig":
    """The QLoRA quantization config (NF4, double quantization, the profile's compute dtype). Taught in 03."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=getattr(torch, cfg.bnb_compute_dtype),
    )


def _check_source(model_id: str) -> None:
    """Fail early, in one line, for a missing local path or a hub id that cannot be fetched offline."""
    if model_id.startswith((".", "/", "~")) or Path(model_id).exists():
        path = Path(model_id).expanduser()
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"no model at {path} (config.json missing): restore it with `git checkout -- data/tiny-llama` "
                f"or rebuild it with `python -m helpers.models build-tiny`"
            )
        bad = checksum_problems(path)
        if bad:
            raise ModelLoadError(f"{path}: {bad[0]}{f' (and {len(bad) - 1} more)' if len(bad) > 1 else ''}: restore "
                                 f"the folder (`git checkout -- data/tiny-llama` for the course model) or rebuild it "
                                 f"with `python -m helpers.models build-tiny`")
        return
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
    if offline:
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(model_id, "config.json"), str):
            raise ModelLoadError(
                f"hub model {model_id!r} is not in the local cache and HF_HUB_OFFLINE=1: unset HF_HUB_OFFLINE and "
                f"download it once online, or use the offline profile (PROFILE = 'cpu-tiny')"
            )


def checksum_problems(folder: Path) -> list[str]:
    """Files of a model folder that are missing or differ from its ``SHA256SUMS`` (none when it has no such file)."""
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        return []
    problems = []
    for line in sums.read_text(encoding="utf-8", errors="replace").splitlines():
        digest, _, name = line.partition("  ")
        if not name:
            continue
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing (listed in SHA256SUMS)")
        elif sha256(path) != digest:
            problems.append(f"{name} differs from its SHA256SUMS checksum (truncated or changed)")
    return problems


def _source(cfg_or_path: Profile | str | Path) -> str:
    return cfg_or_path.model_id if isinstance(cfg_or_path, Profile) else str(cfg_or_path)


def load_tokenizer(cfg_or_path: Profile | str | Path, log: Any = print) -> "PreTrainedTokenizerBase":
    """The tokenizer of a profile's model (or of a path / hub id): a distinct pad token, a training chat template.

    Taught in 00_setup. The same call loads the tokenizer for training, evaluation and serving, so all three use the
    same template (see :func:`use_training_template`).
    """
    from transformers import AutoTokenizer

    model_id = _source(cfg_or_path)
    _check_source(model_id)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_id)
    except Exception as err:  # noqa: BLE001 - OSError, ValueError, the tokenizers library's own errors...
        raise ModelLoadError(f"cannot load the tokenizer of {model_id!r}: {_first_line(err)}") from None
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        # pad == eos with the wrong collator teaches a model never to stop: give padding its own token if one exists.
        for candidate in ("<|pad|>", "<|finetune_right_pad_id|>", "<|fim_pad|>"):
            if candidate in tokenizer.get_vocab():
                tokenizer.pad_token = candidate
                break
    use_training_template(tokenizer, log=log)
    return tokenizer


def saved_chat_template(folder: str | Path) -> str | None:
    """The chat template saved beside a tokenizer (``chat_template.jinja`` or ``tokenizer_config.json``), or None.

    Taught in 04_evaluation: the adapter folder keeps the template it was trained with, to serve with the same one.
    """
    folder = Path(folder)
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    config_path = folder / "tokenizer_config.json"
    if config_path.is_file():
        return json.loads(config_path.read_text(encoding="utf-8")).get("chat_template")
    return None


def load_model(
    cfg: Profile, quantized: bool = True, model_id: str | None = None
) -> "PreTrainedModel":
    """Load the profile's model, in 4-bit NF4 (the QLoRA base) or in the profile's dtype. Taught in 00_setup."""
    import torch
    from transformers import AutoModelForCausalLM

    model_id = model_id or cfg.model_id
    _check_source(model_id)
    # bitsandbytes logs a warning on CPU about an optional hub kernel it cannot fetch offline; the fp32 path needs none.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    kwargs: dict[str, Any] = {"dtype": getattr(torch, cfg.torch_dtype)}
    if quantized:
        kwargs["quantization_config"] = bnb_config(cfg)
        kwargs["device_map"] = {"": "cpu"} if cfg.device == "cpu" else {"": 0}
    try:
        model = AutoModelForCausalLM.from_pretrained(model_id, **kwargs)
    except Exception as err:  # noqa: BLE001 - OSError, safetensors' errors for a truncated file, ValueError...
        raise ModelLoadError(f"cannot load model {model_id!r}: {_first_line(err)}") from None
    if not quantized and cfg.device == "cuda":
        model = model.to("cuda")
    if "float16" in (cfg.torch_dtype, cfg.bnb_compute_dtype if quantized else cfg.torch_dtype):
        check_finite_logits(model)
    return model


FINITE_CHECK_TEXT = "Hi, my order ORD-123456 arrived broken. Please refund it as soon as possible, thanks!"


def check_finite_logits(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase | None" = None,
                        text: str = FINITE_CHECK_TEXT) -> float:
    """One forward pass; raise :class:`ModelLoadError` if any logit is NaN or inf. Taught in 03_qlora_training.

    Some models (Qwen2 among them) overflow in fp16 on GPUs without bf16 (T4, V100) and then write "!!!!" or
    nothing: better to know right after loading than after an hour of training. Returns the largest |logit|.
    """
    import torch

    device = next(model.parameters()).device
    if tokenizer is not None:
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    else:  # no tokenizer at hand: a fixed spread of token ids
        vocab = int(model.config.get_text_config().vocab_size)
        ids = (torch.arange(1, 33) * 997 % max(vocab - 1, 1) + 1)[None]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(input_ids=ids.to(device)).logits
    finally:
        model.train(was_training)
    finite = torch.isfinite(logits)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ModelLoadError(
            f"{bad} of {logits.numel()} logits are NaN/inf after loading {model.config.name_or_path!r} with "
            f"{model.dtype}: the model overflows in fp16 on this GPU; fix: compute in fp32 "
            "(cfg = cfg.replace(torch_dtype='float32', bnb_compute_dtype='float32'): slower, always finite) or "
            "use a GPU with bf16 (compute capability >= 8: L4, A100, H100)")
    return float(logits.abs().max())


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:300]}" if text else type(err).__name__


def model_size(model: "PreTrainedModel") -> dict[str, float]:
    """Parameter count (millions) and memory footprint (MB) of a loaded model. Taught in 00_setup."""
    params = sum(p.numel() for p in model.parameters())
    return {"params_m": params / 1e6, "footprint_mb": model.get_memory_footprint() / 2**20}


# ---------------------------------------------------------------------------------------------------- stand-ins

MODEL_CONFIGS_DIR = TINY_MODEL_DIR.parent / "model-configs"
# Tiny dimensions for a CPU rehearsal: the architecture (Qwen2: GQA, biases on q/k/v, tied or untied head) stays.
# A wider initialisation than the real 0.02 gives 64-wide logits room to move, so a rehearsal can teach the stand-in
# one short answer (and to stop after it) in a few dozen steps.
TINY_DIMS = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "max_window_layers": 2, "initializer_range": 0.2}


def stand_in_dir(model_id: str) -> Path:
    """``data/model-configs/<name>`` for a GPU profile's hub id (e.g. ``Qwen/Qwen2.5-1.5B-Instruct``)."""
    folder = MODEL_CONFIGS_DIR / model_id.split("/")[-1].lower()
    if not (folder / "stand_in.json").is_file():
        known = ", ".join(sorted(p.name for p in MODEL_CONFIGS_DIR.iterdir() if p.is_dir()))
        raise ModelLoadError(f"no stand-in config for {model_id!r} in {MODEL_CONFIGS_DIR}: add its config.json, "
                             f"generation_config.json and stand_in.json there (known: {known})")
    return folder


def _stand_in_tokenizer(spec: dict[str, Any], vocab_size: int = 1024) -> "PreTrainedTokenizerBase":
    """A small byte-level BPE trained on the course's tickets, with the real model's special tokens and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    import trl

    from helpers.config import TICKETS_DIR

    texts = [m["content"] for line in (TICKETS_DIR / "train.jsonl").read_text().splitlines()[:600]
             for m in json.loads(line)["messages"]]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [spec["pad_token"], *spec["additional_special_tokens"]]
    tok.train_from_iterator(texts, trainer=trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=spec["eos_token"], pad_token=spec["pad_token"],
                                        additional_special_tokens=spec["additional_special_tokens"],
                                        model_max_length=32768, padding_side="right")
    tokenizer.chat_template = (Path(trl.__file__).parent / spec["chat_template"].split("/", 1)[1]).read_text()
    return tokenizer


def build_stand_in(model_id: str, out_dir: str | Path, tiny: bool = True, dtype: str = "float32",
                   device: str = "cpu", seed: int = 0) -> Path:
    """A random-initialised model of a GPU profile's real architecture, with its chat template and special tokens.

    ``tiny=True`` shrinks the dimensions (:data:`TINY_DIMS`) and the vocabulary for a CPU rehearsal of notebooks 03-04;
    ``tiny=False`` keeps the published sizes (``bench/gpu_check.py``). It generates noise: it proves code paths,
    memory and speed, never quality. Returns ``out_dir``, loadable with :func:`load_tokenizer` / :func:`load_model`.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    folder, out_dir = stand_in_dir(model_id), Path(out_dir)
    spec = json.loads((folder / "stand_in.json").read_text())
    tokenizer = _stand_in_tokenizer(spec)
    real_to_token = {real: token for token, real in spec["token_ids"].items()}
    remap = lambda i: tokenizer.convert_tokens_to_ids(real_to_token[i]) if i in real_to_token else i  # noqa: E731
    raw = json.loads((folder / "config.json").read_text())
    raw.update({k: remap(raw[k]) for k in ("bos_token_id", "eos_token_id") if raw.get(k) is not None})
    if tiny:
        raw.update(TINY_DIMS, vocab_size=len(tokenizer))
    config = AutoConfig.for_model(**{k: v for k, v in raw.items() if k not in ("architectures", "transformers_version")})
    config.architectures = raw["architectures"]
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    gen = json.loads((folder / "generation_config.json").read_text())
    gen.pop("transformers_version", None)
    for key in ("bos_token_id", "pad_token_id", "eos_token_id"):
        value = gen.get(key)
        gen[key] = [remap(v) for v in value] if isinstance(value, list) else remap(value)
    model.generation_config = GenerationConfig(**gen)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


# ---------------------------------------------------------------------------------------------------- building


def stdlib_docstrings(min_chars: int = 30) -> list[str]:
    """English text from the standard library: module, class and function docstrings, read with ``ast``."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idlelib", "lib2to3", "site-packages", "turtledemo", "ensurepip", "tkinter"}
    texts: list[str] = []
    for path in sorted(root.rglob("*.py")):
        if skip & set(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef))]
        for node in nodes:
            doc = ast.get_docstring(node)
            if doc and len(doc) >= min_chars:
                texts.append(inspect.cleandoc(doc))
    return texts


def tiny_corpus(recipe: TinyRecipe) -> list[str]:
    """The pretraining documents: stdlib docstrings plus unlabelled tickets, shuffled with the recipe's seed."""
    from helpers.data.generate import pretraining_texts

    docs = stdlib_docstrings() + pretraining_texts(recipe.ticket_texts)
    random.Random(recipe.seed).shuffle(docs)
    return docs


def train_tokenizer(docs: list[str], recipe: TinyRecipe) -> "PreTrainedTokenizerBase":
    """A byte-level BPE tokenizer with the chat special tokens and the course chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=recipe.vocab_size, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=2,
    )
    tok.train_from_iterator(docs, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=PAD, bos_token="<|bos|>", unk_token=None,
        model_max_length=recipe.max_position_embeddings, padding_side="right",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _blocks(docs: list[str], tokenizer: "PreTrainedTokenizerBase", seq_len: int) -> "Any":
    """Pack documents (each ended by <|end|>) into rows of ``seq_len + 1`` token ids."""
    import torch

    ids: list[int] = []
    tokenizer.model_max_length = 10**9  # whole documents are packed, not fed to the model as they are
    for start in range(0, len(docs), 512):
        for row in tokenizer(docs[start:start + 512], add_special_tokens=False)["input_ids"]:
            ids.extend(row + [tokenizer.eos_token_id])
    n = len(ids) // (seq_len + 1)
    return torch.tensor(ids[: n * (seq_len + 1)]).view(n, seq_len + 1)


def _heldout_loss(model: Any, blocks: Any, batch: int) -> float:
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(blocks), batch):
            x = blocks[i:i + batch]
            out = model(input_ids=x[:, :-1], labels=x[:, :-1])
            total += out.loss.item() * len(x)
            count += len(x)
    model.train()
    return total / max(count, 1)


def build_tiny(out_dir: Path = TINY_MODEL_DIR, recipe: TinyRecipe = TinyRecipe(), log=print) -> dict[str, Any]:
    """Pretrain the embedded tiny Llama from scratch and save it with its recipe, log and checksums."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    started = time.time()
    torch.manual_seed(recipe.seed)
    random.seed(recipe.seed)
    docs = tiny_corpus(recipe)
    n_held = max(1, int(len(docs) * recipe.heldout_fraction))
    held_docs, train_docs = docs[:n_held], docs[n_held:]
    log(f"corpus: {len(docs)} documents, {sum(map(len, docs)) / 1e6:.1f} M characters")
    tokenizer = train_tokenizer(train_docs, recipe)
    train_blocks = _blocks(train_docs, tokenizer, recipe.seq_len)
    held_blocks = _blocks(held_docs, tokenizer, recipe.seq_len)
    log(f"tokens: {train_blocks.numel() / 1e6:.2f} M train, {held_blocks.numel() / 1e3:.0f} k held-out")

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=recipe.hidden_size, intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_hidden_layers, num_attention_heads=recipe.num_attention_heads,
        num_key_value_heads=recipe.num_key_value_heads, max_position_embeddings=recipe.max_position_embeddings,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, rms_norm_eps=1e-5,
    )
    model = LlamaForCausalLM(config)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe.learning_rate, betas=(0.9, 0.95),
    )

    def lr_at(step: int) -> float:
        if step < recipe.warmup_steps:
            return recipe.learning_rate * (step + 1) / recipe.warmup_steps
        progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
        return recipe.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    gen = torch.Generator().manual_seed(recipe.seed)
    order = torch.randperm(len(train_blocks), generator=gen)
    rows: list[dict[str, float]] = []
    model.train()
    for step in range(recipe.steps):
        idx = order[(torch.arange(recipe.batch_size) + step * recipe.batch_size) % len(order)]
        x = train_blocks[idx]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        loss = model(input_ids=x[:, :-1], labels=x[:, :-1]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        row = {"step": step + 1, "loss": round(loss.item(), 4), "lr": lr_at(step),
               "elapsed_s": round(time.time() - started, 1)}
        if (step + 1) % 100 == 0 or step + 1 == recipe.steps:
            row["heldout_loss"] = round(_heldout_loss(model, held_blocks, recipe.batch_size), 4)
            log(f"step {step + 1}/{recipe.steps} loss {row['loss']:.3f} held-out {row['heldout_loss']:.3f} "
                f"({row['elapsed_s']:.0f} s)")
        rows.append(row)

    heldout = _heldout_loss(model, held_blocks, recipe.batch_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        max_new_tokens=128, do_sample=False,  # every special token the tokenizer has: else Trainer re-aligns and warns
    )
    model.save_pretrained(out_dir)
    tokenizer.model_max_length = recipe.max_position_embeddings
    tokenizer.save_pretrained(out_dir)
    with (out_dir / "training_log.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "loss", "lr", "elapsed_s", "heldout_loss"])
        writer.writeheader()
        writer.writerows(rows)
    result = {
        "recipe": asdict(recipe),
        "params": sum(p.numel() for p in model.parameters()),
        "corpus": {"documents": len(docs), "heldout_documents": n_held, "train_tokens": int(train_blocks.numel()),
                   "heldout_tokens": int(held_blocks.numel()),
                   "sources": ["python stdlib docstrings (ast)",
                               "support threads: helpers.data.generate.pretraining_texts(seed=7)"]},
        "heldout_loss": round(heldout, 4),
        "heldout_perplexity": round(math.exp(heldout), 2),
        "uniform_perplexity": len(tokenizer),
        "wall_time_s": round(time.time() - started, 1),
        "built_with": {"python": platform.python_version(), "torch": torch.__version__,
                       "transformers": __import__("transformers").__version__, "machine": platform.machine()},
    }
    (out_dir / "recipe.json").write_text(json.dumps(result, indent=2) + "\n")
    write_model_card(out_dir, result)
    write_checksums(out_dir)
    log(f"held-out perplexity {result['heldout_perplexity']} vs uniform {result['uniform_perplexity']}")
    return result


def write_model_card(folder: Path, result: dict[str, Any]) -> Path:
    """A README for ``data/tiny-llama``: what it is, how it was made, how well it models held-out text."""
    r, c = result["recipe"], result["corpus"]
    card = f"""# tiny-llama: the course's embedded offline model

A Llama-architecture causal LM ({result['params'] / 1e6:.2f} M parameters: {r['num_hidden_layers']} layers, hidden
{r['hidden_size']}, {r['num_attention_heads']} heads / {r['num_key_value_heads']} KV heads, tied embeddings) with its own
byte-level BPE tokenizer ({result['uniform_perplexity']} tokens) and a chat template whose assistant turns sit inside
`{{% generation %}}` markers. It exists so that every notebook runs offline on a CPU through the same QLoRA code path
as the GPU profiles. It continues text; it does not follow instructions until the course fine-tunes it.

- Built by `python -m helpers.models build-tiny` (seed {r['seed']}) in {result['wall_time_s'] / 60:.0f} min on
  {result['built_with']['machine']} with Python {result['built_with']['python']}, torch {result['built_with']['torch']}.
- Pretraining text: {c['documents']} documents ({', '.join(c['sources'])}), {c['train_tokens'] / 1e6:.2f} M training
  tokens, {r['steps']} steps of {r['batch_size']} x {r['seq_len']} tokens, AdamW, cosine schedule, peak lr {r['learning_rate']}.
- Why support threads: each is a ticket (generated with another seed than the course dataset) followed by an agent's
  prose reply that names the product, the order, the team and the priority, and sometimes quotes the ticket. They
  teach the model to *read* a ticket and copy from it, the ability a real base model brings to fine-tuning; a model
  pretrained on bare tickets continued text well but ignored what a ticket said. No JSON and no system prompt appear
  in the corpus: the format is fine-tuning's job.
- Held-out perplexity: **{result['heldout_perplexity']}** on {c['heldout_tokens']} tokens of held-out documents, against
  {result['uniform_perplexity']} for a uniform guess over the vocabulary.
- Files: `recipe.json` (every setting and the numbers above), `training_log.csv` (loss per step, held-out loss every
  100 steps), `SHA256SUMS` (checked by `tests/test_models.py`).

The standard library's docstrings change a little between Python versions, so a rebuild on another version gives a
slightly different model; the course ships this one and CI never retrains it.
"""
    path = folder / "README.md"
    path.write_text(card)
    return path


def write_checksums(folder: Path) -> Path:
    """Write SHA256SUMS for every file in ``folder`` (the course checks them in a test)."""
    lines = [f"{sha256(p)}  {p.name}" for p in sorted(folder.iterdir()) if p.is_file() and p.name != "SHA256SUMS"]
    target = folder / "SHA256SUMS"
    target.write_text("\n".join(lines) + "\n")
    return target


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    """``build-tiny`` or ``info``."""
    parser = argparse.ArgumentParser(prog="python -m helpers.models", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build-tiny", help="pretrain the embedded tiny model (about 20 minutes on 2 cores)")
    build.add_argument("--out", type=Path, default=TINY_MODEL_DIR)
    build.add_argument("--steps", type=int, default=TinyRecipe.steps)
    sub.add_parser("info", help="show the shipped tiny model's recipe and size")
    args = parser.parse_args(argv)
    if args.command == "build-tiny":
        build_tiny(args.out, TinyRecipe(steps=args.steps), log=lambda m: print(m, flush=True))
        return 0
    return info(TINY_MODEL_DIR)


def info(folder: Path) -> int:
    """``models info``: the shipped model's size and perplexity, after checking its files against ``SHA256SUMS``."""
    fix = "restore it with `git checkout -- data/tiny-llama` or rebuild it with `python -m helpers.models build-tiny`"
    bad = checksum_problems(folder)
    if bad:
        print(f"error: {folder}: {bad[0]}{f' (and {len(bad) - 1} more)' if len(bad) > 1 else ''}: {fix}")
        return 2
    keys = ("params", "heldout_perplexity", "uniform_perplexity")
    try:
        recipe = json.loads((folder / "recipe.json").read_text(encoding="utf-8"))
        numbers = {k: recipe[k] for k in keys}
        size = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
    except FileNotFoundError:
        print(f"error: {folder / 'recipe.json'} not found: {fix}")
        return 2
    except (OSError, ValueError, KeyError, TypeError) as err:
        what = f"lacks {err}" if isinstance(err, KeyError) else f"is unreadable ({type(err).__name__})"
        print(f"error: {folder / 'recipe.json'} {what}: {fix}")
        return 2
    print(json.dumps(numbers), f"{size:.1f} MB")
    return 0


if __name__ == "__main__":
    from helpers.cli import run

    sys.exit(run(main))
