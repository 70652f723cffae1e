"""Dataset formats: chat messages, prompt/completion, plain text, CSV, OpenAI fine-tuning JSONL. Taught in 02_dataset.

* ``messages`` — ``{"messages": [{"role", "content"}, ...], "metadata": {...}}``, multi-turn allowed (our format).
* ``prompt_completion`` — ``{"prompt": str, "completion": str}`` (single turn; an optional ``system`` string), or
  TRL's conversational form where both are lists of messages (multi-turn).
* ``text`` — ``{"text": str}``: a conversation already rendered with a chat template (one way only: a rendered
  string cannot be turned back into messages reliably).
* CSV — columns ``prompt,completion`` (optional ``system``), ``system,user,assistant`` or ``text``.
* OpenAI fine-tuning JSONL — ``messages`` only, roles system/user/assistant, optional ``weight`` 0/1 on assistant
  messages; our ``metadata`` is stripped.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable

FORMATS = ("messages", "prompt_completion", "text")


class DataFormatError(ValueError):
    """A row or file the course cannot read or convert; the message names where and the fix."""


def detect_format(row: Any) -> str:
    """``messages``, ``prompt_completion`` or ``text`` for one row. Taught in 02_dataset."""
    if isinstance(row, dict):
        if "messages" in row:
            return "messages"
        if "prompt" in row and "completion" in row:
            return "prompt_completion"
        if "text" in row:
            return "text"
    keys = sorted(row) if isinstance(row, dict) else type(row).__name__
    raise DataFormatError(f"unknown row format (keys {keys}): expected messages, prompt+completion or text")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file in any of the three formats; the first bad line raises ``PATH:LINE: ...``."""
    from helpers.data.validate import validate

    report = validate(path)
    for row in report.rows:
        for problem in row.problems:
            # Only the JSON layer is checked here: prompt/completion and text rows are not chat rows.
            if problem.code in ("invalid_utf8", "not_json", "truncated_line", "json_array", "not_object"):
                raise DataFormatError(problem.format(path))
    if report.unreadable:
        raise DataFormatError(report.file_problems[0].format(path))
    return [r.data for r in report.rows]


def read_csv(path: str | Path, system_prompt: str | None = None) -> list[dict[str, Any]]:
    """CSV rows as messages rows (prompt/completion or system/user/assistant columns) or text. Taught in 02_dataset."""
    path = Path(path)
    with path.open(encoding="utf-8-sig", newline="") as f:  # utf-8-sig: a BOM from Excel is not a column name
        reader = csv.DictReader(f)
        columns = set(reader.fieldnames or [])
        rows = list(reader)
    if {"prompt", "completion"} <= columns:
        return [from_prompt_completion({"prompt": r["prompt"], "completion": r["completion"],
                                        "system": r.get("system") or system_prompt}) for r in rows]
    if {"user", "assistant"} <= columns:
        return [from_prompt_completion({"prompt": r["user"], "completion": r["assistant"],
                                        "system": r.get("system") or system_prompt}) for r in rows]
    if "text" in columns:
        return [{"text": r["text"]} for r in rows]
    raise DataFormatError(f"{path}:1: CSV columns {sorted(columns)}: use prompt,completion (optional system), "
                          f"system,user,assistant, or text")


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | Path) -> Path:
    """Write rows as UTF-8 JSONL (one object per line, LF, final newline)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def write_csv(rows: Iterable[dict[str, Any]], path: str | Path) -> Path:
    """Write single-turn rows as CSV with columns system,prompt,completion."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["system", "prompt", "completion"])
        writer.writeheader()
        for row in rows:
            pc = to_prompt_completion(row)
            writer.writerow({"system": pc.get("system", ""), "prompt": pc["prompt"], "completion": pc["completion"]})
    return path


def from_prompt_completion(row: dict[str, Any], system_prompt: str | None = None) -> dict[str, Any]:
    """A prompt/completion row (string or conversational) as a messages row."""
    prompt, completion = row["prompt"], row["completion"]
    if isinstance(prompt, list) and isinstance(completion, list):
        messages = [*prompt, *completion]
    elif isinstance(prompt, str) and isinstance(completion, str):
        system = row.get("system") or system_prompt
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
    else:
        raise DataFormatError("prompt and completion must both be strings or both lists of messages")
    out = {"messages": messages}
    if "metadata" in row:
        out["metadata"] = row["metadata"]
    return out


