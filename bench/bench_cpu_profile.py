"""Benchmark: the ``cpu`` profile (SmolLM2-135M-Instruct) against ``cpu-tiny``: seconds per QLoRA step, tokens/s.

Run: ``OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 python bench/bench_cpu_profile.py [--steps 6 --threads 1 2]``.
Each variant runs in a fresh process with the given torch thread count, on the course's training rows (batch and
length from the profile, dynamic padding as notebook 03 trains): the median seconds of the timed steps after two
warm-up steps, and greedy generation (batch 16, the JSON prompt of 03) in new tokens per second. Variants:

- ``cpu NF4 fp32``: the profile as shipped (4-bit NF4 base, fp32 compute);
- ``cpu NF4 bf16``: the same with bf16 compute and bf16 autocast (``bf16=True, use_cpu=True``), the LoRA weights cast
  to fp32;
- ``cpu NF4 bf16, bf16 LoRA weights``: the same with the LoRA weights left in bf16, as TRL casts them and as the
  course trains on a CPU with native bf16 (``train.match_adapter_dtype``);
- ``cpu bf16 LoRA``: no quantization, bf16 weights and autocast (LoRA on a 16-bit base);
- ``cpu fp32 LoRA``: no quantization, fp32 weights (LoRA on the full-precision base);
- ``cpu-tiny NF4 fp32``: the tiny model's recipe, the baseline of the ratios.

The profile's compute dtype is chosen from these numbers (README, ``helpers/config.py``): bf16 where the CPU has it
natively (AVX512-BF16 / AMX, ``config.cpu_compute``), fp32 elsewhere, since a CPU without it emulates bf16. The results
go to ``bench/results.md`` in one section per kind of CPU: ``bench_cpu_profile`` (no native bf16) and
``bench_cpu_profile_native_bf16``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from anywhere without installing

VARIANTS = {
    "cpu NF4 fp32": ("cpu", {}, "qlora"),
    "cpu NF4 bf16": ("cpu", {"bnb_compute_dtype": "bfloat16"}, "qlora"),
    "cpu NF4 bf16, bf16 LoRA weights": ("cpu", {"bnb_compute_dtype": "bfloat16"}, "qlora-bf16-weights"),
    "cpu bf16 LoRA": ("cpu", {"torch_dtype": "bfloat16", "bnb_compute_dtype": "bfloat16", "load_in_4bit": False},
                      "lora"),
    "cpu fp32 LoRA": ("cpu", {"load_in_4bit": False}, "lora"),
    "cpu-tiny NF4 fp32": ("cpu-tiny", {}, "qlora"),
}
BASELINE = "cpu-tiny NF4 fp32"


def measure(name: str, steps: int, gen_rows: int, new_tokens: int) -> dict[str, float]:
    """One variant in this process: median s/step after 2 warm-up steps, and greedy generation tokens/s."""
    import tempfile
    import warnings

    import torch
    from transformers import TrainerCallback
    from trl import SFTTrainer

    from helpers import config, data, evaluate, models, train

    profile, changes, method = VARIANTS[name]
    cfg = config.PROFILES[profile].replace(**changes)  # each variant from the table's profile, not this CPU's choice
    cfg, flags = train.precision(cfg, log=lambda _m: None)
    tokenizer = models.load_tokenizer(cfg, log=lambda _m: None)
    model = models.load_model(cfg, quantized=method.startswith("qlora"))
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):  # noqa: ANN001, ANN003
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001, ANN003
            times.append(time.perf_counter() - self.t)

    rows = data.load_split("train")
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=train.PEFT_CHECKPOINTING_WARNING, category=FutureWarning)
        args = train.sft_config(cfg, tmp, flags=flags, max_steps=steps + 2, eval_strategy="no", save_strategy="no",
                                load_best_model_at_end=False, disable_tqdm=True, logging_steps=1000)
        trainer = SFTTrainer(model=model, args=args, train_dataset=train.to_dataset(rows), processing_class=tokenizer,
                             peft_config=train.lora_config(cfg), callbacks=[Clock()])
        # bf16 compute keeps TRL's bf16 LoRA weights; every other variant trains fp32 LoRA weights
        weights = cfg if method == "qlora-bf16-weights" else cfg.replace(bnb_compute_dtype="float32")
        train.match_adapter_dtype(trainer.model, weights)
        train.keep_4bit_trainable(trainer.model)
        trainer.train()
    step_s = statistics.median(times[2:])
    tokens_per_step = cfg.per_device_batch_size * statistics.mean(
        len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"]) for r in rows[:64])
    prompts = evaluate.conversations_from_rows(data.load_split("validation")[:gen_rows])
    trainer.model.eval()
    started = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=flags.get("bf16", False)):
        result = evaluate.generate(trainer.model, tokenizer, prompts, max_new_tokens=new_tokens, batch_size=16,
                                   progress=False)
    gen_s = time.perf_counter() - started
    generated = sum(len(tokenizer(o, add_special_tokens=False)["input_ids"]) for o in result)
    return {"step_s": step_s, "tokens_per_step": tokens_per_step, "train_tok_s": tokens_per_step / step_s,
            "gen_tok_s": generated / gen_s, "generated": generated}


def main(argv: list[str] | None = None) -> int:
    """Run every variant at each thread count in its own process; print and record the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant, after 2 warm-up steps")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--gen-rows", type=int, default=16, help="validation tickets answered for tokens/s")
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--only", nargs="*", default=None, help="variants to run (default: all)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    args = parser.parse_args(argv)
    if args.one:
        print("RESULT " + json.dumps(measure(args.one, args.steps, args.gen_rows, args.new_tokens)), flush=True)
        return 0
    results: dict[tuple[str, int], dict[str, float]] = {}
    for threads in args.threads:
        for name in args.only or list(VARIANTS):
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                   "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"), "HF_HUB_OFFLINE": "1"}
            cmd = [sys.executable, __file__, "--one", name, "--steps", str(args.steps), "--gen-rows",
                   str(args.gen_rows), "--new-tokens", str(args.new_tokens)]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
            line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
            if line is None:
                print(f"{name} ({threads} threads) failed:\n{done.stderr[-2000:]}")
                return 1
            results[(name, threads)] = json.loads(line[len("RESULT "):])
            r = results[(name, threads)]
            print(f"{name:18s} {threads} thread(s): {r['step_s']:.2f} s/step ({r['train_tok_s']:.0f} tok/s), "
                  f"generation {r['gen_tok_s']:.1f} new tok/s", flush=True)
    rows = []
    for (name, threads), r in results.items():
        base = results.get((BASELINE, threads))
        rows.append([name, threads, f"{r['step_s']:.2f}", f"{r['tokens_per_step']:.0f}", f"{r['train_tok_s']:.0f}",
                     f"{r['step_s'] / base['step_s']:.1f}x" if base else "-", f"{r['gen_tok_s']:.1f}",
                     f"{base['gen_tok_s'] / r['gen_tok_s']:.1f}x" if base else "-"])
    from bench.results import command_line, table, write_section
    from helpers.config import cpu_has_native_bf16

    native = cpu_has_native_bf16()
    section = "bench_cpu_profile_native_bf16" if native else "bench_cpu_profile"
    kind = "with native bf16 (AVX512-BF16 / AMX)" if native else "without native bf16 (bf16 emulated)"
    write_section(section, f"The cpu profile vs cpu-tiny, on a CPU {kind} (`bench/bench_cpu_profile.py`)", [
        f"Median seconds per QLoRA step ({args.steps} timed after 2 warm-up steps, the course's training rows, batch 4, "
        f"dynamic padding) and greedy generation ({args.gen_rows} validation tickets, batch 16, up to "
        f"{args.new_tokens} new tokens) in new tokens per second; each variant in a fresh process with the given "
        "torch threads and OMP_WAIT_POLICY=PASSIVE.", "",
        *table(["variant", "threads", "s/step", "tokens/step", "train tok/s", f"step time vs {BASELINE}",
                "generation new tok/s", f"generation slower than {BASELINE}"], rows)],
        command_line(argv, "bench_cpu_profile.py"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
