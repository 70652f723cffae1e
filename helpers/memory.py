"""Memory pre-flight: will this fine-tuning run fit on that GPU? Taught in 03_qlora_training.

``python -m helpers.memory --model NAME_OR_PATH --method qlora --seq-len 512 --batch 4 [--grad-checkpointing] --json``
prints the estimated peak memory of one training step, component by component, and a verdict per GPU (T4, L4,
A100 40/80 GB, H100): fits / does not fit / fits with these changes.

The model (decoder-only, Llama-style blocks: attention with grouped-query heads + SwiGLU MLP) is counted exactly
from its config; the rest follows how PyTorch, PEFT and bitsandbytes store tensors:

* weights: quantized linears in NF4 with double quantization = 4 bits + an fp32 absmax per 64 weights quantized
  to 8 bits with an fp32 constant per 256 blocks: 4 + 8/64 + 32/(64*256) = 4.127 bits per parameter (QLoRA paper,
  section 3); embeddings, norms and the LM head stay in the 16-bit (or fp32 on CPU) weight dtype.
* adapter: LoRA A (r x in) and B (out x r) per targeted linear, kept in fp32 (PEFT's default).
* gradients: one per trainable parameter, in its dtype.
* optimizer: AdamW keeps two fp32 moments (8 bytes / parameter); 8-bit AdamW two 8-bit moments (2 bytes);
  "paged" variants have the same size but can spill to CPU memory on a spike. Full fine-tuning of 16-bit weights
  adds an fp32 master copy (mixed precision, 4 bytes). The step itself needs a temporary the size of the trainable
  parameters (fp32), counted only where it exceeds the activations it replaces.
* activations: what autograd keeps per token and layer (norm inputs/outputs, q/k/v after repeat for GQA, attention
  output, the four SwiGLU tensors, LoRA dropout copies and masks); with gradient checkpointing only each layer's
  input, plus the part of one recomputed layer that exceeds the logits (freed before the first recomputation).
* logits: how the loss is computed decides this term. TRL's ``SFTTrainer`` (the course's path, ``loss="chunked"``)
  projects the hidden states through the LM head in tiles of at most 4,096 tokens x 32,768 vocabulary entries and
  folds each tile into a running log-sum-exp, so only one tile (on a GPU; about eight fp32 copies of it on a CPU, where
  the fold runs as plain torch ops), an fp32 gradient of the hidden states and a copy of them exist; a plain ``model(..., labels=...).loss`` (``loss="full"``) materialises batch x seq x vocab logits in the
  compute dtype, their fp32 copy, the log-softmax and its gradient.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from helpers.config import expand_user
from helpers.plots import _pyplot

GIB = 2**30
NF4_DQ_BITS = 4 + 8 / 64 + 32 / (64 * 256)  # 4.127 bits/param: NF4 + double-quantized absmax (QLoRA paper)
METHODS = ("full", "lora", "qlora")
OPTIMIZERS = ("adamw", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit")
LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
CUDA_OVERHEAD_GIB = 0.75  # CUDA context + cuBLAS workspace + allocator slack; not counted on CPU
LOSSES = ("chunked", "full")  # TRL SFTTrainer's tiled LM-head loss, or a plain loss over full logits
LOSS_TILE = (4096, 32768)  # tokens x vocabulary entries per tile of TRL's chunked log-prob kernel (trl 1.16)
# Tiles alive at once. With Triton (CUDA) the kernels fold a tile in place: one buffer. Without it (CPU) TRL runs the
# same math as torch ops, whose backward holds about eight fp32 copies of the tile (logits, probabilities, gradient,
# ...): measured by bench/bench_memory.py (case qlora-152k-sfttrainer).
LOSS_TILE_COPIES = {"cuda": 1, "cpu": 8}


class MemoryEstimateError(ValueError):
    """A model or setup the estimator cannot size; the message says what and the fix."""


class MemoryPreflightError(RuntimeError):
    """The run will not fit in the memory available; the message carries the verdict and the changes to try."""


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a decoder-only transformer that decide its memory."""

    name: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    tie_word_embeddings: bool = False
    assumed: tuple[str, ...] = ()  # numbers the config did not give, and what was used instead (said in the output)
    given_head_dim: int | None = None  # the config's head_dim where it is not hidden_size / heads (Gemma, Qwen3)

    @property
    def head_dim(self) -> int:
        return self.given_head_dim or self.hidden_size // self.num_heads

    @property
    def q_size(self) -> int:
        """Width of the attention's query and output projections: heads x head_dim (usually hidden_size)."""
        return self.head_dim * self.num_heads

    @property
    def kv_size(self) -> int:
        return self.head_dim * self.num_kv_heads

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each linear in one block."""
        h, i, kv, q = self.hidden_size, self.intermediate_size, self.kv_size, self.q_size
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def block_linear_params(self) -> int:
        return sum(a * b for a, b in self.linear_shapes().values())

    def other_params(self) -> int:
        """Embeddings, LM head (if untied) and RMSNorm weights: the parameters that are never quantized."""
        embed = self.vocab_size * self.hidden_size
        head = 0 if self.tie_word_embeddings else embed
        norms = self.num_layers * 2 * self.hidden_size + self.hidden_size
        return embed + head + norms

    def total_params(self) -> int:
        return self.num_layers * self.block_linear_params() + self.other_params()


# Shapes from the models' published config.json files (QLoRA paper LLaMA 1 sizes, Llama 3 8B, the course's
# GPU-profile models), so the estimator works offline.
PRESETS: dict[str, ModelShape] = {
    "llama-7b": ModelShape("llama-7b", 32000, 4096, 11008, 32, 32, 32),
    "llama-13b": ModelShape("llama-13b", 32000, 5120, 13824, 40, 40, 40),
    "llama-33b": ModelShape("llama-33b", 32000, 6656, 17920, 60, 52, 52),
    "llama-65b": ModelShape("llama-65b", 32000, 8192, 22016, 80, 64, 64),
    "llama-3-8b": ModelShape("llama-3-8b", 128256, 4096, 14336, 32, 32, 8),
    "qwen2.5-1.5b": ModelShape("qwen2.5-1.5b", 151936, 1536, 8960, 28, 12, 2, tie_word_embeddings=True),
    "qwen2.5-7b": ModelShape("qwen2.5-7b", 152064, 3584, 18944, 28, 28, 4),
    "llama-3-70b": ModelShape("llama-3-70b", 128256, 8192, 28672, 80, 64, 8),
}
ALIASES = {
    "huggyllama/llama-7b": "llama-7b", "huggyllama/llama-13b": "llama-13b", "huggyllama/llama-30b": "llama-33b",
    "huggyllama/llama-65b": "llama-65b", "llama-30b": "llama-33b",
    "meta-llama/meta-llama-3-8b": "llama-3-8b", "meta-llama/meta-llama-3-8b-instruct": "llama-3-8b",
    "meta-llama/llama-3.1-8b": "llama-3-8b", "meta-llama/llama-3.1-8b-instruct": "llama-3-8b",
    "qwen/qwen2.5-1.5b-instruct": "qwen2.5-1.5b", "qwen/qwen2.5-1.5b": "qwen2.5-1.5b",
    "qwen/qwen2.5-7b-instruct": "qwen2.5-7b", "qwen/qwen2.5-7b": "qwen2.5-7b",
    "meta-llama/meta-llama-3-70b": "llama-3-70b", "meta-llama/meta-llama-3-70b-instruct": "llama-3-70b",
    "meta-llama/llama-3.1-70b": "llama-3-70b", "meta-llama/llama-3.1-70b-instruct": "llama-3-70b",
}


@dataclass(frozen=True)
class GPU:
    """A GPU the verdict is given for: its name and the memory ``nvidia-smi`` reports."""

    name: str
    memory_gib: float


GPUS: tuple[GPU, ...] = (
    GPU("T4 16 GB", 15.0), GPU("L4 24 GB", 22.5), GPU("A100 40 GB", 40.0), GPU("A100 80 GB", 80.0),
    GPU("H100 80 GB", 79.6),
)
HEADROOM = 0.95  # leave 5% for fragmentation and spikes
MAX_SEQ_LEN = 2**20  # tokens per example: beyond any model's context window
MAX_BATCH = 2**16  # examples per device step: far beyond what any one GPU holds
# Config keys that count experts in mixture-of-experts models (Mixtral, Qwen-MoE/OLMoE, DeepSeek, others).
MOE_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")


@dataclass(frozen=True)
class TrainSetup:
    """How the model is trained: method, sequence, batch, LoRA, optimizer, checkpointing, dtypes."""

    method: str = "qlora"
    seq_len: int = 512
    batch: int = 4
    lora_r: int = 16
    lora_targets: tuple[str, ...] = LINEAR_NAMES
    lora_dropout: float = 0.05
    optimizer: str = "adamw"
    grad_checkpointing: bool = False
    dtype: str = "bfloat16"  # weights that are not quantized and the compute dtype
    device: str = "cuda"
    grad_accumulation: int = 1  # does not change memory; suggestions keep batch x accumulation constant
    loss: str = "chunked"  # "chunked": TRL SFTTrainer's tiled LM-head loss (the course); "full": logits materialised

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise MemoryEstimateError(f"loss {self.loss!r} is not one of {', '.join(LOSSES)}")
        if self.method not in METHODS:
            raise MemoryEstimateError(f"method {self.method!r} is not one of {', '.join(METHODS)}")
        if self.optimizer not in OPTIMIZERS:
            raise MemoryEstimateError(f"optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.dtype not in DTYPE_BYTES:
            raise MemoryEstimateError(f"dtype {self.dtype!r} is not one of {', '.join(DTYPE_BYTES)}")
        if self.seq_len < 1 or self.batch < 1 or self.lora_r < 1:
            raise MemoryEstimateError("seq_len, batch and lora_r must be >= 1")
        unknown = set(self.lora_targets) - set(LINEAR_NAMES)
        if unknown:
            raise MemoryEstimateError(f"unknown LoRA targets {sorted(unknown)}: use names from {', '.join(LINEAR_NAMES)}")


@dataclass
class Estimate:
    """Estimated peak memory of one training step, in bytes per component."""

    shape: ModelShape
    setup: TrainSetup
    components: dict[str, float]
    trainable_params: int
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(self.components.values())

    @property
    def total_gib(self) -> float:
        return self.total / GIB

    def gib(self) -> dict[str, float]:
        """Each component and the total in GiB, rounded to 3 decimals."""
        out = {k: round(v / GIB, 3) for k, v in self.components.items()}
        out["total"] = round(self.total_gib, 3)
        return out


# ---------------------------------------------------------------------------------------------------- shapes


def shape_from_config(config: Any, name: str = "") -> ModelShape:
    """A :class:`ModelShape` from a ``config.json`` dict or a loaded transformers config."""
    get = (lambda k, d=None: config.get(k, d)) if isinstance(config, dict) else (lambda k, d=None: getattr(config, k, d))
    if get("text_config") is not None:  # multimodal wrappers keep the language model's numbers here
        return shape_from_config(get("text_config"), name)
    missing = [k for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads") if get(k) is None]
    if missing:
        raise MemoryEstimateError(f"config {name or '?'} lacks {', '.join(missing)}: pass a decoder-only model's "
                                  "config.json or one of the presets " + ", ".join(PRESETS))
    check_config_numbers(get, name)
    hidden = int(get("hidden_size"))
    heads = int(get("num_attention_heads"))
    assumed = tuple(text for key, text in (
        ("intermediate_size", f"intermediate_size = 4 x hidden_size = {4 * hidden} (not in the config)"),
        ("num_key_value_heads", f"num_key_value_heads = num_attention_heads = {heads} (not in the config)"))
        if get(key) is None)
    return ModelShape(
        name=name or str(get("_name_or_path", "") or get("model_type", "model")),
        vocab_size=int(get("vocab_size")), hidden_size=hidden,
        intermediate_size=int(get("intermediate_size") or 4 * hidden), num_layers=int(get("num_hidden_layers")),
        num_heads=heads, num_kv_heads=int(get("num_key_value_heads") or heads),
        tie_word_embeddings=bool(get("tie_word_embeddings", False)), assumed=assumed,
        given_head_dim=get("head_dim") if get("head_dim") not in (None, hidden // heads) else None,
    )


# Beyond these a config.json is a typo (an extra zero), not a model: the largest released dense models stay well below.
CONFIG_LIMITS = {"vocab_size": 2_000_000, "hidden_size": 65_536, "intermediate_size": 262_144,
                 "num_hidden_layers": 1_024, "num_attention_heads": 1_024, "head_dim": 1_024}


def check_config_numbers(get: Any, name: str = "") -> None:
    """Refuse sizes that are not whole numbers >= 1 and mixture-of-experts models, naming the key."""
    where = name or "the config"
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads"):
        value = get(key)
        if value is None and key in ("intermediate_size", "num_key_value_heads"):
            continue  # optional: 4 x hidden, and as many KV heads as heads
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise MemoryEstimateError(f"{where}: {key} is {value!r}, not a whole number >= 1: fix the config.json "
                                      f"(copy it from the model's hub page) or use a preset ({', '.join(PRESETS)})")
    hidden, heads = get("hidden_size"), get("num_attention_heads")
    kv_heads = get("num_key_value_heads") or heads
    fix = "fix the config.json (copy it from the model's hub page)"
    head_dim = get("head_dim")
    if head_dim is not None and (isinstance(head_dim, bool) or not isinstance(head_dim, int) or
                                 not 1 <= head_dim <= CONFIG_LIMITS["head_dim"]):
        raise MemoryEstimateError(f"{where}: head_dim is {head_dim!r}, not a whole number from 1 to "
                                  f"{CONFIG_LIMITS['head_dim']} (released models use 64 to 256): {fix}")
    if get("head_dim") is None and hidden % heads:
        raise MemoryEstimateError(f"{where}: hidden_size {hidden} is not divisible by num_attention_heads {heads}, and "
                                  f"no head_dim is given: no such model exists; {fix}")
    if kv_heads > heads or heads % kv_heads:
        raise MemoryEstimateError(f"{where}: num_key_value_heads {kv_heads} must divide num_attention_heads {heads} "
                                  f"(grouped-query attention shares each KV head among whole groups): {fix}")
    for key, most in CONFIG_LIMITS.items():
        value = get(key)
        if isinstance(value, int) and value > most:
            raise MemoryEstimateError(f"{where}: {key} = {value} is beyond any released model (the largest are below "
                                      f"{most}): {fix}")
    for key in MOE_KEYS:
        experts = get(key)
        if isinstance(experts, int) and not isinstance(experts, bool) and experts > 1:
            raise MemoryEstimateError(f"{where} is a mixture-of-experts model ({key}={experts}): the estimator counts "
                                      f"dense Llama-style blocks and would size it like one expert, several times too "
                                      f"small: measure it on the GPU instead (bench/bench_memory.py) or use a dense "
                                      f"model")


def resolve_shape(model: str | Path | Any) -> ModelShape:
    """A preset name, a local folder / ``config.json``, a cached hub id, or a loaded config -> shape. Taught in 03."""
    if isinstance(model, ModelShape):
        return model
    if not isinstance(model, (str, Path)):
        return shape_from_config(getattr(model, "config", model))

    text = str(model)
    if not text.strip():
        raise MemoryEstimateError(f"an empty model name: pass a preset ({', '.join(PRESETS)}), a model folder or a "
                                  f"config.json")
    key = ALIASES.get(text.lower(), text.lower())
    if key in PRESETS:
        return PRESETS[key]
    try:
        path = expand_user(text)
    except ValueError as err:
        raise MemoryEstimateError(str(err)) from None
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        return shape_from_config(read_config(path), str(path.parent) if path.name == "config.json" else str(path))
    if os.path.lexists(path) and path.is_symlink() and not path.exists():
        raise MemoryEstimateError(f"{path} is a symlink that leads nowhere or loops: point it at a model folder or "
                                  f"config.json")
    if text.startswith((".", "/", "~")) or path.suffix == ".json" or os.path.lexists(path):
        raise MemoryEstimateError(f"no config.json at {path}: pass a model folder, a config.json or a preset "
                                  f"({', '.join(PRESETS)})")
    return _shape_from_hub(text)


def read_config(path: Path) -> dict[str, Any]:
    """A ``config.json`` as a dict, or a one-line :class:`MemoryEstimateError` saying what is wrong with the file."""
    try:
        config = json.loads(path.read_bytes().decode("utf-8-sig"))
    except json.JSONDecodeError as err:
        raise MemoryEstimateError(f"{path}:{err.lineno}: not valid JSON ({err.msg}): restore the model's "
                                  f"config.json") from None
    except UnicodeDecodeError as err:
        raise MemoryEstimateError(f"{path}: not UTF-8 text (byte {err.start + 1}): is this a config.json? restore "
                                  f"the model's config.json") from None
    except (OSError, RecursionError) as err:
        raise MemoryEstimateError(f"{path}: cannot read it ({getattr(err, 'strerror', None) or err})") from None
    if not isinstance(config, dict):
        raise MemoryEstimateError(f"{path}: a JSON {type(config).__name__}, not an object of model settings: pass "
                                  f"the model's config.json")
    return config


def _shape_from_hub(model_id: str) -> ModelShape:
    """A hub id: the cached config.json, else a download when online, else a clear error."""
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(model_id, "config.json")
    except ValueError:  # huggingface_hub's HFValidationError: ' ', 'a b', '-x' cannot be hub ids
        raise MemoryEstimateError(f"{model_id!r} is not a preset, a local path or a hub id (owner/name): use a preset "
                                  f"({', '.join(PRESETS)}) or a model folder / config.json path") from None
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
    if not isinstance(cached, str) and not offline:
        try:
            from huggingface_hub import hf_hub_download

            cached = hf_hub_download(model_id, "config.json")
        except Exception as err:  # network errors, gated repos, typos all end here
            raise MemoryEstimateError(f"cannot fetch config.json of {model_id!r} ({type(err).__name__}): pass a "
                                      f"local config.json or a preset ({', '.join(PRESETS)})") from None
    if not isinstance(cached, str):
        raise MemoryEstimateError(f"{model_id!r} is not a preset and its config.json is not cached (offline): use a "
                                  f"preset ({', '.join(PRESETS)}) or a local config.json path")
    return shape_from_config(read_config(Path(cached)), model_id)


# ---------------------------------------------------------------------------------------------------- estimate


def _optimizer_bytes_per_param(optimizer: str) -> float:
    return 2.0 if optimizer.endswith("8bit") else 8.0


def estimate(shape: ModelShape, setup: TrainSetup) -> Estimate:
    """Peak memory of one training step, component by component (see the module docstring). Taught in 03."""
    b = DTYPE_BYTES[setup.dtype]
    L, h, i, V = shape.num_layers, shape.hidden_size, shape.intermediate_size, shape.vocab_size
    tokens = setup.seq_len * setup.batch
    linears = L * shape.block_linear_params()
    other = shape.other_params()
    notes: list[str] = []

    weights = weights_gib(shape, setup.dtype, quantized=setup.method == "qlora") * GIB

    shapes = shape.linear_shapes()
    if setup.method == "full":
        trainable = linears + other
        adapter = 0.0
        grads = trainable * b
        master = 4.0 if b < 4 else 0.0  # mixed precision keeps an fp32 copy of 16-bit weights
        optimizer = trainable * (_optimizer_bytes_per_param(setup.optimizer) + master)
        step_temp = trainable * 4.0 if not setup.optimizer.endswith("8bit") else trainable * 1.0
    else:
        trainable = L * sum(setup.lora_r * (shapes[t][0] + shapes[t][1]) for t in setup.lora_targets)
        adapter = trainable * 4.0  # PEFT keeps LoRA weights in fp32
        grads = trainable * 4.0
        optimizer = trainable * _optimizer_bytes_per_param(setup.optimizer)
        step_temp = trainable * 4.0

    # Saved-for-backward elements per token and layer (Llama block, SDPA attention without an s x s matrix).
    attn = 2 * h + 3 * h + h + h  # norm in/out, q + k,v repeated to all heads, attention output, o_proj input copy
    mlp = 2 * h + 4 * i  # norm in/out, gate, up, silu(gate), silu(gate)*up
    per_layer = (attn + mlp) * b
    if setup.method != "full" and setup.lora_dropout > 0:
        # each adapted linear keeps its own dropout copy of the input (+ a 1-byte mask)
        per_layer += sum(shapes[t][0] for t in setup.lora_targets) * (b + 1)
    if setup.method != "full":
        per_layer += sum(setup.lora_r for _ in setup.lora_targets) * b  # x @ A, small
    if setup.loss == "chunked":
        # one [tokens x vocab] tile, the fp32 gradient of the hidden states and the gathered hidden states; full
        # fine-tuning also accumulates the LM head's gradient in fp32
        tile = min(tokens, LOSS_TILE[0]) * min(V, LOSS_TILE[1])
        tile *= b if setup.device == "cuda" else 4 * LOSS_TILE_COPIES["cpu"]  # the CPU path computes in fp32
        logits = tile + tokens * h * (4 + b) + (V * h * 4 if setup.method == "full" else 0)
    else:
        logits = tokens * V * (b + 4 + 4 + 4 if b < 4 else 12)
    if setup.grad_checkpointing:
        # Layer inputs are kept; one layer is recomputed at a time during backward, after the LM head's backward
        # has freed the logits, so only the part of the recomputed layer above the logits adds to the peak.
        activations = tokens * L * h * b + max(0.0, tokens * per_layer - logits)
    else:
        activations = tokens * L * per_layer
    activations += tokens * 3 * h * b  # embeddings output, final norm in/out
    if setup.method == "qlora":
        # one linear dequantized to the compute dtype at a time
        activations += max(a * c for a, c in shapes.values()) * b
    # The optimizer step runs after activations are freed: its temporaries only count where they exceed them.
    components = {
        "weights": weights,
        "adapter": adapter,
        "gradients": grads,
        "optimizer": optimizer,
        "activations": activations,
        "logits": logits,
        "optimizer_step_extra": max(0.0, step_temp - activations - logits),
    }
    if setup.device == "cuda":
        components["cuda_overhead"] = CUDA_OVERHEAD_GIB * GIB
    if setup.optimizer.startswith("paged"):
        notes.append("paged optimizer: its state can spill to CPU RAM on a spike instead of failing")
    return Estimate(shape, setup, components, int(trainable), notes)


# ---------------------------------------------------------------------------------------------------- verdicts


def _changes(setup: TrainSetup) -> list[tuple[str, TrainSetup]]:
    """Cheapest-first changes that lower memory, each applied on top of the previous ones."""
    steps: list[tuple[str, TrainSetup]] = []
    s = setup
    if not s.grad_checkpointing:
        s = replace(s, grad_checkpointing=True)
        steps.append(("turn on gradient checkpointing (about 30% slower, far fewer activations)", s))
    if not s.optimizer.endswith("8bit"):
        s = replace(s, optimizer="paged_adamw_8bit")
        steps.append(("use optim='paged_adamw_8bit'", s))
    while s.batch > 1:
        accum = s.grad_accumulation * 2
        s = replace(s, batch=s.batch // 2, grad_accumulation=accum)
        steps.append((f"per_device_train_batch_size={s.batch} with gradient_accumulation_steps={accum} "
                      "(same effective batch)", s))
    if s.method == "full":
        s = replace(s, method="lora")
        steps.append(("train a LoRA adapter instead of all weights", s))
    if s.method == "lora":
        s = replace(s, method="qlora")
        steps.append(("load the base in 4-bit NF4 (QLoRA)", s))
    while s.seq_len > 256:
        s = replace(s, seq_len=max(256, s.seq_len // 2))
        steps.append((f"max_length={s.seq_len} (check how many examples get truncated)", s))
    return steps


def _fit(shape: ModelShape, setup: TrainSetup, memory_gib: float) -> tuple[str, Estimate, Estimate, list[str]]:
    """(verdict, estimate as asked, estimate after the changes walked, changes applied) for one memory size."""
    budget = memory_gib * HEADROOM
    first = estimate(shape, setup)
    if first.total_gib <= budget:
        return "fits", first, first, []
    applied: list[str] = []
    last = first
    for description, changed in _changes(setup):
        applied.append(description)
        last = estimate(shape, changed)
        if last.total_gib <= budget:
            return "fits with these changes", first, last, applied
    return "does not fit", first, last, applied


def verdict(shape: ModelShape, setup: TrainSetup, memory_gib: float) -> dict[str, Any]:
    """``fits`` / ``fits with these changes`` (listed) / ``does not fit`` for one memory size. Taught in 03."""
    result, first, last, applied = _fit(shape, setup, memory_gib)
    if result == "fits":
        return {"verdict": "fits", "total_gib": round(first.total_gib, 2), "changes": []}
    if result == "fits with these changes":
        # total_gib: this setup as asked; changed_gib: after the changes
        return {"verdict": "fits with these changes", "total_gib": round(first.total_gib, 2),
                "changed_gib": round(last.total_gib, 2), "changes": net_changes(applied)}
    return {"verdict": "does not fit", "total_gib": round(first.total_gib, 2), "changes": [],
            "smallest_gib": round(last.total_gib, 2)}


def gpu_estimates(shape: ModelShape, setup: TrainSetup, gpus: Sequence[GPU] = GPUS) -> dict[str, tuple[str, Estimate]]:
    """Per GPU, its verdict and the estimate it is about: the setup as asked when it fits, else after the changes
    (``fits with these changes``), else the smallest setup tried (``does not fit``). Drawn by :func:`plot_memory`."""
    out = {}
    for gpu in gpus:
        result, _first, last, _applied = _fit(shape, setup, gpu.memory_gib)
        out[gpu.name] = (result, last)
    return out


def plot_memory(shape: ModelShape, setup: TrainSetup, gpus: Sequence[GPU] = GPUS, title: str = "") -> Any:
    """The estimate as stacked bars, as asked and per GPU (after the changes it needs), capacity as lines.

    Taught in 03_qlora_training. Each GPU's bar is the setup its verdict is about; the solid line is its memory, the
    dashed line what the pre-flight lets a run use (5% headroom). A capacity far above every bar is written at the
    top instead of squashing the bars.
    """
    plt = _pyplot()
    bars = {"as asked": ("", estimate(shape, setup))}
    bars.update(gpu_estimates(shape, setup, gpus))
    capacity = {gpu.name: gpu.memory_gib for gpu in gpus}
    names = [k for k in bars["as asked"][1].components if any(e.components.get(k, 0) > 0 for _, e in bars.values())]
    highest = max(e.total_gib for _, e in bars.values())
    near = [c for c in capacity.values() if c <= 3 * highest]  # capacities drawn to scale with the bars
    top = max([highest * 1.25] + [c * 1.08 for c in near])
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    xs = range(len(bars))
    bottoms = [0.0] * len(bars)
    for j, name in enumerate(names):
        heights = [e.components.get(name, 0.0) / GIB for _, e in bars.values()]
        ax.bar(xs, heights, 0.6, bottom=bottoms, label=name.replace("_", " "), color=f"C{j}", gid=name)
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    for x, gpu in enumerate(bars):
        if gpu not in capacity:
            continue
        if capacity[gpu] <= top:
            ax.hlines(capacity[gpu], x - 0.4, x + 0.4, colors="black", lw=2, gid=f"capacity {gpu}")
            ax.hlines(capacity[gpu] * HEADROOM, x - 0.4, x + 0.4, colors="black", lw=1, linestyles="--")
        else:
            ax.text(x, top * 0.97, f"{capacity[gpu]:g} GiB\n(above)", ha="center", va="top", fontsize=7,
                    gid=f"capacity {gpu}")
    labels = [f"{name}\n{result.replace('fits with these changes', 'fits with changes') or 'this setup'}\n"
              f"{est.total_gib:.2f} GiB" for name, (result, est) in bars.items()]
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_ylim(0, top)
    ax.set_ylabel("GiB (estimated peak of one step)")
    model = shape.name.rstrip("/").split("/")[-1]  # a folder or hub id: its last part
    ax.set_title(title or f"{model}, {setup.method}, seq {setup.seq_len} x batch {setup.batch}: what fills the memory",
                 fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    plt.close(fig)
    return fig


def net_changes(applied: list[str]) -> list[str]:
    """The changes to make, one per setting: ``batch=8, then 4, then 2`` is just the last value."""
    def knob(description: str) -> str:
        return description.split("=")[0] if "=" in description.split(" ")[0] else description

    last = {knob(d): d for d in applied}
    return [d for d in applied if last[knob(d)] == d]


def report(shape: ModelShape, setup: TrainSetup, gpus: Sequence[GPU] = GPUS) -> dict[str, Any]:
    """The estimate and the verdict for every GPU, as one JSON-ready dict. Taught in 03."""
    est = estimate(shape, setup)
    return {
        "model": asdict(shape),
        "params": shape.total_params(),
        "setup": asdict(setup),
        "trainable_params": est.trainable_params,
        "components_gib": est.gib(),
        "total_gib": round(est.total_gib, 3),
        "notes": est.notes,
        "gpus": {gpu.name: {"memory_gib": gpu.memory_gib, **verdict(shape, setup, gpu.memory_gib)} for gpu in gpus},
    }


def verdict_grid(cases: dict[str, tuple[ModelShape, TrainSetup]], gpus: Sequence[GPU] = GPUS
                 ) -> dict[str, dict[str, str]]:
    """The verdict of each named (shape, setup) case on each GPU: ``{case: {gpu: verdict}}``. Taught in 03."""
    return {name: {gpu.name: verdict(shape, setup, gpu.memory_gib)["verdict"] for gpu in gpus}
            for name, (shape, setup) in cases.items()}


def trainable_share(shape: ModelShape, setup: TrainSetup) -> float:
    """Trainable parameters in % of all parameters (base + adapter), counted as ``train.trainable_parameters`` does.

    Taught in 03: the share depends on the model's width and on the rank and targets, so a tiny model's share says
    nothing about a 7B model's.
    """
    est = estimate(shape, setup)
    total = shape.total_params() + (0 if setup.method == "full" else est.trainable_params)
    return 100 * est.trainable_params / total


def method_rows(shape: ModelShape, setup: TrainSetup) -> list[dict[str, Any]]:
    """Estimated trainable parameters, weights and peak memory of each method (full, LoRA, QLoRA). Taught in 03.

    Only ``setup.method`` changes between rows; everything else (sequence, batch, rank, optimizer) is kept.
    """
    rows = []
    for method in METHODS:
        changed = replace(setup, method=method)
        est = estimate(shape, changed)
        rows.append({"method": method, "trainable_params": est.trainable_params,
                     "trainable_%": round(trainable_share(shape, changed), 2),
                     "weights_mb (estimated)": round(est.components["weights"] / 2**20, 1),
                     "est_peak_gib": round(est.total_gib, 3)})
    return rows


STRATEGIES = ("ddp", "zero2", "fsdp")  # what each GPU holds: everything / weights + a shard of the rest / a shard
SHARDED = {"ddp": (), "zero2": ("gradients", "optimizer", "optimizer_step_extra"),
           "fsdp": ("weights", "adapter", "gradients", "optimizer", "optimizer_step_extra")}


def per_device(est: Estimate, devices: int, strategy: str) -> dict[str, float]:
    """Each GPU's share of an estimate (GiB by component and ``total``) under DDP, ZeRO-2 or FSDP / ZeRO-3.

    Taught in 08_scale_out. DDP keeps a whole copy on every GPU; ZeRO-2 splits gradients and optimizer state across
    the ``devices``; FSDP (= ZeRO-3) splits the weights too, and while a layer runs it gathers that layer whole (two
    layers counted: the one running and the next, prefetched). Activations and logits depend on the per-device batch
    (``est.setup.batch``) and are not split.
    """
    if strategy not in STRATEGIES:
        raise MemoryEstimateError(f"strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
    if devices < 1:
        raise MemoryEstimateError(f"devices must be >= 1, got {devices}")
    out = {k: v / devices if k in SHARDED[strategy] else v for k, v in est.components.items()}
    if strategy == "fsdp" and devices > 1:
        layer = (est.components["weights"] - est.shape.other_params() * DTYPE_BYTES[est.setup.dtype]) \
            / est.shape.num_layers
        out["gathered_layers"] = 2 * layer * (1 - 1 / devices)
    gib = {k: round(v / GIB, 3) for k, v in out.items()}
    gib["total"] = round(sum(out.values()) / GIB, 3)
    return gib


def setup_from_profile(cfg: Any, method: str = "qlora", lora_targets: Sequence[str] = LINEAR_NAMES) -> TrainSetup:
    """The :class:`TrainSetup` a course profile trains with. Taught in 03."""
    optimizer = {"adamw_torch": "adamw", "adamw_torch_fused": "adamw"}.get(cfg.optim, cfg.optim)
    if optimizer not in OPTIMIZERS:
        optimizer = "adamw"
    return TrainSetup(method=method, seq_len=cfg.max_seq_length, batch=cfg.per_device_batch_size,
                      lora_r=cfg.lora_r, lora_targets=tuple(lora_targets), optimizer=optimizer,
                      grad_checkpointing=cfg.gradient_checkpointing,
                      dtype=cfg.bnb_compute_dtype if method == "qlora" else cfg.torch_dtype, device=cfg.device,
                      grad_accumulation=cfg.gradient_accumulation_steps)


def available_gib(device: str) -> tuple[str, float]:
    """The memory a run can use here: the first GPU's total, or the machine's available RAM on CPU."""
    if device == "cuda":
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            return props.name, props.total_memory / GIB
    import psutil  # a dependency of accelerate

    return "CPU RAM (available)", psutil.virtual_memory().available / GIB


def free_gib(device: str) -> tuple[str, float]:
    """Memory free for one more model now: the GPU's free memory (other processes and this one's models counted), or
    the machine's available RAM on a CPU."""
    if device == "cuda":
        import torch

        if torch.cuda.is_available():
            free, _total = torch.cuda.mem_get_info()
            return f"{torch.cuda.get_device_properties(0).name} (free now)", free / GIB
    return available_gib("cpu")


