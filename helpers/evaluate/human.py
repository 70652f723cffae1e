"""A blind A/B review sheet for human raters. Taught in 04_evaluation."""

from __future__ import annotations

import csv
import html
import json
import random
from pathlib import Path
from typing import Any, Sequence

from helpers.evaluate.common import EvaluationError
from helpers.evaluate.metrics import parse_json


RUBRIC_COLUMNS = (
    "A_valid_json (y/n)", "A_fields_correct (0-4)", "A_summary_faithful (1-5)",
    "B_valid_json (y/n)", "B_fields_correct (0-4)", "B_summary_faithful (1-5)",
    "preferred (A/B/tie)", "notes",
)


NOT_JSON = "(not a JSON object) "  # how an answer that does not parse is shown: the raw text after this mark


def same_form(answer: str) -> str:
    """An answer as the reviewers see it: a JSON object re-written one way for every system, else marked raw text.

    Two systems that print the same object with different spacing or key quoting would be told apart at a glance;
    re-written with the same separators (keys in the answer's order), only the content differs. Used by
    :func:`human_eval_sheet`; 04 names it in prose.
    """
    parsed = parse_json(answer)
    if parsed is None:
        return NOT_JSON + answer.strip()
    return json.dumps(parsed, ensure_ascii=False)


def tells_apart(answers_a: Sequence[str], answers_b: Sequence[str]) -> int:
    """How many rows a reviewer can unblind by the form alone: one answer is a JSON object and the other is not."""
    return sum((parse_json(a) is None) != (parse_json(b) is None) for a, b in zip(answers_a, answers_b))


def human_eval_sheet(
    tickets: Sequence[str],
    answers_base: Sequence[str],
    answers_tuned: Sequence[str],
    out_dir: Path | str,
    seed: int = 0,
    limit: int | None = None,
    names: tuple[str, str] = ("base", "tuned"),
) -> dict[str, Path]:
    """Blind A/B review sheet (CSV + HTML) with rubric columns and a separate hidden key. Taught in 04_evaluation.

    Rows are shuffled and each row's A/B order is random (seeded); ``key.csv`` maps every item back to the systems
    (``names``) and must not be shown to reviewers. Both answers are shown in the same form (:func:`same_form`), so
    only their content tells them apart; a row where one is JSON and the other is not stays recognisable
    (:func:`tells_apart` counts them: compare two systems that both write JSON for a sheet that is blind).
    """
    if not (len(tickets) == len(answers_base) == len(answers_tuned)):
        raise EvaluationError("tickets, answers_base and answers_tuned must have the same length")
    if len(names) != 2 or names[0] == names[1]:
        raise EvaluationError(f"names must be two different system names, not {names!r}")
    rng = random.Random(seed)
    order = list(range(len(tickets)))
    rng.shuffle(order)
    order = order[:limit] if limit else order
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sheet, key = [], []
    for item, i in enumerate(order, start=1):
        base_first = rng.random() < 0.5
        a, b = (answers_base[i], answers_tuned[i]) if base_first else (answers_tuned[i], answers_base[i])
        sheet.append({"item": item, "ticket": tickets[i], "answer_A": same_form(a), "answer_B": same_form(b),
                      **dict.fromkeys(RUBRIC_COLUMNS, "")})
        key.append({"item": item, "example_index": i, "A": names[0] if base_first else names[1],
                    "B": names[1] if base_first else names[0]})
    paths = {"csv": out / "sheet.csv", "html": out / "sheet.html", "key": out / "key.csv"}
    for path, rows in ((paths["csv"], sheet), (paths["key"], key)):
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["item"])
            writer.writeheader()
            writer.writerows(rows)
    paths["html"].write_text(_sheet_html(sheet), encoding="utf-8")
    return paths


def _sheet_html(sheet: Sequence[dict[str, Any]]) -> str:
    """A printable side-by-side review page (every cell escaped)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ("item", "ticket", "answer A", "answer B", *RUBRIC_COLUMNS))
    body = []
    for row in sheet:
        cells = [str(row["item"]), row["ticket"], row["answer_A"], row["answer_B"]]
        tds = "".join(f"<td><pre>{html.escape(c)}</pre></td>" if i in (2, 3) else f"<td>{html.escape(c)}</td>"
                      for i, c in enumerate(cells))
        body.append(f"<tr>{tds}{'<td></td>' * len(RUBRIC_COLUMNS)}</tr>")
    style = ("body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #999;padding:4px;"
             "vertical-align:top}pre{white-space:pre-wrap;max-width:28em;margin:0}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Blind A/B review</title><style>{style}</style>"
            f"</head><body><h1>Blind A/B review</h1><p>Answers A and B come from two systems in a random order per "
            f"row. Fill in the rubric columns; do not open key.csv.</p><table><tr>{head}</tr>{''.join(body)}"
            f"</table></body></html>\n")
