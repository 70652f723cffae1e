"""Baselines that show chance: the majority answer per field, and accuracy split by whether the ticket names the
value. Taught in 01_decide and 04_evaluation.

A field score means little alone: on the course's test split ``order_id`` is ``null`` for most tickets, so a model
that always answers ``null`` already scores that share. :func:`majority_answer` is that trivial system (the most
frequent training value of every field) and :func:`field_breakdown` reports every system's accuracy on the tickets that
*name* a value and on those that do not, next to the majority answer's.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from helpers.evaluate.common import FIELD_KEYS
from helpers.evaluate.metrics import parse_json

if TYPE_CHECKING:
    import pandas as pd

NO_CUE_PRIORITY = "medium"  # the generator's rule: a ticket without an urgency cue is "medium"

# When does a ticket "name" a field's value? (what the split below means, printed by the notebooks)
NAMED_RULES: dict[str, str] = {
    "category": "every ticket describes an issue, so every ticket names its category",
    "product": "the reference product is not null (the ticket mentions a product)",
    "order_id": "the reference order id is not null (the ticket mentions an order)",
    "priority": f"the reference priority is not {NO_CUE_PRIORITY!r} (the ticket gives an urgency cue)",
}


def _answer(reference: str | Mapping[str, Any]) -> dict[str, Any]:
    return dict(reference) if isinstance(reference, Mapping) else json.loads(reference)


def names_it(field: str, reference: str | Mapping[str, Any]) -> bool:
    """True when the ticket behind ``reference`` states the field's value (see :data:`NAMED_RULES`)."""
    value = _answer(reference).get(field)
    if field == "priority":
        return value != NO_CUE_PRIORITY
    if field == "category":
        return True
    return value is not None


def majority_answer(references: Sequence[str | Mapping[str, Any]]) -> dict[str, Any]:
    """The most frequent value of each field in ``references`` (pass the *training* answers): the trivial system."""
    answers = [_answer(r) for r in references]
    if not answers:
        raise ValueError("majority_answer needs at least one reference answer (pass the training split's answers)")
    majority: dict[str, Any] = {}
    for key in answers[0]:
        counts = Counter(json.dumps(a.get(key)) for a in answers)
        majority[key] = json.loads(counts.most_common(1)[0][0])
    return majority


def majority_outputs(majority: Mapping[str, Any], n: int) -> list[str]:
    """``n`` copies of the majority answer as JSON text: score them like any model's outputs."""
    return [json.dumps(dict(majority), ensure_ascii=False)] * n


def field_breakdown(outputs: Mapping[str, Sequence[str]], references: Sequence[str | Mapping[str, Any]]
                    ) -> "pd.DataFrame":
    """Per field and system: accuracy on all tickets, on those that name the value and on those that do not.

    ``outputs`` maps a system name (e.g. ``"majority"``, ``"base"``, ``"tuned"``) to its raw outputs, one per
    reference; an output that does not parse counts as wrong on every field.
    """
    import pandas as pd

    refs = [_answer(r) for r in references]
    rows = []
    for name, texts in outputs.items():
        if len(texts) != len(refs):
            raise ValueError(f"{name!r} has {len(texts)} outputs for {len(refs)} references: pass one per reference")
        objs = [parse_json(t) or {} for t in texts]
        for field in FIELD_KEYS:
            right = [obj.get(field, object()) == ref.get(field) if obj else False for obj, ref in zip(objs, refs)]
            named = [names_it(field, ref) for ref in refs]
            row: dict[str, Any] = {"field": field, "system": name, "all": sum(right) / max(len(right), 1)}
            for label, want in (("named", True), ("not named", False)):
                picked = [ok for ok, is_named in zip(right, named) if is_named == want]
                row[label] = sum(picked) / len(picked) if picked else float("nan")
                row[f"n {label}"] = len(picked)
            rows.append(row)
    return pd.DataFrame(rows)


def breakdown_table(breakdown: "pd.DataFrame") -> "pd.DataFrame":
    """:func:`field_breakdown` pivoted for reading: one row per (field, split), one column per system."""
    long = breakdown.melt(id_vars=["field", "system"], value_vars=["all", "named", "not named"], var_name="tickets",
                          value_name="accuracy")
    counts = breakdown.drop_duplicates("field").set_index("field")[["n named", "n not named"]]
    table = long.pivot_table(index=["field", "tickets"], columns="system", values="accuracy", sort=False)
    table.columns.name = None
    n = {(f, t): (counts.loc[f, "n named"] + counts.loc[f, "n not named"] if t == "all" else counts.loc[f, f"n {t}"])
         for f, t in table.index}
    table.insert(0, "n", [int(n[i]) for i in table.index])
    return table[["n", *outputs_order(breakdown)]]


def outputs_order(breakdown: "pd.DataFrame") -> list[str]:
    """System names in the order they were passed to :func:`field_breakdown`."""
    return list(dict.fromkeys(breakdown["system"]))
