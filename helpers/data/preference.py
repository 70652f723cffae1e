"""Preference data: pairs of a better and a worse answer to the same ticket, and rows for GRPO. Taught in 07.

DPO learns from pairs ``(prompt, chosen, rejected)``. The course builds them from its own model's mistakes: the
rejected answer is what the SFT model really wrote on a *training* ticket, the chosen answer is that same answer with
every wrong field set to the reference value (the reference itself when the answer is not a valid object). The two
sides then differ only where the model was wrong, so the preference says exactly what to change; a chosen answer
written from scratch would also differ in the free-text summary, and DPO would spend its signal on wording.

Rows use TRL's conversational preference format: ``prompt`` is the list of system and user messages, ``chosen`` and
``rejected`` are one-message assistant lists. ``grpo_rows`` gives GRPO its prompts plus the columns the reward
functions read (``reference``, ``ticket``; see ``helpers.evaluate.rewards``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from helpers.data.rows import answer_of, ticket_text
from helpers.data.split import check_leakage
from helpers.data.validation import check_row
from helpers.data.answers import FIELD_KEYS as FIELDS  # the scored fields: category, product, order_id, priority
from helpers.data.answers import _schema_errors, _schema_validator, parse_json as _parse


class PreferenceDataError(ValueError):
    """Preference pairs or their inputs that DPO would learn nothing (or the wrong thing) from; names the pair."""


def _prompt(row: dict[str, Any]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in row["messages"] if m.get("role") != "assistant"]


def mistake_of(answer: str, reference: dict[str, Any]) -> str | None:
    """What is wrong with an answer, as one label (None when every scored field is right).

    ``invalid`` (not a JSON object with the schema's keys), ``hallucinated_order_id`` (an id where the ticket names
    none), ``missed_order_id``, or ``wrong_<field>`` for the first wrong field in the order category, product,
    order_id, priority.
    """
    obj = _parse(answer)
    if obj is None or set(obj) != set(reference):
        return "invalid"
    wrong = [k for k in FIELDS if obj.get(k) != reference.get(k)]
    if not wrong:
        return None
    if "order_id" in wrong and reference.get("order_id") is None:
        return "hallucinated_order_id"
    if wrong == ["order_id"]:
        return "missed_order_id"
    return f"wrong_{wrong[0]}"


def corrected(answer: str, reference: dict[str, Any]) -> str:
    """The answer with every scored field set to the reference value; the reference when the answer is invalid."""
    obj = _parse(answer)
    if obj is None or set(obj) != set(reference):
        return json.dumps(reference, ensure_ascii=False)
    return json.dumps({**obj, **{k: reference[k] for k in FIELDS}}, ensure_ascii=False)


PAIR_CHOSEN = ("correction", "reference")  # what a pair's chosen side is: see preference_pairs


def preference_pairs(rows: Sequence[dict[str, Any]], answers: Sequence[str],
                     chosen: str = "correction") -> list[dict[str, Any]]:
    """One pair per row whose model answer has a mistake: chosen = corrected answer, rejected = the answer.

    ``rows`` are chat rows of the training split and ``answers`` what the model wrote for each (same order). Rows the
    model already gets right give no pair. Each pair keeps the ticket's metadata and the mistake's label (``kind``).
    ``chosen="correction"`` (the default) makes the chosen side the model's own answer with only its wrong fields set
    to the reference's values (the pair differs exactly where the mistake is); ``"reference"`` uses the reference
    answer as written (the pair then also differs in the summary's wording).
    """
    if chosen not in PAIR_CHOSEN:
        raise PreferenceDataError(f"chosen={chosen!r}: use one of {', '.join(PAIR_CHOSEN)}")
    if len(rows) != len(answers):
        raise PreferenceDataError(f"{len(rows)} rows but {len(answers)} answers: pass one model answer per row")
    pairs = []
    for i, (row, answer) in enumerate(zip(rows, answers)):
        reference_text = answer_of(row)
        reference = _parse(reference_text or "")
        if reference is None:
            raise PreferenceDataError(f"row {i}: its last message is not an assistant JSON answer "
                                      f"({str(reference_text)[:60]!r}); pass rows of the course splits")
        kind = mistake_of(answer, reference)
        if kind is None:
            continue
        pairs.append({"prompt": _prompt(row),
                      "chosen": [{"role": "assistant", "content": corrected(answer, reference) if chosen == "correction"
                                  else reference_text}],
                      "rejected": [{"role": "assistant", "content": answer}],
                      "kind": kind, "metadata": {**(row.get("metadata") or {}), "row": i}})
    return pairs


@dataclass
class PairCheck:
    """What :func:`check_pairs` found: problems by pair index, and the leakage report against held-out splits."""

    n: int
    problems: list[str] = field(default_factory=list)
    leakage: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        return (f"{self.n} pairs, {len(self.problems)} problems; held-out leakage: {self.leakage}"
                + "".join(f"\n  {p}" for p in self.problems[:10]))


def check_pairs(pairs: Sequence[dict[str, Any]], held_out: dict[str, list[dict[str, Any]]]) -> PairCheck:
    """Validate pairs before DPO: both sides are valid chat rows, chosen != rejected, chosen is a valid answer,
    and no pair's ticket appears (exactly, nearly or by group) in a held-out split."""
    report = PairCheck(len(pairs))
    validator = _schema_validator(None)
    as_rows = []
    for i, pair in enumerate(pairs):
        where = f"pair {i} ({pair.get('kind', '?')})"
        missing = [k for k in ("prompt", "chosen", "rejected") if not isinstance(pair.get(k), list)]
        if missing:
            report.problems.append(f"{where}: {', '.join(missing)} must be lists of messages")
            continue
        for side in ("chosen", "rejected"):
            for problem in check_row({"messages": pair["prompt"] + pair[side]}, line=i + 1):
                report.problems.append(f"{where}, {side}: {problem.message}")
        chosen, rejected = pair["chosen"][-1]["content"], pair["rejected"][-1]["content"]
        if chosen == rejected:
            report.problems.append(f"{where}: chosen and rejected are the same answer")
        obj = _parse(chosen)
        if obj is None or _schema_errors(obj, validator):
            report.problems.append(f"{where}: the chosen answer is not a schema-valid JSON object: {chosen[:60]!r}")
        as_rows.append({"messages": pair["prompt"] + pair["chosen"], "metadata": pair.get("metadata") or {}})
    leaks = check_leakage({**held_out, "pairs": as_rows})
    pair_leaks = [hit for hit in leaks.exact + leaks.near if "pairs" in (hit[0], hit[2])]
    report.leakage = f"{len(pair_leaks)} tickets shared with {', '.join(held_out)}, {len(leaks.groups)} shared groups"
    for hit in pair_leaks[:10]:
        report.problems.append(f"pair {hit[3] if hit[2] == 'pairs' else hit[1]}: its ticket is in "
                               f"{hit[0] if hit[2] == 'pairs' else hit[2]} (leakage)")
    if leaks.groups:
        report.problems.append(f"groups shared with held-out splits: {', '.join(leaks.groups[:5])}")
    return report


def pairs_table(pairs: Sequence[dict[str, Any]], limit: int = 8) -> "Any":
    """The first pairs as a table: mistake, ticket, and the fields where chosen and rejected differ."""
    import pandas as pd

    rows = []
    for pair in pairs[:limit]:
        chosen, rejected = _parse(pair["chosen"][-1]["content"]) or {}, _parse(pair["rejected"][-1]["content"])
        diff = ("rejected is not a valid object" if rejected is None or set(rejected) != set(chosen) else
                "; ".join(f"{k}: {rejected.get(k)!r} -> {chosen.get(k)!r}" for k in FIELDS
                          if rejected.get(k) != chosen.get(k)))
        ticket = ticket_text({"messages": pair["prompt"]})
        rows.append({"kind": pair["kind"], "ticket": ticket[:70] + ("..." if len(ticket) > 70 else ""),
                     "rejected -> chosen": diff})
    return pd.DataFrame(rows)


def grpo_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """GRPO's dataset: the prompt of each chat row plus the columns the rewards read (``reference``, ``ticket``)."""
    out = []
    for i, row in enumerate(rows):
        reference = answer_of(row)
        if reference is None or _parse(reference) is None:
            raise PreferenceDataError(f"row {i}: no assistant JSON answer to reward against; pass rows of the splits")
        out.append({"prompt": _prompt(row), "reference": reference, "ticket": ticket_text(row)})
    return out
