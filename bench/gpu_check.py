"""GPU check: the GPU profiles' training path on real-size stand-ins, measured on whatever GPU this machine has.

Run: ``bash bench/gpu_check.sh`` (or ``python bench/gpu_check.py [--profiles t4 l4 a100] [--steps 10]``).

No hub access is needed. For each profile, ``helpers.models.build_stand_in`` builds a random-initialised model of the
profile's real architecture at its published size (Qwen2.5-1.5B for ``t4``, Qwen2.5-7B for ``l4`` and ``a100``; from
the committed ``data/model-configs/*/config.json``) with Qwen2.5's chat template, then the notebooks' path runs:

1. ``train.precision``'s fp16 check (t4: one 4-bit forward pass, NaN/inf -> fp32 compute; its verdict is reported),
   4-bit NF4 load (``models.load_model``) and a finite-logits check in the profile's compute dtype (fp16 for t4);
2. ``--steps`` QLoRA steps through ``SFTTrainer`` with the profile's sizes (rows filled to ``max_seq_length``, so the
   memory estimate's batch x sequence is what runs): seconds per step, tokens per second, and the measured peak
   (``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``) next to ``helpers.memory``'s estimate;
3. ``--real-steps`` more steps on the course's real training rows (``data.load_split("train")``, as they are: 175
   tokens each on average, 237 at most, with the stand-in's tokenizer; dynamic padding), the same adapter and batch:
   the seconds per step a student's run takes, with tokens per step counted as rows per step x the rows' mean length
   (capped at max_seq_length), pads not counted;
4. batched generation with the course's decoding (``evaluate.generate``): seconds and new tokens per second;
5. model FLOPs utilisation (MFU): ``6 * N * tokens/s / peak`` with N the model's parameters and the GPU's dense
   tensor-core peak for the compute dtype (:data:`PEAK_TFLOPS`, from NVIDIA's datasheets).

``l4`` is the profile auto-detection picks on 24 GB cards with bf16 (L4, A10G, RTX 3090/4090): the 7B model with the
A100 recipe at batch 4 x 4. ``l4`` and ``a100`` share one 7B stand-in (built once). Time on one H100 with the
defaults, estimated from the sizes, not yet measured: installing the wheelhouse ~5 s (3 s in the CPU rehearsal) and
imports ~15 s; t4 ~1 min (1.5B, 12 filled steps of 12k tokens at ~1 s); the 7B stand-in's build (15 GB of bf16
written) ~1 min; each 7B profile ~2.5 min (4-bit load ~40 s, 12 filled steps of 16k tokens at ~4 s, i.e. ~4k
tokens/s, 12 real-row steps of ~3k tokens at ~1 s, generation ~10 s): about 7 minutes in all. Each RESULT line gives
the seconds each part took (``build_s``, ``load_4bit_s``, ``filled_part_s``, ``real_part_s``, ``gen_s``,
``profile_s``), so a first run replaces this estimate; ``--steps 5 --real-steps 5`` saves about a minute.

A stand-in generates noise: this checks code paths, memory and speed, never quality. Results are printed and written
to ``bench/results.md`` with the GPU's name, the date and the library versions. ``--cpu-rehearsal`` runs the same
script on tiny stand-ins on the CPU (the test suite does, so the script cannot rot between GPU runs).
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


def real_rows(n: int) -> list[dict]:
    """``n`` of the course's training rows as they are (the split repeated if it is shorter)."""
    rows = data.load_split("train")
    return [{"messages": [dict(m) for m in rows[i % len(rows)]["messages"]]} for i in range(n)]


def row_tokens(tokenizer, rows: list[dict], max_length: int) -> list[int]:
    """Tokens per row after the chat template, capped at ``max_length`` (what SFTTrainer trains on)."""
    return [min(max_length, len(tokenizer(tokenizer.apply_chat_template(r["messages"], tokenize=False),
                                          add_special_tokens=False)["input_ids"])) for r in rows]


# What bench/gpu_wheelhouse.sh carries to an offline GPU machine: their requirements are checked against what is there.
CARRIED = ("trl", "bitsandbytes", "datasets", "transformers", "peft", "dill", "multiprocess")
REPORTED = ("torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes", "datasets", "pyarrow", "tokenizers",
            "huggingface-hub")


