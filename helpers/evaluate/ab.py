"""Base vs tuned as a paired A/B: bootstrap CIs, win/tie/loss, a forest plot. Taught in 04_evaluation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from helpers.evaluate.common import INVALID, EvaluationError
from helpers.evaluate.metrics import CORPUS_METRICS, PER_EXAMPLE_METRICS, _sacrebleu_metrics

if TYPE_CHECKING:  # heavy imports stay out of module import time
    import pandas as pd
    from matplotlib.figure import Figure


def _metric_stats(records: Sequence[dict[str, Any]], metric: str, labels: Sequence[str]) -> Any:
    """Per-example statistics whose column sums determine ``metric`` (so a resample is a gather + sum)."""
    import numpy as np

    if metric in PER_EXAMPLE_METRICS:
        return np.array([[r[metric]] for r in records], dtype=float)
    if metric == "summary_bleu":
        return np.array([r["bleu_stats"] for r in records], dtype=float)
    if metric == "summary_chrf":
        return np.array([r["chrf_stats"] for r in records], dtype=float)
    if metric == "category_macro_f1":  # per class: true positive, false positive, false negative
        cols = []
        for label in labels:
            cols += [[r["pred_category"] == label and r["ref_category"] == label for r in records],
                     [r["pred_category"] == label and r["ref_category"] != label for r in records],
                     [r["pred_category"] != label and r["ref_category"] == label for r in records]]
        return np.array(cols, dtype=float).T.reshape(len(records), -1)
    raise EvaluationError(f"unknown metric {metric!r}: use one of {', '.join(PER_EXAMPLE_METRICS + CORPUS_METRICS)}")


def _metric_from_sums(metric: str, sums: Any, n: int) -> Any:
    """The metric for each row of summed statistics (rows = bootstrap resamples)."""
    import numpy as np

    if metric in PER_EXAMPLE_METRICS:
        return sums[:, 0] / n
    if metric == "category_macro_f1":
        tp, fp, fn = sums[:, 0::3], sums[:, 1::3], sums[:, 2::3]
        denom = 2 * tp + fp + fn
        f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
        present = (tp + fp + fn) > 0  # a class absent from a resample's references and predictions does not count
        return np.where(present.any(axis=1), (f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1), 0.0)
    bleu, chrf = _sacrebleu_metrics()
    scorer = bleu if metric == "summary_bleu" else chrf
    return np.array([scorer._compute_score_from_stats(row.tolist()).score / 100 for row in sums])


def paired_bootstrap(
    base: Sequence[dict[str, Any]],
    tuned: Sequence[dict[str, Any]],
    metrics: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> "pd.DataFrame":
    """Tuned minus base for each metric, with a paired bootstrap CI and win/tie/loss counts. Taught in 04_evaluation."""
    import numpy as np
    import pandas as pd

    if len(base) != len(tuned) or not base:
        raise EvaluationError(f"paired A/B needs the same non-empty examples: got {len(base)} base, {len(tuned)} tuned")
    if [r["reference"] for r in base] != [r["reference"] for r in tuned]:
        raise EvaluationError("base and tuned records are scored against different references: score the same rows")
    metrics = list(metrics or PER_EXAMPLE_METRICS + CORPUS_METRICS)
    n = len(base)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))  # the same resamples for both systems
    labels = sorted({r["ref_category"] for r in base} | {r["pred_category"] for r in [*base, *tuned]} - {INVALID})
    alpha = (1 - confidence) / 2
    rows = []
    for metric in metrics:
        sb, st = _metric_stats(base, metric, labels), _metric_stats(tuned, metric, labels)
        point_b = _metric_from_sums(metric, sb.sum(axis=0, keepdims=True), n)[0]
        point_t = _metric_from_sums(metric, st.sum(axis=0, keepdims=True), n)[0]
        diffs = _metric_from_sums(metric, st[idx].sum(axis=1), n) - _metric_from_sums(metric, sb[idx].sum(axis=1), n)
        row = {"metric": metric, "base": point_b, "tuned": point_t, "diff": point_t - point_b,
               "ci_low": float(np.quantile(diffs, alpha)), "ci_high": float(np.quantile(diffs, 1 - alpha))}
        if metric in PER_EXAMPLE_METRICS:
            delta = st[:, 0] - sb[:, 0]
            row.update(wins=int((delta > 0).sum()), ties=int((delta == 0).sum()), losses=int((delta < 0).sum()))
        else:  # corpus metrics have no per-example value to compare
            row.update(wins=None, ties=None, losses=None)
        row["significant"] = bool(row["ci_low"] > 0 or row["ci_high"] < 0)
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.astype({"wins": "Int64", "ties": "Int64", "losses": "Int64"})  # empty for corpus metrics


def plot_ab(table: "pd.DataFrame", title: str = "tuned - base (95% paired bootstrap CI)") -> "Figure":
    """A forest plot of the A/B differences with their CIs. Taught in 04_evaluation."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.35 * len(table) + 1.2))
    y = list(range(len(table)))[::-1]
    colors = ["tab:green" if lo > 0 else "tab:red" if hi < 0 else "tab:gray"
              for lo, hi in zip(table["ci_low"], table["ci_high"])]
    for yi, diff, lo, hi, color in zip(y, table["diff"], table["ci_low"], table["ci_high"], colors):
        ax.errorbar([diff], [yi], xerr=[[diff - lo], [hi - diff]], fmt="o", color=color, capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, table["metric"])
    ax.set_xlabel("difference (tuned - base)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def describe_change(ab: "pd.DataFrame", name: str, metric: str = "field_accuracy") -> str:
    """One metric's paired change in words, from a :func:`paired_bootstrap` table indexed by system ``name``:
    ``"0.652 → 0.670 (95% CI of the change [+0.003, +0.035], significant)"``. Prose that states a result is
    rendered from the run with it (07_preference_tuning), never typed in."""
    rows = ab[(ab.index == name) & (ab["metric"] == metric)]
    if rows.empty:
        raise EvaluationError(f"no row for {name!r} / {metric!r} in the A/B table: systems {sorted(set(ab.index))}")
    row = rows.iloc[0]
    verdict = "significant" if bool(row["significant"]) else "not significant"
    return (f"{row['base']:.3f} → {row['tuned']:.3f} (95% CI of the change [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}],"
            f" {verdict})")


def significant_changes(ab: "pd.DataFrame", name: str, skip: Sequence[str] = ("field_accuracy",)) -> str:
    """The metrics of system ``name`` whose paired change is significant, with their direction ("none" when none
    is): ``"category 0.33 → 0.40, priority 0.75 → 0.70"``."""
    rows = ab[(ab.index == name) & ab["significant"].astype(bool) & ~ab["metric"].isin(list(skip))]
    return ", ".join(f"{r.metric.removeprefix('field_accuracy_')} {r.base:.2f} → {r.tuned:.2f}"
                     for r in rows.itertuples()) or "none"
