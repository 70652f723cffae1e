"""Checkers for 02_dataset's exercises: stratified splits, near-duplicate similarity by hand. Taught in 02_dataset."""

from __future__ import annotations

import math
from typing import Any

from helpers.check._core import report, unanswered
from helpers.data import balance_report, clean, ticket_text


def _number(answer: Any) -> bool:
    return isinstance(answer, (int, float)) and not isinstance(answer, bool) and math.isfinite(answer)


def exercise_02_1(answer: Any, splits: dict[str, list[dict[str, Any]]]) -> bool:
    """Exercise 2.1: the largest gap between a category's train share and test share. Taught in 02_dataset."""
    key = "02_1"
    if unanswered(answer) or not _number(answer):
        return report(key, False, "answer_1 must be a float: a difference of two shares (0.01 = one percentage point)")
    train, test = balance_report(splits["train"]), balance_report(splits["test"])
    n_train, n_test = len(splits["train"]), len(splits["test"])
    truth = max(abs(train.get(c, 0) / n_train - test.get(c, 0) / n_test) for c in set(train) | set(test))
    if math.isclose(answer, truth, abs_tol=1e-6):
        return report(key, True, "", "stratification keeps every category's share within that gap")
    if math.isclose(answer, truth * 100, abs_tol=1e-4):
        return report(key, False, "answer as a share (0 to 1), not in percentage points")
    return report(key, False, "divide each category's count (data.balance_report) by the split's size, for train and "
                              "for test, and take the largest absolute difference over all categories")


def exercise_02_2(answer: Any, copy: dict[str, Any], kept: list[dict[str, Any]]) -> bool:
    """Exercise 2.2: the Jaccard similarity of a planted copy's 5-grams to its source's. Taught in 02_dataset."""
    key = "02_2"
    if unanswered(answer) or not _number(answer):
        return report(key, False, "answer_2 must be a float between 0 and 1")
    source = kept[copy["metadata"]["planted_from"]]
    truth = clean.jaccard(clean.shingles(ticket_text(copy)), clean.shingles(ticket_text(source)))
    if math.isclose(answer, truth, abs_tol=1e-9):
        return report(key, True, "", "the similarity the cleaner compares with NEAR_THRESHOLD")
    return report(key, False, "lower-case both ticket texts, join their words with single spaces, take the set of "
                              "every 5-character substring of each, then |A & B| / |A | B|")
