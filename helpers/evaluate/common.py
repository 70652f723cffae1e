"""What every part of the evaluation shares: the answer's fields, the kinds of mistake, the error it raises."""

from __future__ import annotations

from typing import Any, Sequence

from helpers.data.answers import FIELD_KEYS  # noqa: F401  the categorical / identifier fields (data builds preference pairs on them)

SUMMARY_KEY = "summary"
INVALID = "<invalid>"  # the "class" of a prediction with no usable category


class EvaluationError(ValueError):
    """Input the evaluation cannot score; the message names what, where and the fix."""


ERROR_KINDS: dict[str, str] = {
    "invalid_json": "the output is not one JSON object",
    "schema_violation": "parsed, but fails the JSON Schema (wrong type, enum, pattern, extra or missing key)",
    "missing_field": "a required key is absent",
    "hallucinated_field": "a key that is not in the schema",
    "wrong_category": "category differs from the reference",
    "wrong_product": "product differs from the reference",
    "wrong_order_id": "the ticket names an order but the answer gives another id or null",
    "hallucinated_order_id": "the ticket names no order but the answer invents an id",
    "wrong_priority": "priority differs from the reference",
    "weak_summary": "summary token F1 below 0.5",
}


def error_kinds(
    obj: dict[str, Any] | None, ref: dict[str, Any], schema_errors: Sequence[str] = (), summary_f1: float = 1.0
) -> list[str]:
    """The kinds of mistake in one parsed answer (keys of :data:`ERROR_KINDS`)."""
    if obj is None:
        return ["invalid_json"]
    kinds = ["schema_violation"] if schema_errors else []
    if any(k not in obj for k in ref):
        kinds.append("missing_field")
    if any(k not in ref for k in obj):
        kinds.append("hallucinated_field")
    for key in ("category", "product", "priority"):
        if key in obj and obj[key] != ref.get(key):
            kinds.append(f"wrong_{key}")
    if "order_id" in obj and obj["order_id"] != ref.get("order_id"):
        kinds.append("hallucinated_order_id" if ref.get("order_id") is None else "wrong_order_id")
    if summary_f1 < 0.5:
        kinds.append("weak_summary")
    return kinds
