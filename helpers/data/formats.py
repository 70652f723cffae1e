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

import codecs
import csv
import errno
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

from helpers.data import validation  # validation.FIFO_WAIT_S, read when called: tests shorten it
from helpers.data.validation import (
    MAX_FILE_BYTES, ValidationReport, _read, chat_template_of, display_path, surrogate_where, validate,
)

FORMATS = ("messages", "prompt_completion", "text")


class DataFormatError(ValueError):
    """A row or file the course cannot read or convert; the message names where and the fix."""


def detect_format(row: Any) -> str:
    """``messages``, ``prompt_completion`` or ``text`` for one row."""
    if isinstance(row, dict):
        if "messages" in row:
            return "messages"
        if "prompt" in row and "completion" in row:
            return "prompt_completion"
        if "text" in row:
            return "text"
    keys = sorted(row) if isinstance(row, dict) else type(row).__name__
    raise DataFormatError(f"unknown row format (keys {keys}): expected messages, prompt+completion or text")


def read_jsonl(path: str | Path, report: Any = None) -> list[dict[str, Any]]:
    """Rows of a JSONL file in any of the three formats; the first bad line raises ``PATH:LINE: ...``.

    ``report`` is the file's :func:`~helpers.data.validation.validate` report when the caller has it already: a named
    pipe or ``<(command)`` can be read only once.
    """
    report = report if report is not None else validate(path)
    for row in report.rows:
        for problem in row.problems:
            # Only the JSON layer is checked here: prompt/completion and text rows are not chat rows.
            if problem.code in JSON_LAYER_CODES:
                raise DataFormatError(problem.format(path))
    if report.unreadable:
        raise DataFormatError(report.file_problems[0].format(path))
    return [r.data for r in report.rows]


# What makes a line unreadable as a row of any format (the other codes are about chat rows).
JSON_LAYER_CODES = ("invalid_utf8", "not_json", "truncated_line", "json_array", "pretty_printed", "not_object",
                    "line_too_long", "lone_surrogate", "duplicate_key", "internal_error")


def decode_text(data: bytes, path: str | Path) -> str:
    """Bytes as text: UTF-8 (a BOM is dropped), or UTF-16/32 told by its byte-order mark; else a one-line error."""
    for bom, encoding in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                          (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
                          (codecs.BOM_UTF8, "utf-8-sig")):
        if data.startswith(bom):
            break
    else:
        encoding = "utf-8"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1 if encoding == "utf-8" else 0
        raise DataFormatError(f"{display_path(path)}:{line}: invalid_utf8: byte {err.start + 1} is not {encoding.upper()}"
                              f": re-save the file as UTF-8") from None


def read_csv(path: str | Path, system_prompt: str | None = None) -> list[dict[str, Any]]:
    """CSV rows as messages rows (prompt/completion or system/user/assistant columns) or text. Taught in 02_dataset."""
    path = Path(path)
    report = ValidationReport(display_path(path))
    data = _read(path, report, MAX_FILE_BYTES)
    if data is None:
        raise DataFormatError(report.file_problems[0].format(path))
    # A BOM (UTF-8 from Excel, UTF-16 from "Unicode text" exports) picks the encoding and is not a column name.
    try:
        reader = csv.DictReader(io.StringIO(decode_text(data, path), newline=""))
        header = list(reader.fieldnames or [])
        columns = set(header)
        rows = list(reader)
    except csv.Error as err:
        raise DataFormatError(f"{display_path(path)}:{reader.line_num}: not_csv: {err}: check the quoting (an unclosed "
                              f"quote swallows the rest of the file) or shorten the field") from None
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:  # csv.DictReader keeps the last of two same-named columns: the other would be lost without a word
        raise DataFormatError(f"{display_path(path)}:1: not_csv: the header names {', '.join(map(repr, repeated))} "
                              f"more than once: rename or remove the extra column, so that no column is dropped")
    if None in columns or any(None in r or None in r.values() for r in rows):
        raise DataFormatError(f"{display_path(path)}:0: not_csv: rows with more or fewer fields than the header: "
                              f"quote fields that hold commas")
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


def write_files(writers: dict[Path, Callable[[TextIO], None]], newline: str = "\n") -> None:
    """Write each file to a temporary file beside it, then rename them all: a crash never leaves half a file.

    If any writer fails, no file is replaced and the temporary files are removed.
    """
    import stat

    umask = os.umask(0)
    os.umask(umask)
    staged: list[tuple[Path, Path]] = []
    direct: list[tuple[Path, Callable[[TextIO], None], int | None]] = []
    try:
        for path, write in writers.items():
            try:
                mode = os.stat(path).st_mode
            except FileNotFoundError:
                mode = stat.S_IFREG
            fd = None
            if stat.S_ISFIFO(mode):  # open() would wait forever for a reader that may never come
                fd = _open_fifo_for_writing(path)
            if not stat.S_ISREG(mode):  # /dev/stdout, a pipe: written in place, never replaced by a file
                direct.append((Path(path), write, fd))
                continue
            path = Path(os.path.realpath(path))  # write through a symlink, as open() would
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            staged.append((Path(tmp), path))
            os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
            with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as f:
                write(f)
        for path, write, fd in direct:
            with (open(path, "w", encoding="utf-8", newline=newline) if fd is None else
                  os.fdopen(fd, "w", encoding="utf-8", newline=newline)) as f:
                fd = None
                write(f)
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        for _, _, fd in direct:
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        raise


