"""Verdicts from the estimate: fits / does not fit / fits with these changes, per GPU, and the plots of them.

03_qlora_training and 01_decide read these: :func:`verdict` tries the course's changes (gradient checkpointing, a
smaller batch, 8-bit optimizer states ...) until a setup fits, :func:`report` and :func:`verdict_grid` give one per
GPU, and :func:`per_device` splits an estimate over several GPUs (08_scale_out's DDP, ZeRO-2, FSDP).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any, Sequence

from helpers.memory.estimate import DTYPE_BYTES, Estimate, GIB, GPU, GPUS, HEADROOM, LINEAR_NAMES, METHODS, MemoryEstimateError, ModelShape, OPTIMIZERS, TrainSetup, estimate
from helpers.plots import _pyplot

def _changes(setup: TrainSetup) -> list[tuple[str, TrainSetup]]:
    """Cheapest-first changes that lower memory, each applied on top of the previous ones."""
    steps: list[tuple[str, TrainSetup]] = []
    s = setup
    if not s.grad_checkpointing:
        s = replace(s, grad_checkpointing=True)
        steps.append(("turn on gradient checkpointing (about 30% slower, far fewer activations)", s))
    if not s.optimizer.endswith("8bit"):
        s = replace(s, optimizer="paged_adamw_8bit")
        steps.append(("use optim='paged_adamw_8bit'", s))
    while s.batch > 1:
        accum = s.grad_accumulation * 2
        s = replace(s, batch=s.batch // 2, grad_accumulation=accum)
        steps.append((f"per_device_train_batch_size={s.batch} with gradient_accumulation_steps={accum} "
                      "(same effective batch)", s))
    if s.method == "full":
        s = replace(s, method="lora")
        steps.append(("train a LoRA adapter instead of all weights", s))
    if s.method == "lora":
        s = replace(s, method="qlora")
        steps.append(("load the base in 4-bit NF4 (QLoRA)", s))
    while s.seq_len > 256:
        s = replace(s, seq_len=max(256, s.seq_len // 2))
        steps.append((f"max_length={s.seq_len} (check how many examples get truncated)", s))
    return steps


def _fit(shape: ModelShape, setup: TrainSetup, memory_gib: float) -> tuple[str, Estimate, Estimate, list[str]]:
    """(verdict, estimate as asked, estimate after the changes walked, changes applied) for one memory size."""
    budget = memory_gib * HEADROOM
    first = estimate(shape, setup)
    if first.total_gib <= budget:
        return "fits", first, first, []
    applied: list[str] = []
    last = first
    for description, changed in _changes(setup):
        applied.append(description)
        last = estimate(shape, changed)
        if last.total_gib <= budget:
            return "fits with these changes", first, last, applied
    return "does not fit", first, last, applied


def verdict(shape: ModelShape, setup: TrainSetup, memory_gib: float) -> dict[str, Any]:
    """``fits`` / ``fits with these changes`` (listed) / ``does not fit`` for one memory size. Taught in 03."""
    result, first, last, applied = _fit(shape, setup, memory_gib)
    if result == "fits":
        return {"verdict": "fits", "total_gib": round(first.total_gib, 2), "changes": []}
    if result == "fits with these changes":
        # total_gib: this setup as asked; changed_gib: after the changes
        return {"verdict": "fits with these changes", "total_gib": round(first.total_gib, 2),
                "changed_gib": round(last.total_gib, 2), "changes": net_changes(applied)}
    return {"verdict": "does not fit", "total_gib": round(first.total_gib, 2), "changes": [],
            "smallest_gib": round(last.total_gib, 2)}


def gpu_estimates(shape: ModelShape, setup: TrainSetup, gpus: Sequence[GPU] = GPUS) -> dict[str, tuple[str, Estimate]]:
    """Per GPU, its verdict and the estimate it is about: the setup as asked when it fits, else after the changes
    (``fits with these changes``), else the smallest setup tried (``does not fit``). Drawn by :func:`plot_memory`."""
    out = {}
    for gpu in gpus:
        result, _first, last, _applied = _fit(shape, setup, gpu.memory_gib)
        out[gpu.name] = (result, last)
    return out


def plot_memory(shape: ModelShape, setup: TrainSetup, gpus: Sequence[GPU] = GPUS, title: str = "") -> Any:
    """The estimate as stacked bars, as asked and per GPU (after the changes it needs), capacity as lines.

    Taught in 03_qlora_training. Each GPU's bar is the setup its verdict is about; the solid line is its memory, the
    dashed line what the pre-flight lets a run use (5% headroom). A capacity far above every bar is written at the
    top instead of squashing the bars.
    """
    plt = _pyplot()
    bars = {"as asked": ("", estimate(shape, setup))}
    bars.update(gpu_estimates(shape, setup, gpus))
    capacity = {gpu.name: gpu.memory_gib for gpu in gpus}
    names = [k for k in bars["as asked"][1].components if any(e.components.get(k, 0) > 0 for _, e in bars.values())]
    highest = max(e.total_gib for _, e in bars.values())
    near = [c for c in capacity.values() if c <= 3 * highest]  # capacities drawn to scale with the bars
    top = max([highest * 1.25] + [c * 1.08 for c in near])
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    xs = range(len(bars))
    bottoms = [0.0] * len(bars)
    for j, name in enumerate(names):
        heights = [e.components.get(name, 0.0) / GIB for _, e in bars.values()]
        ax.bar(xs, heights, 0.6, bottom=bottoms, label=name.replace("_", " "), color=f"C{j}", gid=name)
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    for x, gpu in enumerate(bars):
        if gpu not in capacity:
            continue
        if capacity[gpu] <= top:
            ax.hlines(capacity[gpu], x - 0.4, x + 0.4, colors="black", lw=2, gid=f"capacity {gpu}")
            ax.hlines(capacity[gpu] * HEADROOM, x - 0.4, x + 0.4, colors="black", lw=1, linestyles="--")
        else:
            ax.text(x, top * 0.97, f"{capacity[gpu]:g} GiB\n(above)", ha="center", va="top", fontsize=7,
                    gid=f"capacity {gpu}")
    labels = [f"{name}\n{result.replace('fits with these changes', 'fits with changes') or 'this setup'}\n"
              f"{est.total_gib:.2f} GiB" for name, (result, est) in bars.items()]
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_ylim(0, top)
    ax.set_ylabel("GiB (estimated peak of one step)")
    model = shape.name.rstrip("/").split("/")[-1]  # a folder or hub id: its last part
    ax.set_title(title or f"{model}, {setup.method}, seq {setup.seq_len} x batch {setup.batch}: what fills the memory",
                 fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    plt.close(fig)
    return fig


def net_changes(applied: list[str]) -> list[str]:
    """The changes to make, one per setting: ``batch=8, then 4, then 2`` is just the last value."""
    def knob(description: str) -> str:
        return description.split("=")[0] if "=" in description.split(" ")[0] else description

    last = {knob(d): d for d in applied}
    return [d for d in applied if last[knob(d)] == d]


def report(shape: ModelShape, setup: TrainSetup, gpus: Sequence[GPU] = GPUS) -> dict[str, Any]:
    """The estimate and the verdict for every GPU, as one JSON-ready dict. Taught in 03."""
    est = estimate(shape, setup)
    return {
        "model": asdict(shape),
        "params": shape.total_params(),
        "setup": asdict(setup),
        "trainable_params": est.trainable_params,
        "components_gib": est.gib(),
        "total_gib": round(est.total_gib, 3),
        "notes": est.notes,
        "gpus": {gpu.name: {"memory_gib": gpu.memory_gib, **verdict(shape, setup, gpu.memory_gib)} for gpu in gpus},
    }


def verdict_grid(cases: dict[str, tuple[ModelShape, TrainSetup]], gpus: Sequence[GPU] = GPUS
                 ) -> dict[str, dict[str, str]]:
    """The verdict of each named (shape, setup) case on each GPU: ``{case: {gpu: verdict}}``. Taught in 03."""
    return {name: {gpu.name: verdict(shape, setup, gpu.memory_gib)["verdict"] for gpu in gpus}
            for name, (shape, setup) in cases.items()}


def trainable_share(shape: ModelShape, setup: TrainSetup) -> float:
    """Trainable parameters in % of all parameters (base + adapter), counted as ``train.trainable_parameters`` does.

    Taught in 03: the share depends on the model's width and on the rank and targets, so a tiny model's share says
    nothing about a 7B model's.
    """
    est = estimate(shape, setup)
    total = shape.total_params() + (0 if setup.method == "full" else est.trainable_params)
    return 100 * est.trainable_params / total


def method_rows(shape: ModelShape, setup: TrainSetup) -> list[dict[str, Any]]:
    """Estimated trainable parameters, weights and peak memory of each method (full, LoRA, QLoRA). Taught in 03.

    Only ``setup.method`` changes between rows; everything else (sequence, batch, rank, optimizer) is kept.
    """
    rows = []
    for method in METHODS:
        changed = replace(setup, method=method)
        est = estimate(shape, changed)
        rows.append({"method": method, "trainable_params": est.trainable_params,
                     "trainable_%": round(trainable_share(shape, changed), 2),
                     "weights_mb (estimated)": round(est.components["weights"] / 2**20, 1),
                     "est_peak_gib": round(est.total_gib, 3)})
    return rows


STRATEGIES = ("ddp", "zero2", "fsdp")  # what each GPU holds: everything / weights + a shard of the rest / a shard
SHARDED = {"ddp": (), "zero2": ("gradients", "optimizer", "optimizer_step_extra"),
           "fsdp": ("weights", "adapter", "gradients", "optimizer", "optimizer_step_extra")}


def per_device(est: Estimate, devices: int, strategy: str) -> dict[str, float]:
    """Each GPU's share of an estimate (GiB by component and ``total``) under DDP, ZeRO-2 or FSDP / ZeRO-3.

    Taught in 08_scale_out. DDP keeps a whole copy on every GPU; ZeRO-2 splits gradients and optimizer state across
    the ``devices``; FSDP (= ZeRO-3) splits the weights too, and while a layer runs it gathers that layer whole (two
    layers counted: the one running and the next, prefetched). Activations and logits depend on the per-device batch
    (``est.setup.batch``) and are not split.
    """
    if strategy not in STRATEGIES:
        raise MemoryEstimateError(f"strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
    if devices < 1:
        raise MemoryEstimateError(f"devices must be >= 1, got {devices}")
    out = {k: v / devices if k in SHARDED[strategy] else v for k, v in est.components.items()}
    if strategy == "fsdp" and devices > 1:
        layer = (est.components["weights"] - est.shape.other_params() * DTYPE_BYTES[est.setup.dtype]) \
            / est.shape.num_layers
        out["gathered_layers"] = 2 * layer * (1 - 1 / devices)
    gib = {k: round(v / GIB, 3) for k, v in out.items()}
    gib["total"] = round(sum(out.values()) / GIB, 3)
    return gib


def setup_from_profile(cfg: Any, method: str = "qlora", lora_targets: Sequence[str] = LINEAR_NAMES) -> TrainSetup:
    """The :class:`TrainSetup` a course profile trains with. Taught in 03."""
    optimizer = {"adamw_torch": "adamw", "adamw_torch_fused": "adamw"}.get(cfg.optim, cfg.optim)
    if optimizer not in OPTIMIZERS:
        optimizer = "adamw"
    return TrainSetup(method=method, seq_len=cfg.max_seq_length, batch=cfg.per_device_batch_size,
                      lora_r=cfg.lora_r, lora_targets=tuple(lora_targets), optimizer=optimizer,
                      grad_checkpointing=cfg.gradient_checkpointing,
                      dtype=cfg.bnb_compute_dtype if method == "qlora" else cfg.torch_dtype, device=cfg.device,
                      grad_accumulation=cfg.gradient_accumulation_steps)
