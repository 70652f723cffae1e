"""The serving call of 06_export: tickets in, parsed and checked JSON out, one item per ticket (:func:`generate_json`).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from helpers.data.generate import TICKET_SCHEMA
from helpers.evaluate import generation  # generation.generate, looked up when called: tests replace it
from helpers.evaluate.constrained import constrained_generate
from helpers.export.merge import ExportError
from helpers.export.verify import _conversations

def generate_json(model: Any, tokenizer: Any, tickets: Sequence[str], max_new_tokens: int,
                  schema: dict[str, Any] | None = None, batch_size: int | None = None) -> list[dict[str, Any]]:
    """Tickets in, one ``{"ok", "value", "error", "raw"}`` per ticket out, in order. Taught in 06_export.

    The prompt is the course's (system prompt + ticket, the tokenizer's chat template) and the decoding its greedy
    :data:`helpers.evaluate.DECODING`. With ``schema`` the answers are decoded under that JSON Schema
    (:func:`helpers.evaluate.constrained_generate`). Every answer is parsed and validated against ``schema`` (default:
    the ticket schema): ``ok`` is True only for a JSON object that passes; otherwise ``value`` is None and ``error``
    says why (not JSON, a schema violation, cut at ``max_new_tokens``). ``raw`` is the text the model wrote.
    """
    from jsonschema import Draft202012Validator

    if isinstance(tickets, str) or not all(isinstance(t, str) for t in tickets):
        raise ExportError("tickets must be a list of strings (the ticket texts)")
    conversations = _conversations(list(tickets))
    if schema is None:
        raws, truncated = generation.generate(model, tokenizer, conversations, max_new_tokens, batch_size, progress=False), []
    else:
        raws = constrained_generate(model, tokenizer, conversations, schema, max_new_tokens, batch_size,
                                    progress=False, on_truncated="ignore")
        truncated = raws.truncated
    validator = Draft202012Validator(schema or TICKET_SCHEMA)
    items = []
    for i, raw in enumerate(raws):
        value, error = None, None
        try:
            parsed = json.loads(raw)
        except ValueError as err:
            error = f"not JSON ({err})"
        else:
            problems = sorted(e.message for e in validator.iter_errors(parsed))
            if not isinstance(parsed, dict):
                error = f"a JSON {type(parsed).__name__}, not an object"
            elif problems:
                error = "schema: " + "; ".join(problems[:3])
            else:
                value = parsed
        if i in truncated:
            error = f"cut at max_new_tokens={max_new_tokens} before the JSON was complete; {error}"
        items.append({"ok": value is not None, "value": value, "error": error, "raw": raw})
    return items