def _open_fifo_for_writing(path: str | Path) -> int:
    """A named pipe's write end, once a reader has opened it (waiting up to ``FIFO_WAIT_S``), else a one-line OSError."""
    import time

    deadline = time.monotonic() + validation.FIFO_WAIT_S
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as err:
            if err.errno != errno.ENXIO:
                raise
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            raise OSError(errno.ENXIO, f"a named pipe that nothing read from for {validation.FIFO_WAIT_S:g} s: start its reader "
                                       f"first (cat PIPE &) or write to a regular file", str(path)) from None
        os.set_blocking(fd, True)
        return fd


def jsonl_writer(rows: Iterable[dict[str, Any]]) -> Callable[[TextIO], None]:
    """A writer for :func:`write_files`: rows as UTF-8 JSONL (one object per line, LF, final newline)."""
    def write(f: TextIO) -> None:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    return write


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | Path) -> Path:
    """Write rows as UTF-8 JSONL (one object per line, LF, final newline), atomically."""
    write_files({Path(path): jsonl_writer(rows)})
    return Path(path)


def write_csv(rows: Iterable[dict[str, Any]], path: str | Path) -> Path:
    """Write single-turn rows as CSV with columns system,prompt,completion (atomically)."""
    def write(f: TextIO) -> None:
        writer = csv.DictWriter(f, fieldnames=["system", "prompt", "completion"])
        writer.writeheader()
        for row in rows:
            pc = to_prompt_completion(row)
            writer.writerow({"system": pc.get("system", ""), "prompt": pc["prompt"], "completion": pc["completion"]})

    write_files({Path(path): write}, newline="")
    return Path(path)


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
    if not all(isinstance(m, dict) for m in messages):
        raise DataFormatError("every message must be an object with role and content")
    if conversational:
        out: dict[str, Any] = {"prompt": prompt, "completion": completion}
    else:
        roles = [m["role"] for m in prompt]
        if roles not in (["user"], ["system", "user"]):
            raise DataFormatError(f"a {len(messages)}-message conversation (roles {roles}) does not fit string "
                                  f"prompt/completion: use conversational=True")
        for i, m in enumerate([*prompt, *completion]):
            if not isinstance(m.get("content"), str):
                raise DataFormatError(f"messages[{i}] content is {type(m.get('content')).__name__}, not a string: "
                                      f"prompt/completion rows hold text only")
        out = {"prompt": prompt[-1]["content"], "completion": completion[0]["content"]}
        if roles[0] == "system":
            out["system"] = prompt[0]["content"]
    if "metadata" in row:
        out["metadata"] = row["metadata"]
    return out


def render_chat(messages: list[dict[str, Any]], tokenizer: Any, add_generation_prompt: bool = False) -> str:
    """A conversation as the exact string the model sees, via the tokenizer's chat template. Taught in 02_dataset."""
    chat_template_of(tokenizer)  # a clear error when the tokenizer has none
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def to_text(row: dict[str, Any], tokenizer: Any) -> dict[str, Any]:
    """A row rendered with the chat template as ``{"text": ...}`` (for trainers that take plain text)."""
    return {"text": render_chat(to_messages(row)["messages"], tokenizer)}


def convert(rows: list[dict[str, Any]], to: str, tokenizer: Any = None,
            system_prompt: str | None = None) -> list[dict[str, Any]]:
    """Convert rows to ``messages``, ``prompt_completion``, ``text`` or ``openai``."""
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
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise DataFormatError("every message needs a string 'content' for OpenAI fine-tuning (see validate)")
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
    return validate(path, openai=True)


def read_rows(path: str | Path, system_prompt: str | None = None) -> list[dict[str, Any]]:
    """Rows of a ``.csv``, a ``.json`` array or a JSONL file, as messages rows where possible."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return read_csv(path, system_prompt)

    report = validate(path)
    if report.rows and report.rows[0].problems and report.rows[0].problems[0].code in ("json_array", "pretty_printed"):
        items = [r.data for r in report.rows]  # a JSON array or jq-style objects: each item is a row
        for i, item in enumerate(items, 1):
            where = surrogate_where(item)
            if where is not None:
                raise DataFormatError(f"{report.path}: item {i}: lone_surrogate: {where} holds a lone surrogate "
                                      f"escape (such as \\ud800): remove it or write the real character")
        return items
    return read_jsonl(path, report)  # the same report: a pipe cannot be read twice