def weights_gib(shape: ModelShape, dtype: str, quantized: bool = False) -> float:
    """The weights of a loaded model in GiB: every parameter in ``dtype``, or the linear layers in 4-bit NF4."""
    linears, other = shape.num_layers * shape.block_linear_params(), shape.other_params()
    bits = linears * NF4_DQ_BITS / 8 + other * DTYPE_BYTES[dtype] if quantized else (linears + other) * DTYPE_BYTES[dtype]
    return bits / GIB


def load_preflight(cfg: Any, model: Any = None, quantized: bool = False, log: Any = print) -> float | None:
    """Before loading a model: say what its weights take and what is free; raise :class:`MemoryPreflightError` when
    it cannot fit, instead of an out-of-memory error halfway through the load (06_export prints its lines).

    ``models.load_model`` calls it before every full-precision load (a 16-bit 7B model is ~14 GiB: two at once do not
    fit a 24 GB card). Returns the weights' GiB, or None when the model's config cannot be read (nothing is checked).
    """
    try:
        shape = resolve_shape(model if model is not None else cfg.model_id)
    except MemoryEstimateError:
        return None
    dtype = cfg.torch_dtype
    need = weights_gib(shape, dtype, quantized)
    where, free = free_gib(cfg.device)
    log(f"loading {Path(str(shape.name)).name} ({'4-bit NF4' if quantized else dtype}): ~{need:.2f} GiB of weights, "
        f"{free:.1f} GiB free on {where}")
    if need > free * HEADROOM:
        raise MemoryPreflightError(
            f"{shape.name} in {'4-bit' if quantized else dtype} needs ~{need:.1f} GiB for its weights alone and "
            f"{free:.1f} GiB is free on {where}: free the models you are done with first (`del model`, then "
            f"`models.free_memory()`), or restart the runtime and run from this section")
    return need


