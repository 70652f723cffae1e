"""What a run leaves beside its adapter: ``run_manifest.json`` (versions, hardware, data hashes, settings, metrics).

Taught in 03_qlora_training: :func:`write_manifest` records everything needed to reproduce or compare a run, and
:func:`portable_adapter_config` keeps the saved adapter free of machine-specific paths. :class:`Run` and
``RUN_COLUMNS`` are the record of one tracked run of 05_iterate, read back by :mod:`helpers.train.experiments`.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from helpers.checksums import sha256
from helpers.config import SEED, Profile, repo_relative
from helpers.env import gpu_info, versions
from helpers.evaluate import DECODING

if TYPE_CHECKING:  # heavy imports stay out of module import time
    from trl import SFTTrainer


MANIFEST_NAME = "run_manifest.json"
LIBRARIES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets")


def library_versions() -> dict[str, str | None]:
    """Python and the training libraries' versions (``None`` when not installed): :func:`helpers.env.versions`."""
    return versions(LIBRARIES)


def hardware() -> dict[str, Any]:
    """The machine the run used: CPU, cores, RAM, and the GPU name / capability / memory when there is one."""
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(),
                            "cpu_count": os.cpu_count()}
    try:
        info["ram_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        info["ram_gib"] = None

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
    files = {}
    for f in data_files:
        p = Path(f)
        files[str(p)] = {"sha256": sha256(p), "bytes": p.stat().st_size} if p.is_file() else {"sha256": None}

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
