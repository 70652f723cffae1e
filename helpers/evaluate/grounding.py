"""Grounding: extracted values that the ticket does not contain (hallucinations). Taught in 04_evaluation.

Field accuracy asks "is the value right?"; grounding asks "could the value have come from the ticket at all?". An
order id is *grounded* when its six digits appear in the ticket (customers write ``ORD-123456``, ``#123456``, ``order
no. 123456``); a product is grounded when the ticket mentions it by any of the names customers use for it
(``helpers.data.generate.PRODUCTS``), compared case- and space-insensitively. The product check is lenient: it
catches an invented product, not a confusion between two products the ticket both mentions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from helpers.data.answers import GROUNDED_FIELDS, is_grounded, parse_json

if TYPE_CHECKING:
    import pandas as pd

def grounding_records(outputs: Sequence[str], tickets: Sequence[str]) -> list[dict[str, Any]]:
    """One record per extracted non-null value: index, field, value, grounded."""
    if len(outputs) != len(tickets):
        raise ValueError(f"{len(outputs)} outputs but {len(tickets)} tickets: pass one output per ticket")
    records = []
    for i, (text, ticket) in enumerate(zip(outputs, tickets)):
        obj = parse_json(text) or {}
        for field in GROUNDED_FIELDS:
            value = obj.get(field)
            if value is not None:
                records.append({"index": i, "field": field, "value": value,
                                "grounded": is_grounded(field, value, ticket)})
    return records


def grounding_report(outputs: dict[str, Sequence[str]], tickets: Sequence[str]) -> "pd.DataFrame":
    """Per system and field: values extracted, how many the ticket does not contain, and that share.

    ``hallucination_rate`` = ungrounded / extracted (NaN when the system extracted nothing for that field).
    """
    import pandas as pd

    rows = []
    for name, texts in outputs.items():
        recs = grounding_records(texts, tickets)
        for field in GROUNDED_FIELDS:
            got = [r for r in recs if r["field"] == field]
            bad = [r for r in got if not r["grounded"]]
            rows.append({"system": name, "field": field, "extracted": len(got), "ungrounded": len(bad),
                         "hallucination_rate": len(bad) / len(got) if got else float("nan")})
    return pd.DataFrame(rows)


def ungrounded_examples(outputs: Sequence[str], tickets: Sequence[str], limit: int = 5) -> "pd.DataFrame":
    """A few extracted values that the ticket does not contain, beside the ticket itself (for error analysis)."""
    import pandas as pd

    bad = [r for r in grounding_records(outputs, tickets) if not r["grounded"]][:limit]
    return pd.DataFrame([{"index": r["index"], "field": r["field"], "value": r["value"],
                          "ticket": tickets[r["index"]][:160]} for r in bad],
                        columns=["index", "field", "value", "ticket"])
