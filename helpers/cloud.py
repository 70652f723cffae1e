"""Cloud GPU options: what a training run costs per GPU and provider, from cited prices. Taught in 08_scale_out.

Prices are not measurable offline, so they live in a committed data file, ``data/gpu_prices.csv``: one row per
offer, with the source it was read from and the date that source reports. A row without a price says why (not
verified). The run's time is estimated, not measured: tokens × FLOPs per token over the GPU's dense tensor-core peak
(NVIDIA datasheets, as in ``bench/gpu_check.py``) times an assumed model FLOPs utilisation (MFU).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from helpers.config import PROFILES, REPO_ROOT
from helpers.memory import resolve_shape

if TYPE_CHECKING:
    import pandas as pd

PRICES = REPO_ROOT / "data" / "gpu_prices.csv"
COLUMNS = ("gpu", "provider_kind", "provider", "product", "usd_per_gpu_hour", "source_url", "checked", "note")
FLOPS_PER_TOKEN_PER_PARAM = 6  # forward 2N + backward 4N (see run_hours for QLoRA)


class PriceError(ValueError):
    """A bad row in the price file: says which row, what is wrong and how to fix it."""


@dataclass(frozen=True)
class CloudGPU:
    """A GPU as the cost estimate needs it: memory, bf16 support and its dense tensor-core peak."""

    name: str
    memory_gib: float  # what nvidia-smi reports (as helpers.memory.GPUS)
    bf16: bool  # compute capability >= 8
    peak_tflops: float  # dense tensor-core peak for the dtype it trains in (bf16, or fp16 without bf16)
    peak_source: str


CLOUD_GPUS: dict[str, CloudGPU] = {g.name: g for g in (
    CloudGPU("T4 16 GB", 15.0, False, 65.0, "NVIDIA T4 datasheet: 65 TFLOPS mixed-precision FP16"),
    CloudGPU("L4 24 GB", 22.5, True, 121.0, "NVIDIA L4 datasheet: 242 TFLOPS BF16 with sparsity -> 121 dense"),
    CloudGPU("A10G 24 GB", 22.5, True, 125.0, "NVIDIA A10 datasheet: 125 TFLOPS BF16 dense; the A10G is AWS's "
                                             "variant, not published by NVIDIA: an upper bound"),
    CloudGPU("A100 40 GB", 40.0, True, 312.0, "NVIDIA A100 datasheet: 312 TFLOPS BF16 dense"),
    CloudGPU("A100 80 GB", 80.0, True, 312.0, "NVIDIA A100 datasheet: 312 TFLOPS BF16 dense"),
    CloudGPU("H100 80 GB", 79.6, True, 989.0, "NVIDIA H100 SXM datasheet: 1,979 TFLOPS BF16 with sparsity -> 989"),
)}


def load_prices(path: str | Path = PRICES) -> "pd.DataFrame":
    """The price file, checked: known GPUs, a price >= 0 with its source and date, or a note why none. Taught in 08_scale_out."""
    import pandas as pd

    path = Path(path)
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise PriceError(f"{path}: columns {reader.fieldnames}, expected {list(COLUMNS)} in that order")
        rows = list(reader)
    for line, row in enumerate(rows, start=2):
        where = f"{path.name} line {line}"
        if row["gpu"] not in CLOUD_GPUS:
            raise PriceError(f"{where}: unknown gpu {row['gpu']!r}; use one of {list(CLOUD_GPUS)}")
        price = row["usd_per_gpu_hour"].strip()
        if not price:
            if "not verified" not in row["note"]:
                raise PriceError(f"{where}: no price; say 'not verified: <why>' in the note, or give the price")
            row["usd_per_gpu_hour"] = None
            continue
        try:
            row["usd_per_gpu_hour"] = float(price)
        except ValueError:
            raise PriceError(f"{where}: usd_per_gpu_hour {price!r} is not a number (write 2.69, not $2.69/h)") from None
        if row["usd_per_gpu_hour"] < 0 or not row["source_url"].startswith("http") or not row["checked"]:
            raise PriceError(f"{where}: a price needs to be >= 0, with the source_url it was read from and the "
                             f"date checked")
    return pd.DataFrame(rows, columns=list(COLUMNS))


def run_hours(params: float, tokens: float, peak_tflops: float, mfu: float,
              flops_per_token_per_param: float = FLOPS_PER_TOKEN_PER_PARAM) -> float:
    """Estimated hours to train on ``tokens``: FLOPs / (peak × MFU); :func:`run_costs` uses it.

    6 FLOPs per parameter and token is the usual convention (forward 2N, backward 4N). QLoRA skips the frozen
    weights' gradients (about -2N) but gradient checkpointing recomputes the forward (+2N): 6N stays a fair count.
    """
    if not 0 < mfu <= 1 or params <= 0 or tokens < 0 or peak_tflops <= 0:
        raise ValueError(f"params={params}, tokens={tokens}, peak_tflops={peak_tflops}, mfu={mfu}: need positive "
                         f"sizes and an MFU in (0, 1], e.g. 0.3")
    return flops_per_token_per_param * params * tokens / (peak_tflops * 1e12 * mfu) / 3600


def run_costs(prices: "pd.DataFrame", params: float, tokens: float, mfu: float,
              fits: dict[str, str]) -> "pd.DataFrame":
    """Per priced offer: the run's estimated hours, its cost and the memory verdict. Taught in 08_scale_out."""
    import pandas as pd

    rows = []
    for _, offer in prices.dropna(subset=["usd_per_gpu_hour"]).iterrows():
        gpu = CLOUD_GPUS[offer["gpu"]]
        hours = run_hours(params, tokens, gpu.peak_tflops, mfu)
        rows.append({"gpu": gpu.name, "provider": offer["provider"], "kind": offer["provider_kind"],
                     "bf16": gpu.bf16, "memory": fits.get(gpu.name, "not estimated"), "hours": hours,
                     "usd_per_hour": offer["usd_per_gpu_hour"], "run_usd": hours * offer["usd_per_gpu_hour"],
                     "checked": offer["checked"]})
    return pd.DataFrame(rows)


