"""Choose the ``cpu`` profile's 03 recipe on the validation split (never test): train once, score checkpoints.

Run: ``OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 python bench/cpu_recipe.py [--steps 150 --every 75 --rows 60]``.
Trains notebook 03's recipe on the ``cpu`` profile (``train.fit``: NF4 base, LoRA, assistant-only loss) for
``--steps`` steps at ``--lr``, saving a checkpoint every ``--every`` steps, then answers ``--rows`` validation tickets
with each checkpoint (greedy, the course's decoding) and scores them beside the majority answer: valid JSON, mean
field accuracy, order ids exact on the tickets that name one, and each field. Writes the comparison to
``bench/results.md`` (section ``cpu_recipe``) with three answers of the last checkpoint to read.

The compute dtype is the one this CPU runs the profile in (``config.cpu_compute``: bf16 with native bf16, else fp32;
``--compute`` picks one). ``--rank R`` trains LoRA rank R instead of the profile's (``lora_alpha`` = 2R, the profile's
ratio, so the update's scale alpha / r stays the same): a smaller adapter is what a shipped fallback of this profile
can afford (9.8 MB per adapter at r 16 in bf16). A run at the profile's rank in fp32 writes section ``cpu_recipe``;
another rank or bf16 compute writes its own (``cpu_recipe_r4``, ``cpu_recipe_bf16``, ``cpu_recipe_r4_bf16``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from anywhere without installing


def main(argv: list[str] | None = None) -> int:
    """Train, score every checkpoint on validation, print and record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--every", type=int, default=75)
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the profile's)")
    parser.add_argument("--rows", type=int, default=60, help="validation tickets answered per checkpoint")
    parser.add_argument("--rank", type=int, default=None, help="LoRA rank (default: the profile's), alpha = 2 x rank")
    parser.add_argument("--compute", choices=("fp32", "bf16"), default=None,
                        help="4-bit compute dtype (default: this CPU's choice, config.cpu_compute)")
    parser.add_argument("--out", type=Path, default=None, help="default: artifacts/cpu/recipe (recipe-rR with --rank)")
    args = parser.parse_args(argv)

    from peft import PeftModel

    from helpers import config, data, evaluate, models, train

    cfg = config.get_profile("cpu")
    if args.compute:
        cfg = cfg.replace(bnb_compute_dtype={"fp32": "float32", "bf16": "bfloat16"}[args.compute])
    if args.rank is not None:
        if args.rank < 1:
            parser.error(f"--rank {args.rank}: a LoRA rank is a whole number >= 1")
        cfg = cfg.replace(lora_r=args.rank, lora_alpha=2 * args.rank)
    bf16 = cfg.bnb_compute_dtype == "bfloat16"
    suffix = ("" if args.rank is None else f"_r{args.rank}") + ("_bf16" if bf16 else "")
    section = "cpu_recipe" + suffix
    args.out = args.out or ROOT / "artifacts" / "cpu" / ("recipe" + suffix.replace("_", "-"))
    lr = args.lr or cfg.learning_rate
    started = time.time()
    fitted = train.fit(cfg, args.out, data.load_split("train"), data.load_split("validation")[-32:],
                       early_stopping=False, max_steps=args.steps, learning_rate=lr, eval_steps=args.every,
                       save_steps=args.every, save_total_limit=None, load_best_model_at_end=False)
    train_s = time.time() - started
    tokenizer = fitted.tokenizer
    rows = data.load_split("validation")[:args.rows]
    conversations, references = evaluate.conversations_from_rows(rows), evaluate.references_from_rows(rows)
    majority = evaluate.majority_answer([data.answer_of(r) for r in data.load_split("train")])
    outputs = {"majority answer": evaluate.majority_outputs(majority, len(rows))}
    base = fitted.trainer.model.get_base_model() if hasattr(fitted.trainer.model, "get_base_model") else None
    del fitted
    ckpts = sorted((args.out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    for ckpt in ckpts:
        model = models.load_model(cfg, quantized=True)
        model = PeftModel.from_pretrained(model, str(ckpt))
        outputs[f"step {ckpt.name.split('-')[1]}"] = evaluate.generate(model, tokenizer, conversations,
                                                                       cfg.max_new_tokens, progress=False)
        del model
    del base
    table_rows = []
    for name, texts in outputs.items():
        scores = evaluate.score(texts, references)
        fields = evaluate.field_breakdown({name: texts}, references).set_index("field")
        table_rows.append([name, f"{scores['json_valid']:.2f}", f"{scores['field_accuracy']:.3f}",
                           f"{fields.loc['order_id', 'named']:.2f} of {int(fields.loc['order_id', 'n named'])}",
                           *(f"{fields.loc[f, 'all']:.2f}" for f in ("category", "product", "order_id", "priority"))])
        print(" | ".join(map(str, table_rows[-1])), flush=True)
    last = list(outputs)[-1]
    shown = [f"- ticket: {json.dumps(evaluate.tickets_from_rows(rows[i:i + 1])[0][:160])}  \n  answer: "
             f"`{outputs[last][i][:220]}`  \n  reference: `{references[i][:220]}`" for i in range(3)]
    from bench.results import command_line, table, write_section

    from safetensors.torch import load_file

    lora_params = sum(t.numel() for t in load_file(str(ckpts[-1] / "adapter_model.safetensors")).values())
    title = ("The cpu profile's 03 recipe, chosen on validation" if not suffix else "The cpu profile's 03 recipe"
             + (f" at LoRA rank {args.rank}" if args.rank is not None else "") + (" with bf16 compute" if bf16 else "")
             + ", on validation")
    write_section(section, f"{title} (`bench/cpu_recipe.py`)", [
        f"SmolLM2-135M-Instruct, NF4 base + LoRA r {cfg.lora_r} (alpha {cfg.lora_alpha}, all linear layers), batch "
        f"{cfg.per_device_batch_size}, learning rate {lr:g} with cosine decay over {args.steps} steps, "
        f"{'bf16 compute (autocast)' if bf16 else 'fp32 compute'}; "
        f"training took {train_s / 60:.1f} min; the adapter has {lora_params / 1e6:.2f} M parameters, "
        f"{2 * lora_params / 1e6:.1f} MB in a 16-bit dtype. Each "
        f"checkpoint answered the first {len(rows)} validation tickets (greedy); the test split was not used.", "",
        *table(["answers", "valid JSON", "mean field accuracy", "order id exact (tickets naming one)", "category",
                "product", "order id", "priority"], table_rows),
        "", f"Three answers of {last}, to read beside the numbers:", "", *shown],
        command_line(argv, "cpu_recipe.py"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
