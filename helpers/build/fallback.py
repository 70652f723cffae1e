"""Build ``data/fallback/<profile>``: what the course's training cells made, shipped so a learner can skip them.

``python -m helpers.build.fallback [--profile cpu-tiny]`` runs notebooks 03, 05, 07 and 08 in a CPU profile with the
course runner (into a temporary artifacts folder, with ``USE_FALLBACK`` off: they train), then copies what their
training cells produced — 03's adapter and its log and its method comparison, 05's tracked runs (manifests with their
answers and curves; the adapters of the two runs later cells load) and the answers its data fix was chosen from, 07's
DPO and GRPO adapters and logs, 08's script launches (without the tokenizer files, which are the profile's own and are
saved again when a launch is loaded, nor its run marker) — and writes ``FALLBACK.json``: the command, the date, the
commit, the machine, each notebook's runtime and every file's SHA-256. An adapter whose fp32 file holds bf16 values is
shipped in bf16 (:func:`in_bf16`); a profile in :data:`PROFILE_NOTEBOOKS` ships some notebooks only; a build that would
exceed :data:`MAX_BYTES` ships nothing and names the largest files. With ``USE_FALLBACK = True`` (or
``COURSE_FALLBACK=1``) the notebooks load these instead of training (:func:`helpers.train.load_fallback`,
:func:`helpers.train.copy_fallback`, ``train.experiment(fallback=...)``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from helpers import course
from helpers.checksums import sha256
from helpers.cli import path_arg
from helpers.config import (ARTIFACTS_ENV_VAR, FALLBACK_DIR, FALLBACK_ENV_VAR, PROFILE_ENV_VAR, PROFILES,
                            unwritable_folder)
from helpers.readme import git_commit
from helpers.train import RUN_MARKER, copy_fallback, hardware, library_versions

NOTEBOOKS = ("03", "05", "07", "08")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
# 05's runs whose adapters a later cell loads (5.11's test split; 06's second adapter): the others ship their manifest.
RUNS_WITH_ADAPTER = ("continue-control", "continue-fix")
# What a launch of 08 saves of the profile's tokenizer: not shipped, since loading the launch saves it again from the
# profile (train.fallback._shipped_launch); SmolLM2's tokenizer.json alone is 3.5 MB, three launches 10.5 MB.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json",
                   "vocab.json", "merges.txt")
# The most a profile's fallback may hold. The whole repository stays under 45 MB (tests/test_static.py): Colab clones
# it and a GPU check carries it. An r 16 adapter of the cpu profile is 9.8 MB in bf16: that profile ships one.
MAX_BYTES = 15_000_000
# A profile whose fallback ships some notebooks only. cpu: 03's adapter (9.8 MB at r 16), which 04-07 start from and
# whose 150 steps are the course's longest training cell; 05, 07 and 08 train (config.FALLBACK_NEEDS). Their five
# adapters more would take 49 MB, and a smaller rank costs 03 accuracy (bench/results.md, cpu_recipe_r4_bf16).
PROFILE_NOTEBOOKS = {"cpu": ("03",)}


def _copy(source: Path, target: Path, names: tuple[str, ...]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        if not (source / name).is_file():
            raise FileNotFoundError(f"{source / name} was not written by the notebook run: the build cannot ship it")
        shutil.copy2(source / name, target / name)
        if name == "adapter_model.safetensors":
            in_bf16(target / name)


def in_bf16(path: Path) -> bool:
    """Rewrite an adapter saved in fp32 in bf16 when that loses nothing; return whether it did.

    The trainer saves LoRA weights in fp32 even when they trained in bf16 (the cpu profile under bf16 compute): every
    value is then a bf16 value, and the file halves (an r 16 adapter of the cpu profile: 19.6 -> 9.8 MB). Weights that
    trained in fp32 (cpu-tiny) are left as they are.
    """
    import torch
    from safetensors.torch import load_file, save_file

    weights = load_file(str(path))
    lossless = all(w.dtype == torch.float32 and torch.equal(w, w.bfloat16().float()) for w in weights.values())
    if not weights or not lossless:
        return False
    save_file({k: w.bfloat16().contiguous() for k, w in weights.items()}, str(path), metadata={"format": "pt"})
    return True


PARTS = {"03": ("adapter", "method_comparison.json"), "05": ("runs",), "07": ("dpo", "grpo"), "08": ("scale_out",)}


def collect(artifacts: Path, out: Path, notebooks: tuple[str, ...] = NOTEBOOKS, profile: str = "cpu-tiny"
            ) -> list[Path]:
    """Copy the shipped subset of a profile's ``artifacts/`` folder into ``out``: the parts of ``notebooks`` only."""
    made = artifacts / profile
    out.mkdir(parents=True, exist_ok=True)
    for part in (part for nb in notebooks for part in PARTS[nb]):
        target = out / part
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    if "03" in notebooks:
        _copy(made / "adapter", out / "adapter", (*ADAPTER_FILES, "run_manifest.json", "trainer_log.json"))
        _copy(made, out, ("method_comparison.json",))  # 03's full / LoRA / QLoRA comparison
    if "07" in notebooks:
        for name in ("dpo", "grpo"):
            _copy(made / name / "adapter", out / name, (*ADAPTER_FILES, "trainer_log.json"))
    if "08" in notebooks:
        launches = sorted((made / "scale_out").glob("*/launches/*"))  # 08's script launches, each as it left its folder
        if not launches:
            raise FileNotFoundError(f"{made / 'scale_out'} holds no launches: 08 did not run its script")
        for launch in launches:
            _copy(launch, out / "scale_out" / launch.name,
                  tuple(p.name for p in sorted(launch.iterdir())
                        if p.is_file() and p.name not in (*TOKENIZER_FILES, RUN_MARKER)))
    if "05" in notebooks:
        recorded = sorted((made / "runs").glob("*.json"))  # answers 05 chose from (train.recorded_outputs)
        if not recorded:
            raise FileNotFoundError(f"{made / 'runs'} holds no recorded answers: 05 did not record its data-fix choice")
        _copy(made / "runs", out / "runs", tuple(p.name for p in recorded))
        for run in sorted(p for p in (made / "runs").iterdir() if (p / "run_manifest.json").is_file()):
            names = ("run_manifest.json", *(ADAPTER_FILES if run.name in RUNS_WITH_ADAPTER else ()))
            _copy(run, out / "runs" / run.name, names)
            for events in (run / "checkpoints").rglob("events.out.tfevents.*"):  # 5.3 reads TensorBoard's files
                target = out / "runs" / run.name / events.relative_to(run)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(events, target)
    return sorted(p for p in out.rglob("*") if p.is_file() and p.name != "FALLBACK.json")


