"""The Nimbus knowledge base as learners read it: its sections and labelled questions. Taught in 01_decide.

The knowledge base in ``data/kb/`` (policies + product FAQ, every gold answer checkable in its gold passage) is
written by :mod:`helpers.build.kb`: ``python -m helpers.data.kb build`` (or ``python -m helpers.build.kb build``).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.config import KB_DIR


@dataclass(frozen=True)
class Section:
    """One ``##`` section of a knowledge-base document; ``id`` is ``<doc_id>#<slug>``."""

    id: str
    doc_id: str
    title: str
    heading: str
    text: str


@dataclass(frozen=True)
class Question:
    """A labelled question: the passages that answer it and a short gold answer found in them."""

    id: str
    question: str
    passage_ids: tuple[str, ...]
    answer: str
    topic: str


def slug(text: str) -> str:
    """``"Nimbus Care+"`` -> ``"nimbus-care"``: lower case, words joined by hyphens."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _read_text(path: Path) -> str:
    """A knowledge-base file as text; bytes that are not UTF-8 are a ``ValueError`` naming the file and the fix."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start + 1}): the file is damaged; rebuild with "
                         f"`python -m helpers.data.kb build`") from None


def load_sections(kb_dir: Path = KB_DIR) -> list[Section]:
    """Read the markdown documents back into ``##`` sections, ids as in questions.jsonl. Taught in 01_decide."""
    files = sorted(kb_dir.rglob("*.md"))
    if not files:
        raise FileNotFoundError(f"no knowledge base in {kb_dir}: run `python -m helpers.data.kb build`")
    sections: list[Section] = []
    for path in files:
        doc_id = path.relative_to(kb_dir).with_suffix("").as_posix()
        text = _read_text(path)
        title_match = re.search(r"^# (.+)$", text, flags=re.M)
        title = title_match.group(1).strip() if title_match else doc_id
        for block in re.split(r"^## ", text, flags=re.M)[1:]:
            heading, _, body = block.partition("\n")
            sections.append(Section(id=f"{doc_id}#{slug(heading)}", doc_id=doc_id, title=title,
                                    heading=heading.strip(), text=body.strip()))
    return sections


def load_questions(kb_dir: Path = KB_DIR) -> list[Question]:
    """Read questions.jsonl; a malformed line fails with its file:line. Taught in 01_decide."""
    path = kb_dir / "questions.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python -m helpers.data.kb build`")
    out: list[Question] = []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.append(Question(id=row["id"], question=row["question"], passage_ids=tuple(row["passage_ids"]),
                                answer=row["answer"], topic=row.get("topic", "")))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{path}:{lineno}: malformed question ({err}); rebuild with "
                             "`python -m helpers.data.kb build`") from None
    return out


if __name__ == "__main__":  # the command of the builder, which lives with the others (helpers/build/)
    from helpers.build.kb import main
    from helpers.cli import run

    sys.exit(run(main))
