"""Checkers for 04_evaluation's exercises: a paired comparison, an interval on few tickets. Taught in 04_evaluation."""

from __future__ import annotations

import math
from typing import Any, Sequence

from helpers import evaluate
from helpers.check._core import report, unanswered

FEW_TICKETS = 25  # exercise 4.2: the interval on the first 25 test tickets


def exercise_04_1(answer: Any, base_outputs: Sequence[str], tuned_outputs: Sequence[str],
                  references: Sequence[Any]) -> bool:
    """Exercise 4.1: wins, ties and losses of tuned vs base on per-ticket field accuracy. Taught in 04_evaluation."""
    key = "04_1"
    if unanswered(answer) or not isinstance(answer, (tuple, list)) or len(answer) != 3 \
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in answer):
        return report(key, False, "answer_1 must be a tuple of three ints: (wins, ties, losses) of the tuned model")
    base = [r["field_accuracy"] for r in evaluate.score_rows(list(base_outputs), list(references))]
    tuned = [r["field_accuracy"] for r in evaluate.score_rows(list(tuned_outputs), list(references))]
    truth = (sum(t > b for b, t in zip(base, tuned)), sum(t == b for b, t in zip(base, tuned)),
             sum(t < b for b, t in zip(base, tuned)))
    if tuple(answer) == truth:
        return report(key, True, "", f"on {len(base)} hand-written tickets")
    if tuple(answer) == truth[::-1]:
        return report(key, False, "a win is a ticket where the *tuned* answer scores higher than the base answer")
    if sum(answer) != len(base):
        return report(key, False, "every hand-written ticket is a win, a tie or a loss: the three must add up to the "
                                  "number of hand-written tickets")
    return report(key, False, "score both systems' hand-written answers with evaluate.score_rows and compare the "
                              "per-ticket field_accuracy, ticket by ticket")


def exercise_04_2(answer: Any, base_records: Sequence[dict[str, Any]], tuned_records: Sequence[dict[str, Any]]) -> bool:
    """Exercise 4.2: the 95% paired bootstrap interval of the gain on 25 tickets. Taught in 04_evaluation."""
    import numpy as np

    key = "04_2"
    if unanswered(answer) or not isinstance(answer, (tuple, list)) or len(answer) != 2 \
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in answer):
        return report(key, False, "answer_2 must be a tuple of two floats: (low, high) of the 95% interval")
    low, high = (float(x) for x in answer)
    diff = np.array([t["field_accuracy"] - b["field_accuracy"]
                     for b, t in zip(base_records[:FEW_TICKETS], tuned_records[:FEW_TICKETS])])
    idx = np.random.default_rng(12345).integers(0, len(diff), size=(20000, len(diff)))
    means = diff[idx].mean(axis=1)
    truth = float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))
    tol = 0.02 + 0.1 * (truth[1] - truth[0])  # another seed's resamples move a bound by a little
    if abs(low - truth[0]) <= tol and abs(high - truth[1]) <= tol:
        return report(key, True, "", f"{len(diff)} tickets give an interval {truth[1] - truth[0]:.2f} wide")
    if low > high:
        return report(key, False, "the low bound comes first")
    return report(key, False, f"resample the first {FEW_TICKETS} tickets with replacement (the same draw for both "
                              "systems), take the mean field-accuracy difference, tuned minus base, of each resample, "
                              "and its 2.5th and 97.5th percentiles (or evaluate.paired_bootstrap on the first "
                              f"{FEW_TICKETS} records)")
