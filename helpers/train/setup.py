"""The recipe's settings: LoRA and SFT configs, precision, defaults, the model's trainable parameters. Taught in 03.

Notebook 03 builds ``LoraConfig`` and ``SFTConfig`` in view; :func:`lora_config` and :func:`sft_config` build the same
ones for later notebooks (``tests/test_train.py`` checks that both agree). :func:`precision` picks bf16, fp16 or fp32
for the GPU at hand, and the model helpers (:func:`keep_4bit_trainable`, :func:`match_adapter_dtype`,
:func:`trainable_parameters`, :func:`last_checkpoint`) prepare a quantized model and find where a run stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from helpers import models
from helpers.config import SEED, Profile, bf16_fallback, fp32_compute

if TYPE_CHECKING:  # heavy imports stay out of module import time
    from peft import LoraConfig
    from transformers import PreTrainedModel
    from trl import SFTConfig


class TrainingSetupError(ValueError):
    """A training setup that would fail or silently train on nothing; the message names what, where and the fix."""


@dataclass(frozen=True)
class TrainDefaults:
    """The recipe's values that are the same on every profile (the profile sets sizes, steps and dtypes)."""

    lora_dropout: float = 0.05
    target_modules: str | tuple[str, ...] = "all-linear"  # every Linear in the blocks (q,k,v,o,gate,up,down)
    eval_steps: int = 100  # evaluate and checkpoint every N optimizer steps
    logging_steps: int = 5
    warmup_steps: float = 0.05  # < 1: a fraction of max_steps (transformers 5 dropped warmup_ratio)
    lr_scheduler_type: str = "cosine"
    early_stopping_patience: int = 3  # evaluations without a better eval loss before stopping
    save_total_limit: int = 2  # the best checkpoint is always kept on top of the newest ones
    packing_threshold: float = 0.2  # pack when padding would waste more than this fraction of the tokens


DEFAULTS = TrainDefaults()


# peft 0.21 asks a transformers 5 model for `is_gradient_checkpointing`, a property transformers 5 deprecated (it still
# works): a FutureWarning about the libraries' own code, not about the recipe. Filtered by its message only, where the
# helpers below build an SFTTrainer; notebook 03 builds its trainer itself and explains the warning.
PEFT_CHECKPOINTING_WARNING = r"`is_gradient_checkpointing` is deprecated"


def lora_config(cfg: Profile, dropout: float = DEFAULTS.lora_dropout,
                target_modules: str | Sequence[str] = DEFAULTS.target_modules) -> "LoraConfig":
    """The adapter of the course recipe: rank and alpha from the profile, causal-LM task."""
    from peft import LoraConfig

    targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=dropout, target_modules=targets,
                      bias="none", task_type="CAUSAL_LM")


def precision(cfg: Profile, capability: tuple[int, int] | None = None, log: Callable[[str], None] = print,
              fp16_check: Callable[[Profile], dict[str, Any]] | None = None) -> tuple[Profile, dict[str, bool]]:
    """The profile with bf16 switched to fp16 below compute capability 8, and the trainer's bf16/fp16 flags. Taught in 03.

    ``capability`` is the GPU's (major, minor); ``None`` reads it from CUDA (no GPU: fp32 training, both flags off).
    On a GPU that computes in fp16 (a T4), the model is checked for NaN/inf logits first (``fp16_check``, by default
    :func:`helpers.models.fp16_verdict`: once per model, GPU and library versions, then read from its record); a
    model that overflows is switched to fp32 compute, the known-good setting, with a message. An explicit
    ``capability`` (a rehearsal without that GPU) checks only when ``fp16_check`` is given.
    """
    on_device = capability is None and cfg.device == "cuda"
    if on_device:
        import torch

        capability = torch.cuda.get_device_capability(0) if torch.cuda.is_available() else None
    if capability is None:  # a CPU: fp32, or bf16 autocast when the profile asks for it
        half = cfg.bnb_compute_dtype if cfg.load_in_4bit else cfg.torch_dtype
        bf16 = cfg.device == "cpu" and half == "bfloat16"
        # use_cpu: a CPU profile trains on the CPU even on a machine with a GPU (03's method comparison runs cpu-tiny on
        # every profile; without it the Trainer moves the model to the GPU, and refuses a 4-bit one loaded on the CPU)
        return cfg, ({"bf16": bf16, "fp16": False, "use_cpu": True} if cfg.device == "cpu"
                     else {"bf16": False, "fp16": False})
    fallback = bf16_fallback(cfg, capability)  # the one bf16 rule: compute capability, not is_bf16_supported()
    if fallback is not None:
        log(f"compute capability {capability[0]}.{capability[1]} has no native bf16: profile {cfg.name!r} switched "
            f"to fp16 (torch_dtype and bnb_4bit_compute_dtype)")
        cfg = fallback
    half = cfg.bnb_compute_dtype if cfg.load_in_4bit else cfg.torch_dtype
    if half == "float16" and (fp16_check is not None or on_device):
        verdict = (fp16_check or models.fp16_verdict)(cfg)
        if not verdict["finite"]:
            log(f"{cfg.model_id} overflows in fp16 on this GPU ({verdict['detail']}): profile {cfg.name!r} switched "
                f"to fp32 compute (torch_dtype and bnb_4bit_compute_dtype), the known-good setting: finite, and "
                f"slower (a T4 computes fp32 at about an eighth of its fp16 rate)")
            return fp32_compute(cfg), {"bf16": False, "fp16": False}
    return cfg, {"bf16": half == "bfloat16", "fp16": half == "float16"}