def plot_costs(costs: "pd.DataFrame", title: str = "") -> Any:
    """Horizontal bars: the run's cost per offer, coloured by provider kind. Taught in 08_scale_out."""
    import matplotlib.pyplot as plt

    costs = costs.sort_values("run_usd")
    colours = {"free notebook": "tab:green", "paid notebook": "tab:olive", "GPU cloud": "tab:blue",
               "hyperscaler": "tab:orange"}
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(costs) + 1.2))
    labels = [f"{g} · {p}" for g, p in zip(costs["gpu"], costs["provider"])]
    ax.barh(labels, costs["run_usd"], color=[colours.get(k, "0.5") for k in costs["kind"]])
    for y, (usd, hours) in enumerate(zip(costs["run_usd"], costs["hours"])):
        took = f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.0f} min"
        ax.text(usd, y, f" ${usd:.2f} ({took})", va="center", fontsize=8)
    ax.set_xlabel("estimated cost of one training run (USD)")
    ax.set_title(title or "one run of the recipe, per offer")
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()], labels=list(colours),
              fontsize=8, loc="lower right")
    ax.set_xlim(0, costs["run_usd"].max() * 1.35 + 1e-9)
    fig.tight_layout()
    return fig


def gpu_table(gpus: Sequence[CloudGPU] = tuple(CLOUD_GPUS.values())) -> "pd.DataFrame":
    """Memory, bf16 and dense peak of each GPU option, with the datasheet each peak is from. Taught in 08_scale_out."""
    import pandas as pd

    return pd.DataFrame([{"gpu": g.name, "memory GiB": g.memory_gib, "bf16": g.bf16, "peak TFLOPS": g.peak_tflops,
                          "peak from": g.peak_source} for g in gpus]).set_index("gpu")


# ---------------------------------------------------------------------------------------------------- notebook times
# What the notebooks compute on a GPU profile, counted from their code (every notebook run in order on one machine, so
# 04-07 find 03's adapter): training rows (a row = one sequence forward + backward), upper bounds of generation's
# decoding steps (every batch of 16 runs to max_new_tokens) and model loads. The counts use the notebooks' own
# parameter values (read from their parameters cells), the profile's steps and batch, and the split sizes;
# tests/test_cloud.py checks them against the notebooks.
SPLIT_ROWS = {"train": 1392, "validation": 175, "test": 173, "handwritten": 57}
TOKENS_PER_ROW = 165  # a training row with Qwen2.5's chat template (prompt ~118 + answer ~47; tokenizer stand-in)
DECODE_BATCH = 16  # evaluate.generate's batch
SWEEP_RUNS = 11  # 05's train.experiment runs of SWEEP_STEPS: 2 continued, 3 rates, 2 ranks, 2 data, 2 PEFT (+ overfit)


