"""``python -m helpers.train --config configs/<name>.yaml``: the recipe as a script, and its launcher. Taught in 08_scale_out.

:func:`run_script` runs notebooks 03-04's pipeline from a run config in one process or in each process of
``torchrun`` / ``accelerate launch``; :func:`launch_script` starts it from a notebook as a learner would from a
terminal, and :func:`main` is the command line (``helpers/train/__main__.py``).
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from helpers import evaluate
from helpers.cli import path_arg
from helpers.config import REPO_ROOT, SEED, Profile, ProfileError
from helpers.data.validation import validate
from helpers.memory import MemoryPreflightError
from helpers.models import ModelLoadError, check_source, sharded_launch
from helpers.train.curves import LiveCurves
from helpers.train.fallback import _shipped_launch
from helpers.train.manifest import MANIFEST_NAME, write_manifest
from helpers.train.masks import read_jsonl, split_path
from helpers.train.recipe import fit
from helpers.train.runconfig import SCRIPT_KEYS, ScriptConfig, claim_output_dir, load_run_config
from helpers.train.setup import TrainingSetupError, last_checkpoint, lora_config

if TYPE_CHECKING:  # heavy imports stay out of module import time
    from transformers import TrainerCallback


def _rank() -> int:
    """This process's rank in a distributed launch (``accelerate launch`` and torchrun set ``RANK``); 0 alone."""
    return int(os.environ.get("RANK", "0"))


def read_chat_rows(path: str | Path) -> list[dict[str, Any]]:
    """Every row of a chat JSONL file the script trains or scores on, all valid, or one error naming file:line.

    The checks of :func:`helpers.data.validation.validate` (02_dataset): roles, an assistant answer, alternation...
    Prompt/completion rows are refused with the command that converts them.
    """
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


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers.train --config configs/cpu-tiny.yaml [--resume]``: the pipeline as a script."""
    import argparse

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
