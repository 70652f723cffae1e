"""The memory estimate of one training step, component by component: what :func:`estimate` counts and why.

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

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.config import expand_user

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


def weights_gib(shape: ModelShape, dtype: str, quantized: bool = False) -> float:
    """The weights of a loaded model in GiB: every parameter in ``dtype``, or the linear layers in 4-bit NF4."""
    linears, other = shape.num_layers * shape.block_linear_params(), shape.other_params()
    bits = linears * NF4_DQ_BITS / 8 + other * DTYPE_BYTES[dtype] if quantized else (linears + other) * DTYPE_BYTES[dtype]
    return bits / GIB
