"""Augmentation with provenance: perturb tickets, keep answers true, tag and cap synthetic rows. Taught in 02_dataset.

A perturbation is ``f(row, rng) -> row | None`` (``None``: not applicable to this row). :func:`augment` copies the
parent's ``metadata.group`` (so group-aware splits keep a synthetic row with its parent), sets
``metadata.synthetic = True`` and ``metadata.augmentation = <name>``, and never lets synthetic rows exceed
``max_share`` of the result. Any text generator — an LLM included — plugs in through :func:`llm_rewrite`.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any, Callable

from helpers.data.clean import user_text
from helpers.data.generate import CATEGORIES, ISSUES, PRIORITIES, PRODUCTS, make_ticket, to_row

Row = dict[str, Any]
Perturbation = Callable[[Row, random.Random], "Row | None"]

ORDER_ID = re.compile(r"ORD-(\d{6})")


def _answer(row: Row) -> dict[str, Any] | None:
    content = row["messages"][-1].get("content")
    try:
        value = json.loads(content)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _with_user_text(row: Row, text: str, answer: dict[str, Any] | None = None) -> Row:
    """A copy of ``row`` with its (last) user turn replaced and, optionally, a new JSON answer."""
    messages = [dict(m) for m in row["messages"]]
    last_user = max(i for i, m in enumerate(messages) if m.get("role") == "user")
    messages[last_user]["content"] = text
    if answer is not None:
        messages[-1]["content"] = json.dumps(answer, ensure_ascii=False)
    return {**row, "messages": messages, "metadata": dict(row.get("metadata") or {})}


def _protected_words() -> set[str]:
    """Words that carry the answer (product aliases, order ids): typos never touch them."""
    return {w.lower() for aliases in PRODUCTS.values() for alias in aliases for w in alias.split()}


def add_typos(row: Row, rng: random.Random, rate: float = 0.08) -> Row | None:
    """Swap two letters in a few lower-case words (never product names or ids). Taught in 02_dataset."""
    protected = _protected_words()
    words = user_text(row).split(" ")
    changed = False
    for i, word in enumerate(words):
        if len(word) > 3 and word.isalpha() and word.islower() and word not in protected and rng.random() < rate:
            j = rng.randrange(len(word) - 1)
            words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2:]
            changed = changed or words[i] != word
    return _with_user_text(row, " ".join(words)) if changed else None


def reorder_sentences(row: Row, rng: random.Random) -> Row | None:
    """Shuffle the sentences between the first and the last (greeting and sign-off stay). Taught in 02_dataset."""
    sentences = re.split(r"(?<=[.!?])\s+", user_text(row))
    if len(sentences) < 4:
        return None
    middle = sentences[1:-1]
    shuffled = middle[:]
    for _ in range(5):  # a few tries to get an order that differs
        rng.shuffle(shuffled)
        if shuffled != middle:
            return _with_user_text(row, " ".join([sentences[0], *shuffled, sentences[-1]]))
    return None


def drop_order_id(row: Row, rng: random.Random) -> Row | None:
    """Remove the order number from the ticket, and set ``order_id`` to null in the answer. Taught in 02_dataset.

    The summary is rebuilt from the generator's template for the ticket's family, because some summaries quote the
    order id ("Order ORD-123456 has not arrived"); a row whose summary cannot be rebuilt is skipped.
    """
    answer = _answer(row)
    if not answer or not isinstance(answer.get("order_id"), str):
        return None
    match = ORDER_ID.fullmatch(answer["order_id"])
    if not match:
        return None
    digits = match.group(1)
    # how customers write an order: "order ORD-123456", "order #123456", "my order (ORD-123456)", "ORD 123456", ...
    mention = re.compile(rf"(?:my )?(?:order(?: number| no\.?)? ?)?\(?(?:ORD[- ]|#)?{digits}\)?", re.IGNORECASE)
    text, n = mention.subn("my order", user_text(row))
    if n == 0 or digits in text:
        return None
    summary = _rebuild_summary(row, answer, order_id=None)
    if summary is None:
        return None
    return _with_user_text(row, text, {**answer, "order_id": None, "summary": summary})


def _rebuild_summary(row: Row, answer: dict[str, Any], order_id: str | None) -> str | None:
    """The generator's summary for this family with a changed order id, or ``None`` when it cannot be rebuilt."""
    family = str((row.get("metadata") or {}).get("family", ""))
    category, _, name = family.partition("/")
    templates = [t for fam, _sentences, t in ISSUES.get(category, []) if fam == name]
    if not templates:
        return None
    old_order = answer.get("order_id")
    product = answer.get("product")
    multi = answer.get("summary", "").endswith(" and a second issue")

    def render(oid: str | None) -> str:
        text = templates[0].replace("{p_or_order}", product or oid or "an order")
        text = text.replace("{order_or_p}", oid or product or "order").replace("{p}", product or "product")
        return text + (" and a second issue" if multi else "")

    if render(old_order) != answer.get("summary"):
        return None  # the answer was not made by this template: do not guess
    return render(order_id)


