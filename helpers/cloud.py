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

from helpers.config import REPO_ROOT

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
