"""Loss curves while a run trains and the plots that read runs back. Taught in 03_qlora_training and 05_iterate.

:class:`LiveCurves` is a Trainer callback that redraws train and eval loss as they are logged (and flags a diverging
or flat loss); the plotting helpers draw a finished run's log, several runs' curves, a LoRA update's shapes, a
learning-rate schedule and TensorBoard scalars. Figures use :func:`helpers.plots.pyplot`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

from helpers.plots import _in_notebook, _pyplot
from helpers.train.manifest import MANIFEST_NAME
from helpers.train.setup import DEFAULTS, TrainingSetupError

CURVES_NAME = "loss_curves.png"


def _ignore_event(*args: Any, **kwargs: Any) -> None:
    """A Trainer event the callback does not use (what ``TrainerCallback``'s own methods do)."""
    return None


class LiveCurves:
    """Trainer callback: live loss / eval-loss plot, alerts for NaN, zero loss and overfitting. Taught in 03.

    In a notebook the figure updates in place; without one (a script, CI) it is saved as ``loss_curves.png`` in
    ``output_dir`` after every evaluation and at the end. A NaN loss stops training (nothing useful follows it).
    A plain class, so importing this module does not import transformers: the Trainer calls a callback's
    ``on_<event>(args, state, control, **kwargs)`` methods by name and never checks its type, so ``on_log`` and
    ``on_train_end`` do the work and every other event is a no-op (:meth:`__getattr__`).
    """

    def __init__(self, output_dir: str | Path | None = None, overfit_patience: int = 2, draw: bool = True,
                 log: Callable[[str], None] = print) -> None:
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.overfit_patience = overfit_patience
        self.draw = draw
        self.log = log
        self.train: list[tuple[int, float]] = []
        self.eval: list[tuple[int, float]] = []
        self.alerts: list[str] = []
        self._handle: Any = None

    def _alert(self, message: str) -> None:
        if message not in self.alerts:
            self.alerts.append(message)
            self.log(f"ALERT: {message}")

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        step = state.global_step
        if "loss" in logs:
            loss = float(logs["loss"])
            self.train.append((step, loss))
            if math.isnan(loss) or math.isinf(loss):
                self._alert(f"training loss is {loss} at step {step}: lower the learning rate, check fp16 overflow "
                            "(use bf16 or fp32), and look for empty or broken rows; training stopped")
                control.should_training_stop = True
            elif loss == 0.0:
                self._alert(f"training loss is exactly 0 at step {step}: usually every label is masked (check "
                            "train.check_assistant_masks) or the data leaks the answer")
        if "eval_loss" in logs:
            self.eval.append((step, float(logs["eval_loss"])))
            self._check_overfit()
            self._save_png()
        self._redraw()

    def _check_overfit(self) -> None:
        k = self.overfit_patience
        if len(self.eval) <= k or len(self.train) < 2:
            return
        recent = [loss for _, loss in self.eval[-(k + 1):]]
        rising = all(b > a for a, b in zip(recent, recent[1:]))
        train_falling = self.train[-1][1] < self.train[max(0, len(self.train) - 1 - 2 * k)][1]
        if rising and train_falling:
            self._alert(f"eval loss rose {k} evaluations in a row (now {recent[-1]:.3f}) while training loss fell: "
                        "overfitting; early stopping keeps the best checkpoint, or use fewer steps / more data")

    def figure(self) -> Any:
        """The loss / eval-loss figure (matplotlib)."""
        plt = _pyplot()

        fig, ax = plt.subplots(figsize=(6, 3.2))
        if self.train:
            ax.plot(*zip(*self.train), label="training loss")
        if self.eval:
            ax.plot(*zip(*self.eval), "o-", label="eval loss (validation split)")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("cross-entropy (assistant tokens)")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        plt.close(fig)
        return fig

    def _redraw(self) -> None:
        if not (self.draw and _in_notebook() and (self.train or self.eval)):
            return
        from IPython.display import display

        fig = self.figure()
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)

    def _save_png(self) -> Path | None:
        if self.output_dir is None or not (self.train or self.eval):
            return None
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / CURVES_NAME
        self.figure().savefig(path, dpi=100)
        return path

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._save_png()

    def __getattr__(self, name: str) -> Any:
        """Every other Trainer event (``on_step_end``, ``on_evaluate``, ``on_save``...) is a no-op."""
        if name.startswith("on_"):
            return _ignore_event
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def run_curves(runs_dir: str | Path, names: Sequence[str]) -> dict[str, dict[str, list[list[float]]]]:
    """The recorded training and eval loss curves of some runs, read from their manifests (after a restart, say)."""
    out = {}
    for name in names:
        path = Path(runs_dir) / name / MANIFEST_NAME
        if not path.is_file():
            raise TrainingSetupError(f"{path} not found: run train.experiment(..., name={name!r}) first")
        out[name] = json.loads(path.read_text(encoding="utf-8"))["run"]["curves"]
    return out


