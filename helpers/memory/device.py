"""Memory of the machine at hand: free and peak memory, and the pre-flights that refuse a run or a load that cannot fit.

:func:`preflight` (before training) and :func:`load_preflight` (before a model loads, used by
:func:`helpers.models.load_model`) compare the estimate with what the GPU, or the CPU's RAM, has free now.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers.memory.estimate import GIB, HEADROOM, MemoryEstimateError, MemoryPreflightError, resolve_shape, weights_gib
from helpers.memory.verdicts import setup_from_profile, verdict

def available_gib(device: str) -> tuple[str, float]:
    """The memory a run can use here: the first GPU's total, or the machine's available RAM on CPU."""
    if device == "cuda":
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            return props.name, props.total_memory / GIB
    import psutil  # a dependency of accelerate

    return "CPU RAM (available)", psutil.virtual_memory().available / GIB


def free_gib(device: str) -> tuple[str, float]:
    """Memory free for one more model now: the GPU's free memory (other processes and this one's models counted), or
    the machine's available RAM on a CPU."""
    if device == "cuda":
        import torch

        if torch.cuda.is_available():
            free, _total = torch.cuda.mem_get_info()
            return f"{torch.cuda.get_device_properties(0).name} (free now)", free / GIB
    return available_gib("cpu")


def load_preflight(cfg: Any, model: Any = None, quantized: bool = False, log: Any = print) -> float | None:
    """Before loading a model: say what its weights take and what is free; raise :class:`MemoryPreflightError` when
    it cannot fit, instead of an out-of-memory error halfway through the load (06_export prints its lines).

    ``models.load_model`` calls it before every full-precision load (a 16-bit 7B model is ~14 GiB: two at once do not
    fit a 24 GB card). Returns the weights' GiB, or None when the model's config cannot be read (nothing is checked).
    """
    try:
        shape = resolve_shape(model if model is not None else cfg.model_id)
    except MemoryEstimateError:
        return None
    dtype = cfg.torch_dtype
    need = weights_gib(shape, dtype, quantized)
    where, free = free_gib(cfg.device)
    log(f"loading {Path(str(shape.name)).name} ({'4-bit NF4' if quantized else dtype}): ~{need:.2f} GiB of weights, "
        f"{free:.1f} GiB free on {where}")
    if need > free * HEADROOM:
        raise MemoryPreflightError(
            f"{shape.name} in {'4-bit' if quantized else dtype} needs ~{need:.1f} GiB for its weights alone and "
            f"{free:.1f} GiB is free on {where}: free the models you are done with first (`del model`, then "
            f"`models.free_memory()`), or restart the runtime and run from this section")
    return need


def used_gib(device: str = "cpu") -> float:
    """Memory in use now: CUDA tensors on a GPU, else this process's resident set (RSS). Taught in 03."""
    if device == "cuda":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.memory_allocated() / GIB
    import psutil  # a dependency of accelerate

    return psutil.Process().memory_info().rss / GIB


def reset_peak(device: str = "cpu") -> None:
    """Start measuring peak GPU memory now (before training); nothing to do on a CPU. Taught in 03."""
    if device == "cuda":
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str = "cpu") -> float | None:
    """Peak GPU memory held by tensors since :func:`reset_peak`, in GiB; ``None`` on a CPU. Taught in 03.

    It is what the estimator predicts minus the CUDA context (``cuda_overhead``), which torch does not count.
    """
    if device != "cuda":
        return None
    import torch

    return torch.cuda.max_memory_allocated() / GIB if torch.cuda.is_available() else None


def preflight(cfg: Any, method: str = "qlora", limit_gib: float | None = None, model: Any = None,
              log: Any = print) -> dict[str, Any]:
    """Estimate the profile's run before loading anything; raise :class:`MemoryPreflightError` if it cannot fit.

    Taught in 03. ``limit_gib`` overrides the detected memory (GPU total, or available RAM on CPU).
    """
    shape = resolve_shape(model if model is not None else cfg.model_id)
    setup = setup_from_profile(cfg, method)
    where, memory_gib = ("given limit", limit_gib) if limit_gib is not None else available_gib(setup.device)
    result = verdict(shape, setup, memory_gib)
    budget = memory_gib * HEADROOM
    log(f"memory pre-flight: {shape.name} {method}, seq {setup.seq_len} x batch {setup.batch}: "
        f"~{result['total_gib']:.2f} GiB needed, {budget:.1f} GiB usable on {where} ({memory_gib:.1f} GiB less "
        f"{1 - HEADROOM:.0%} headroom): {result['verdict']}")
    if result["verdict"] == "fits with these changes":
        raise MemoryPreflightError(
            f"{shape.name} ({method}, seq {setup.seq_len}, batch {setup.batch}) needs ~{result['total_gib']:.1f} GiB, "
            f"more than the {budget:.1f} GiB usable on {where}; with these changes it needs "
            f"~{result['changed_gib']:.1f} GiB: {'; '.join(result['changes'])}")
    if result["verdict"] != "fits":
        raise MemoryPreflightError(
            f"{shape.name} ({method}, seq {setup.seq_len}, batch {setup.batch}) needs ~{result['total_gib']:.1f} GiB "
            f"and even the smallest setup tried needs ~{result['smallest_gib']:.1f} GiB, more than the "
            f"{budget:.1f} GiB usable on {where}: use a smaller model or a bigger GPU")
    return result
