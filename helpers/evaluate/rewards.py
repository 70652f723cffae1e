"""Verifiable rewards for the ticket -> JSON task: the schema and the reference fields. Taught in 07_preference_tuning.

Reinforcement learning with verifiable rewards (GRPO) needs a score a program can compute for any sampled answer.
This task has one: the JSON Schema says whether the answer is well-formed, the reference says which field values are
right, and the ticket says whether an extracted value was read or made up. Each reward below takes TRL's reward
function signature (``prompts``, ``completions`` and the dataset's columns as keyword arguments) and returns one float
per completion, so ``GRPOTrainer(reward_funcs=[...])`` calls them directly; :func:`json_reward` is the same total for
one answer, used to score outputs outside training.

The three rewards, and their weights in the total (:data:`REWARD_WEIGHTS`):

- ``schema_reward`` (0.25): 1 when the answer is one JSON object valid against the schema, else 0;
- ``field_reward`` (0.75): the share of the four fields (category, product, order_id, priority) equal to the
  reference, 0 for an answer that is not a JSON object;
- ``grounding_penalty`` (1.0): minus the share of the grounded fields (order_id, product) whose non-null value is not
  in the ticket (an invented order id costs 0.5), 0 for an answer that is not a JSON object.

So the reference answer scores exactly 1, an invalid object exactly 0, and an answer that invents values can score
below 0.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Sequence

from helpers.config import set_seed
from helpers.evaluate.common import FIELD_KEYS, EvaluationError
from helpers.evaluate.generation import conversations_from_rows, generate, references_from_rows, tickets_from_rows
from helpers.evaluate.grounding import GROUNDED_FIELDS, is_grounded
from helpers.evaluate.metrics import _schema_errors, _schema_validator, parse_json

REWARD_WEIGHTS: dict[str, float] = {"schema_reward": 0.25, "field_reward": 0.75, "grounding_penalty": 1.0}


@lru_cache(maxsize=1)
def _validator() -> Any:
    return _schema_validator(None)


def completion_text(completion: str | Sequence[dict[str, str]]) -> str:
    """The answer's text: a plain string, or the content of the assistant messages of a conversational completion."""
    if isinstance(completion, str):
        return completion
    try:
        return "".join(m["content"] for m in completion if m.get("role", "assistant") == "assistant")
    except (TypeError, KeyError, AttributeError):
        raise EvaluationError(f"a completion is a string or a list of {{'role', 'content'}} messages, "
                              f"not {str(completion)[:60]!r}") from None


def _reference(reference: str | dict[str, Any]) -> dict[str, Any]:
    value = reference if isinstance(reference, dict) else parse_json(reference)
    if value is None:
        raise EvaluationError(f"reference {str(reference)[:60]!r} is not a JSON object: pass the dataset's assistant "
                              f"answers (helpers.evaluate.references_from_rows)")
    return value


def _lengths(name: str, completions: Sequence[Any], **columns: Sequence[Any] | None) -> None:
    for column, values in columns.items():
        if values is None:
            raise EvaluationError(f"{name} needs the dataset column {column!r}: keep it in the GRPO dataset "
                                  f"(helpers.data.grpo_rows adds it)")
        if len(values) != len(completions):
            raise EvaluationError(f"{name}: {len(completions)} completions but {len(values)} {column} values")


def _schema_one(text: str) -> float:
    obj = parse_json(text)
    return float(obj is not None and not _schema_errors(obj, _validator()))


def _fields_one(text: str, reference: str | dict[str, Any]) -> float:
    obj, ref = parse_json(text), _reference(reference)
    if obj is None:
        return 0.0
    return sum(k in obj and obj[k] == ref.get(k) for k in FIELD_KEYS) / len(FIELD_KEYS)


def _grounding_one(text: str, ticket: str) -> float:
    obj = parse_json(text)
    if obj is None:
        return 0.0
    invented = [f for f in GROUNDED_FIELDS if obj.get(f) is not None and not is_grounded(f, obj.get(f), ticket)]
    return -len(invented) / len(GROUNDED_FIELDS)


def schema_reward(prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **kwargs: Any) -> list[float]:
    """1.0 per completion that is one JSON object valid against the ticket schema, else 0.0."""
    return [_schema_one(completion_text(c)) for c in completions]


def field_reward(prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (),
                 reference: Sequence[str] | None = None, **kwargs: Any) -> list[float]:
    """Share of the four fields equal to the reference (column ``reference``); 0.0 when not a JSON object."""
    _lengths("field_reward", completions, reference=reference)
    return [_fields_one(completion_text(c), r) for c, r in zip(completions, reference)]


def grounding_penalty(prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (),
                      ticket: Sequence[str] | None = None, **kwargs: Any) -> list[float]:
    """Minus the share of order_id/product values not found in the ticket (column ``ticket``); 0.0 when invalid."""
    _lengths("grounding_penalty", completions, ticket=ticket)
    return [_grounding_one(completion_text(c), t) for c, t in zip(completions, ticket)]


REWARD_FUNCS = (schema_reward, field_reward, grounding_penalty)  # in the order of REWARD_WEIGHTS


def json_reward(answer: str, reference: str | dict[str, Any], ticket: str) -> float:
    """The weighted total of the three rewards for one answer: 1.0 for the reference, 0.0 for an invalid object."""
    parts = {"schema_reward": _schema_one(answer), "field_reward": _fields_one(answer, reference),
             "grounding_penalty": _grounding_one(answer, ticket)}
    return sum(REWARD_WEIGHTS[name] * value for name, value in parts.items())


def reward_table(outputs: dict[str, Sequence[str]], references: Sequence[str], tickets: Sequence[str]) -> "Any":
    """Mean of each reward and of the weighted total, one row per model (outputs: name -> answers)."""
    import pandas as pd

    rows = []
    for name, answers in outputs.items():
        _lengths("reward_table", answers, reference=references, ticket=tickets)
        row: dict[str, Any] = {"model": name}
        for func in REWARD_FUNCS:
            row[func.__name__] = sum(func(completions=answers, reference=references, ticket=tickets)) / len(answers)
        row["total"] = sum(json_reward(a, r, t) for a, r, t in zip(answers, references, tickets)) / len(answers)
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def sampled_reward(model: Any, tokenizer: Any, rows: Sequence[dict[str, Any]], samples: int, temperature: float,
                   max_new_tokens: int, seed: int = 0) -> float:
    """Mean :func:`json_reward` of ``samples`` sampled answers per row: what GRPO's training reward measures, on fixed
    prompts and seeds, so that two models (before and after GRPO) are compared on the same draw."""
    if samples < 1 or not rows:
        raise EvaluationError(f"sampled_reward needs rows and samples >= 1 (got {len(rows)} rows, {samples} samples)")
    conversations = [c for c in conversations_from_rows(rows) for _ in range(samples)]
    references = [r for r in references_from_rows(rows) for _ in range(samples)]
    tickets = [t for t in tickets_from_rows(rows) for _ in range(samples)]
    set_seed(seed)
    answers = generate(model, tokenizer, conversations, max_new_tokens, progress=False,
                       sampling={"do_sample": True, "temperature": temperature})
    return sum(json_reward(a, r, t) for a, r, t in zip(answers, references, tickets)) / len(answers)
