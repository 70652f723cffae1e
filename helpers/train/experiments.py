"""Tracked experiments and their comparison: one run per variant, a table across runs. Taught in 05_iterate.

:func:`experiment` trains a variant of the recipe, scores it on held-out rows and records it beside its manifest;
:func:`compare_runs` reads every run back into one table and :func:`best_run` picks from it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from helpers import evaluate
from helpers.config import SEED, Profile
from helpers.models import free_memory
from helpers.train.curves import LiveCurves
from helpers.train.fallback import _WHERE_NOT_WHAT, _inputs_sha, _shipped_run
from helpers.train.manifest import MANIFEST_NAME, RUN_COLUMNS, Run, write_manifest
from helpers.train.recipe import fit
from helpers.train.setup import TrainingSetupError

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
