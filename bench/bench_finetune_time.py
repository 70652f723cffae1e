"""Benchmark: how long the tiny model's QLoRA fine-tune takes here, against the 300 s budget of notebook 03.

Run: ``HF_HUB_OFFLINE=1 python bench/bench_finetune_time.py [--steps 500]``.
Trains the ``cpu-tiny`` profile's adapter (``train.quick_run``: notebook 03's model, LoRA and SFT settings, without
evaluations and checkpoints during training) and prints the training seconds and their ratio to the budget
(target: ratio <= 1). Notebooks never assert on time (a busy machine would fail CI); ``make test`` allows each cell
3600 s (``--nbmake-timeout``), so the ratio also says how much margin that timeout leaves.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing

from helpers import config, data, train  # noqa: E402

BUDGET_S = 300  # notebook 03's training cell on 2 CPU cores: what the course promises a workshop
NBMAKE_TIMEOUT_S = 3600  # the Makefile's --nbmake-timeout


def main(argv: list[str] | None = None) -> int:
    """Time the fine-tune and print seconds and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu-tiny")
    parser.add_argument("--steps", type=int, default=0, help="0 = the profile's max_steps")
    args = parser.parse_args(argv)

    cfg = config.get_profile(args.profile)
    steps = args.steps or cfg.max_steps
    train_rows = data.load_split("train")
    eval_rows = data.load_split("validation")[:32]
    run = train.quick_run(cfg, "qlora", steps, train_rows, eval_rows)
    seconds = run["train_s"] * cfg.max_steps / steps  # scaled to the full run when fewer steps were timed
    print(f"profile {cfg.name}: {steps} QLoRA steps in {run['train_s']:.1f} s (eval loss {run['eval_loss']:.3f})")
    print(f"full run ({cfg.max_steps} steps): {seconds:.1f} s; budget {BUDGET_S} s; ratio {seconds / BUDGET_S:.2f} "
          f"(target <= 1); nbmake timeout margin {NBMAKE_TIMEOUT_S / seconds:.1f}x")
    from bench.results import command_line, table, write_section

    write_section("bench_finetune_time", "Fine-tune time (`bench/bench_finetune_time.py`)", [
        f"Profile {cfg.name}: QLoRA through `train.quick_run` (no evaluations or checkpoints during training).", "",
        *table(["steps timed", "seconds", "eval loss", f"full run ({cfg.max_steps} steps) s", f"ratio to {BUDGET_S} s "
                "budget (target <= 1)", "nbmake timeout margin"],
               [[steps, f"{run['train_s']:.1f}", f"{run['eval_loss']:.3f}", f"{seconds:.1f}",
                 f"{seconds / BUDGET_S:.2f}", f"{NBMAKE_TIMEOUT_S / seconds:.1f}x"]]),
        "", "" if steps == cfg.max_steps else f"The full run's time is the timed steps' x {cfg.max_steps}/{steps}."],
        command_line(argv, "bench_finetune_time.py"))
    return 0 if seconds <= BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