def environment() -> tuple[dict[str, str], list[str]]:
    """Versions of the libraries the check runs on, and the requirements of the carried packages that are not met.

    On the GPU machine the wheelhouse is installed with ``--no-deps`` (pip cannot fetch anything there), so nothing
    else checks that the image's packages satisfy them: a miss is printed before the run rather than found midway.
    """
    import importlib.metadata as md

    from packaging.requirements import Requirement

    def version(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    versions = {name: version(name) or "missing" for name in REPORTED}
    problems = []
    for name in (*CARRIED, "accelerate"):
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            problems.append(f"{name} is not installed")
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue  # an extra's requirement, or another platform's
            found = version(req.name)
            if found is None:
                problems.append(f"{name} needs {req}: not installed")
            elif req.specifier and not req.specifier.contains(found, prereleases=True):
                problems.append(f"{name} needs {req}: found {found}")
    return versions, problems


def timed_train(trainer, device: str) -> tuple[list[float], float | None, list[float]]:
    """Train; return each optimizer step's seconds, the measured peak GiB (None on a CPU) and the logged losses."""
    import torch
    from transformers import TrainerCallback

    step_times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            step_times.append(time.perf_counter() - self.t)

    trainer.add_callback(Timer())
    memory.reset_peak(device)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return step_times, memory.peak_gib(device), losses


def check_profile(name: str, steps: int, real_steps: int, workdir: Path, cpu: bool,
                  stand_ins: dict[str, Path] | None = None) -> dict:
    """Build (or reuse) the stand-in, load it in 4-bit, train ``steps`` steps on filled rows and ``real_steps`` on
    the course's rows, generate; return the measurements. ``stand_ins`` maps model ids to stand-ins already built."""
    import torch
    from trl import SFTTrainer

    stand_ins = {} if stand_ins is None else stand_ins
    base = config.PROFILES[name]
    dtype = "float32" if cpu else base.torch_dtype
    started = time.time()
    if base.model_id not in stand_ins:  # l4 and a100 share the 7B one
        stand_ins[base.model_id] = models.build_stand_in(base.model_id, workdir / base.model_id.split("/")[-1],
                                                         tiny=cpu, dtype=dtype, device="cpu" if cpu else "cuda")
        models.free_memory()  # the full-precision model it built and saved
    folder = stand_ins[base.model_id]
    build_s = time.time() - started
    cfg = base.replace(model_id=str(folder))
    if cpu:
        cfg = cfg.replace(device="cpu", torch_dtype="float32", bnb_compute_dtype="float32", optim="adamw_torch",
                          max_seq_length=256, per_device_batch_size=2, gradient_accumulation_steps=1)
        # 256: the course's rows (about 175 of the stand-in tokenizer's tokens, 237 at most) are not cut
    cfg, flags = train.precision(cfg)
    tokenizer = models.load_tokenizer(cfg, log=lambda _m: None)
    started = time.time()
    model = models.load_model(cfg, quantized=True)
    load_s = time.time() - started
    max_logit = models.check_finite_logits(model, tokenizer)
    rows_per_step = cfg.per_device_batch_size * cfg.gradient_accumulation_steps
    device = "CPU" if cpu else torch.cuda.get_device_name(0)
    est = memory.estimate(memory.resolve_shape(str(folder)), memory.setup_from_profile(cfg))
    params = est.shape.total_params()
    run_args = dict(flags=flags, eval_strategy="no", save_strategy="no", load_best_model_at_end=False, logging_steps=1,
                    disable_tqdm=True)

    # filled rows: every row max_seq_length tokens, the batch x sequence the memory estimate assumes
    started = time.time()
    rows = filled_rows(tokenizer, rows_per_step * (steps + 2), cfg.max_seq_length)
    trainer = SFTTrainer(model=model, args=train.sft_config(cfg, workdir / f"{name}-ckpt", max_steps=steps + 2,
                                                             **run_args),
                         train_dataset=train.to_dataset(rows), processing_class=tokenizer,
                         peft_config=train.lora_config(cfg))
    train.match_adapter_dtype(trainer.model, cfg)
    train.keep_4bit_trainable(trainer.model)
    step_times, peak, losses = timed_train(trainer, cfg.device)
    filled_s = time.time() - started
    speed = throughput(params, rows_per_step * cfg.max_seq_length, step_times, device, cfg.bnb_compute_dtype)
    est_tensors = est.total_gib - est.components.get("cuda_overhead", 0) / memory.GIB  # what torch counts

    # the course's rows as they are (dynamic padding): the same adapter, a fresh optimizer
    started = time.time()
    peft_model = trainer.model
    del trainer
    models.free_memory()  # the first trainer's optimizer states
    rows = real_rows(rows_per_step * (real_steps + 2))
    lengths = row_tokens(tokenizer, rows, cfg.max_seq_length)
    mean_tokens = sum(lengths) / len(lengths)
    trainer = SFTTrainer(model=peft_model, args=train.sft_config(cfg, workdir / f"{name}-real",
                                                                  max_steps=real_steps + 2, **run_args),
                         train_dataset=train.to_dataset(rows), processing_class=tokenizer)
    real_times, real_peak, real_losses = timed_train(trainer, cfg.device)
    real_s = time.time() - started
    real = throughput(params, round(rows_per_step * mean_tokens), real_times, device, cfg.bnb_compute_dtype)

    prompts = evaluate.conversations_from_rows(data.load_split("test")[:16])
    started = time.time()
    outputs = evaluate.generate(trainer.model, tokenizer, prompts, max_new_tokens=32, batch_size=16, progress=False)
    gen_s = time.time() - started
    new_tokens = sum(len(tokenizer(o, add_special_tokens=False)["input_ids"]) for o in outputs)
    del trainer, peft_model, model
    all_losses = losses + real_losses
    return {
        "profile": name, "model": base.model_id, "params_b": round(params / 1e9, 2),
        # fp16 (t4): train.precision's check of one forward pass, run on this GPU (None: bf16 or fp32, no check)
        "fp16_check": (models.recorded_fp16_verdict(cfg) or {}).get("detail") if not cpu else None,
        "compute_dtype": cfg.bnb_compute_dtype, "flags": flags, "batch": cfg.per_device_batch_size,
        "grad_accum": cfg.gradient_accumulation_steps, "seq_len": cfg.max_seq_length,
        "build_s": round(build_s, 1), "load_4bit_s": round(load_s, 1), "max_abs_logit": round(max_logit, 2),
        **speed,
        "peak_gib": None if peak is None else round(peak, 2), "est_gib": round(est_tensors, 2),
        "est_over_peak": None if not peak else round(est_tensors / peak, 2),
        "real_row_tokens_mean": round(mean_tokens, 1), "real_row_tokens_max": max(lengths),
        "real_steps_timed": real["steps_timed"], "real_s_per_step": real["s_per_step"],
        "real_train_tokens_per_s": real["train_tokens_per_s"], "real_mfu": real["mfu"],
        "real_peak_gib": None if real_peak is None else round(real_peak, 2),
        "loss_first_last": [round(losses[0], 3), round(losses[-1], 3)] if losses else None,
        "finite_losses": bool(all_losses) and all(l == l and abs(l) != float("inf") for l in all_losses),
        "gen_s": round(gen_s, 2), "gen_new_tokens_per_s": round(new_tokens / gen_s, 1),
        "filled_part_s": round(filled_s, 1), "real_part_s": round(real_s, 1),
    }


def write_results(results: list[dict], device: str, path: Path, versions: dict[str, str] | None = None) -> None:
    """Replace the GPU-check section of ``bench/results.md`` with these results (``bench.results.write_section``)."""
    from bench.results import command_line, table, write_section

    pct = lambda r, key: "n/a" if r[key] is None else f"{r[key]:.1%} of {r['peak_tflops']:.0f} TFLOP/s"  # noqa: E731
    rows = [[r["profile"], r["model"], f"{r['params_b']} B", r["compute_dtype"],
             f"{r['batch']} x {r['grad_accum']} x {r['seq_len']}", r["s_per_step"], r["train_tokens_per_s"],
             pct(r, "mfu"), r["peak_gib"], r["est_gib"], r["est_over_peak"],
             f"{r['real_row_tokens_mean']:.0f}", r["real_s_per_step"], r["real_train_tokens_per_s"], pct(r, "real_mfu"),
             r["real_peak_gib"], r["gen_new_tokens_per_s"], r.get("fp16_check") or "—"] for r in results]
    libs = ", ".join(f"{k} {v}" for k, v in (versions or {}).items())
    body = [f"Device: {device}. Random-initialised stand-ins of the profiles' real architectures, 4-bit NF4, through "
            "`SFTTrainer`: speed and memory, not quality." + (f" Libraries: {libs}." if libs else ""), "",
            *table(["profile", "model", "params", "dtype", "batch x accum x seq", "s/step (filled)",
                    "train tok/s (filled)", "MFU (6N, filled)", "peak GiB (measured)", "estimate GiB", "est / peak",
                    "real rows: mean tokens", "s/step (real)", "train tok/s (real)", "MFU (6N, real)",
                    "peak GiB (real)", "gen new tok/s", "fp16 check (train.precision)"], rows), "",
            "Filled: every row filled to max_seq_length, the batch x sequence the memory estimate assumes. Real: the "
            "course's training rows as they are (dynamic padding), the same adapter and batch; their tokens per step "
            "are rows per step x the rows' mean length (the stand-in's tokenizer, capped at max_seq_length), pads not "
            "counted. Estimate: `helpers.memory` minus its CUDA-context term (torch does not count the context). MFU: "
            "6 x parameters x tokens/s over the GPU's dense bf16/fp16 tensor-core peak (datasheets, `PEAK_TFLOPS` in "
            "bench/gpu_check.py); the convention of full training: LoRA skips the frozen weights' gradients (about 2N "
            "of the 6N) while gradient checkpointing recomputes the forward (+2N), so read it as a comparison "
            "between runs, not as the hardware's exact load. n/a: no known peak for this device."]
    write_section("gpu_check", "GPU check (`bench/gpu_check.py`)", body, command_line(None, "gpu_check.py"), path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=["t4", "l4", "a100"])
    parser.add_argument("--steps", type=int, default=10,
                        help="timed training steps per profile on filled rows (2 more warm up)")
    parser.add_argument("--real-steps", type=int, default=10,
                        help="timed training steps per profile on the course's real rows (2 more warm up)")
    parser.add_argument("--cpu-rehearsal", action="store_true", help="tiny stand-ins on the CPU (for the tests)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    began = time.time()
    import torch

    versions, problems = environment()
    print("libraries:", ", ".join(f"{k} {v}" for k, v in versions.items()),
          f"(torch CUDA {torch.version.cuda})", flush=True)
    for problem in problems:
        print(f"warning: {problem}", flush=True)
    if not args.cpu_rehearsal and not torch.cuda.is_available():
        print("error: no CUDA GPU here: run this on a GPU machine, or pass --cpu-rehearsal", file=sys.stderr)
        return 2
    for name in args.profiles:
        if name not in config.PROFILES or config.PROFILES[name].device != "cuda":
            print(f"error: {name!r} is not a GPU profile", file=sys.stderr)
            return 2
    device = "CPU (rehearsal)" if args.cpu_rehearsal else torch.cuda.get_device_name(0)
    results = []
    import shutil

    with tempfile.TemporaryDirectory() as tmp:
        stand_ins: dict[str, Path] = {}
        for i, name in enumerate(args.profiles):
            print(f"== {name}", flush=True)
            started = time.time()
            result = check_profile(name, args.steps, args.real_steps, Path(tmp), args.cpu_rehearsal, stand_ins)
            result["profile_s"] = round(time.time() - started, 1)
            print("RESULT", json.dumps(result), flush=True)
            results.append(result)
            models.free_memory()  # this profile's model, before the next one loads
            later = {config.PROFILES[n].model_id for n in args.profiles[i + 1:]}
            for model_id in [m for m in stand_ins if m not in later]:  # free disk: keep only what comes again
                shutil.rmtree(stand_ins.pop(model_id), ignore_errors=True)
            for path in [*Path(tmp).glob("*-ckpt"), *Path(tmp).glob("*-real")]:
                shutil.rmtree(path, ignore_errors=True)
    write_results(results, device, args.out, versions)
    print(f"written to {args.out}; {time.time() - began:.0f} s in all")
    bad = [r["profile"] for r in results if not r["finite_losses"]]
    if bad:
        print(f"error: non-finite losses on {bad}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