def too_big(folder: Path, limit: int = MAX_BYTES) -> str | None:
    """Why ``folder`` cannot ship (its files exceed ``limit`` bytes, the largest named), or None when it fits."""
    files = sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: -p.stat().st_size)
    total = sum(p.stat().st_size for p in files)
    if total <= limit:
        return None
    largest = ", ".join(f"{p.relative_to(folder)} {p.stat().st_size / 1e6:.1f} MB" for p in files[:4])
    return (f"the fallback would hold {total / 1e6:.1f} MB, over its limit of {limit / 1e6:.0f} MB (largest: "
            f"{largest}): give this profile a smaller LoRA rank (bench/cpu_recipe.py --rank R measures one on "
            "validation) or ship fewer adapters")


def build(profile: str = "cpu-tiny", out: Path | None = None, keep: Path | None = None,
          only: tuple[str, ...] | None = None, collect_only: bool = False) -> Path:
    """Run 03, 05, 07 and 08 in ``profile`` (training), collect their results into ``out``; return its FALLBACK.json.

    ``out`` defaults to ``data/fallback/<profile>``; a profile in :data:`PROFILE_NOTEBOOKS` runs and ships only its
    notebooks there. ``only`` rebuilds the parts of some notebooks and keeps the rest:
    the later notebooks start from the shipped 03 adapter (as they would from 03's), and ``FALLBACK.json`` records the
    partial rebuild beside the full build. The files are gathered in the work folder first: a build over
    :data:`MAX_BYTES` raises ``SystemExit`` and leaves ``out`` as it was. ``collect_only`` (``--collect``) ships what an
    earlier build left in ``keep`` without running the notebooks again (after a collection that failed).
    """
    if profile not in PROFILES or PROFILES[profile].device != "cpu":
        cpu = ", ".join(name for name, cfg in PROFILES.items() if cfg.device == "cpu")
        raise SystemExit(f"error: --profile {profile}: the fallback is built on this machine, for a CPU profile "
                         f"({cpu})")
    out = Path(out or FALLBACK_DIR / profile)
    notebooks = tuple(only or PROFILE_NOTEBOOKS.get(profile, NOTEBOOKS))
    unknown = sorted(set(notebooks) - set(NOTEBOOKS))
    if unknown:
        raise SystemExit(f"error: --only {' '.join(unknown)}: the fallback holds notebooks {', '.join(NOTEBOOKS)}")
    if only and not (out / "FALLBACK.json").is_file():
        raise SystemExit(f"error: --only rebuilds part of a shipped fallback, and {out} holds none: build it whole")
    work = Path(keep or tempfile.mkdtemp(prefix="course-fallback-"))
    os.environ.update({ARTIFACTS_ENV_VAR: str(work / "artifacts"), PROFILE_ENV_VAR: profile, "HF_HUB_OFFLINE": "1"})
    os.environ.pop(FALLBACK_ENV_VAR, None)
    if "03" not in notebooks:
        copy_fallback(out, "adapter", work / "artifacts" / profile / "adapter")
    started = time.time()
    if collect_only:  # the notebooks ran in an earlier build into this --keep folder; its collection failed
        ran = sorted((work / "runs").glob("*/run.json"))
        if not ran or json.loads(ran[-1].read_text()).get("profile") != profile:
            raise SystemExit(f"error: --collect needs the --keep folder of an earlier build for {profile}: "
                             f"{work / 'runs'} holds no run of that profile")
        ran_at = json.loads(ran[-1].read_text())
    else:
        status = course.run_course(profile, list(notebooks), runs_dir=work / "runs")
        if status != 0:
            raise SystemExit(f"error: a notebook failed (see {work / 'runs'}); nothing was shipped")
        ran_at = {}
    reports = sorted((work / "runs").glob("*/report.json"))
    report = json.loads(reports[-1].read_text())
    if [r["status"] for r in report] != ["ok"] * len(report) or {r["name"][:2] for r in report} != set(notebooks):
        raise SystemExit(f"error: {reports[-1]} is not an ok run of notebooks {', '.join(notebooks)}: nothing shipped")
    seconds = {r["name"]: round(r["seconds"], 1) for r in report}
    staged = work / "shipped"
    if staged.exists():
        shutil.rmtree(staged)
    if only:
        shutil.copytree(out, staged)
    files = collect(work / "artifacts", staged, notebooks, profile)
    problem = too_big(staged)
    if problem:
        raise SystemExit(f"error: {problem}; nothing was shipped (the files are in {staged})")
    made = {"command": "python -m helpers.build.fallback" + (f" --profile {profile}" if profile != "cpu-tiny" else "")
            + (f" --only {' '.join(notebooks)}" if only else ""),
            "made_at": ran_at.get("date") or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commit": ran_at.get("commit") or git_commit(),
            **({"collected": {"at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": git_commit()}}
               if collect_only else {})}
    listing = {str(p.relative_to(staged)): {"sha256": sha256(p), "bytes": p.stat().st_size} for p in files}
    if only:
        record = json.loads((staged / "FALLBACK.json").read_text())
        record["notebook_seconds"].update(seconds)
        record.setdefault("rebuilt", []).append({**made, "notebooks": list(notebooks), "notebook_seconds": seconds})
        if "notebooks" in record:  # a fallback of some notebooks only: now these as well
            record["notebooks"] = sorted(set(record["notebooks"]) | set(notebooks))
        record["files"] = listing
    else:
        record = {
            "what": (f"results of the training cells of notebook{'s' * (len(notebooks) > 1)} "
                     f"{', '.join(notebooks)} in the {profile} profile"),
            **({"notebooks": list(notebooks)} if notebooks != NOTEBOOKS else {}),  # config.fallback_dir reads it
            **made,
            "hardware": hardware(),
            "versions": library_versions(),
            "notebook_seconds": seconds,
            **({} if collect_only else {"build_seconds": round(time.time() - started, 1)}),
            "files": listing,
        }
    (staged / "FALLBACK.json").write_text(json.dumps(record, indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(staged, out)
    size = sum(meta["bytes"] for meta in listing.values()) / 2**20
    print(f"{'rebuilt the parts of ' + ', '.join(notebooks) + '; ' if only else 'shipped '}{len(files)} files "
          f"({size:.1f} MiB) to {out}")
    return out / "FALLBACK.json"


def verify(out: Path = FALLBACK_DIR / "cpu-tiny") -> list[str]:
    """Problems with a shipped fallback: files missing, changed or unlisted (empty when it is intact)."""
    record = json.loads((out / "FALLBACK.json").read_text())
    problems = [f"{name}: missing" for name in record["files"] if not (out / name).is_file()]
    problems += [f"{name}: changed since the build (sha256 differs)" for name, meta in record["files"].items()
                 if (out / name).is_file() and sha256(out / name) != meta["sha256"]]
    listed = set(record["files"]) | {"FALLBACK.json"}
    problems += [f"{p.relative_to(out)}: not listed in FALLBACK.json" for p in out.rglob("*")
                 if p.is_file() and str(p.relative_to(out)) not in listed]
    return problems


def main(argv: list[str] | None = None) -> int:
    """Command line: build (default) or ``--verify``."""
    parser = argparse.ArgumentParser(prog="python -m helpers.build.fallback", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu-tiny", help="the CPU profile to build it for (default: cpu-tiny)")
    parser.add_argument("--verify", action="store_true", help="check the shipped files against FALLBACK.json")
    parser.add_argument("--only", nargs="+", metavar="NN", help="rebuild these notebooks' parts only (03 05 07 08)")
    parser.add_argument("--keep", type=path_arg, help="work folder to keep (runs and artifacts); default: a temporary "
                                                       "one")
    parser.add_argument("--collect", action="store_true", help="ship what an earlier build left in --keep, without "
                                                               "running the notebooks again")
    args = parser.parse_args(argv)
    if args.verify and (args.keep or args.only):
        parser.error("--verify only reads the shipped files: it takes no --keep or --only")
    if args.collect and not args.keep:
        parser.error("--collect ships what an earlier build left in its --keep folder: name it with --keep")
    if args.keep and unwritable_folder(args.keep):
        parser.error(f"--keep {unwritable_folder(args.keep)}")
    if args.verify:
        folder = FALLBACK_DIR / args.profile
        if not (folder / "FALLBACK.json").is_file():
            parser.error(f"--profile {args.profile}: {folder} holds no FALLBACK.json: nothing shipped to verify")
        problems = verify(folder)
        print("\n".join(problems) or f"data/fallback/{args.profile} matches FALLBACK.json")
        return 1 if problems else 0
    build(args.profile, keep=args.keep, only=tuple(args.only) if args.only else None, collect_only=args.collect)
    return 0


if __name__ == "__main__":
    from helpers.cli import run

    sys.exit(run(main))
