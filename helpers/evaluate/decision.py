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
