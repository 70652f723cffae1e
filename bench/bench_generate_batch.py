"""Benchmark: greedy generation at several batch sizes on one profile, with 03's shipped adapter and without it.

Run: ``OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 python bench/bench_generate_batch.py [--profile cpu --rows 48
--batches 16 32 48 0]`` (0: ``evaluate.generate``'s default for the model). Answers the first ``--rows`` validation
tickets (the test split is not read) once per batch size, with the adapter of ``data/fallback/<profile>`` (short JSON
answers, as the course scores them) and with the adapter off (the base model's long, chatty answers), and prints each
one's seconds, its speed against the first batch size, the answers identical to that batch size's and their mean
field accuracy. ``evaluate.default_batch_size`` is
chosen from these numbers. The results go to ``bench/results.md`` (section ``bench_generate_batch``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from anywhere without installing


def main(argv: list[str] | None = None) -> int:
    """Time every batch size on the same tickets; print and record the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--rows", type=int, default=48, help="validation tickets answered per batch size")
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 32, 48, 0], help="0: generate's default")
    args = parser.parse_args(argv)

    import torch
    from peft import PeftModel

    from helpers import config, data, evaluate, models

    cfg = config.get_profile(args.profile)
    adapter = config.FALLBACK_DIR / cfg.name / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        print(f"{adapter} holds no adapter: this bench needs the profile's shipped fallback "
              f"(python -m helpers.build.fallback --profile {cfg.name})")
        return 1
    tokenizer = models.load_tokenizer(cfg)
    model = PeftModel.from_pretrained(models.load_model(cfg, quantized=cfg.load_in_4bit), str(adapter))
    rows = data.load_split("validation")[: args.rows]
    conversations, references = evaluate.conversations_from_rows(rows), evaluate.references_from_rows(rows)
    evaluate.generate(model, tokenizer, conversations[:2], cfg.max_new_tokens, progress=False)  # warm-up, packing
    table_rows = []
    for label, adapter_on in (("03's adapter", True), ("base (adapter off)", False)):
        first: tuple[float, list[str]] | None = None
        for batch in args.batches:
            shown = batch or f"default ({evaluate.default_batch_size(model, len(conversations))})"
            started = time.perf_counter()
            if adapter_on:
                answers = evaluate.generate(model, tokenizer, conversations, cfg.max_new_tokens, batch or None,
                                            progress=False)
            else:
                with model.disable_adapter():
                    answers = evaluate.generate(model, tokenizer, conversations, cfg.max_new_tokens, batch or None,
                                                progress=False)
            seconds = time.perf_counter() - started
            first = first or (seconds, answers)
            same = sum(a == b for a, b in zip(answers, first[1]))
            accuracy = evaluate.score(answers, references)["field_accuracy"]
            table_rows.append([label, shown, f"{seconds:.1f}", f"{first[0] / seconds:.2f}x", f"{same}/{len(answers)}",
                               f"{accuracy:.3f}"])
            print(f"{label}, batch {shown}: {seconds:.1f} s ({first[0] / seconds:.2f}x), {same}/{len(answers)} "
                  f"answers as at batch {args.batches[0]}, field accuracy {accuracy:.3f}", flush=True)
    from bench.results import command_line, table, write_section

    compute = cfg.bnb_compute_dtype if cfg.load_in_4bit else cfg.torch_dtype
    write_section("bench_generate_batch", "Generation batch size (`bench/bench_generate_batch.py`)", [
        f"Profile {cfg.name} ({compute} compute, torch {torch.get_num_threads()} threads), the first {args.rows} "
        f"validation tickets, greedy, up to {cfg.max_new_tokens} new tokens, {adapter.relative_to(ROOT)} on and off; "
        f"speed against batch {args.batches[0]} in the same run. The default (`evaluate.default_batch_size`) splits "
        f"the rows into equal batches of at most {evaluate.generation.CPU_BF16_BATCH_SIZE} for a model on a CPU "
        f"computing in bf16, and is {evaluate.generation.BATCH_SIZE} elsewhere.", "",
        *table(["answers", "batch", "seconds", f"speed vs batch {args.batches[0]}",
                f"identical to batch {args.batches[0]}", "field accuracy"], table_rows)],
        command_line(argv, "bench_generate_batch.py"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
