"""Distillation: a teacher's answers become training rows, filtered, with provenance. Taught in 02_dataset.

The guides' recipe for a task without labels: ask a larger model (the *teacher*) for the answers, keep the good ones
and fine-tune a small model (the *student*) on them. :func:`distill` takes any callable ``ticket -> answer text`` as
the teacher: on a GPU profile a wrapper around a larger model's generation, offline a stand-in. It keeps every
answer's provenance (``metadata.source = "distilled"``, the teacher's name, its raw output) and filters: an answer
is kept only when it is a JSON object valid against the ticket schema whose order id and product can be read from the
ticket (``helpers.evaluate.grounding``). Every dropped answer keeps its reason (``asked == kept + rejected``).

The stand-ins: :func:`rule_teacher` extracts the fields with rules built from the generator's own vocabulary (product
names, order formats, urgency cues, issue sentences), so it is stronger on generated tickets than on real ones;
:func:`noisy_teacher` wraps a teacher and damages a share of its answers in the ways LLM teachers fail (broken JSON,
an invented order id or product, a value outside the schema, a plausible but wrong category), logging which.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Sequence

from helpers.data.answers import is_grounded, parse_json
from helpers.data.generate import (
    CATEGORIES,
    FIELDS,
    ISSUES,
    PRIORITY_CUES,
    PRODUCTS,
    SYSTEM_PROMPT,
    TICKET_SCHEMA,
    _summary,
    cue_sentences,
    template_pattern,
)

SOURCE = "distilled"
GROUNDED = ("order_id", "product")  # values that must be read from the ticket, never invented
NOISE_KINDS = ("broken_json", "invented_order_id", "invented_product", "off_schema_priority", "wrong_category")


@dataclass
class DistillResult:
    """Kept rows, rejected rows (each with ``reject: {reason, detail}``), every raw answer in ticket order, counts."""

    kept: list[dict[str, Any]]
    rejects: list[dict[str, Any]]
    outputs: list[str]
    kept_index: list[int]
    stats: dict[str, Any] = field(default_factory=dict)


def answer_problems(text: str, ticket: str, schema: dict[str, Any] = TICKET_SCHEMA) -> list[tuple[str, str]]:
    """Why a teacher's answer cannot be trained on: ``(reason, detail)`` pairs, empty when it passes the filter."""
    from jsonschema import Draft202012Validator

    obj = parse_json(text)
    if obj is None:
        return [("not_json", f"not a JSON object: {text[:60]!r}")]
    errors = sorted(Draft202012Validator(schema).iter_errors(obj), key=lambda e: list(e.path))
    problems = [("schema", f"{'.'.join(map(str, e.path)) or 'answer'}: {e.message[:100]}") for e in errors]
    for key in GROUNDED:
        value = obj.get(key)
        if value is not None and not is_grounded(key, value, ticket):
            problems.append((f"ungrounded_{key}", f"{key} {value!r} cannot be read from the ticket"))
    return problems


def distill(tickets: Sequence[str], teacher: Callable[[str], str], teacher_name: str | None = None,
            groups: Sequence[str] | None = None, schema: dict[str, Any] = TICKET_SCHEMA,
            system_prompt: str = SYSTEM_PROMPT) -> DistillResult:
    """Ask ``teacher`` for each ticket's answer; keep those that pass the filter as chat rows. Taught in 02_dataset.

    ``groups`` (one per ticket) keeps the ticket's group id, so a distilled row lands in its ticket's split; a
    teacher that raises is recorded as ``teacher_error``, not a crash.
    """
    if groups is not None and len(groups) != len(tickets):
        raise ValueError(f"{len(groups)} groups for {len(tickets)} tickets: pass one group id per ticket (or none)")
    name = teacher_name or getattr(teacher, "__name__", type(teacher).__name__)
    kept, rejects, outputs, kept_index = [], [], [], []
    for i, ticket in enumerate(tickets):
        try:
            text = teacher(ticket)
            problems = answer_problems(text, ticket, schema) if isinstance(text, str) else [
                ("teacher_error", f"the teacher returned {type(text).__name__}, not text")]
        except Exception as err:  # noqa: BLE001 - one failed call must not lose the other answers
            text, problems = "", [("teacher_error", f"{type(err).__name__}: {err}"[:160])]
        text = text if isinstance(text, str) else ""
        outputs.append(text)
        answer = text
        if not problems:  # the stored answer: the parsed object, re-serialised in the course's key order

            obj = parse_json(text)
            answer = json.dumps({k: obj[k] for k in FIELDS}, ensure_ascii=False)
        row = {"messages": [{"role": "system", "content": system_prompt}, {"role": "user", "content": ticket},
                            {"role": "assistant", "content": answer}],
               "metadata": {"source": SOURCE, "teacher": name, "teacher_output": text, "synthetic": True,
                            "group": groups[i] if groups is not None else f"distilled{i:05d}"}}
        if problems:
            rejects.append({**row, "reject": {"reason": problems[0][0], "detail": problems[0][1]}})
        else:
            kept.append(row)
            kept_index.append(i)
    assert len(tickets) == len(kept) + len(rejects), "distillation lost or invented rows"
    stats = {"teacher": name, "asked": len(tickets), "kept": len(kept), "rejected": len(rejects),
             "kept_share": len(kept) / len(tickets) if tickets else 0.0,
             "reasons": dict(sorted(Counter(r["reject"]["reason"] for r in rejects).items()))}
    return DistillResult(kept, rejects, outputs, kept_index, stats)


