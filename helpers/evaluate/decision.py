"""The decision table of 01_decide, completed with the fine-tuned model's row. Taught in 04_evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpers.evaluate.common import EvaluationError

if TYPE_CHECKING:  # heavy imports stay out of module import time
    import pandas as pd


def extend_decision_table(path: Path | str, row: dict[str, Any]) -> "pd.DataFrame":
    """Add (or replace, by ``approach``) one row of the decision table CSV from 01_decide. Taught in 04_evaluation."""
    import pandas as pd

    if "approach" not in row:
        raise EvaluationError(f"decision-table row {row} has no 'approach': name it, e.g. approach='qlora'")
    path = Path(path)
    table = pd.read_csv(path) if path.is_file() and path.stat().st_size else pd.DataFrame(columns=["approach"])
    if "approach" not in table.columns:
        raise EvaluationError(f"{path}:1 has no 'approach' column: regenerate it by running 01_decide")
    table = table[table["approach"] != row["approach"]]
    table = pd.concat([table, pd.DataFrame([row])], ignore_index=True) if len(table) else pd.DataFrame([row])
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return table


SHIP_MAX_DROP = 0.02  # 05's ship rule: overall field accuracy may fall by at most this much


def ship_rule(failures: tuple[int, int], field_accuracy: tuple[float, float],
              max_drop: float = SHIP_MAX_DROP) -> tuple[bool, str]:
    """05's rule for shipping a data fix, written down before looking: ``(keep, reason)``. Taught in 05_iterate.

    ``failures`` and ``field_accuracy`` are (control, fix) on the **validation** split: keep the fix when the
    targeted group fails less than under the control and overall field accuracy falls by at most ``max_drop``. The
    test split only confirms the decision afterwards (``tests/test_static.py`` refuses test rows here).
    """
    (f_control, f_fix), (a_control, a_fix) = failures, field_accuracy
    target_better, rest_kept = f_fix < f_control, a_fix >= a_control - max_drop
    reason = (f"target failures {f_control} -> {f_fix} ({'fewer' if target_better else 'not fewer'}), field accuracy "
              f"{a_control:.3f} -> {a_fix:.3f} ({'within' if rest_kept else 'beyond'} the allowed drop of {max_drop})")
    return bool(target_better and rest_kept), reason
