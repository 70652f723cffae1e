"""Which category the model answers for which true category: the confusion matrix. Taught in 04_evaluation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from helpers.data.generate import CATEGORIES
from helpers.evaluate.common import INVALID, EvaluationError
from helpers.plots import _pyplot

if TYPE_CHECKING:  # heavy imports stay out of module import time
    import pandas as pd


def category_confusion(records: Sequence[dict[str, Any]]) -> "pd.DataFrame":
    """Counts of (reference category, predicted category) from :func:`score_rows` records.

    Rows are the reference categories, columns the predicted ones, both in the taxonomy's order; a predicted value
    outside the taxonomy gets its own column, and answers with no usable category the ``<invalid>`` column (only when
    there are some). Drawn by :func:`plot_confusion`.
    """
    import pandas as pd

    if not records:
        raise EvaluationError("no records to count: pass evaluate.score_rows(predictions, references)")
    refs = [r["ref_category"] for r in records]
    preds = [r["pred_category"] for r in records]
    rows = [c for c in CATEGORIES if c in refs] + sorted(set(refs) - set(CATEGORIES))
    cols = [c for c in CATEGORIES if c in refs or c in preds]
    cols += sorted(set(preds) - set(cols) - {INVALID}) + ([INVALID] if INVALID in preds else [])
    table = pd.DataFrame(0, index=pd.Index(rows, name="reference"), columns=pd.Index(cols, name="predicted"))
    for ref, pred in zip(refs, preds):
        table.loc[ref, pred] += 1
    return table


def plot_confusion(records: Sequence[dict[str, Any]], title: str = "") -> Any:
    """The category confusion matrix as a heatmap of counts (rows: reference, columns: predicted).

    Taught in 04_evaluation. The diagonal is right; an off-diagonal cell is one kind of mistake, with its count.
    """
    plt = _pyplot()
    table = category_confusion(records)
    counts = table.to_numpy()
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(table.columns), 1.2 + 0.55 * len(table.index)))
    ax.imshow(counts, cmap="Blues")
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            dark = counts[i, j] > counts.max() / 2
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(len(table.columns)), list(table.columns), rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(table.index)), list(table.index), fontsize=8)
    ax.set_xlabel("predicted category")
    ax.set_ylabel("reference category")
    right = sum(int(table.loc[c, c]) for c in table.index if c in table.columns)
    ax.set_title(title or f"category: {right} of {counts.sum()} right", fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig
