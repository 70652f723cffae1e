"""The course dataset's files and the parts of a chat row: one place that reads a split, one that says what a row's
ticket and answer are. Taught in 02_dataset (every later notebook reads its rows with :func:`load_split`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers.config import TICKETS_DIR
from helpers.data.formats import read_jsonl

# What ``python -m helpers.data build`` writes to data/tickets/: the three splits first, then the stages before them.
SPLIT_NAMES = ("train", "validation", "test", "clean", "rejects", "tickets", "handwritten")
HANDWRITTEN_SPLIT = "handwritten"  # written by hand, never by build: a held-out check of real phrasings
BUILD_COMMAND = "python -m helpers.data build"


def split_path(name: str, tickets_dir: str | Path = TICKETS_DIR) -> Path:
    """``data/tickets/<name>.jsonl`` for a name of :data:`SPLIT_NAMES`; an unknown name says which ones exist."""
    if name not in SPLIT_NAMES:
        raise ValueError(f"unknown split {name!r}: use one of {', '.join(SPLIT_NAMES)} (the files of "
                         f"data/tickets/ that `{BUILD_COMMAND}` writes)")
    return Path(tickets_dir) / f"{name}.jsonl"


def load_split(name: str, tickets_dir: str | Path = TICKETS_DIR) -> list[dict[str, Any]]:
    """The rows of ``data/tickets/<name>.jsonl`` (``train``, ``validation``, ``test``, ``handwritten``...).

    Taught in 02_dataset. A missing file names its path and the command that rebuilds it; a bad line raises
    ``DataFormatError`` with ``PATH:LINE``.
    """
    path = split_path(name, tickets_dir)
    if not path.is_file() and name == HANDWRITTEN_SPLIT:
        raise FileNotFoundError(f"{path} not found: it is written by hand, not built; restore it with "
                                f"`git checkout -- {Path(*path.parts[-3:])}`")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: rebuild the dataset with `{BUILD_COMMAND}` (02_dataset)")
    return read_jsonl(path)


def ticket_text(row: dict[str, Any]) -> str:
    """The ticket of a chat row: the content of its last user turn (``""`` when it has none). Taught in 02_dataset."""
    users = [m.get("content") or "" for m in row["messages"] if m.get("role") == "user"]
    return users[-1] if users else ""


def answer_of(row: dict[str, Any]) -> str | None:
    """The reference answer of a chat row: its final turn when that is the assistant's (a JSON string), else None.

    Taught in 02_dataset.
    """
    messages = row.get("messages") or []
    return messages[-1].get("content") if messages and messages[-1].get("role") == "assistant" else None
