"""The recipe in one call: load, check, train, save (:func:`fit`, :func:`train_adapter`, :func:`quick_run`).

Taught in 03_qlora_training ("teach once, import after"): notebooks 04-08 and the script train with :func:`fit`, which
runs the memory pre-flight and the mask check before the model loads, then the same SFTTrainer notebook 03 builds in
view. :func:`quick_run` is 03's short comparison of full fine-tuning, LoRA and QLoRA.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from helpers import models  # models.load_model, looked up when called: tests replace it
from helpers import memory
from helpers.config import SEED, Profile, set_seed
from helpers.data.rows import load_split
from helpers.models import bnb_config, free_memory, load_tokenizer, sharded_launch
from helpers.train.curves import LiveCurves
from helpers.train.manifest import final_metrics, write_manifest
from helpers.train.masks import check_assistant_masks, packing_helps, padding_fraction, split_path, to_dataset
from helpers.train.setup import DEFAULTS, PEFT_CHECKPOINTING_WARNING, TrainDefaults, TrainingSetupError, keep_4bit_trainable, last_checkpoint, lora_config, match_adapter_dtype, precision, sft_config, trainable_parameters

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

    started = time.time()
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else Path(output_dir) / "checkpoints"
    cfg, flags = precision(cfg)
    fit_report = memory.preflight(cfg, limit_gib=memory_limit_gib)  # raises before loading when it cannot fit
    tokenizer = load_tokenizer(cfg)
    train_check = check_assistant_masks(tokenizer, train_rows, cfg.max_seq_length, "train")
    eval_check = check_assistant_masks(tokenizer, eval_rows, cfg.max_seq_length, "validation") if eval_rows else None
    packing = packing_helps(train_check.lengths, cfg.per_device_batch_size, defaults.packing_threshold)

    set_seed(seed)
    model = models.load_model(cfg, quantized=cfg.load_in_4bit)
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
    match_adapter_dtype(trainer.model, cfg, training_args.learning_rate)
    keep_4bit_trainable(trainer.model)
    checkpoint = last_checkpoint(checkpoint_dir) if resume else None
    memory.reset_peak(cfg.device)
    trainer.train(resume_from_checkpoint=checkpoint)
    metrics = {**final_metrics(trainer), **trainable_parameters(trainer.model), "resumed_from": checkpoint,
               "peak_gib": memory.peak_gib(cfg.device), "est_peak_gib": fit_report["total_gib"]}
    validation = {"train": train_check.summary(), "validation": eval_check.summary() if eval_check else None,
                  "padding_fraction": padding_fraction(train_check.lengths, cfg.per_device_batch_size),
                  "packing": packing}

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


def quick_run(cfg: Profile, method: str, steps: int, train_rows: Sequence[dict[str, Any]],
              eval_rows: Sequence[dict[str, Any]], seed: int = SEED) -> dict[str, Any]:
    """Train briefly with ``full``, ``lora`` or ``qlora`` and measure it (for the comparison table). Taught in 03."""
    import tempfile

    from trl import SFTTrainer

    if method not in memory.METHODS:
        raise TrainingSetupError(f"method {method!r} is not one of {', '.join(memory.METHODS)}")
    tokenizer = load_tokenizer(cfg)
    set_seed(seed)
    model = models.load_model(cfg, quantized=method == "qlora")
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
        match_adapter_dtype(trainer.model, cfg, args.learning_rate)
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