# ------------------------------------------------------------------------------------------------ stand-in teachers


def _plain(text: str) -> str:
    """Lower case, letters, digits and single spaces: punctuation and case noise removed."""
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split())


@lru_cache(maxsize=1)
def _patterns() -> tuple[list[tuple[re.Pattern[str], str, str]], list[tuple[str, str]],
                         list[tuple[re.Pattern[str], str]]]:
    issues = [(template_pattern(sentence), category, summary)
              for category, families in ISSUES.items() for _family, sentences, summary in families
              for sentence in sentences]
    cues = [(_plain(sentence), level) for level in PRIORITY_CUES for sentence in cue_sentences(level)]
    names = sorted(((alias, product) for product, aliases in PRODUCTS.items() for alias in (product, *aliases)),
                   key=lambda pair: -len(pair[0]))  # "PulseBuds Max" before "PulseBuds"
    products = [(re.compile(rf"(?<!\w){re.escape(alias)}(?!\w)", re.IGNORECASE), product) for alias, product in names]
    return issues, cues, products


@lru_cache(maxsize=8192)  # a deterministic teacher: asking twice (the noisy wrapper below) costs nothing
def rule_teacher(ticket: str) -> str:
    """A stand-in teacher: the fields read with rules from the generator's vocabulary (JSON text). Taught in 02_dataset.

    It knows the generator's phrasings, so on generated tickets it is stronger than any model would be; it answers
    ``category: null`` when no issue sentence matches (the filter then drops the answer).
    """
    issues, cues, products = _patterns()
    hits = sorted((m.start(), category, summary) for pattern, category, summary in issues
                  for m in [pattern.search(ticket)] if m)
    product = next((p for _s, p in sorted((m.start(), p) for pattern, p in products
                                          for m in [pattern.search(ticket)] if m)), None)
    order = re.search(r"(?<!\d)(\d{6})(?!\d)", ticket)
    order_id = f"ORD-{order.group(1)}" if order else None
    plain = _plain(ticket)
    level = next((lvl for cue, lvl in cues if cue in plain), "medium")
    category, summary = (hits[0][1], _summary(hits[0][2], product, order_id)) if hits else (None, "Support request")
    if hits and len({c for _s, c, _t in hits}) > 1:
        summary += " and a second issue"
    return json.dumps({"summary": summary, "category": category, "product": product, "order_id": order_id,
                       "priority": level}, ensure_ascii=False)


def noisy_teacher(teacher: Callable[[str], str], rate: float, seed: int = 0) -> Callable[[str], str]:
    """``teacher`` with a share ``rate`` of its answers damaged the ways LLM teachers fail. Taught in 02_dataset.

    The returned callable logs each call as ``(ticket, kind or None)`` in its ``log`` list; kinds are
    :data:`NOISE_KINDS` in turn.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate {rate} is not a share between 0 and 1")
    rng = random.Random(seed)
    log: list[tuple[str, str | None]] = []

    def noisy(ticket: str) -> str:
        text = teacher(ticket)
        if rng.random() >= rate:
            log.append((ticket, None))
            return text
        kind = NOISE_KINDS[sum(k is not None for _t, k in log) % len(NOISE_KINDS)]
        log.append((ticket, kind))
        if kind == "broken_json":
            return text[: len(text) // 2]
        obj = json.loads(text)
        if kind == "invented_order_id":
            obj["order_id"] = f"ORD-{rng.randrange(100000, 1000000)}"
        elif kind == "invented_product":
            obj["product"] = rng.choice([p for p in PRODUCTS if p != obj.get("product")])
        elif kind == "off_schema_priority":
            obj["priority"] = "critical"
        else:  # wrong_category: valid and grounded, only wrong: no filter can see it
            obj["category"] = rng.choice([c for c in CATEGORIES if c != obj.get("category")])
        return json.dumps(obj, ensure_ascii=False)

    noisy.log = log  # type: ignore[attr-defined]
    noisy.__name__ = f"noisy({getattr(teacher, '__name__', 'teacher')}, rate={rate})"
    return noisy