def sft_config(cfg: Profile, output_dir: str | Path, packing: bool = False, flags: dict[str, bool] | None = None,
               defaults: TrainDefaults = DEFAULTS, seed: int = SEED, **overrides: Any) -> "SFTConfig":
    """The ``SFTConfig`` of the course recipe (assistant-only loss, eval + checkpoint every N steps)."""
    from trl import SFTConfig

    flags = flags if flags is not None else precision(cfg, log=lambda _m: None)[1]
    values: dict[str, Any] = dict(
        output_dir=str(output_dir),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_batch_size,
        per_device_eval_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=defaults.lr_scheduler_type,
        warmup_steps=defaults.warmup_steps,
        optim=cfg.optim,
        activation_checkpointing=cfg.gradient_checkpointing,  # transformers 5 renamed gradient_checkpointing
        max_length=cfg.max_seq_length,
        assistant_only_loss=True,
        packing=packing,
        eval_strategy="steps",
        eval_steps=defaults.eval_steps,
        save_steps=defaults.eval_steps,
        save_total_limit=defaults.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        logging_steps=defaults.logging_steps,
        report_to="none",
        seed=seed,
        dataloader_pin_memory=cfg.device == "cuda",  # pinned memory only speeds copies to a GPU; on a CPU torch warns
        **flags,
    )
    values.update(overrides)
    return SFTConfig(**values)


# Below this learning rate bf16 LoRA weights lose most Adam steps to rounding: an update of about lr is smaller than
# half the bf16 spacing (2^-8 relative) of a weight larger than ~256 x lr. On 03's cpu adapter, that freezes 47% of
# the LoRA weights at 2e-5 (07's DPO), 70% at 1e-5 (07's GRPO on cpu), 10% at 1e-4 and none at 2e-4.
BF16_WEIGHTS_MIN_LR = 2e-4


def match_adapter_dtype(model: "PreTrainedModel", cfg: Profile, learning_rate: float | None = None) -> int:
    """Keep the LoRA weights in fp32 unless the compute dtype is bf16 and the learning rate is large enough for bf16
    weights; returns how many tensors were cast. Taught in 03 and 07.

    TRL casts the adapter of a 4-bit model to bf16 (the QLoRA paper's choice). That suits bf16 GPUs and a CPU with
    native bf16 (:func:`helpers.config.cpu_compute`; there bf16 LoRA weights made a step 1.15x faster than fp32 ones,
    ``bench/bench_cpu_profile.py``), but on a CPU with fp32 compute every LoRA matmul would run in slow bf16, and fp16
    mixed precision (T4) needs fp32 trainable weights. Pass ``learning_rate``: below :data:`BF16_WEIGHTS_MIN_LR` (07's
    preference tuning) bf16 weights round most updates away, so they stay fp32 there too.
    """
    import torch

    if cfg.bnb_compute_dtype == "bfloat16" and (learning_rate is None or learning_rate >= BF16_WEIGHTS_MIN_LR):
        return 0
    cast = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
            cast += 1
    return cast


def keep_4bit_trainable(model: "PreTrainedModel") -> int:
    """Undo and switch off bitsandbytes' CPU inference packing of 4-bit weights; returns the layers changed. Taught in 03.

    On a CPU with AVX512-BF16, bitsandbytes 0.50 repacks a 4-bit layer for a faster kernel the first time the layer
    runs in eval mode without gradients (a generation, an evaluation pass). That kernel has no backward, so training
    afterwards gets no gradient through the frozen weights and quietly learns far less. Call this before training.
    """
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse
    from bitsandbytes.nn import Linear4bit

    changed = 0
    for module in model.modules():
        if not isinstance(module, Linear4bit):
            continue
        state = module.weight.quant_state
        packed = state is not None and getattr(state, "packing_format_for_cpu", False)
        if packed:
            module.weight.data, module.weight.quant_state = _convert_weight_packed_for_cpu_inverse(
                module.weight.data, state)
        changed += int(packed or getattr(module, "support_avx512bf16_for_cpu", False))
        module.support_avx512bf16_for_cpu = False  # evaluation passes during training must not repack either
    return changed


def trainable_parameters(model: "PreTrainedModel") -> dict[str, float]:
    """Trainable and total parameter counts (4-bit weights counted as parameters, not packed bytes). Taught in 03."""
    trainable = total = 0
    for param in model.parameters():
        n = param.numel()
        if getattr(param, "quant_state", None) is not None or param.__class__.__name__ == "Params4bit":
            n *= 2  # two 4-bit values are packed in each uint8 element
        total += n
        trainable += n if param.requires_grad else 0
    return {"trainable": trainable, "total": total, "percent": 100 * trainable / max(total, 1)}


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The newest ``checkpoint-N`` folder in ``output_dir`` (for ``resume=True``), or ``None``. Taught in 03."""
    from transformers.trainer_utils import get_last_checkpoint

    folder = Path(output_dir)
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None