def used_gib(device: str = "cpu") -> float:
    """Memory in use now: CUDA tensors on a GPU, else this process's resident set (RSS). Taught in 03."""
    if device == "cuda":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.memory_allocated() / GIB
    import psutil  # a dependency of accelerate

    return psutil.Process().memory_info().rss / GIB


def reset_peak(device: str = "cpu") -> None:
    """Start measuring peak GPU memory now (before training); nothing to do on a CPU. Taught in 03."""
    if device == "cuda":
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str = "cpu") -> float | None:
    """Peak GPU memory held by tensors since :func:`reset_peak`, in GiB; ``None`` on a CPU. Taught in 03.

    It is what the estimator predicts minus the CUDA context (``cuda_overhead``), which torch does not count.
    """
    if device != "cuda":
        return None
    import torch

    return torch.cuda.max_memory_allocated() / GIB if torch.cuda.is_available() else None


def preflight(cfg: Any, method: str = "qlora", limit_gib: float | None = None, model: Any = None,
              log: Any = print) -> dict[str, Any]:
    """Estimate the profile's run before loading anything; raise :class:`MemoryPreflightError` if it cannot fit.

    Taught in 03. ``limit_gib`` overrides the detected memory (GPU total, or available RAM on CPU).
    """
    shape = resolve_shape(model if model is not None else cfg.model_id)
    setup = setup_from_profile(cfg, method)
    where, memory_gib = ("given limit", limit_gib) if limit_gib is not None else available_gib(setup.device)
    result = verdict(shape, setup, memory_gib)
    budget = memory_gib * HEADROOM
    log(f"memory pre-flight: {shape.name} {method}, seq {setup.seq_len} x batch {setup.batch}: "
        f"~{result['total_gib']:.2f} GiB needed, {budget:.1f} GiB usable on {where} ({memory_gib:.1f} GiB less "
        f"{1 - HEADROOM:.0%} headroom): {result['verdict']}")
    if result["verdict"] == "fits with these changes":
        raise MemoryPreflightError(
            f"{shape.name} ({method}, seq {setup.seq_len}, batch {setup.batch}) needs ~{result['total_gib']:.1f} GiB, "
            f"more than the {budget:.1f} GiB usable on {where}; with these changes it needs "
            f"~{result['changed_gib']:.1f} GiB: {'; '.join(result['changes'])}")
    if result["verdict"] != "fits":
        raise MemoryPreflightError(
            f"{shape.name} ({method}, seq {setup.seq_len}, batch {setup.batch}) needs ~{result['total_gib']:.1f} GiB "
            f"and even the smallest setup tried needs ~{result['smallest_gib']:.1f} GiB, more than the "
            f"{budget:.1f} GiB usable on {where}: use a smaller model or a bigger GPU")
    return result


