"""Checkers for 01_decide's exercises: the price of few-shot examples and recall@k by hand. Taught in 01_decide."""

from __future__ import annotations

import math
from typing import Any

from helpers.check._core import report, unanswered

TRAINING_RUN_DOLLARS = 20.0  # exercise 1.1: what the fine-tuning run costs


def _number(answer: Any) -> bool:
    return isinstance(answer, (int, float)) and not isinstance(answer, bool) and math.isfinite(answer)


def exercise_01_1(answer: Any, zero_row: Any, few_row: Any, price_in_per_m: float) -> bool:
    """Exercise 1.1: requests after which dropping the few-shot examples has paid a $20 run. Taught in 01_decide."""
    key = "01_1"
    if unanswered(answer) or not _number(answer):
        return report(key, False, "answer_1 must be a number: how many requests (an int or a float)")
    extra_tokens = float(few_row["prompt_tokens"]) - float(zero_row["prompt_tokens"])
    if extra_tokens <= 0:
        return report(key, False, "few-shot should cost more prompt tokens than zero-shot: re-run section 2.3")
    truth = TRAINING_RUN_DOLLARS / (extra_tokens * price_in_per_m / 1e6)
    if math.isclose(answer, truth, rel_tol=0.01):
        return report(key, True, "", f"about {truth / 1000:,.0f} thousand requests at ${price_in_per_m} per million "
                                     "prompt tokens")
    if math.isclose(answer, truth / 1000, rel_tol=0.01):
        return report(key, False, "that is in thousands: answer in requests")
    return report(key, False, "the saving per request is the few-shot prompt's extra tokens (prompt_tokens of the two "
                              "rows) times PRICE_IN_PER_M per million tokens; divide the run's $20 by it")


def exercise_01_2(answer: Any, retriever: Any, questions: Any, k: int = 2) -> bool:
    """Exercise 1.2: BM25's recall@2 on the labelled questions, computed by hand. Taught in 01_decide."""
    key = "01_2"
    if unanswered(answer) or not _number(answer):
        return report(key, False, "answer_2 must be a float between 0 and 1: a share of questions")
    ranked = retriever.search_many([q.question for q in questions], k)
    truth = sum(bool(set(r[:k]) & set(q.passage_ids)) for r, q in zip(ranked, questions)) / len(questions)
    if math.isclose(answer, truth, abs_tol=1e-6):
        return report(key, True, "", "the share of questions whose gold section is in BM25's top 2")
    if math.isclose(answer, truth * 100, abs_tol=1e-4):
        return report(key, False, "a share, not a percentage: between 0 and 1")
    return report(key, False, "for each question take bm25.search(question, 2) and ask whether its gold section "
                              "(q.passage_ids) is among them; average over all questions")
