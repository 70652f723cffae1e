"""Run configs (``configs/<name>.yaml``) for the training script: keys, types, limits, the output folder. Taught in 08.

:func:`load_run_config` reads a config into a :class:`ScriptConfig` and refuses a bad one in one line naming the key
and its line; :func:`claim_output_dir` makes sure a run writes only into a folder that is new, empty or its own.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from helpers.config import SEED, Profile
from helpers.config import (
    PROFILES, REPO_ROOT, artifacts_root, expand_user, get_profile, repo_relative, unwritable_folder,
)
from helpers.train.manifest import MANIFEST_NAME
from helpers.train.masks import split_path
from helpers.train.setup import DEFAULTS, TrainDefaults, TrainingSetupError

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
        changes = {k: self.values[k] for k in PROFILE_KEYS if k in self.values}
        return get_profile(self.values["profile"]).replace(**changes)

    def defaults(self) -> TrainDefaults:
        """The recipe's defaults with the file's changes applied."""
        import dataclasses

        return dataclasses.replace(DEFAULTS, **{k: self.values[k] for k in DEFAULTS_KEYS if k in self.values})

    def file(self, key: str, split: str) -> Path:
        """A data file: the config's path (relative ones from the repository root) or ``data/tickets/<split>.jsonl``."""
        value = self.values.get(key)
        return split_path(split) if value is None else (REPO_ROOT / Path(value).expanduser())

    def output_dir(self) -> Path:
        """The config's ``output_dir`` (relative ones from the repository root) or artifacts/<profile>/script."""
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
