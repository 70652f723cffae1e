"""Checkers for 07's exercises: GRPO's advantages, the reward gap of DPO's pairs. Taught in 07_preference_tuning."""

from __future__ import annotations

import math
import numbers
import statistics
from typing import Any, Mapping, Sequence

from helpers.check._core import report, unanswered
from helpers.data import answer_of, ticket_text
from helpers.evaluate import json_reward

GRPO_EPS = 1e-4  # TRL adds it to the group's standard deviation


def _numbers(answer: Any, n: int) -> bool:
    return (isinstance(answer, (list, tuple)) and len(answer) == n
            and all(isinstance(a, numbers.Real) and not isinstance(a, bool) for a in answer))


def _close(answer: Sequence[float], truth: Sequence[float], tol: float = 1e-3) -> bool:
    return all(abs(a - t) <= tol for a, t in zip(answer, truth))


def exercise_07_1(answer: Any, group: Sequence[str], reference: str, ticket: str) -> bool:
    """Exercise 7.1: GRPO's group-relative advantage of each answer in a group. Taught in 07_preference_tuning."""
    key = "07_1"
    if hasattr(answer, "tolist") and not isinstance(answer, str):  # a numpy array or a pandas Series
        answer = answer.tolist()
    if unanswered(answer) or not _numbers(answer, len(group)):
        return report(key, False, f"answer_1 must be a list of {len(group)} floats, one advantage per answer of "
                                  f"the group, in the group's order")
    rewards = [json_reward(a, reference, ticket) for a in group]
    mean = statistics.mean(rewards)
    if statistics.pstdev(rewards) == 0:
        return report(key, False, "every answer of this group has the same reward, so GRPO learns nothing from it: "
                                  "build the group of section 7.4's examples and the SFT answer")
    truth = [(r - mean) / (statistics.stdev(rewards) + GRPO_EPS) for r in rewards]
    if _close(answer, truth) or _close(answer, [(r - mean) / statistics.stdev(rewards) for r in rewards]):
        up = sum(a > 0 for a in truth)
        return report(key, True, "", f"{up} of {len(group)} answers are above the group's mean and get pushed up; the "
                                     f"advantages sum to 0 (the mean is the baseline)")
    if _close(answer, rewards):
        return report(key, False, "those are the rewards: subtract the group's mean and divide by its standard "
                                  "deviation")
    if _close(answer, [r - mean for r in rewards]):
        return report(key, False, "centred, but not scaled: divide by the group's standard deviation too")
    if _close(answer, [(r - mean) / statistics.pstdev(rewards) for r in rewards]):
        return report(key, False, "TRL divides by the sample standard deviation (torch.std, n - 1 in the "
                                  "denominator: statistics.stdev), not the population one")
    return report(key, False, "score each answer with evaluate.json_reward(answer, reference, ticket), then "
                              "A_i = (r_i - mean(r)) / stdev(r) over the group")


def exercise_07_2(answer: Any, pairs: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]) -> bool:
    """Exercise 7.2: mean json_reward gap (chosen - rejected) of DPO's pairs by kind. Taught in 07_preference_tuning."""
    key = "07_2"
    if unanswered(answer) or not isinstance(answer, Mapping):
        return report(key, False, "answer_2 must be a dict: mistake kind -> mean reward gap (a float)")
    gaps: dict[str, list[float]] = {}
    for pair in pairs:
        row = rows[pair["metadata"]["row"]]
        reference, ticket = answer_of(row), ticket_text(row)
        gap = (json_reward(pair["chosen"][-1]["content"], reference, ticket)
               - json_reward(pair["rejected"][-1]["content"], reference, ticket))
        gaps.setdefault(pair["kind"], []).append(gap)
    truth = {kind: sum(values) / len(values) for kind, values in gaps.items()}
    if set(answer) != set(truth):
        return report(key, False, f"one entry per mistake kind of the pairs (pair['kind']): {', '.join(sorted(truth))}")
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in answer.values()):
        return report(key, False, "each value must be a number: the mean of chosen's reward minus rejected's")
    if all(abs(answer[k] - truth[k]) <= 1e-3 for k in truth):
        widest = max(truth, key=truth.get)
        return report(key, True, "", f"the reward separates {widest} pairs the most, while DPO weighs every pair alike")
    if all(abs(answer[k] + truth[k]) <= 1e-3 for k in truth):
        return report(key, False, "the sign is reversed: chosen's reward minus rejected's")
    wrong = sorted(k for k in truth if not math.isclose(answer[k], truth[k], abs_tol=1e-3))
    return report(key, False, f"wrong for {', '.join(wrong)}: for every pair, score both sides with "
                              f"evaluate.json_reward against the row's reference and ticket (rows[pair['metadata']"
                              f"['row']]), then average chosen - rejected within each kind")