def llm_rewrite(generate: Callable[[str], str], name: str = "llm_rewrite") -> Perturbation:
    """A perturbation from any text generator ``str -> str`` (an LLM call, or a deterministic stand-in in CI).

    Taught in 02_dataset. The rewrite is kept only if every fact of the answer that appears in the ticket (order id,
    product name as written) still appears, so a paraphrase cannot silently make the label wrong.
    """
    def perturb(row: Row, rng: random.Random) -> Row | None:
        original = user_text(row)
        prompt = ("Rewrite this customer support ticket in different words. Keep every product name, order number "
                  f"and the level of urgency exactly:\n\n{original}")
        rewritten = (generate(prompt) or "").strip()
        if not rewritten or rewritten == original:
            return None
        facts = re.findall(r"ORD[- ]?\d{6}|#\d{6}|\b\d{6}\b", original)
        if any(f not in rewritten for f in facts):
            return None
        return _with_user_text(row, rewritten)

    perturb.__name__ = name
    return perturb


def augment(rows: list[Row], perturbations: list[Perturbation], max_share: float = 0.2,
            seed: int = 0) -> list[Row]:
    """Synthetic rows only (add them to ``rows`` yourself): at most ``max_share`` of ``rows + synthetic``.

    Taught in 02_dataset. Parents are drawn without replacement in a seeded order; each synthetic row records
    ``synthetic``, ``augmentation`` (the perturbation's name), ``parent`` (the parent's group/variant) and keeps the
    parent's ``group``.
    """
    if not 0 <= max_share < 1:
        raise ValueError(f"max_share={max_share}: use a fraction in [0, 1)")
    cap = int(max_share * len(rows) / (1 - max_share))  # synthetic / (real + synthetic) <= max_share
    rng = random.Random(seed)
    order = list(range(len(rows)))
    rng.shuffle(order)
    out: list[Row] = []
    for k, i in enumerate(order):
        if len(out) >= cap:
            break
        parent = rows[i]
        if (parent.get("metadata") or {}).get("synthetic"):
            continue  # never augment an augmentation
        perturb = perturbations[k % len(perturbations)]
        child = perturb(parent, rng)
        if child is None:
            continue
        meta = dict(parent.get("metadata") or {})
        child["metadata"] = {**meta, "synthetic": True, "augmentation": getattr(perturb, "__name__", "custom"),
                             "parent": f"{meta.get('group', i)}/{meta.get('variant', 0)}"}
        out.append(child)
    return out


def synthetic_share(rows: list[Row]) -> float:
    """Fraction of rows tagged ``metadata.synthetic``."""
    return sum(bool((r.get("metadata") or {}).get("synthetic")) for r in rows) / max(1, len(rows))


def targeted_rows(keep: Callable[[Row], bool], n: int, seed: int, reason: str, max_tries: int = 50_000) -> list[Row]:
    """``n`` fresh generator rows that ``keep`` accepts, tagged with their provenance. Taught in 05_iterate.

    The data fix of an error-driven iteration: more examples of the kind the model gets wrong, written by the same
    generator with another seed (so they are new tickets, not copies), each marked ``synthetic``, ``augmentation =
    "targeted"``, ``reason`` and ``seed``, with a group id of its own (``fix<seed>-...``) so leakage checks and
    group-aware splits never confuse it with a ticket of the course splits. Raises when ``keep`` accepts too few.
    """
    if n < 1:
        raise ValueError(f"n={n}: ask for at least one row")
    rng = random.Random(seed)
    out: list[Row] = []
    for index in range(max_tries):
        row = to_row(make_ticket(rng, index), seed)
        if not keep(row):
            continue
        meta = row["metadata"]
        row["metadata"] = {**meta, "group": f"fix{seed}-{meta['group']}", "synthetic": True,
                           "augmentation": "targeted", "reason": reason}
        out.append(row)
        if len(out) == n:
            return out
    raise ValueError(f"only {len(out)} of {max_tries} generated tickets match the filter for {reason!r}: loosen it "
                     f"or ask for fewer than {n}")


def corrupt_labels(rows: list[Row], share: float, fields: tuple[str, ...] = ("category", "priority"),
                   seed: int = 0) -> list[Row]:
    """Copies of ``rows`` in which ``share`` of the answers have one wrong label. Taught in 05_iterate.

    For the quality-vs-quantity experiment: in each chosen row one of ``fields`` (picked at random) gets another
    allowed value; the row is tagged ``metadata.noisy_label = <field>``. The others are returned unchanged.
    """
    if not 0 <= share <= 1:
        raise ValueError(f"share={share}: use a fraction in [0, 1]")
    choices = {"category": CATEGORIES, "priority": PRIORITIES}
    unknown = [f for f in fields if f not in choices]
    if unknown:
        raise ValueError(f"cannot corrupt {unknown}: fields must be among {sorted(choices)}")
    rng = random.Random(seed)
    chosen = set(rng.sample(range(len(rows)), round(share * len(rows))))
    out = []
    for i, row in enumerate(rows):
        answer = _answer(row)
        if i not in chosen or answer is None:
            out.append(row)
            continue
        field = rng.choice(fields)
        wrong = rng.choice([v for v in choices[field] if v != answer.get(field)])
        noisy = _with_user_text(row, user_text(row), {**answer, field: wrong})
        noisy["metadata"]["noisy_label"] = field
        out.append(noisy)
    return out
