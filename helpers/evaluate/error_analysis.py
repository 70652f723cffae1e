"""Error analysis: the kinds of mistake in an answer, grouped into a table. Taught in 04_evaluation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from helpers.evaluate.common import ERROR_KINDS, error_kinds  # noqa: F401  (re-exported: evaluate.ERROR_KINDS)
from helpers.evaluate.metrics import score_rows

if TYPE_CHECKING:  # heavy imports stay out of module import time
    import pandas as pd

def error_table(records: Sequence[dict[str, Any]], examples: int = 2) -> "pd.DataFrame":
    """Failures grouped by kind: count, share of examples and a few example outputs. Taught in 04_evaluation."""
    import pandas as pd

    rows = []
    for kind, meaning in ERROR_KINDS.items():
        hits = [r for r in records if kind in r["errors"]]
        samples = [f"#{r['index']}: {r['prediction'][:80]!r}" for r in hits[:examples]]
        rows.append({"kind": kind, "count": len(hits), "share": len(hits) / max(len(records), 1),
                     "meaning": meaning, "examples": " | ".join(samples)})
    return pd.DataFrame(rows).sort_values("count", ascending=False, kind="stable").reset_index(drop=True)


# The error kinds that cost field accuracy (the four fields it averages), and the reference field that splits each
# kind into groups a data fix can target ("wrong_category" -> which category the ticket really was).
FIELD_ERRORS: dict[str, str] = {
    "wrong_category": "category",
    "wrong_priority": "priority",
    "wrong_product": "product",
    "wrong_order_id": "order_id",
    "hallucinated_order_id": "order_id",
}


def reference_group(answer: dict[str, Any], field: str) -> str:
    """The group a reference answer falls in for ``field``: its value as text; order ids as ``named`` / ``none``.

    Taught in 05_iterate (the data fix keeps generated tickets whose answer falls in the targeted group).
    """
    value = answer.get(field)
    return ("named" if value else "none") if field == "order_id" else str(value)


def failure_groups(records: Sequence[dict[str, Any]]) -> "pd.DataFrame":
    """Field errors grouped by kind and by the reference value, largest first. Taught in 05_iterate.

    A group is (error kind, reference value): ``wrong_category`` on tickets whose category is ``shipping``, say.
    ``share_of_value`` is the share of all tickets with that reference value that fail this way. Order ids are
    grouped as ``named`` / ``none`` (:func:`reference_group`). Sorted by count, then by share, then by name.
    """
    import json

    import pandas as pd

    columns = ["kind", "field", "reference", "count", "share_of_value", "examples"]
    rows = []
    totals: dict[tuple[str, str], int] = {}  # tickets per (field, reference value)
    for r in records:
        ref = json.loads(r["reference"])
        labels = {field: reference_group(ref, field) for field in set(FIELD_ERRORS.values())}
        for field, label in labels.items():
            totals[(field, label)] = totals.get((field, label), 0) + 1
        for kind, field in FIELD_ERRORS.items():
            if kind in r["errors"]:
                rows.append({"kind": kind, "field": field, "reference": labels[field], "index": r["index"]})
    if not rows:
        return pd.DataFrame(columns=columns)
    table = pd.DataFrame(rows).groupby(["kind", "field", "reference"]).agg(
        count=("index", "size"), examples=("index", lambda s: list(s)[:5])).reset_index()
    table["share_of_value"] = [count / totals[(field, ref)]
                               for field, ref, count in zip(table["field"], table["reference"], table["count"])]
    table = table.sort_values(["count", "share_of_value", "kind", "reference"], ascending=[False, False, True, True],
                              kind="stable").reset_index(drop=True)
    return table[columns]


def group_counts(outputs: dict[str, Sequence[str]], references: Sequence[str]) -> "pd.DataFrame":
    """Failures per group (rows: kind, field, reference) for several systems (columns) on the same tickets.

    Taught in 05_iterate: the targeted group before and after a data fix, and every other group beside it (a fix
    that shifts answers toward one value shows up as new failures in the neighbouring groups).
    """
    import pandas as pd

    counts = {name: failure_groups(score_rows(list(outs), references)).set_index(["kind", "field", "reference"])["count"]
              for name, outs in outputs.items()}
    table = pd.DataFrame(counts).fillna(0).astype(int)
    return table.sort_values(list(counts)[0], ascending=False, kind="stable")