def to_messages(row: dict[str, Any], system_prompt: str | None = None) -> dict[str, Any]:
    """Any supported row as a messages row. Taught in 02_dataset."""
    kind = detect_format(row)
    if kind == "messages":
        return row
    if kind == "prompt_completion":
        return from_prompt_completion(row, system_prompt)
    raise DataFormatError("a text row is already rendered with a chat template and cannot be split back into "
                          "messages reliably: keep the messages source and render it with to_text()")


def to_prompt_completion(row: dict[str, Any], conversational: bool = False) -> dict[str, Any]:
    """A messages row split before its last assistant turn: strings for one turn, message lists when conversational."""
    row = to_messages(row)
    messages = row["messages"]
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if last is None:
        raise DataFormatError("no assistant message to use as the completion")
    prompt, completion = messages[:last], messages[last:last + 1]
    if conversational:
        out: dict[str, Any] = {"prompt": prompt, "completion": completion}
    else:
        roles = [m["role"] for m in prompt]
        if roles not in (["user"], ["system", "user"]):
            raise DataFormatError(f"a {len(messages)}-message conversation (roles {roles}) does not fit string "
                                  f"prompt/completion: use conversational=True")
        out = {"prompt": prompt[-1]["content"], "completion": completion[0]["content"]}
        if roles[0] == "system":
            out["system"] = prompt[0]["content"]
    if "metadata" in row:
        out["metadata"] = row["metadata"]
    return out


def render_chat(messages: list[dict[str, Any]], tokenizer: Any, add_generation_prompt: bool = False) -> str:
    """A conversation as the exact string the model sees, via the tokenizer's chat template. Taught in 02_dataset."""
    from helpers.data.validate import chat_template_of

    chat_template_of(tokenizer)  # a clear error when the tokenizer has none
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def to_text(row: dict[str, Any], tokenizer: Any) -> dict[str, Any]:
    """A row rendered with the chat template as ``{"text": ...}`` (for trainers that take plain text)."""
    return {"text": render_chat(to_messages(row)["messages"], tokenizer)}


def convert(rows: list[dict[str, Any]], to: str, tokenizer: Any = None,
            system_prompt: str | None = None) -> list[dict[str, Any]]:
    """Convert rows to ``messages``, ``prompt_completion``, ``text`` or ``openai``. Taught in 02_dataset."""
    if to == "messages":
        return [to_messages(r, system_prompt) for r in rows]
    if to == "prompt_completion":
        return [to_prompt_completion(to_messages(r, system_prompt)) for r in rows]
    if to == "text":
        if tokenizer is None:
            raise DataFormatError("converting to text needs a tokenizer (its chat template renders the rows)")
        return [to_text(to_messages(r, system_prompt), tokenizer) for r in rows]
    if to == "openai":
        return [to_openai(to_messages(r, system_prompt)) for r in rows]
    raise DataFormatError(f"unknown target format {to!r}: use messages, prompt_completion, text or openai")


def to_openai(row: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI fine-tuning form of a row: ``messages`` only, role/content (+ weight on assistant messages)."""
    out = []
    for m in to_messages(row)["messages"]:
        if m.get("role") not in ("system", "user", "assistant"):
            raise DataFormatError(f"role {m.get('role')!r} is not accepted by OpenAI fine-tuning: use system, user, "
                                  f"assistant")
        msg = {"role": m["role"], "content": m["content"]}
        if m["role"] == "assistant" and "weight" in m:
            msg["weight"] = m["weight"]
        out.append(msg)
    return {"messages": out}


def export_openai(rows: Iterable[dict[str, Any]], path: str | Path) -> Path:
    """Write rows as OpenAI fine-tuning JSONL (metadata stripped). Taught in 02_dataset."""
    return write_jsonl((to_openai(r) for r in rows), path)


def check_openai(path: str | Path) -> Any:
    """Validate a file against OpenAI's stricter format (returns a ``ValidationReport``). Taught in 02_dataset."""
    from helpers.data.validate import validate

    return validate(path, openai=True)


def read_rows(path: str | Path, system_prompt: str | None = None) -> list[dict[str, Any]]:
    """Rows of a ``.csv``, a ``.json`` array or a JSONL file, as messages rows where possible."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return read_csv(path, system_prompt)
    if path.suffix.lower() == ".json" or _is_json_array(path):
        try:
            items = json.loads(path.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError) as err:
            raise DataFormatError(f"{path}:0: cannot read the JSON array ({err})") from None
        if not isinstance(items, list):
            raise DataFormatError(f"{path}:0: a .json file must hold an array of rows")
        return items
    return read_jsonl(path)


def _is_json_array(path: Path) -> bool:
    from helpers.data.validate import validate

    return "json_array" in validate(path).codes()
