"""Grounding: extracted values that the ticket does not contain (hallucinations). Taught in 04_evaluation.

Field accuracy asks "is the value right?"; grounding asks "could the value have come from the ticket at all?". An
order id is *grounded* when its six digits appear in the ticket (customers write ``ORD-123456``, ``#123456``, ``order
no. 123456``); a product is grounded when the ticket mentions it by any of the names customers use for it
(``helpers.data.generate.PRODUCTS``), compared case- and space-insensitively. The product check is lenient: it
catches an invented product, not a confusion between two products the ticket both mentions.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Sequence

from helpers.evaluate.metrics import parse_json

if TYPE_CHECKING:
    import pandas as pd

GROUNDED_FIELDS = ("order_id", "product")


def _squash(text: str) -> str:
    return re.sub(r"[^0-9a-z+]", "", text.lower())


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def is_grounded(field: str, value: Any, ticket: str) -> bool:
    """True when ``value`` (an extracted, non-null field value) can be read from ``ticket``."""
    if not isinstance(value, str) or not value.strip():
        return False
    if field == "order_id":
        digits = _digits(value)
        # the id's digits stand alone in the ticket: not part of a longer number
        return bool(digits) and re.search(rf"(?<!\d){digits}(?!\d)", ticket) is not None
    if field == "product":
        from helpers.data.generate import PRODUCTS

        names = (value, *PRODUCTS.get(value, ()))
        squashed = _squash(ticket)
        return any(_squash(name) and _squash(name) in squashed for name in names)
    raise ValueError(f"grounding is defined for {', '.join(GROUNDED_FIELDS)}, not {field!r}")


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
