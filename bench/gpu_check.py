"""GPU check: the GPU profiles' training path on real-size stand-ins, measured on whatever GPU this machine has.

Run: ``bash bench/gpu_check.sh`` (or ``python bench/gpu_check.py [--profiles t4 a100] [--steps 20]``).

No hub access is needed. For each profile, ``helpers.models.build_stand_in`` builds a random-initialised model of the
profile's real architecture at its published size (Qwen2.5-1.5B for ``t4``, Qwen2.5-7B for ``a100``; from the
committed ``data/model-configs/*/config.json``) with Qwen2.5's chat template, then the notebooks' path runs:

1. 4-bit NF4 load (``models.load_model``) and a finite-logits check in the profile's compute dtype (fp16 for t4);
2. ``--steps`` QLoRA steps through ``SFTTrainer`` with the profile's sizes (rows filled to ``max_seq_length``, so the
   memory estimate's batch x sequence is what runs): seconds per step, tokens per second, and the measured peak
   (``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``) next to ``helpers.memory``'s estimate;
3. batched generation with the course's decoding (``evaluate.generate``): seconds and new tokens per second;
4. model FLOPs utilisation (MFU): ``6 * N * tokens/s / peak`` with N the model's parameters and the GPU's dense
   tensor-core peak for the compute dtype (:data:`PEAK_TFLOPS`, from NVIDIA's datasheets).

A stand-in generates noise: this checks code paths, memory and speed, never quality. Results are printed and written
to ``bench/results.md`` with the GPU's name and the date. ``--cpu-rehearsal`` runs the same script on tiny stand-ins on
the CPU (the test suite does, so the script cannot rot between GPU runs).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from anywhere without installing

from helpers import config, data, evaluate, memory, models, train  # noqa: E402

RESULTS = ROOT / "bench" / "results.md"

# Dense (no structured sparsity) tensor-core peak in TFLOP/s per compute dtype, from NVIDIA's datasheets; the
# datasheets' larger figures marked "with sparsity" are twice these. Matched against torch.cuda.get_device_name(),
# first match wins (so "H100 PCIe" before "H100").
#   T4: "NVIDIA T4 Tensor Core GPU" datasheet: 65 TFLOPS mixed-precision FP16/FP32 (no bf16 on compute capability 7.5).
#   A100: "NVIDIA A100 Tensor Core GPU" datasheet: BF16 / FP16 Tensor Core 312 TFLOPS (624 with sparsity).
#   L4: "NVIDIA L4 Tensor Core GPU" datasheet: BF16 / FP16 Tensor Core 242 TFLOPS with sparsity -> 121 dense.
#   H100 PCIe / SXM: "NVIDIA H100 Tensor Core GPU" datasheet: BF16 / FP16 1,513 / 1,979 TFLOPS with sparsity ->
#   756 / 989 dense. H200: "NVIDIA H200 Tensor Core GPU" datasheet: 1,979 with sparsity (SXM) -> 989 dense.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "T4": {"float16": 65.0},
    "A100": {"bfloat16": 312.0, "float16": 312.0},
    "L4": {"bfloat16": 121.0, "float16": 121.0},
    "H100 PCIe": {"bfloat16": 756.0, "float16": 756.0},
    "H100": {"bfloat16": 989.0, "float16": 989.0},
    "H200": {"bfloat16": 989.0, "float16": 989.0},
}
FLOPS_PER_PARAM_TOKEN = 6  # forward 2N + backward 4N per token (Kaplan et al. 2020): the usual MFU convention


def peak_flops(device_name: str, dtype: str) -> float | None:
    """The GPU's dense tensor-core peak in FLOP/s for ``dtype`` (``"bfloat16"``, ``"float16"``); None when unknown."""
    for name, peaks in PEAK_TFLOPS.items():
        if re.search(rf"\b{re.escape(name)}\b", device_name, flags=re.IGNORECASE) and dtype in peaks:
            return peaks[dtype] * 1e12
    return None


def mfu(params: float, tokens_per_s: float, peak: float) -> float:
    """Model FLOPs utilisation: ``6 * N * tokens/s`` over the peak (FLOP/s)."""
    return FLOPS_PER_PARAM_TOKEN * params * tokens_per_s / peak


