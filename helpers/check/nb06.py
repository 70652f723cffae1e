"""Checkers for 06_export's exercises: the OpenAI job's budget and what a merge weighs. Taught in 06_export."""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any, Mapping

from helpers.check._core import report, unanswered


def exercise_06_1(answer: Any, cost: Mapping[str, Any], budget_usd: float) -> bool:
    """Exercise 6.1: whole epochs of the OpenAI job that ``budget_usd`` pays for. Taught in 06_export."""
    key = "06_1"
    if unanswered(answer) or not isinstance(answer, numbers.Integral) or isinstance(answer, bool):
        return report(key, False, "answer_1 must be an int: a whole number of epochs")
    per_epoch = cost["tokens_per_epoch"] * cost["price_per_million"] / 1e6  # USD for one pass over the rows
    if per_epoch <= 0:
        return report(key, False, "the cost estimate has a price of 0: set OPENAI_PRICE_PER_M to the published price")
    truth = math.floor(budget_usd / per_epoch + 1e-9)
    if answer == truth:
        return report(key, True, "", f"{truth} epochs cost {truth * per_epoch:.2f} USD of the {budget_usd:g}")
    if answer == truth + 1:
        return report(key, False, "that many epochs costs more than the budget: a job bills whole epochs, round down")
    if answer == math.floor(budget_usd / cost["cost_usd"]):
        return report(key, False, "cost['cost_usd'] is already the price of all cost['epochs'] epochs: price one epoch "
                                  "first")
    return report(key, False, "one epoch bills cost['tokens_per_epoch'] tokens at cost['price_per_million'] USD per "
                              "million tokens; divide the budget by that and round down")


def _weights_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))


def exercise_06_2(answer: Any, merged_dir: str | Path, adapter_dir: str | Path) -> bool:
    """Exercise 6.2: how many times the merged model's weight files outweigh the adapter's. Taught in 06_export."""
    key = "06_2"
    if unanswered(answer) or not isinstance(answer, numbers.Real) or isinstance(answer, bool):
        return report(key, False, "answer_2 must be a number: merged weight bytes / adapter weight bytes")
    merged, adapter = _weights_bytes(Path(merged_dir)), _weights_bytes(Path(adapter_dir))
    if not merged or not adapter:
        return report(key, False, "a folder has no .safetensors file: run sections 6.1 and 6.3 first")
    truth = merged / adapter
    if math.isclose(answer, truth, rel_tol=0.01):
        return report(key, True, "", f"the merged folder is {truth:.1f}x the adapter: the whole model at the "
                                     f"merge's precision, where the adapter is only the low-rank matrices")
    if answer > 0 and math.isclose(1 / answer, truth, rel_tol=0.01):
        return report(key, False, "that is the adapter over the merged model: divide the other way round")
    return report(key, False, "add the sizes (Path.stat().st_size) of every *.safetensors file in the merged folder "
                              "(a large model is saved in several shards) and divide by the adapter's weights file")
