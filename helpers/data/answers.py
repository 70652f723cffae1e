"""A model's answer read as data: its JSON object, the ticket schema's errors, and whether its fields are grounded.

Taught in 04_evaluation (parsing, schema adherence, grounding). It lives in ``data`` because building data needs it
too: 07's preference pairs and the distillation filter keep or drop rows by these checks, and ``helpers.evaluate``
re-exports every name (``evaluate.parse_json``, ``evaluate.is_grounded``, ``evaluate.FIELD_KEYS``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from helpers.data.generate import PRODUCTS, TICKET_SCHEMA

FIELD_KEYS = ("category", "product", "order_id", "priority")  # the categorical / identifier fields

_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.DOTALL | re.IGNORECASE)


def parse_json(text: str) -> dict[str, Any] | None:
    """The JSON object a model answered (a surrounding ```json fence allowed), or None."""
    text = (text or "").strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _schema_validator(schema: dict[str, Any] | None) -> Any:
    from jsonschema import Draft202012Validator

    if schema is None:
        schema = TICKET_SCHEMA
    return Draft202012Validator(schema)


def _schema_errors(obj: dict[str, Any], validator: Any) -> list[str]:
    return sorted(e.message for e in validator.iter_errors(obj))


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
        names = (value, *PRODUCTS.get(value, ()))
        squashed = _squash(ticket)
        return any(_squash(name) and _squash(name) in squashed for name in names)
    raise ValueError(f"grounding is defined for {', '.join(GROUNDED_FIELDS)}, not {field!r}")
