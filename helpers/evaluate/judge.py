"""Pairwise judging with the answers swapped, and the judges (a stand-in and a local model). Taught in 04_evaluation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from helpers.evaluate.common import EvaluationError
from helpers.evaluate.generation import generate
from helpers.evaluate.metrics import score_rows

JUDGE_RUBRIC = """You are grading two answers to the same support-ticket extraction task.
The correct answer is a JSON object with the keys summary, category, product, order_id, priority.
Score each answer on: (1) valid JSON with exactly those keys; (2) category, product, order_id and priority correct
for the ticket (null when the ticket does not say; never an invented order id); (3) a short, faithful summary.
Judge content only: ignore the order in which the answers are shown and their length.
End your reply with exactly one verdict line: [[A]] if answer A is better, [[B]] if answer B is better, [[TIE]] if
they are equally good or equally bad."""

_SECTION = "\n### {}\n"


def judge_prompt(ticket: str, answer_a: str, answer_b: str, reference: str | None = None) -> str:
    """The rubric prompt for one pairwise comparison (reference optional). Taught in 04_evaluation."""
    parts = [JUDGE_RUBRIC, _SECTION.format("Ticket") + ticket]
    if reference is not None:
        parts.append(_SECTION.format("Reference answer") + reference)
    parts += [_SECTION.format("Answer A") + answer_a, _SECTION.format("Answer B") + answer_b,
              _SECTION.format("Verdict")]
    return "\n".join(parts)


def prompt_sections(prompt: str) -> dict[str, str]:
    """The ``### Name`` sections of a :func:`judge_prompt` (for judges that read them)."""
    pieces = re.split(r"\n### (Ticket|Reference answer|Answer A|Answer B|Verdict)\n", prompt)
    return {name: text.strip() for name, text in zip(pieces[1::2], pieces[2::2])}


_VERDICT_PATTERNS = (
    re.compile(r"\[\[\s*(A|B|TIE)\s*\]\]", re.IGNORECASE),
    re.compile(r"verdict\s*[:=\-]?\s*\**\s*\(?(A|B|tie)\b", re.IGNORECASE),
    re.compile(r"\b(?:answer|response|assistant|option)\s+(A|B)\s+(?:is|was|wins)\s+(?:better|superior|preferred)",
               re.IGNORECASE),
    re.compile(r"\b(tie)\b", re.IGNORECASE),
)


def parse_verdict(text: str) -> str | None:
    """``"A"``, ``"B"``, ``"tie"`` or None from a judge reply, tolerant of junk around it."""
    for pattern in _VERDICT_PATTERNS:
        found = pattern.findall(text or "")
        if found:
            value = found[-1].upper()  # the last verdict wins: judges often restate the options first
            return "tie" if value == "TIE" else value
    return None