# ---------------------------------------------------------------------------------------------------- CLI


def _print_table(rep: dict[str, Any]) -> None:
    s = rep["setup"]
    params = rep["params"]
    size = f"{params / 1e9:.2f} B" if params >= 1e9 else f"{params / 1e6:.1f} M"
    print(f"{rep['model']['name']}: {size} params, {s['method']}, seq {s['seq_len']} x batch "
          f"{s['batch']}, LoRA r={s['lora_r']}, {s['optimizer']}, grad checkpointing {s['grad_checkpointing']}")
    print(f"trainable parameters: {rep['trainable_params']:,}")
    for name, value in rep["components_gib"].items():
        print(f"  {name:<22}{value:>10.3f} GiB")
    for note in rep["notes"]:
        print(f"  note: {note}")
    for gpu, v in rep["gpus"].items():
        line = f"{gpu:<12} {v['verdict']}"
        if v["changes"]:
            line += f" (~{v['changed_gib']:.1f} GiB after): " + "; ".join(v["changes"])
        elif v["verdict"] == "does not fit":
            line += f" (even the smallest setup tried needs ~{v['smallest_gib']:.1f} GiB)"
        print(line)


def _between(low: int, high: int) -> Any:
    """An argparse type: a whole number in [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    """Command line: estimate one setup and print the components and a verdict per GPU."""
    parser = argparse.ArgumentParser(prog="python -m helpers.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help=f"preset ({', '.join(PRESETS)}), model folder, config.json "
                                                       "or cached hub id")
    parser.add_argument("--method", choices=METHODS, default="qlora")
    parser.add_argument("--seq-len", type=_between(1, MAX_SEQ_LEN), default=512)
    parser.add_argument("--batch", type=_between(1, MAX_BATCH), default=4)
    parser.add_argument("--lora-r", type=_between(1, 4096), default=16)
    parser.add_argument("--lora-targets", default=",".join(LINEAR_NAMES), help="comma-separated linear names")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw")
    parser.add_argument("--dtype", choices=tuple(DTYPE_BYTES), default="bfloat16")
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    targets = tuple(t.strip() for t in args.lora_targets.split(",") if t.strip())
    if args.method != "full" and not targets:
        parser.error(f"--lora-targets {args.lora_targets!r} names no linear layer: use names from "
                     f"{','.join(LINEAR_NAMES)}")
    try:
        shape = resolve_shape(args.model)
        setup = TrainSetup(method=args.method, seq_len=args.seq_len, batch=args.batch, lora_r=args.lora_r,
                           lora_targets=tuple(t.strip() for t in args.lora_targets.split(",") if t.strip()),
                           optimizer=args.optimizer, grad_checkpointing=args.grad_checkpointing, dtype=args.dtype)
    except MemoryEstimateError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rep = report(shape, setup)
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        _print_table(rep)
        for text in shape.assumed:
            print(f"assumed: {text}")
    return 0


if __name__ == "__main__":
    from helpers.cli import run

    sys.exit(run(main))