def plot_curves(curves: dict[str, dict[str, list[list[float]]]], title: str = "", log_y: bool = False) -> Any:
    """Training (thin) and eval (dots) loss of several runs on one pair of axes. Taught in 05_iterate."""
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(7, 3.4))
    for i, (name, c) in enumerate(curves.items()):
        color = f"C{i}"
        if c.get("train"):
            ax.plot(*zip(*c["train"]), color=color, alpha=0.6, lw=1, label=f"{name}: training")
        if c.get("eval"):
            ax.plot(*zip(*c["eval"]), "o--", color=color, label=f"{name}: eval")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (assistant tokens)")
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    plt.close(fig)
    return fig


def log_series(log_history: Sequence[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """``(step, value)`` of one logged quantity from ``trainer.state.log_history``. Taught in 07_preference_tuning.

    Any trainer's keys work: ``loss``, DPO's ``rewards/margins``, GRPO's ``reward``...
    """
    series = [(int(e["step"]), float(e[key])) for e in log_history if key in e and "step" in e]
    if not series:
        logged = sorted({k for e in log_history for k in e if k != "step"})
        raise TrainingSetupError(f"{key!r} was never logged; logged keys: {', '.join(logged) or 'none'} "
                                 f"(is logging_steps larger than max_steps?)")
    return series


def plot_log(log_history: Sequence[dict[str, Any]], panels: dict[str, Sequence[str]], title: str = "") -> Any:
    """One panel per entry of ``panels`` (panel title -> logged keys), each key a line over optimizer steps.

    Taught in 07_preference_tuning (DPO's reward margins and accuracies, GRPO's rewards).
    """
    plt = _pyplot()

    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3), squeeze=False)
    for ax, (name, keys) in zip(axes[0], panels.items()):
        for key in keys:
            ax.plot(*zip(*log_series(log_history, key)), marker=".", label=key)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_runs(table: "Any", metrics: Sequence[str] = ("field_accuracy", "json_valid", "eval_loss", "train_s")) -> Any:
    """One bar chart per metric, one bar per run of a :func:`compare_runs` table. Taught in 05_iterate."""
    plt = _pyplot()

    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 0.35 * len(table) + 1.2), sharey=True)
    for ax, metric in zip(list(axes) if len(metrics) > 1 else [axes], metrics):
        values = table[metric].astype(float)
        ax.barh(list(table.index), values.fillna(0), color=["C3" if v != v else "C0" for v in values])
        ax.set_title(metric + (" (higher is better)" if metric in ("field_accuracy", "json_valid") else
                                " (lower is better)"), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes_list = list(axes) if len(metrics) > 1 else [axes]
    axes_list[0].invert_yaxis()  # the first run on top, as in the table
    fig.tight_layout()
    plt.close(fig)
    return fig


def linear_dims(model: Any, layer: str = "gate_proj") -> tuple[str, int, int]:
    """(module name, out_features, in_features) of the first linear of ``model`` whose name ends with ``layer``.

    Works on a plain, a 4-bit (``Linear4bit``) or a PEFT-wrapped model: the shape is read from the module, not from
    its (possibly packed) weight tensor.
    """
    for name, module in model.named_modules():
        if name.split(".")[-1] == layer and hasattr(module, "in_features") and hasattr(module, "out_features"):
            return name, int(module.out_features), int(module.in_features)
    linears = sorted({n.split(".")[-1] for n, m in model.named_modules() if hasattr(m, "in_features")})
    raise TrainingSetupError(f"no linear layer named {layer!r} in the model: use one of {', '.join(linears)}")


def plot_lora(model: Any, r: int, layer: str = "gate_proj") -> Any:
    """One layer's frozen W (d_out x d_in) beside LoRA's B (d_out x r) and A (r x d_in), with parameter counts.

    Taught in 03_qlora_training. Rectangles are drawn to scale, except that r is widened to stay visible when it is
    a sliver of the layer (the figure says so). ``model`` is any model holding the layer (4-bit, PEFT or not).
    """
    from matplotlib.patches import Rectangle

    plt = _pyplot()
    name, d_out, d_in = linear_dims(model, layer)
    n_w, n_b, n_a = d_out * d_in, d_out * r, r * d_in
    side = max(d_out, d_in)
    thick = max(r, 0.04 * side)  # drawn thickness of r: to scale when r is not a sliver
    gap = 0.5 * side
    x_b = d_in + gap
    x_a = x_b + thick + 0.25 * gap
    fig, ax = plt.subplots(figsize=(9, 4.2))
    shapes = {"W": (0, 0, d_in, d_out, "0.8"), "B": (x_b, 0, thick, d_out, "C1"),
              "A": (x_a, d_out - thick, d_in, thick, "C1")}
    for gid, (x, y, w, h, color) in shapes.items():
        ax.add_patch(Rectangle((x, y), w, h, facecolor=color, edgecolor="black", gid=gid))
    below = -0.04 * side
    ax.text(d_in / 2, below, f"W (frozen)\nd_out x d_in\n= {d_out} x {d_in}\n{n_w:,} parameters",
            ha="center", va="top", fontsize=8)
    ax.text(d_in + gap / 2, d_out / 2, "+", ha="center", va="center", fontsize=18)
    ax.text(x_b + thick + 0.125 * gap, d_out - thick / 2, "x", ha="center", va="center", fontsize=11)
    ax.text(x_b + thick / 2, below, f"B (trained)\nd_out x r\n= {d_out} x {r}\n{n_b:,} parameters",
            ha="center", va="top", fontsize=8)
    ax.text(x_a + d_in / 2, d_out - thick - 0.04 * side,
            f"A (trained)\nr x d_in\n= {r} x {d_in}\n{n_a:,} parameters", ha="center", va="top", fontsize=8)
    scale = "" if thick == r else f" (r = {r} is drawn wider than to scale)"
    ax.set_title(f"{name}: output = W x + (alpha / r) B A x\nthe adapter trains r (d_out + d_in) = "
                 f"{n_b + n_a:,} parameters, {100 * (n_b + n_a) / n_w:.1f}% of W's {n_w:,}{scale}", fontsize=9)
    ax.set_xlim(-0.05 * side, x_a + d_in + 0.05 * side)
    ax.set_ylim(-0.45 * side, d_out + 0.03 * side)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.tight_layout()
    plt.close(fig)
    return fig


def learning_rate_schedule(learning_rate: float, max_steps: int, warmup_steps: float = DEFAULTS.warmup_steps,
                           scheduler: str = DEFAULTS.lr_scheduler_type) -> list[float]:
    """The learning rate at every optimizer step, from transformers' own scheduler. Taught in 05_iterate.

    ``warmup_steps`` below 1 is a fraction of ``max_steps`` (as in ``SFTConfig``).
    """
    import torch
    from transformers import get_scheduler

    warmup = math.ceil(warmup_steps * max_steps) if warmup_steps < 1 else int(warmup_steps)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=learning_rate)
    schedule = get_scheduler(scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=max_steps)
    rates = []
    for _ in range(max_steps):
        rates.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    return rates


def tensorboard_scalars(log_dir: str | Path, tag: str = "train/loss") -> list[tuple[int, float]]:
    """``(step, value)`` of one scalar that ``report_to="tensorboard"`` logged under ``log_dir``. Taught in 05.

    Reads the event files with TensorBoard's own reader, so what the notebook shows is what TensorBoard will plot.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(Path(log_dir).rglob("events.out.tfevents.*"))
    if not files:
        raise TrainingSetupError(f"no TensorBoard event file under {log_dir}: train with report_to='tensorboard'")
    points: list[tuple[int, float]] = []
    for folder in sorted({f.parent for f in files}):
        acc = EventAccumulator(str(folder))
        acc.Reload()
        if tag in acc.Tags().get("scalars", []):
            points += [(e.step, e.value) for e in acc.Scalars(tag)]
    return sorted(points)