def throughput(params: float, tokens_per_step: int, step_seconds: list[float], device_name: str, dtype: str,
               warmup: int = 2) -> dict:
    """Seconds per step, tokens/s and MFU from measured step times (the first ``warmup`` steps left out)."""
    timed = step_seconds[warmup:] or step_seconds  # the first steps warm kernels and the allocator up
    step_s = sum(timed) / len(timed)
    tokens_per_s = tokens_per_step / step_s
    peak = peak_flops(device_name, dtype)
    return {"steps_timed": len(timed), "s_per_step": round(step_s, 3), "train_tokens_per_s": round(tokens_per_s, 1),
            "peak_tflops": None if peak is None else peak / 1e12,
            "mfu": None if peak is None else round(mfu(params, tokens_per_s, peak), 4)}


def filled_rows(tokenizer, n: int, max_length: int) -> list[dict]:
    """Course rows whose answers are repeated until each chat is longer than ``max_length`` (truncated to it)."""
    rows = data.load_split("train")[:n]
    out = []
    for row in rows:
        messages = [dict(m) for m in row["messages"]]
        answer = messages[-1]["content"]
        while len(tokenizer(tokenizer.apply_chat_template(messages, tokenize=False),
                            add_special_tokens=False)["input_ids"]) <= max_length:
            messages[-1]["content"] += " " + answer
        out.append({"messages": messages})
    return out


def check_profile(name: str, steps: int, workdir: Path, cpu: bool) -> dict:
    """Build the stand-in, load it in 4-bit, train ``steps`` steps, generate; return the measurements."""
    import torch
    from trl import SFTTrainer

    base = config.PROFILES[name]
    dtype = "float32" if cpu else base.torch_dtype
    started = time.time()
    folder = models.build_stand_in(base.model_id, workdir / name, tiny=cpu, dtype=dtype,
                                   device="cpu" if cpu else "cuda")
    build_s = time.time() - started
    cfg = base.replace(model_id=str(folder))
    if cpu:
        cfg = cfg.replace(device="cpu", torch_dtype="float32", bnb_compute_dtype="float32", optim="adamw_torch",
                          max_seq_length=128, per_device_batch_size=2, gradient_accumulation_steps=1)
    cfg, flags = train.precision(cfg)
    tokenizer = models.load_tokenizer(cfg, log=lambda _m: None)
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    started = time.time()
    model = models.load_model(cfg, quantized=True)
    load_s = time.time() - started
    max_logit = models.check_finite_logits(model, tokenizer)

    rows = filled_rows(tokenizer, cfg.per_device_batch_size * cfg.gradient_accumulation_steps * (steps + 2),
                       cfg.max_seq_length)
    args = train.sft_config(cfg, workdir / f"{name}-ckpt", flags=flags, max_steps=steps + 2, eval_strategy="no",
                            save_strategy="no", load_best_model_at_end=False, logging_steps=1, disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train.to_dataset(rows), processing_class=tokenizer,
                         peft_config=train.lora_config(cfg))
    train.match_adapter_dtype(trainer.model, cfg)
    train.keep_4bit_trainable(trainer.model)
    step_times: list[float] = []

    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            step_times.append(time.perf_counter() - self.t)

    trainer.add_callback(Timer())
    memory.reset_peak(cfg.device)
    trainer.train()
    peak = memory.peak_gib(cfg.device)
    tokens_per_step = cfg.per_device_batch_size * cfg.gradient_accumulation_steps * cfg.max_seq_length
    est = memory.estimate(memory.resolve_shape(str(folder)), memory.setup_from_profile(cfg))
    device = "CPU" if cpu else torch.cuda.get_device_name(0)
    speed = throughput(est.shape.total_params(), tokens_per_step, step_times, device, cfg.bnb_compute_dtype)
    est_tensors = est.total_gib - est.components.get("cuda_overhead", 0) / memory.GIB  # what torch counts

    prompts = evaluate.conversations_from_rows(data.load_split("test")[:16])
    started = time.time()
    outputs = evaluate.generate(trainer.model, tokenizer, prompts, max_new_tokens=32, batch_size=16, progress=False)
    gen_s = time.time() - started
    new_tokens = sum(len(tokenizer(o, add_special_tokens=False)["input_ids"]) for o in outputs)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "profile": name, "model": base.model_id, "params_b": round(est.shape.total_params() / 1e9, 2),
        "compute_dtype": cfg.bnb_compute_dtype, "flags": flags, "batch": cfg.per_device_batch_size,
        "grad_accum": cfg.gradient_accumulation_steps, "seq_len": cfg.max_seq_length,
        "build_s": round(build_s, 1), "load_4bit_s": round(load_s, 1), "max_abs_logit": round(max_logit, 2),
        **speed,
        "peak_gib": None if peak is None else round(peak, 2), "est_gib": round(est_tensors, 2),
        "est_over_peak": None if not peak else round(est_tensors / peak, 2),
        "loss_first_last": [round(losses[0], 3), round(losses[-1], 3)] if losses else None,
        "finite_losses": all(l == l and abs(l) != float("inf") for l in losses),
        "gen_s": round(gen_s, 2), "gen_new_tokens_per_s": round(new_tokens / gen_s, 1),
    }


