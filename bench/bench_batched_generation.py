"""Benchmark: batched greedy generation vs one prompt at a time, same prompts, same tiny model.

Run: ``HF_HUB_OFFLINE=1 python bench/bench_batched_generation.py [--prompts 32] [--batch-size 16]``.
Prints the wall time of each and their ratio (target: batched >= 5x faster), and checks both give the same answers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing

from helpers import config, evaluate, models  # noqa: E402
from helpers.data.generate import generate_tickets  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Time both ways and print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--profile", default="cpu-tiny")
    args = parser.parse_args(argv)

    cfg = config.get_profile(args.profile)
    tokenizer = models.load_tokenizer(cfg)
    model = models.load_model(cfg, quantized=cfg.load_in_4bit)
    conversations = evaluate.conversations_from_rows(generate_tickets(args.prompts, seed=99))
    evaluate.generate(model, tokenizer, conversations[:2], args.max_new_tokens, progress=False)  # warm-up

    start = time.perf_counter()
    batched = evaluate.generate(model, tokenizer, conversations, args.max_new_tokens, args.batch_size, progress=False)
    t_batched = time.perf_counter() - start
    start = time.perf_counter()
    single = [evaluate.generate(model, tokenizer, [c], args.max_new_tokens, progress=False)[0] for c in conversations]
    t_single = time.perf_counter() - start

    same = sum(a == b for a, b in zip(batched, single))
    ratio = t_single / t_batched
    print(f"model {cfg.model_id} ({cfg.name}), {args.prompts} prompts, max_new_tokens {args.max_new_tokens}")
    print(f"one at a time: {t_single:.2f} s   batched (batch {args.batch_size}): {t_batched:.2f} s")
    print(f"speed-up: {ratio:.1f}x (target >= 5x)   identical answers: {same}/{len(conversations)}")
    from bench.results import command_line, table, write_section

    write_section("bench_batched_generation", "Batched generation (`bench/bench_batched_generation.py`)", [
        f"{config.repo_relative(cfg.model_id)} ({cfg.name}{', 4-bit' if cfg.load_in_4bit else ''}), {args.prompts} "
        f"prompts, max_new_tokens "
        f"{args.max_new_tokens}.", "",
        *table(["one at a time s", f"batched (batch {args.batch_size}) s", "speed-up (target >= 5x)",
                "identical answers"],
               [[f"{t_single:.2f}", f"{t_batched:.2f}", f"{ratio:.1f}x", f"{same}/{len(conversations)}"]])],
        command_line(argv, "bench_batched_generation.py"))
    return 0 if same == len(conversations) else 1


if __name__ == "__main__":
    sys.exit(main())