@dataclass(frozen=True)
class EstimateAssumptions:
    """The assumptions of :func:`notebook_estimates`; each is a guess until a GPU run measures it."""

    mfu: float = 0.3  # model FLOPs utilisation of QLoRA training (08's run-cost estimate assumes the same)
    decode_step_s: float = 0.03  # one decoding step of a batch of 16 through the 4-bit 1.5B model on a T4
    load_s: float = 20.0  # one load of the model from the local cache (4-bit quantization on the way in)
    eval_row_share: float = 1 / 3  # an evaluation row (forward only, 2N) against a training row (6N)


def _cells_parameters(notebook: str) -> dict[str, Any]:
    """The literal values of a notebook's parameters cell (the one tagged ``parameters``)."""
    import ast
    import json

    path = REPO_ROOT / "notebooks" / f"{notebook}.ipynb"
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    source = next("".join(c["source"]) for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    values: dict[str, Any] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return values


def _batches(rows: int, batch: int = DECODE_BATCH) -> int:
    return -(-rows // batch)


def notebook_work(cfg: Any, changes: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, float]]:
    """Per notebook on profile ``cfg``: training rows, evaluation rows, decoding steps (upper bound) and model loads.

    Counted from each notebook's code; the comments name the cells' work (see also the notebooks themselves).
    ``changes`` sets parameters of a notebook, e.g. ``{"05_iterate": {"SWEEP_STEPS": 25}}`` for a shorter session.
    """
    changes = changes or {}

    def _params(notebook: str) -> dict[str, Any]:
        return {**_cells_parameters(notebook), **changes.get(notebook, {})}

    rows_per_step = cfg.per_device_batch_size * cfg.gradient_accumulation_steps
    new = cfg.max_new_tokens
    val, test, hand = SPLIT_ROWS["validation"], SPLIT_ROWS["test"], SPLIT_ROWS["handwritten"]
    p03, p05 = _params("03_qlora_training"), _params("05_iterate")
    p07, p08 = _params("07_preference_tuning"), _params("08_scale_out")
    work = {
        # 00: a 16-bit and a 4-bit load, three 24-token continuations
        "00_setup": dict(train_rows=0, eval_rows=0, decode_steps=3 * 24, loads=2),
        # 01: four prompting approaches on validation, then 70 knowledge-base questions closed-book and with retrieval
        "01_decide": dict(train_rows=0, eval_rows=0, decode_steps=4 * _batches(val) * new + 2 * _batches(70) * 32,
                          loads=1),
        "02_dataset": dict(train_rows=0, eval_rows=0, decode_steps=0, loads=0),
        # 03: the recipe (max_steps, an evaluation on validation every EVAL_STEPS), the test split before and after
        "03_qlora_training": dict(train_rows=cfg.max_steps * rows_per_step,
                                  eval_rows=cfg.max_steps // p03["EVAL_STEPS"] * val,
                                  decode_steps=2 * _batches(test) * new, loads=1),
        # 04: base and tuned on test, plain and constrained; hand-written tickets; validation; the judge (80 x 256)
        "04_evaluation": dict(train_rows=0, eval_rows=0,
                              decode_steps=(4 * _batches(test, 32) + 2 * _batches(hand, 32) + _batches(val, 32)) * new
                              + _batches(80, 8) * 256, loads=2),
        # 05: 11 runs of SWEEP_STEPS, the overfit run (at most OVERFIT_STEPS of 4 rows), their scoring; two test runs
        "05_iterate": dict(train_rows=SWEEP_RUNS * p05["SWEEP_STEPS"] * rows_per_step + p05["OVERFIT_STEPS"] * 4,
                           eval_rows=SWEEP_RUNS * p05["VAL_ROWS"],
                           decode_steps=(_batches(val) + 2 * _batches(val) + 10 * _batches(p05["VAL_ROWS"])
                                         + 2 * _batches(test)) * new, loads=15),
        # 06: adapters switched, three 16-bit loads and the merge, test scored three times, serving, monitoring
        "06_export": dict(train_rows=0, eval_rows=0, decode_steps=(3 * _batches(test) + 14) * new, loads=5),
        # 07: DPO (a pair = chosen + rejected, forward + backward, and the reference adapter's forward on both: 16N of
        # 6N per row, so 8/3 rows), GRPO (PROMPTS x 8 completions per step, sampled), answers before and after
        "07_preference_tuning": dict(
            train_rows=p07["DPO_STEPS"] * rows_per_step * 8 / 3 + p07["GRPO_STEPS"] * 16, eval_rows=0,
            decode_steps=(_batches(p07["PAIR_ROWS"]) + 3 * _batches(test) + 4) * new + p07["GRPO_STEPS"] * new,
            loads=2),
        # 08: the script's run (STEPS), resumed (MORE_STEPS), an evaluation every STEPS // 2, 32 test rows after each
        "08_scale_out": dict(train_rows=(p08["STEPS"] + p08["MORE_STEPS"]) * rows_per_step,
                             eval_rows=3 * p08["VALIDATION_ROWS"],
                             decode_steps=2 * _batches(p08["SCORE_ROWS"]) * new, loads=2),
    }
    return {name: {k: float(v) for k, v in values.items()} for name, values in work.items()}


def notebook_estimates(cfg: Any, gpu: str = "T4 16 GB", assumptions: EstimateAssumptions = EstimateAssumptions(),
                       changes: dict[str, dict[str, Any]] | None = None) -> "pd.DataFrame":
    """Estimated minutes per notebook of profile ``cfg`` on ``gpu``: training from FLOPs, generation from decoding steps.

    Training: 6 FLOPs per matmul parameter and token (:func:`run_hours`) over the GPU's dense peak × the assumed MFU;
    generation: decoding steps (upper bound) × the assumed seconds per step; plus the model loads. An estimate, not a
    measurement: no GPU has run the course yet.
    """
    import pandas as pd

    shape = resolve_shape(cfg.model_id)
    matmul_params = shape.num_layers * shape.block_linear_params() + shape.vocab_size * shape.hidden_size
    peak = CLOUD_GPUS[gpu].peak_tflops
    rows = []
    for name, w in notebook_work(cfg, changes).items():
        row_equivalents = w["train_rows"] + w["eval_rows"] * assumptions.eval_row_share
        train_s = run_hours(matmul_params, row_equivalents * TOKENS_PER_ROW, peak, assumptions.mfu) * 3600
        decode_s = w["decode_steps"] * assumptions.decode_step_s
        load_s = w["loads"] * assumptions.load_s
        rows.append({"notebook": name, "training rows": int(w["train_rows"]), "decoding steps": int(w["decode_steps"]),
                     "training min": train_s / 60, "generation min": decode_s / 60, "loads min": load_s / 60,
                     "total min": (train_s + decode_s + load_s) / 60})
    return pd.DataFrame(rows).set_index("notebook")


PESSIMISTIC = EstimateAssumptions(mfu=0.1, decode_step_s=0.09, load_s=40.0)  # the band's slow end
SHORTER = {  # settings for a shorter free session: the parameters a learner sets in the notebook's parameters cell
    "05_iterate": {"SWEEP_STEPS": 25, "OVERFIT_STEPS": 100},
    "07_preference_tuning": {"DPO_STEPS": 30, "GRPO_STEPS": 10},
}


def estimate_markdown(profile: str = "t4", gpu: str = "T4 16 GB") -> str:
    """The README's table of estimated minutes per notebook on ``gpu`` (``python -m helpers.cloud estimate``)."""
    cfg = PROFILES[profile]
    likely, slow = notebook_estimates(cfg, gpu), notebook_estimates(cfg, gpu, PESSIMISTIC)
    short = notebook_estimates(cfg, gpu, changes=SHORTER)
    a = EstimateAssumptions()
    retrain = likely.loc["03_qlora_training", "training min"] + a.load_s / 60
    retrain_slow = slow.loc["03_qlora_training", "training min"] + PESSIMISTIC.load_s / 60
    lines = [f"Estimated minutes per notebook of the `{profile}` profile on a {gpu} (not measured: no GPU has run the "
             f"course yet). Written by `python -m helpers.cloud estimate --readme` from the notebooks' own counts "
             f"(training rows, decoding steps, model loads; `helpers.cloud.notebook_work`): training at "
             f"{FLOPS_PER_TOKEN_PER_PARAM} FLOPs per matmul parameter and token over the {CLOUD_GPUS[gpu].peak_tflops:g} "
             f"TFLOPS fp16 peak × MFU {a.mfu:g}, generation as every batch of {DECODE_BATCH} decoding to its cap at "
             f"{a.decode_step_s * 1000:g} ms per step, {a.load_s:g} s per model load; the slow end assumes MFU "
             f"{PESSIMISTIC.mfu:g}, {PESSIMISTIC.decode_step_s * 1000:g} ms and {PESSIMISTIC.load_s:g} s. The first "
             f"download of the model, the install and the CPU-side cells (data, GGUF conversion) are not counted. "
             f"The counts assume the notebooks run in order on one machine: on Colab, where each notebook gets a new "
             f"runtime, 04–07 first retrain 03's adapter unless `DRIVE = True` kept it (about "
             f"{retrain:.0f} min each, {retrain_slow:.0f} at the slow end).",
             "", "| notebook | training rows | decoding steps (at most) | estimate | slow end | shorter settings |",
             "|---|---|---|---|---|---|"]
    for name in likely.index:
        changed = SHORTER.get(name)
        shorter = (f"{short.loc[name, 'total min']:.0f} min with "
                   + ", ".join(f"`{k} = {v}`" for k, v in changed.items())) if changed else "—"
        lines.append(f"| {name} | {int(likely.loc[name, 'training rows'])} | {int(likely.loc[name, 'decoding steps'])} "
                     f"| {likely.loc[name, 'total min']:.0f} min | {slow.loc[name, 'total min']:.0f} min | {shorter} |")
    lines.append(f"| **all** | | | **{likely['total min'].sum():.0f} min** | **{slow['total min'].sum():.0f} min** "
                 f"| {short['total min'].sum():.0f} min |")
    return "\n".join(lines)


def budget_line(cfg: Any, notebook: str) -> str:
    """One line a GPU notebook prints before its long cells: its estimated T4 time and the shorter settings."""
    t4 = PROFILES["t4"]
    likely = notebook_estimates(t4).loc[notebook, "total min"]
    slow = notebook_estimates(t4, assumptions=PESSIMISTIC).loc[notebook, "total min"]
    line = (f"{notebook} on a T4 ({t4.name} profile): about {likely:.0f} min, up to {slow:.0f} min (estimated from its "
            f"work, not measured; README, Profiles)")
    changed = SHORTER.get(notebook)
    if changed:
        short = notebook_estimates(t4, changes=SHORTER).loc[notebook, "total min"]
        line += (f"; for a shorter free session set " + ", ".join(f"{k} = {v}" for k, v in changed.items())
                 + f" in the parameters cell (about {short:.0f} min)")
    if cfg.name != "t4":
        line += f". This run uses the {cfg.name!r} profile: its own time differs"
    return line + "."


README_BEGIN, README_END = "<!-- t4-estimate:begin -->", "<!-- t4-estimate:end -->"


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers.cloud estimate [--readme]``: print the T4 estimate table, or write it into README.md."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m helpers.cloud")
    sub = parser.add_subparsers(dest="command", required=True)
    est = sub.add_parser("estimate", help="estimated minutes per notebook on a T4")
    est.add_argument("--readme", action="store_true", help="write the table into README.md between its markers")
    args = parser.parse_args(argv)
    table = estimate_markdown()
    if not args.readme:
        print(table)
        return 0
    readme = REPO_ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    if README_BEGIN not in text or README_END not in text:
        print(f"{readme}: no {README_BEGIN} ... {README_END} markers: add them where the table belongs")
        return 1
    head, rest = text.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    readme.write_text(f"{head}{README_BEGIN}\n{table}\n{README_END}{tail}", encoding="utf-8")
    print(f"wrote the T4 estimate into {readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