def write_results(results: list[dict], device: str, path: Path) -> None:
    """Replace the GPU-check section of ``bench/results.md`` with these results (``bench.results.write_section``)."""
    from bench.results import command_line, table, write_section

    rows = [[r["profile"], r["model"], f"{r['params_b']} B", r["compute_dtype"],
             f"{r['batch']} x {r['grad_accum']} x {r['seq_len']}", r["s_per_step"], r["train_tokens_per_s"],
             "n/a" if r["mfu"] is None else f"{r['mfu']:.1%} of {r['peak_tflops']:.0f} TFLOP/s", r["peak_gib"],
             r["est_gib"], r["est_over_peak"], r["gen_new_tokens_per_s"]] for r in results]
    body = [f"Device: {device}. Random-initialised stand-ins of the profiles' real architectures, 4-bit NF4, through "
            "`SFTTrainer`: speed and memory, not quality.", "",
            *table(["profile", "model", "params", "dtype", "batch x accum x seq", "s/step", "train tok/s",
                    "MFU (6N)", "peak GiB (measured)", "estimate GiB", "est / peak", "gen new tok/s"], rows), "",
            "Estimate: `helpers.memory` minus its CUDA-context term (torch does not count the context). MFU: 6 x "
            "parameters x tokens/s over the GPU's dense bf16/fp16 tensor-core peak (datasheets, `PEAK_TFLOPS` in "
            "bench/gpu_check.py); the convention of full training: LoRA skips the frozen weights' gradients (about 2N "
            "of the 6N) while gradient checkpointing recomputes the forward (+2N), so read it as a comparison "
            "between runs, not as the hardware's exact load. n/a: no known peak for this device."]
    write_section("gpu_check", "GPU check (`bench/gpu_check.py`)", body, command_line(None, "gpu_check.py"), path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=["t4", "a100"])
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per profile (2 more warm up)")
    parser.add_argument("--cpu-rehearsal", action="store_true", help="tiny stand-ins on the CPU (for the tests)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    import torch

    if not args.cpu_rehearsal and not torch.cuda.is_available():
        print("error: no CUDA GPU here: run this on a GPU machine, or pass --cpu-rehearsal", file=sys.stderr)
        return 2
    device = "CPU (rehearsal)" if args.cpu_rehearsal else torch.cuda.get_device_name(0)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.profiles:
            if name not in config.PROFILES or config.PROFILES[name].device != "cuda":
                print(f"error: {name!r} is not a GPU profile", file=sys.stderr)
                return 2
            print(f"== {name}", flush=True)
            result = check_profile(name, args.steps, Path(tmp), args.cpu_rehearsal)
            print("RESULT", json.dumps(result), flush=True)
            results.append(result)
            for path in Path(tmp).iterdir():  # free disk before the next (7B) stand-in
                if path.is_dir():
                    import shutil

                    shutil.rmtree(path)
    write_results(results, device, args.out)
    print(f"written to {args.out}")
    bad = [r["profile"] for r in results if not r["finite_losses"]]
    if bad:
        print(f"error: non-finite losses on {bad}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