def judge_pairwise(
    judge: Callable[[str], str],
    tickets: Sequence[str],
    answers_1: Sequence[str],
    answers_2: Sequence[str],
    references: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Ask ``judge`` twice per example with the answers swapped; keep only verdicts that survive the swap.

    Returns wins/ties for system 1 and 2, ``agreement`` (share of examples whose two verdicts agree),
    ``first_position_rate`` (share of parsed verdicts naming whichever answer was shown first: 0.5 means no order
    bias), ``unparsed`` and the per-example ``records``. Taught in 04_evaluation.
    """
    if not (len(tickets) == len(answers_1) == len(answers_2)):
        raise EvaluationError("tickets, answers_1 and answers_2 must have the same length")
    refs = list(references) if references is not None else [None] * len(tickets)
    prompts = [judge_prompt(t, a, b, r) for t, x, y, r in zip(tickets, answers_1, answers_2, refs)
               for a, b in ((x, y), (y, x))]  # per ticket: system 1 shown first, then system 2 shown first
    many = getattr(judge, "many", None)  # a judge may answer a list of prompts at once (batched generation)
    replies = list(many(prompts)) if callable(many) else [judge(p) for p in prompts]
    records, first, parsed = [], 0, 0
    for i in range(len(tickets)):
        v12, v21 = parse_verdict(replies[2 * i]), parse_verdict(replies[2 * i + 1])
        as_1 = {"A": "1", "B": "2", "tie": "tie", None: None}[v12]  # system 1 was shown as A
        as_2 = {"A": "2", "B": "1", "tie": "tie", None: None}[v21]  # system 1 was shown as B
        for v in (v12, v21):
            if v in ("A", "B"):
                parsed += 1
                first += v == "A"
        final = as_1 if as_1 == as_2 and as_1 is not None else "tie"  # disagreement = order decided it: a tie
        records.append({"index": i, "order_12": v12, "order_21": v21, "agree": as_1 == as_2 and as_1 is not None,
                        "final": final})
    n = len(records)
    return {
        "n": n,
        "wins_1": sum(r["final"] == "1" for r in records),
        "wins_2": sum(r["final"] == "2" for r in records),
        "ties": sum(r["final"] == "tie" for r in records),
        "agreement": sum(r["agree"] for r in records) / n if n else 0.0,
        "first_position_rate": first / parsed if parsed else float("nan"),
        "unparsed": sum((r["order_12"] is None) + (r["order_21"] is None) for r in records),
        "records": records,
    }


class ReferenceFieldJudge:
    """A deterministic STAND-IN for an LLM judge: it compares each answer's fields with the reference answer.

    It is not a language model and cannot judge free text; it exists so cpu-tiny can exercise the judge pipeline
    (prompt, position swap, agreement, verdict parsing) offline. Use :func:`model_judge` with a real instruct model
    on a GPU profile. Taught in 04_evaluation.
    """

    name = "ReferenceFieldJudge (deterministic stand-in, not an LLM)"

    def __init__(self, schema: dict[str, Any] | None = None, verbose: bool = True) -> None:
        self.schema = schema
        if verbose:
            print(f"judge: {self.name} - compares JSON fields with the reference; swap in model_judge() on a GPU")

    def points(self, answer: str, reference: str) -> float:
        """Rubric points: schema validity + the four fields + summary token F1 (0..6)."""
        record = score_rows([answer], [reference], self.schema)[0]
        return record["json_valid"] + record["schema_valid"] + 4 * record["field_accuracy"] + record["summary_token_f1"]

    def __call__(self, prompt: str) -> str:
        sections = prompt_sections(prompt)
        if "Reference answer" not in sections:
            raise EvaluationError("ReferenceFieldJudge needs references: pass references= to judge_pairwise")
        a = self.points(sections["Answer A"], sections["Reference answer"])
        b = self.points(sections["Answer B"], sections["Reference answer"])
        verdict = "TIE" if abs(a - b) < 1e-9 else "A" if a > b else "B"
        return f"points A={a:.2f} B={b:.2f}\n[[{verdict}]]"


@dataclass
class ModelJudge:
    """A judge backed by a local chat model: greedy answers via :func:`generate`, batched in ``many``.

    ``without_adapter=True`` judges with a PEFT model's base weights (``model.disable_adapter()``), so the tuned
    adapter does not grade its own answers.
    """

    model: Any
    tokenizer: Any
    max_new_tokens: int = 256
    without_adapter: bool = False
    batch_size: int = 8

    def many(self, prompts: Sequence[str]) -> list[str]:
        """Replies to several prompts in batches."""
        import contextlib

        conversations = [[{"role": "user", "content": p}] for p in prompts]
        with self.model.disable_adapter() if self.without_adapter else contextlib.nullcontext():
            return generate(self.model, self.tokenizer, conversations, self.max_new_tokens, self.batch_size,
                            progress=False)

    def __call__(self, prompt: str) -> str:
        return self.many([prompt])[0]


def model_judge(model: Any, tokenizer: Any, max_new_tokens: int = 256, without_adapter: bool = False) -> ModelJudge:
    """A :class:`ModelJudge` for a loaded chat model. Taught in 04_evaluation."""
    return ModelJudge(model, tokenizer, max_new_tokens, without_adapter)
