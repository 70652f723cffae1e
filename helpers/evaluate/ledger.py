"""The test ledger: every read of a held-out split, for which question, by which notebook. Taught in 05_iterate.

*Choose on validation, report on test once.* A number measured on the test split is an honest estimate only if
nothing was chosen by looking at it. Notebooks therefore read the test split (and the hand-written tickets) only
through :func:`test_split`, which states the question the rows answer and writes one line per read to
``test_ledger.jsonl`` beside the run's metrics (``runs/<time>/metrics/`` in a course run, ``runs/metrics/`` in a
notebook of your own). A second read for the same question by the same notebook and profile — a re-run cell, a
"let me just try one more setting" — prints a note that says this is a second look; the course report lists the
ledger of the run, and ``tests/test_static.py`` fails when a notebook reads ``test.jsonl`` any other way or passes
test rows to a function that chooses among candidates.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from helpers.config import METRICS_DIR_VAR, NOTEBOOK_VAR, PROFILE_ENV_VAR, RUNS_DIR
from helpers.data.rows import load_split

LEDGER_NAME = "test_ledger.jsonl"
HELD_OUT = ("test", "handwritten")  # the splits the ledger guards: nothing is trained or chosen on them


def ledger_path() -> Path:
    """This run's ledger: ``$COURSE_METRICS_DIR/test_ledger.jsonl`` in a course run, else ``runs/metrics/``."""
    return Path(os.environ.get(METRICS_DIR_VAR) or RUNS_DIR / "metrics") / LEDGER_NAME


def read_ledger(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The ledger's entries in the order they were written (empty when nothing read a held-out split)."""
    path = Path(path) if path is not None else ledger_path()
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_split(question: str, cfg: Any = None, split: str = "test") -> list[dict[str, Any]]:
    """The rows of a held-out split, read to answer ``question``, with the read written to the ledger.

    ``question`` names the comparison the rows will decide or report, e.g. ``"03: base vs tuned"``; ``cfg`` (the
    profile) caps the test split at its ``eval_limit`` and names the profile in the ledger. A read for a question
    this notebook already asked of the split under the same profile prints a note: the first look is the estimate,
    the second is not.
    """
    if split not in HELD_OUT:
        raise ValueError(f"split {split!r} is not held out: read {split!r} with data.load_split; the ledger guards "
                         f"{', '.join(HELD_OUT)}")
    if not question or not question.strip():
        raise ValueError("say which question the test rows answer, e.g. test_split('03: base vs tuned', cfg)")
    limit = getattr(cfg, "eval_limit", 0) if split == "test" else 0
    rows = load_split(split)[: limit or None]
    note_read(question, split, len(rows), getattr(cfg, "name", None))
    return rows


def note_read(question: str, split: str, rows: int, profile: str | None = None) -> dict[str, Any]:
    """Write one read of a held-out split to the ledger and say so (with a note on a second look); return the entry.

    :func:`test_split` calls it for the notebooks; the training script (``python -m helpers.train``) calls it when it
    scores its ``test_file``.
    """
    notebook = os.environ.get(NOTEBOOK_VAR, "interactive")
    profile = profile or os.environ.get(PROFILE_ENV_VAR, "") or "auto"
    entry = {"notebook": notebook, "question": question.strip(), "split": split, "rows": rows, "profile": profile,
             "pid": os.getpid(), "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    path = ledger_path()
    earlier = [e for e in read_ledger(path) if (e["notebook"], e["question"], e["split"], e["profile"]) ==
               (notebook, entry["question"], split, profile)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
    print(f"{split} split: {rows} rows for {entry['question']!r} (test ledger: read {len(earlier) + 1} for this "
          f"question)")
    if earlier:
        print(f"note: {notebook} already read the {split} split for this question at {earlier[0]['at']}: this is "
              f"look {len(earlier) + 1}. Report the first; a setting changed after seeing test makes the test number "
              f"optimistic (choose on validation)")
    return entry


def ledger_table(path: str | Path | None = None) -> Any:
    """The ledger as a table: one row per question (notebook, split, rows, reads); ``reads`` > 1 flags a second look.

    Shown at the end of 05_iterate and in the course report.
    """
    import pandas as pd

    entries = read_ledger(path)
    columns = ["notebook", "question", "split", "rows", "reads", "profile"]
    if not entries:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(entries)
    table = (frame.groupby(["notebook", "question", "split", "profile"], sort=False)
             .agg(rows=("rows", "last"), reads=("rows", "size")).reset_index())
    return table[columns]


def ledger_markdown(path: str | Path | None = None) -> str:
    """The ledger as Markdown lines for the course report ('' when nothing read a held-out split)."""
    table = ledger_table(path)
    if table.empty:
        return ""
    lines = ["| notebook | question | split | rows | reads |", "|---|---|---|---|---|"]
    for row in table.itertuples():
        flag = f"**{row.reads}** (a second look)" if row.reads > 1 else str(row.reads)
        lines.append(f"| {row.notebook} | {row.question} | {row.split} | {row.rows} | {flag} |")
    return "\n".join(lines)
