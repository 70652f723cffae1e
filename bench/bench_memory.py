"""Benchmark: helpers.memory's estimated peak training memory vs the measured peak, on the CPU.

Run: ``HF_HUB_OFFLINE=1 python bench/bench_memory.py [--steps 2] [--only NAME ...]``.

For each configuration (random-initialised Llama models of different sizes; full fine-tuning, LoRA, QLoRA with and
without gradient checkpointing; a plain loss over full logits and the tiled LM-head loss of TRL's ``SFTTrainer``,
which the course trains with) a fresh Python process:

1. imports torch / transformers / peft / bitsandbytes and runs one training step of a 2-layer model through the same
   code path (lazy imports, thread pools and kernels are loaded before anything is measured);
2. records its resident set size (RSS) as the baseline, loads the model from disk (4-bit NF4 for QLoRA), copies the
   non-quantized tensors out of the safetensors memory map (so file pages read while loading are released), then
   resets the kernel's peak-RSS counter (``echo 5 > /proc/self/clear_refs``) so the fp32 -> NF4 conversion during
   loading is not counted;
3. runs ``--steps`` training steps (forward, backward, AdamW step) on random tokens and reads the peak RSS
   (``VmHWM``).

Measured = peak RSS - baseline: weights, adapter, gradients, optimizer state, activations and logits, i.e. exactly
what the estimator adds up (``cuda_overhead`` is a GPU-only term and absent on the CPU). glibc is told to return
large blocks to the OS at once (``MALLOC_MMAP_THRESHOLD_=65536``) so RSS follows live tensors instead of the
allocator's cache. Linux only (``/proc``). Prints estimate / measured per configuration; the target is within +-15%.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from anywhere without installing

from helpers import memory  # noqa: E402

TARGET = 0.15


@dataclass(frozen=True)
class Case:
    """One benchmark configuration: a model shape and how it is trained."""

    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    method: str
    seq_len: int
    batch: int
    grad_checkpointing: bool = False
    lora_r: int = 16
    loss: str = "full"  # "full": model(..., labels=...).loss; "chunked": TRL SFTTrainer's fused LM head


CASES = (
    Case("full-17M", 512, 1408, 4, 8, 8, 8192, "full", 256, 4),
    Case("lora-50M", 768, 2048, 6, 12, 4, 16000, "lora", 256, 4),
    Case("qlora-123M", 1024, 2816, 8, 16, 4, 32000, "qlora", 256, 4),
    Case("qlora-123M-ckpt", 1024, 2816, 8, 16, 4, 32000, "qlora", 512, 4, grad_checkpointing=True),
    # Qwen2.5's 151,936-token vocabulary on a 2-layer model, 4 x 198 = 792 tokens: the logits term dominates, so the
    # same run through a plain loss and through the loss TRL's SFTTrainer uses (the course's path) differ most here.
    Case("qlora-152k-plain", 512, 1408, 2, 8, 2, 151936, "qlora", 198, 4),
    Case("qlora-152k-sfttrainer", 512, 1408, 2, 8, 2, 151936, "qlora", 198, 4, loss="chunked"),
    Case("qlora-123M-sfttrainer", 1024, 2816, 8, 16, 4, 32000, "qlora", 256, 4, loss="chunked"),
)


def shape_of(case: Case) -> memory.ModelShape:
    return memory.ModelShape(case.name, case.vocab, case.hidden, case.intermediate, case.layers, case.heads,
                             case.kv_heads, tie_word_embeddings=True)


def setup_of(case: Case) -> memory.TrainSetup:
    return memory.TrainSetup(method=case.method, seq_len=case.seq_len, batch=case.batch, lora_r=case.lora_r,
                             lora_dropout=0.05, optimizer="adamw", grad_checkpointing=case.grad_checkpointing,
                             dtype="float32", device="cpu", loss=case.loss)


# ---------------------------------------------------------------------------------------------------- child side


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _build(case: Case, folder: str, quantized: bool):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs = {"dtype": torch.float32}
    if quantized:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32)
        kwargs["device_map"] = {"": "cpu"}
    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    if case.loss == "chunked":  # what SFTTrainer installs (before PEFT wraps the model): a tiled LM-head loss
        from trl.trainer.utils import add_fused_lm_head

        add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.__class__.__name__ != "Params4bit":
            # Copy out of the safetensors memory map: RSS then counts what training holds, not file pages that were
            # read while loading (the fp32 originals of the quantized layers would otherwise stay resident).
            tensor.data = tensor.data.clone()
    if case.method != "full":
        model = get_peft_model(model, LoraConfig(r=case.lora_r, lora_alpha=2 * case.lora_r, lora_dropout=0.05,
                                                 target_modules="all-linear", task_type="CAUSAL_LM"))
        for p in model.parameters():  # PEFT's default for a 4-bit base is fp32 adapters already; make it explicit
            if p.requires_grad:
                p.data = p.data.float()
    if case.grad_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if case.method != "full":
            model.enable_input_require_grads()
    model.train()
    return model


def _steps(model, case: Case, steps: int) -> float:
    import torch

    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loss = torch.tensor(0.0)
    for _ in range(steps):
        ids = torch.randint(0, case.vocab, (case.batch, case.seq_len), generator=gen)
        extra = {"fused_lm_head": True} if case.loss == "chunked" else {}
        loss = model(input_ids=ids, labels=ids, **extra).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        del ids
    return float(loss)


def child(case: Case, folder: str, warm_folder: str, steps: int) -> dict:
    """Measure one case in this (fresh) process; returns bytes."""
    import gc

    import torch

    torch.set_num_threads(2)
    warm = Case("warm", 64, 128, 2, 2, 1, 256, case.method, 16, 2, case.grad_checkpointing, 4, loss=case.loss)
    _steps(_build(warm, warm_folder, case.method == "qlora"), warm, 1)
    gc.collect()
    base = _rss_kb("VmRSS")
    model = _build(case, folder, case.method == "qlora")
    gc.collect()
    loaded = _rss_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS counter: the fp32 -> NF4 conversion during loading is not training memory
    loss = _steps(model, case, steps)
    peak = max(_rss_kb("VmHWM"), loaded)
    return {"measured": (peak - base) * 1024, "weights_measured": (loaded - base) * 1024, "loss": loss}


# ---------------------------------------------------------------------------------------------------- parent side


def save_model(case: Case, folder: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(
        vocab_size=case.vocab, hidden_size=case.hidden, intermediate_size=case.intermediate,
        num_hidden_layers=case.layers, num_attention_heads=case.heads, num_key_value_heads=case.kv_heads,
        tie_word_embeddings=True, max_position_embeddings=2048)).save_pretrained(folder)


def run_case(case: Case, steps: int, tmp: Path) -> dict:
    folder, warm_folder = tmp / case.name, tmp / "warm"
    if not folder.exists():
        save_model(case, folder)
    if not warm_folder.exists():
        save_model(Case("warm", 64, 128, 2, 2, 1, 256, "full", 16, 2), warm_folder)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import bench.bench_memory as b; "
            "case = b.Case(**json.loads(sys.argv[2])); "
            "print('RESULT', json.dumps(b.child(case, sys.argv[3], sys.argv[4], int(sys.argv[5]))))")
    from bench.results import child_result

    return child_result([sys.executable, "-c", code, str(ROOT), json.dumps(asdict(case)), str(folder),
                         str(warm_folder), str(steps)], case.name, env, ROOT)


def main(argv: list[str] | None = None) -> int:
    """Estimate and measure every case; print the ratios; exit 1 if one is outside +-15%."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="case names to run (default: all)")
    args = parser.parse_args(argv)
    if not Path("/proc/self/clear_refs").exists():
        print("error: this benchmark reads /proc (Linux only)")
        return 2
    cases = [c for c in CASES if not args.only or c.name in args.only]
    print(f"{'case':<18}{'params':>9}{'estimate':>11}{'measured':>11}{'ratio':>8}"
          f"{'weights est':>13}{'weights meas':>14}  (weights: + adapter, measured as RSS after loading)")
    failures = 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            est = memory.estimate(shape_of(case), setup_of(case))
            got = run_case(case, args.steps, Path(tmp))
            ratio = est.total / got["measured"]
            failures += abs(ratio - 1) > TARGET
            mib = 2**20
            rows.append([case.name, f"{shape_of(case).total_params() / 1e6:.0f}M", f"{est.total / mib:.0f}",
                         f"{got['measured'] / mib:.0f}", f"{ratio:.2f}"])
            print(f"{case.name:<18}{shape_of(case).total_params() / 1e6:>8.0f}M{est.total / mib:>9.0f}MB"
                  f"{got['measured'] / mib:>9.0f}MB{ratio:>8.2f}"
                  f"{(est.components['weights'] + est.components['adapter']) / mib:>11.0f}MB"
                  f"{got['weights_measured'] / mib:>12.0f}MB", flush=True)
    summary = f"estimate / measured within +-{TARGET:.0%}: {len(cases) - failures} of {len(cases)} cases"
    print(summary)
    from bench.results import command_line, table, write_section

    write_section("bench_memory", "Memory estimate vs measured peak (`bench/bench_memory.py`)",
                  [f"Peak RSS growth over {args.steps} training step(s) of random Llamas on the CPU, in MiB.", "",
                   *table(["case", "params", "estimate MiB", "measured MiB", "estimate / measured"], rows), "",
                   summary + "."], command_line(argv, "bench_memory.py"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
