"""Check the environment against the course's pins and the chosen profile, with a fix for every problem. Taught in 00_setup."""

from __future__ import annotations

import importlib.metadata as md
import platform
import re
import os
import sys
from dataclasses import dataclass
from typing import Any

from helpers.colab import listed_dependencies
from helpers.config import REPO_ROOT, Profile, ProfileError, bf16_fallback, cpu_has_native_bf16, get_profile
from helpers.templates import has_generation_markers

PACKAGES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "datasets", "accelerate")
DIST_NAME = "finetune-course"


class EnvironmentProblem(RuntimeError):
    """The environment cannot run the chosen profile; the message lists each problem and its fix."""


@dataclass(frozen=True)
class Finding:
    """One line of the environment check: ``level`` is ``ok``, ``warn`` or ``error``."""

    level: str
    what: str
    fix: str = ""

    def __str__(self) -> str:
        mark = {"ok": "ok  ", "warn": "WARN", "error": "FAIL"}[self.level]
        return f"[{mark}] {self.what}" + (f"  -> fix: {self.fix}" if self.fix else "")


def pyproject_dependencies(text: str) -> list[str]:
    """The ``[project] dependencies`` strings of a pyproject.toml (tomllib on Python 3.11+, a plain parser on 3.10)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10

        return listed_dependencies(text)
    return list(tomllib.loads(text)["project"]["dependencies"])


def pinned_versions() -> dict[str, str]:
    """Exact pins ``name -> version`` from pyproject.toml (the one source of truth), or the installed metadata."""
    pyproject = REPO_ROOT / "pyproject.toml"
    if pyproject.is_file():
        deps = pyproject_dependencies(pyproject.read_text())
    else:
        deps = md.requires(DIST_NAME) or []
    pins = {}
    for dep in deps:
        match = re.match(r"^\s*([A-Za-z0-9_.\-\[\]]+?)\s*==\s*([^;\s]+)", dep)
        if match:
            pins[re.sub(r"\[.*\]", "", match.group(1)).lower().replace("_", "-")] = match.group(2)
    return pins


def installed_version(package: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return md.version(package)
    except md.PackageNotFoundError:
        return None


def gpu_info() -> dict[str, Any]:
    """CUDA availability, device name, compute capability and memory (GiB); empty values without a GPU."""
    try:
        import torch
    except ImportError:
        return {"cuda": False, "cuda_version": None, "name": None, "capability": None, "memory_gib": None}
    if not torch.cuda.is_available():
        return {"cuda": False, "cuda_version": torch.version.cuda, "name": None, "capability": None, "memory_gib": None}
    props = torch.cuda.get_device_properties(0)
    return {"cuda": True, "cuda_version": torch.version.cuda, "name": props.name,
            "capability": (props.major, props.minor), "memory_gib": round(props.total_memory / 2**30, 1)}


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Python and the course's key libraries (or ``packages``), as installed (``None``: not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    out.update({name: installed_version(name) for name in packages})
    return out


def version_findings(installed: dict[str, str | None], pins: dict[str, str]) -> list[Finding]:
    """A finding per key package: missing, different from the pin, or as pinned."""
    findings = []
    for name in PACKAGES:
        have, want = installed.get(name), pins.get(name)
        if have is None:
            findings.append(Finding("error", f"{name} is not installed", f"pip install '{name}=={want}'" if want else
                                    f"pip install {name}"))
        elif want and have.split("+")[0] != want:
            fix = "fine on Colab, which keeps its own torch" if name == "torch" else f"pip install '{name}=={want}'"
            findings.append(Finding("warn", f"{name} {have} differs from the tested pin {want}", fix))
        else:
            findings.append(Finding("ok", f"{name} {have}"))
    return findings


def hardware_findings(cfg: Profile, gpu: dict[str, Any]) -> list[Finding]:
    """Does the machine suit the profile: a GPU for GPU profiles, bf16 only on compute capability >= 8, fp32 on CPU."""
    findings = []
    if cfg.device == "cuda" and not gpu["cuda"]:
        findings.append(Finding("error", f"profile {cfg.name!r} needs a CUDA GPU and none is visible",
                                "use PROFILE = 'cpu-tiny', or on Colab: Runtime > Change runtime type > T4 GPU"))
    if gpu["cuda"] and bf16_fallback(cfg, gpu["capability"]) is not None:
        findings.append(Finding("error", f"{gpu['name']} (compute capability {gpu['capability'][0]}."
                                f"{gpu['capability'][1]}) has no native bf16 but profile {cfg.name!r} asks for it",
                                "use PROFILE = 't4' (fp16), or call env.adjust_for_hardware(cfg)"))
    if cfg.device == "cpu" and cfg.bnb_compute_dtype != "float32" and not (
            cfg.bnb_compute_dtype == "bfloat16" and cpu_has_native_bf16()):
        findings.append(Finding("warn", f"4-bit compute dtype {cfg.bnb_compute_dtype} on a CPU without native bf16 "
                                f"(AVX512-BF16 / AMX) is emulated: a QLoRA step took 16x longer than in fp32",
                                "use bnb_compute_dtype='float32' on this CPU (config.cpu_compute chooses it)"))
    if not findings:
        where = gpu["name"] or "CPU"
        findings.append(Finding("ok", f"profile {cfg.name!r} on {where}: weights {cfg.torch_dtype}, "
                                f"4-bit compute {cfg.bnb_compute_dtype}"))
    return findings


def tokenizer_findings(tokenizer: Any) -> list[Finding]:
    """A chat template, assistant markers for assistant-only loss, and a pad token distinct from EOS."""
    findings = []

    template = getattr(tokenizer, "chat_template", None)
    if not template:
        findings.append(Finding("error", "the tokenizer has no chat template",
                                "use an instruct model's tokenizer or set tokenizer.chat_template"))
    elif not has_generation_markers(template):
        findings.append(Finding("warn", "the chat template has no {% generation %} markers: assistant-only loss "
                                "cannot be computed", "load it with helpers.models.load_tokenizer (uses TRL's "
                                "training copy of hub templates) or wrap assistant turns in "
                                "{% generation %}...{% endgeneration %} (see helpers.models.CHAT_TEMPLATE)"))
    if tokenizer.pad_token_id is None:
        findings.append(Finding("error", "the tokenizer has no pad token", "set tokenizer.pad_token to an unused "
                                "special token (helpers.models.load_tokenizer does this)"))
    elif tokenizer.pad_token_id == tokenizer.eos_token_id:
        findings.append(Finding("warn", "pad token == eos token: with a collator that masks padding the model never "
                                "learns to stop", "give padding its own token (helpers.models.load_tokenizer)"))
    if not findings:
        findings.append(Finding("ok", "tokenizer: chat template with assistant markers, pad != eos"))
    return findings


def adjust_for_hardware(cfg: Profile) -> Profile:
    """Switch bf16 to fp16 on a GPU without native bf16 (compute capability < 8), saying so."""
    gpu = gpu_info()
    fallback = bf16_fallback(cfg, gpu["capability"]) if gpu["cuda"] else None
    if fallback is not None:
        print(f"{gpu['name']} has no native bf16 (compute capability {gpu['capability'][0]}.{gpu['capability'][1]}):"
              f" switching profile {cfg.name!r} to fp16")
        return fallback
    return cfg


def disable_telemetry() -> None:
    """Stop huggingface_hub (and TRL through it) from sending usage telemetry: the course sends nothing anywhere."""
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # already imported: its constant was read at import time
        constants.HF_HUB_DISABLE_TELEMETRY = True


def check(cfg: Profile, tokenizer: Any = None, strict: bool = True, quiet: bool = False) -> list[Finding]:
    """Print versions, hardware and profile, flag problems with a fix; raise on errors when ``strict``.

    Also switches telemetry off (:func:`disable_telemetry`): every notebook calls this before any trainer exists.
    """
    disable_telemetry()
    gpu = gpu_info()
    installed = versions()
    findings = version_findings(installed, pinned_versions())
    findings += hardware_findings(cfg, gpu)
    if tokenizer is not None:
        findings += tokenizer_findings(tokenizer)
    if not quiet:
        cuda = f"CUDA {gpu['cuda_version']}, {gpu['name']} ({gpu['memory_gib']} GiB)" if gpu["cuda"] else "no CUDA GPU"
        print(f"python {installed['python']} on {platform.machine()} · {cuda} · profile {cfg.name}: {cfg.description}")
        for finding in findings:
            print(finding)
    errors = [f for f in findings if f.level == "error"]
    if strict and errors:
        raise EnvironmentProblem("; ".join(f"{f.what} (fix: {f.fix})" for f in errors))
    return findings


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers.env [PROFILE]``: the same check from a terminal; exit 1 on errors."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m helpers.env", description=__doc__.splitlines()[0])
    parser.add_argument("profile", nargs="?", default="auto", help="cpu-tiny, cpu, t4, l4, a100, h100 or auto (default)")
    args = parser.parse_args(argv)
    try:
        cfg = get_profile(args.profile)
    except ProfileError as err:
        print(f"error: {err}")
        return 2
    findings = check(cfg, strict=False)
    return 1 if any(f.level == "error" for f in findings) else 0


if __name__ == "__main__":
    from helpers.cli import run

    sys.exit(run(main))
