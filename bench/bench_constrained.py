"""Benchmark: plain vs JSON-schema-constrained greedy generation on the same test prompts, same model.

Run: ``HF_HUB_OFFLINE=1 python bench/bench_constrained.py [--rows 100] [--max-new-tokens 128] [--adapter DIR]``.
Prints, for each way, the wall time and helpers.evaluate.score's json_valid, schema_valid and field accuracies
(overall and per field), and how many constrained answers were cut by max_new_tokens. The lesson it measures:
the constraint lifts json_valid / schema_valid to 1.0 (for answers that end), not the field accuracies.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing

from helpers import config, evaluate, models  # noqa: E402
from helpers.evaluate import constrained  # noqa: E402
from helpers.data.generate import TICKET_SCHEMA  # noqa: E402

KEYS = ("json_valid", "schema_valid", "field_accuracy", *(f"field_accuracy_{k}" for k in evaluate.FIELD_KEYS))


def main(argv: list[str] | None = None) -> int:
    """Generate both ways, score both, print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--profile", default="cpu-tiny")
    parser.add_argument("--quantized", action="store_true", help="load the model in 4-bit NF4 (the QLoRA base)")
    parser.add_argument("--adapter", help="a LoRA adapter folder to wrap the model with (the fine-tuned rows)")
    args = parser.parse_args(argv)

    cfg = config.get_profile(args.profile)
    tokenizer = models.load_tokenizer(cfg, log=lambda *a: None)
    model = models.load_model(cfg, quantized=args.quantized)
    if args.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, args.adapter)
    path = config.REPO_ROOT / "data" / "tickets" / "test.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:args.rows]]
    conversations, references = evaluate.conversations_from_rows(rows), evaluate.references_from_rows(rows)

    results = {}
    start = time.perf_counter()
    plain = evaluate.generate(model, tokenizer, conversations, args.max_new_tokens, args.batch_size, progress=False)
    results["plain"] = (time.perf_counter() - start, evaluate.score(plain, references, TICKET_SCHEMA), 0)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the count of cut answers is printed below
        fixed = constrained.constrained_generate(model, tokenizer, conversations, TICKET_SCHEMA, args.max_new_tokens,
                                                 args.batch_size, progress=False)
    results["constrained"] = (time.perf_counter() - start, evaluate.score(fixed, references, TICKET_SCHEMA),
                              len(fixed.truncated))

    print(f"{len(rows)} test rows, {args.profile}{' 4-bit' if args.quantized else ''}"
          f"{' + ' + args.adapter if args.adapter else ''}, max_new_tokens={args.max_new_tokens}, "
          f"batch_size={args.batch_size}")
    print(f"{'':12s} {'seconds':>8s} {'cut':>4s} " + " ".join(f"{k.replace('field_accuracy', 'acc'):>12s}"
                                                              for k in KEYS))
    for name, (seconds, metrics, cut) in results.items():
        print(f"{name:12s} {seconds:8.1f} {cut:4d} " + " ".join(f"{metrics[k]:12.3f}" for k in KEYS))
    print("first constrained answer:", fixed[0])
    from bench.results import command_line, table, write_section

    write_section("bench_constrained", "Schema-constrained decoding (`bench/bench_constrained.py`)", [
        f"{len(rows)} test rows, {args.profile}{' 4-bit' if args.quantized else ''}"
        f"{' + adapter ' + args.adapter if args.adapter else ' (no adapter)'}, max_new_tokens {args.max_new_tokens}, "
        f"batch {args.batch_size}.", "",
        *table(["decoding", "seconds", "cut at max_new_tokens", *KEYS],
               [[name, f"{sec:.1f}", cut, *(f"{m[k]:.3f}" for k in KEYS)] for name, (sec, m, cut) in results.items()])],
        command_line(argv, "bench_constrained.py"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
