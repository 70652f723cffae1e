"""Checkers for 05_iterate's exercises (the best-run rule, epochs per profile, the schedule). Taught in 05_iterate."""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping, Sequence

from helpers.check._core import report, unanswered


def _int(answer: Any) -> bool:
    return isinstance(answer, numbers.Integral) and not isinstance(answer, bool)


def exercise_05_1(answer: Any, table: Any, candidates: Sequence[str]) -> bool:
    """Exercise 5.1: the candidate run that the rule "lowest eval loss" picks. Taught in 05_iterate."""
    key = "05_1"
    if unanswered(answer) or not isinstance(answer, str):
        return report(key, False, "answer_1 must be a run name (a str), one of table.index")
    rows = table.loc[list(candidates)]
    rows = rows[rows["eval_loss"].notna()]
    if rows.empty:
        return report(key, False, "no candidate has an eval loss: run section 5.11 first")
    lowest = rows["eval_loss"].min()
    winners = set(rows.index[rows["eval_loss"] == lowest])
    by_accuracy = rows.assign(_tb=rows["eval_loss"]).sort_values(["field_accuracy", "_tb"], ascending=[False, True])
    accuracy_pick = str(by_accuracy.index[0])
    if answer in winners:
        same = "the same run as" if answer == accuracy_pick else f"not the run ({accuracy_pick}) picked by"
        return report(key, True, "", f"{answer} has the lowest eval loss of the {len(rows)} candidates: {same} "
                                     f"the field-accuracy rule")
    if answer not in table.index:
        return report(key, False, f"{answer!r} is not a run of the table: pick a name from table.index")
    if answer not in rows.index:
        return report(key, False, "that run is not a candidate: the rule chooses among `candidates` only (same start, "
                                  "same data, same steps); restrict the table to them before taking the minimum")
    if answer == str(rows["eval_loss"].idxmax()):
        return report(key, False, "that is the highest eval loss: a lower loss is better")
    return report(key, False, "among table.loc[candidates], take the run whose eval_loss is the smallest "
                              "(pandas: idxmin), not the one with the best field accuracy")


def _epochs(profile: Any, n_rows: int) -> float:
    return profile.max_steps * profile.per_device_batch_size * profile.gradient_accumulation_steps / n_rows


def exercise_05_2(answer: Any, profiles: Mapping[str, Any], n_rows: int) -> bool:
    """Exercise 5.2: epochs of the training split that each profile's recipe covers. Taught in 05_iterate."""
    key = "05_2"
    if unanswered(answer) or not isinstance(answer, Mapping):
        return report(key, False, "answer_2 must be a dict: profile name -> epochs (a float)")
    truth = {name: _epochs(profile, n_rows) for name, profile in profiles.items()}
    if set(answer) != set(truth):
        return report(key, False, f"give one entry per profile of config.PROFILES ({', '.join(truth)})")
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in answer.values()):
        return report(key, False, "each value must be a number of epochs (a float)")
    wrong = [name for name in truth if abs(answer[name] - truth[name]) > max(0.006, 1e-3 * truth[name])]
    if not wrong:
        inside = [name for name, epochs in truth.items() if 1 <= epochs <= 5]
        return report(key, True, "", f"{len(inside)} of {len(truth)} profiles stay within the guides' 1-5 epochs")
    no_accumulation = all(math.isclose(answer[n], truth[n] / profiles[n].gradient_accumulation_steps, rel_tol=1e-3)
                          for n in truth)
    if no_accumulation:
        return report(key, False, "one optimizer step sees per-device batch x gradient accumulation rows (x devices, "
                                  "1 here): the accumulation is missing")
    return report(key, False, f"wrong for {', '.join(wrong)}: epochs = max_steps x effective batch / training rows, "
                              f"with each profile's own max_steps, per_device_batch_size and "
                              f"gradient_accumulation_steps")


def exercise_05_3(answer: Any, schedule: Sequence[float]) -> bool:
    """Exercise 5.3: optimizer steps at which the recipe's rate is >= 90% of its peak. Taught in 05_iterate."""
    key = "05_3"
    if unanswered(answer) or not _int(answer):
        return report(key, False, "answer_3 must be an int: a number of optimizer steps")
    rates = [float(r) for r in schedule]
    peak = max(rates)
    truth = sum(r >= 0.9 * peak for r in rates)
    if answer == truth:
        return report(key, True, "", f"{truth / len(rates):.0%} of the {len(rates)} steps run near the peak rate")
    if answer == len(rates) - truth:
        return report(key, False, "that counts the steps below 90% of the peak: count those at or above it")
    if answer == sum(r > 0.9 * peak for r in rates[rates.index(peak):]):
        return report(key, False, "warmup steps that reach 90% of the peak count too: count over the whole schedule")
    return report(key, False, "count the steps of the recipe's column of `schedules` whose rate is at least "
                              "0.9 x that column's maximum (warmup included)")
