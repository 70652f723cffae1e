"""The ``cpu`` profile's 03 recipe, chosen on validation (``bench/cpu_recipe.py``), scored on the test split once.

Run: ``OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 python bench/cpu_test_once.py [--gguf-rows 16]``.
Trains the recipe as 03 does (``train.train_adapter`` on the ``cpu`` profile: its max_steps, learning rate and early
stopping on the validation split), then — once, no choice is made from these numbers — answers every test ticket and
every hand-written ticket (greedy) and scores them beside the majority answer: valid JSON, mean field accuracy,
order ids exact on the tickets that name one, each field. Then 06's GGUF route on the merged model: llama.cpp's
converter (f16, q8_0), ``export.verify_gguf``, and, when the llama.cpp runtime is installed (``make gguf``), the first
``--gguf-rows`` test tickets answered by llama.cpp beside transformers. Writes ``bench/results.md`` (sections
``cpu_test_once`` and ``cpu_gguf``) with answers to read. The compute dtype is the one this CPU runs the profile in
(``config.cpu_compute``: bf16 with native bf16): a bf16 run writes its own sections (``cpu_test_once_bf16``,
``cpu_gguf_bf16``) and its own folder (``artifacts/cpu/test-once-bf16``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from anywhere without installing


def score_row(name: str, texts: list[str], references: list[str]) -> list[str]:
    """One row of the comparison table: valid JSON, mean field accuracy, order ids, each field."""
    from helpers import evaluate

    scores = evaluate.score(texts, references)
    fields = evaluate.field_breakdown({name: texts}, references).set_index("field")
    return [name, f"{scores['json_valid']:.3f}", f"{scores['field_accuracy']:.3f}",
            f"{fields.loc['order_id', 'named']:.2f} of {int(fields.loc['order_id', 'n named'])}",
            *(f"{fields.loc[f, 'all']:.2f}" for f in ("category", "product", "order_id", "priority"))]


def main(argv: list[str] | None = None) -> int:
    """Train the chosen recipe, score test and hand-written tickets once, then convert, verify and run the GGUF."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="default: artifacts/cpu/test-once (-bf16)")
    parser.add_argument("--gguf-rows", type=int, default=16, help="test tickets answered through llama.cpp")
    args = parser.parse_args(argv)

    from peft import PeftModel

    from bench.results import command_line, table, write_section
    from helpers import config, data, evaluate, export, models, train

    cfg = config.get_profile("cpu")
    suffix = "_bf16" if cfg.bnb_compute_dtype == "bfloat16" else ""
    args.out = args.out or ROOT / "artifacts" / "cpu" / ("test-once" + suffix.replace("_", "-"))
    adapter = args.out / "adapter"
    started = time.time()
    if not (adapter / "adapter_model.safetensors").is_file():
        train.train_adapter(cfg, adapter)
    train_s = time.time() - started
    manifest = json.loads((adapter / train.MANIFEST_NAME).read_text())
    tokenizer = models.load_tokenizer(cfg)
    model = PeftModel.from_pretrained(models.load_model(cfg, quantized=True), str(adapter))
    majority = evaluate.majority_answer([data.answer_of(r) for r in data.load_split("train")])
    header = ["answers", "valid JSON", "mean field accuracy", "order id exact (tickets naming one)", "category",
              "product", "order id", "priority"]
    sections, shown = [], []
    for split, rows in (("test", data.load_split("test")),
                        ("hand-written", train.read_jsonl(config.TICKETS_DIR / "handwritten.jsonl"))):
        references = evaluate.references_from_rows(rows)
        answers = evaluate.generate(model, tokenizer, evaluate.conversations_from_rows(rows), cfg.max_new_tokens,
                                    progress=False)
        table_rows = [score_row("majority answer", evaluate.majority_outputs(majority, len(rows)), references),
                      score_row("03 recipe (cpu)", answers, references)]
        for row in table_rows:
            print(split, " | ".join(row), flush=True)
        sections += [f"**{split}** ({len(rows)} tickets):", "", *table(header, table_rows), ""]
        shown += [f"- {split} ticket: {json.dumps(evaluate.tickets_from_rows(rows[i:i + 1])[0][:150])}  \n  answer: "
                  f"`{answers[i][:200]}`  \n  reference: `{references[i][:200]}`" for i in range(2)]
    metrics = manifest["metrics"]
    write_section("cpu_test_once" + suffix, "The cpu profile's 03 recipe" + (" with bf16 compute" if suffix else "")
                  + " on the test split, once (`bench/cpu_test_once.py`)", [
        f"SmolLM2-135M-Instruct, 03's recipe as `train.train_adapter` runs it on the `cpu` profile (chosen on "
        f"validation: `cpu_recipe` above): {metrics['global_step']} steps, learning rate {cfg.learning_rate:g}, "
        f"LoRA r {cfg.lora_r}, {'bf16' if suffix else 'fp32'} compute; training took {train_s / 60:.1f} min (0 when "
        f"the adapter already existed). Every test "
        f"ticket and every hand-written ticket answered once, greedy; nothing was chosen from these numbers.", "",
        *sections, "Answers to read beside the numbers:", "", *shown], command_line(argv, "cpu_test_once.py"))
    del model

    merged = export.merge_to_16bit(cfg, adapter, args.out / "merged")
    lines = []
    files = {}
    for kind in ("f16", "q8_0"):
        began = time.time()
        files[kind] = export.to_gguf(merged, args.out / "gguf" / f"tickets-{kind}.gguf", kind)
        seconds = time.time() - began
        report = export.verify_gguf(files[kind], merged)
        lines.append(f"- {kind}: {files[kind].stat().st_size / 2**20:.1f} MB, converted in {seconds:.0f} s; "
                     f"verify_gguf {'passed' if report.passed else 'FAILED: ' + ', '.join(report.failed)} "
                     f"({report.checks['values'][1]})")
        print(lines[-1], flush=True)
    if importlib.util.find_spec("llama_cpp") is None:
        lines.append("- the llama.cpp runtime is not installed (`make gguf`): the files were not run")
    else:
        rows = data.load_split("test")[:args.gguf_rows]
        conversations, references = evaluate.conversations_from_rows(rows), evaluate.references_from_rows(rows)
        hf_model = models.load_model(cfg, quantized=False, model_id=str(merged))
        began = time.perf_counter()
        hf = evaluate.generate(hf_model, tokenizer, conversations, cfg.max_new_tokens, progress=False)
        hf_s = time.perf_counter() - began
        hf_tokens = sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) + 1 for a in hf)
        runs = {"transformers, merged (batched)": {"outputs": hf, "tokens_per_s": round(hf_tokens / hf_s, 1)}}
        runs |= {f"llama.cpp {kind} (one at a time)": export.gguf_answers(path, conversations, cfg.max_new_tokens)
                 for kind, path in files.items()}
        table_rows = []
        for name, run in runs.items():
            scores = evaluate.score(run["outputs"], references)
            same = sum(a.strip() == b.strip() for a, b in zip(run["outputs"], hf))
            table_rows.append([name, f"{scores['json_valid']:.3f}", f"{scores['field_accuracy']:.3f}",
                               f"{same} of {len(hf)}", f"{run['tokens_per_s']}"])
            print(" | ".join(table_rows[-1]), flush=True)
        lines += ["", f"The first {len(rows)} test tickets, greedy, the chat template from each file:", "",
                  *table(["answers", "valid JSON", "mean field accuracy", "identical to transformers",
                          "new tokens / s"], table_rows)]
    write_section("cpu_gguf" + suffix, "06's GGUF route on the cpu profile's merged model"
                  + (" (bf16 recipe)" if suffix else "") + " (`bench/cpu_test_once.py`)", [
        "llama.cpp's own converter from the pinned llama-cpp-python 0.3.36 sdist, read back with `verify_gguf`:", "",
        *lines], command_line(argv, "cpu_test_once.py"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
