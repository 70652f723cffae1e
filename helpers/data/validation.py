"""Validate chat-messages JSONL before training: every bad row at its line, never a traceback. Taught in 02_dataset.

The checks follow OpenAI's fine-tuning format checks and add the ones a local trainer needs:

* **Rows.** One JSON object per physical line. A UTF-8 BOM, CRLF line endings and a final newline (or its absence)
  are fine; CR-only line endings are read as lines (warning ``cr_line_endings``). A blank line is *skipped with a
  warning* (``blank_line``): it is not a row, so it is never counted as lost data, and the warning points at it so a
  stray editor artefact is still visible. A line over ``max_line_bytes`` and a file over ``max_file_bytes`` (or an
  endless stream such as ``/dev/zero``) are refused before they are parsed or tokenized. Duplicate keys in one object
  and lone surrogate escapes (``"\\ud800"``, which no UTF-8 writer can write) are errors.
* **Keys.** Top level: ``messages`` (required), ``metadata`` (our provenance, an object) and ``tools`` (a list).
  A message: ``role``, ``content``, ``name``, ``weight``, ``tool_calls``, ``tool_call_id``. Anything else is
  ``unknown_key`` (a typo such as ``"contnet"`` would otherwise train on nothing). ``openai=True`` follows OpenAI's
  chat fine-tuning format instead (see ``OPENAI_TOP_KEYS``): no ``metadata``, the ``function`` role and
  ``function_call`` of the older format allowed.
* **Roles.** ``system``, ``user``, ``assistant``, ``tool``. In a multi-turn row user and assistant turns alternate
  (``roles_not_alternating`` otherwise; a tool call and its result may sit inside an assistant's turn). ``weight``
  (0 or 1) only on assistant messages; this course's trainer ignores ``weight``, so ``weight: 0`` (a turn OpenAI would not train on) is an error
  (``weight_not_honoured``) except with ``openai=True``.
  ``content`` must be a string, except ``null`` on an assistant message that carries ``tool_calls``.
* **With a tokenizer.** Token count with the model's real chat template; rows over ``max_tokens`` get the warning
  ``too_long`` (they will be truncated); the trainable tokens left after assistant-only masking and truncation
  must be > 0 (``no_trainable_tokens``, an error: that row would train nothing). A template without
  ``{% generation %}`` markers cannot give assistant masks: :class:`TemplateError` says so and how to fix it.

Output: one line per problem ``PATH:LINE: CODE: message`` (LINE is the 1-based physical line, 0 for the whole file),
then ``rows: N, valid: K, invalid: M``. Exit code 0 all valid, 1 any invalid, 2 file unreadable (missing, a
directory, empty, too large) or a tokenizer that cannot be used.
"""

from __future__ import annotations

import codecs
import errno
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from helpers.data.problems import (  # re-exported: validation.Problem, validation.ERROR_CODES ...
    ERROR_CODES, UNREADABLE_CODES, WARNING_CODES, Problem, RowResult, ValidationReport, display_path,
)
from helpers.templates import (  # re-exported: data.TemplateError, data.turn_tokens, validation.token_stats ...
    TemplateError, chat_template_of, require_generation_markers, token_stats, turn_tokens,
)

MAX_LINE_BYTES = 2 * 2**20  # one row: ~500k tokens of English, more than any course model's context
MAX_FILE_BYTES = 512 * 2**20  # one file: parsed rows take several times their bytes in memory; shard bigger sets
FIFO_WAIT_S = 10.0  # a named pipe nothing writes into would block open() forever: wait this long for its writer

TOP_KEYS = frozenset({"messages", "metadata", "tools"})
MESSAGE_KEYS = frozenset({"role", "content", "name", "weight", "tool_calls", "tool_call_id"})
ROLES = frozenset({"system", "user", "assistant", "tool"})
# OpenAI's chat fine-tuning format, as in the OpenAI API reference (OpenAPI spec 2.3.0, ``FineTuneChatRequestInput``:
# "the per-line training example of a fine-tuning input file for chat models using the supervised method") and
# OpenAI's own format checker in the cookbook ("Data preparation and analysis for chat model fine-tuning"), which
# allows ``name``, ``weight`` and ``function_call`` on messages; tools and tool calls come with the current format.
OPENAI_TOP_KEYS = frozenset({"messages", "tools", "parallel_tool_calls", "functions"})
OPENAI_MESSAGE_KEYS = frozenset({"role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call",
                                 "refusal"})
OPENAI_ROLES = frozenset({"system", "user", "assistant", "tool", "function"})


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class DuplicateKeyError(ValueError):
    """One JSON object holds the same key twice."""

    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key = key


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        raise DuplicateKeyError(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return obj


def parse_json_line(text: str) -> Any:
    """Strict JSON: NaN/Infinity and duplicate keys rejected; raises ValueError (also for nesting too deep)."""
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys)
    except RecursionError:
        raise ValueError("nested too deeply to parse") from None


_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\[uU][dD][89a-fA-F]")


def surrogate_where(value: Any) -> str | None:
    """Where a parsed JSON value holds a lone surrogate (``messages[0].content``), or None."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:  # iterative: a deeply nested row must not hit the recursion limit
        item, where = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return where or "the value"
        elif isinstance(item, dict):
            for key, sub in reversed(list(item.items())):
                if _SURROGATE.search(key):
                    return f"{where or 'the object'} key {key!r}"
                stack.append((sub, f"{where}.{key}" if where else str(key)))
        elif isinstance(item, list):
            stack.extend((sub, f"{where}[{i}]") for i, sub in reversed(list(enumerate(item))))
    return None


def check_message(msg: Any, i: int, line: int, openai: bool = False) -> list[Problem]:
    """Problems of one message (``messages[i]``)."""
    where = f"messages[{i}]"
    if not isinstance(msg, dict):
        return [Problem(line, "message_not_object", f"{where} is {type(msg).__name__}, not an object "
                                                    f"like {{\"role\": \"user\", \"content\": \"...\"}}")]
    problems: list[Problem] = []
    allowed = OPENAI_MESSAGE_KEYS if openai else MESSAGE_KEYS
    for key in msg:
        if key not in allowed:
            problems.append(Problem(line, "unknown_key", f"{where} has unknown key {_short(key)}: "
                                                         f"allowed keys are {', '.join(sorted(allowed))}"))
    roles = OPENAI_ROLES if openai else ROLES
    role = msg.get("role")
    if "role" not in msg:
        problems.append(Problem(line, "missing_role", f"{where} has no 'role': add one of {', '.join(sorted(roles))}"))
    elif not isinstance(role, str) or role not in roles:
        problems.append(Problem(line, "unknown_role", f"{where} has role {_short(role)}: "
                                                      f"use one of {', '.join(sorted(roles))}"))
    has_tool_calls = role == "assistant" and bool(msg.get("tool_calls") or (openai and msg.get("function_call")))
    if "content" not in msg:
        if not has_tool_calls:
            problems.append(Problem(line, "missing_content", f"{where} has no 'content': add the message text"))
    elif not isinstance(msg["content"], str):
        if isinstance(msg["content"], list) and all(isinstance(p, dict) and p.get("type") == "text"
                                                     for p in msg["content"]):
            # OpenAI's content parts ([{"type": "text", "text": ...}]): text only, so the fix is mechanical
            problems.append(Problem(line, "content_not_string", f"{where} content is a list of text parts, not a "
                                    f"string: join the parts' \"text\" into one string (the course's chat templates "
                                    f"render strings)"))
        elif not (msg["content"] is None and has_tool_calls):
            problems.append(Problem(line, "content_not_string", f"{where} content is "
                                    f"{type(msg['content']).__name__}, not a string: store the text as a string"))
    elif role == "assistant" and not msg["content"].strip() and not has_tool_calls:
        problems.append(Problem(line, "empty_assistant_content",
                                f"{where} is an assistant message with empty content: write the answer or drop it"))
    if "weight" in msg:
        weight = msg["weight"]
        if role != "assistant" or isinstance(weight, bool) or weight not in (0, 1):
            problems.append(Problem(line, "invalid_weight", f"{where} weight {_short(weight)}: weight must be 0 or 1 "
                                                            f"and only on assistant messages"))
        elif weight == 0 and not openai:
            problems.append(Problem(line, "weight_not_honoured", f"{where} has weight 0: OpenAI would not train on this "
                                    f"turn, but the course's trainer (assistant-only loss) ignores 'weight' and would: "
                                    f"drop the turn or the row, or check an OpenAI upload with --openai"))
    for key, types, hint in (("name", str, "a string"), ("tool_call_id", str, "a string"),
                             ("tool_calls", list, "a list"), ("function_call", dict, "an object")):
        if key in msg and key in allowed and not isinstance(msg[key], types):
            problems.append(Problem(line, "wrong_type", f"{where} {key} is {type(msg[key]).__name__}: use {hint}"))
    return problems


def check_row(obj: Any, line: int, openai: bool = False) -> list[Problem]:
    """Problems of one parsed row (OpenAI's checks and more; see the module docstring)."""
    if not isinstance(obj, dict):
        return [Problem(line, "not_object", f"the line is a JSON {type(obj).__name__}, not an object with 'messages'")]
    problems: list[Problem] = []
    allowed = OPENAI_TOP_KEYS if openai else TOP_KEYS
    for key in obj:
        if key not in allowed:
            problems.append(Problem(line, "unknown_key", f"top-level key {_short(key)} is not allowed: "
                                                         f"allowed keys are {', '.join(sorted(allowed))}"))
    if "metadata" in obj and "metadata" in allowed and not isinstance(obj["metadata"], dict):
        problems.append(Problem(line, "wrong_type", f"metadata is {type(obj['metadata']).__name__}: use an object"))
    for key, types, hint in (("tools", list, "a list"), ("functions", list, "a list"),
                             ("parallel_tool_calls", bool, "true or false")):
        if key in obj and key in allowed and not isinstance(obj[key], types):
            problems.append(Problem(line, "wrong_type", f"{key} is {type(obj[key]).__name__}: use {hint}"))
    if "messages" not in obj:
        problems.append(Problem(line, "missing_messages", "no 'messages' key: each row needs "
                                                          "{\"messages\": [{\"role\": ..., \"content\": ...}, ...]}"))
        return problems
    messages = obj["messages"]
    if not isinstance(messages, list):
        problems.append(Problem(line, "messages_not_list", f"'messages' is {type(messages).__name__}, not a list"))
        return problems
    if not messages:
        problems.append(Problem(line, "empty_messages", "'messages' is empty: add the conversation"))
        return problems
    for i, msg in enumerate(messages):
        problems.extend(check_message(msg, i, line, openai))
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    if "assistant" not in roles:
        problems.append(Problem(line, "no_assistant_message", "no assistant message: nothing to learn from this row"))
    elif roles[-1] != "assistant":
        problems.append(Problem(line, "last_not_assistant", f"the last message is from {_short(roles[-1])}: "
                                                            f"end the conversation with the assistant's answer"))
    if not openai:  # an assistant's tool call is a step inside its turn, like the tool result that follows it
        problems.extend(check_alternation([("tool" if r == "assistant" and isinstance(m, dict) and m.get("tool_calls")
                                            else r) for r, m in zip(roles, messages)], line))
    return problems


def check_alternation(roles: list[Any], line: int) -> list[Problem]:
    """A multi-turn row's user and assistant turns must alternate (system turns aside; tool steps end a turn).

    Several chat templates (Llama 2, Mistral, Gemma) refuse such a row; the others render it, and the model then
    learns from a conversation with a missing answer or a question split in two.
    """
    previous = None
    for i, role in enumerate(roles):
        if role in ("user", "assistant"):
            if role == previous:
                return [Problem(line, "roles_not_alternating", f"messages[{i}] is a second {role} turn in a row: "
                                f"merge the two into one message, or restore the "
                                f"{'assistant' if role == 'user' else 'user'} turn between them")]
            previous = role
        elif role == "tool":
            previous = role
    return []


def _split_lines(data: bytes) -> tuple[list[bytes], bool]:
    """Physical lines (split on LF only: U+2028 inside a JSON string is not a line break), CR and BOM removed."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    ends_with_newline = data.endswith(b"\n")
    lines = data.split(b"\n")
    if ends_with_newline:
        lines.pop()
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines], ends_with_newline


def json_values(body: bytes) -> list[Any] | None:
    """The JSON values of a text that holds one or more of them back to back (``jq`` output), or None."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    decoder = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys)
    values, at = [], len(text) - len(text.lstrip())
    try:
        while at < len(text):
            value, at = decoder.raw_decode(text, at)
            values.append(value)
            at += len(text[at:]) - len(text[at:].lstrip())
    except (ValueError, RecursionError):
        return None
    return values


def _whole_file_problem(data: bytes) -> tuple[Problem, list[Any]] | None:
    """A whole-file JSON array or pretty-printed objects (common mistakes): one problem at its line and the items."""
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    stripped = body.lstrip()
    line = 1 + body[: len(body) - len(stripped)].count(b"\n")
    if stripped.startswith(b"["):
        try:
            items = parse_json_line(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(items, list) or (body.count(b"\n") <= 1 and not any(isinstance(x, dict) for x in items)):
            return None  # a one-line array of scalars is an ordinary not_object row
        return Problem(line, "json_array", f"the file is one JSON array of {len(items)} items, not JSON Lines: write "
                                           f"one object per line (python -m helpers.data convert FILE --out "
                                           f"FILE.jsonl)"), items
    first = stripped.split(b"\n", 1)[0].strip()
    if not stripped.startswith(b"{") or not first or _parses(first):
        return None
    values = json_values(body)
    if not values or not all(isinstance(v, dict) for v in values):
        return None
    n, lines = len(values), body.rstrip().count(b"\n") + 1
    return Problem(line, "pretty_printed", f"the file holds {n} JSON object{'s' if n != 1 else ''} pretty-printed over "
                                           f"{lines} lines, not JSON Lines: write one object per line (jq -c . FILE "
                                           f"> OUT.jsonl, or python -m helpers.data convert FILE --out OUT.jsonl)"), values


def _parses(line: bytes) -> bool:
    try:
        parse_json_line(line.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n} bytes"


def _read(path: Path, report: ValidationReport, max_file_bytes: int = MAX_FILE_BYTES) -> bytes | None:
    too_large = Problem(0, "too_large", f"the file is over {_size(max_file_bytes)} (a huge file or an endless stream "
                                        f"such as /dev/zero): split it into smaller files (split -l 100000 FILE part_)")
    try:
        try:
            info = os.stat(path)
        except FileNotFoundError:
            if os.path.islink(path):
                report.file_problems.append(Problem(0, "unreadable", f"a symbolic link to {display_path(os.readlink(path))}"
                                                                     f", which does not exist: fix or remove the link"))
            else:
                report.file_problems.append(Problem(0, "file_missing", "no such file: check the path"))
            return None
        except OSError as err:
            if err.errno != errno.ELOOP:
                raise
            report.file_problems.append(Problem(0, "unreadable", "a loop of symbolic links (too many levels of "
                                                                 "symbolic links): point the link at a real file"))
            return None
        if stat.S_ISDIR(info.st_mode):
            report.file_problems.append(Problem(0, "is_directory", "this is a directory: pass a .jsonl file inside it"))
            return None
        if stat.S_ISREG(info.st_mode):
            data = path.read_bytes() if info.st_size <= max_file_bytes else b""
            if info.st_size <= max_file_bytes and len(data) <= max_file_bytes:
                return data
            report.file_problems.append(too_large)
            return None
        if stat.S_ISFIFO(info.st_mode):
            f = _open_fifo(path)
            if f is None:
                report.file_problems.append(Problem(0, "unreadable", f"a named pipe that nothing wrote into for "
                                                                     f"{FIFO_WAIT_S:g} s: start its writer first "
                                                                     f"(COMMAND > PIPE &) or pass a regular file"))
                return None
        else:
            f = path.open("rb")
        with f:  # a pipe or a device: read with a bound, it may never end
            chunks, total = [], 0
            while total <= max_file_bytes:
                chunk = f.read(min(1 << 20, max_file_bytes + 1 - total))
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
                total += len(chunk)
        report.file_problems.append(too_large)
    except (OSError, ValueError) as err:  # permissions, a name too long, a NUL byte in the path...
        reason = getattr(err, "strerror", None) or str(err)
        report.file_problems.append(Problem(0, "unreadable", f"cannot read the file ({reason})"))
    return None


def _open_fifo(path: Path, wait_s: float | None = None):
    """A named pipe opened for reading once something writes into it (or its writer closes), or None after ``wait_s``.

    A plain ``open()`` blocks until a writer opens the pipe, forever if none does; a pipe from ``<(COMMAND)`` already
    has its writer and returns at once.
    """
    import fcntl
    import select

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP)
        if not poller.poll(1000 * (FIFO_WAIT_S if wait_s is None else wait_s)):
            os.close(fd)
            return None
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _decode_bom(data: bytes, report: ValidationReport) -> bytes:
    """UTF-16/32 text (told by its byte-order mark) re-encoded as UTF-8, with a whole-file error saying so."""
    for bom, encoding in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                          (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            try:
                data = data.decode(encoding).encode("utf-8")
            except UnicodeError:
                return data  # not really UTF-16/32: each line is reported as it is
            report.file_problems.append(Problem(0, "wrong_encoding", f"the file is {encoding.upper()}, not UTF-8 (rows "
                                                                     f"were read through its byte-order mark): re-save "
                                                                     f"it as UTF-8 (python -m helpers.data convert FILE "
                                                                     f"--out OUT.jsonl)"))
            return data
    return data


def validate(
    path: str | Path, tokenizer: Any = None, max_tokens: int | None = None, openai: bool = False,
    max_line_bytes: int = MAX_LINE_BYTES, max_file_bytes: int = MAX_FILE_BYTES,
) -> ValidationReport:
    """Check a chat JSONL file row by row (with a tokenizer: tokens and label coverage). Taught in 02_dataset."""
    report = ValidationReport(display_path(path))
    data = _read(Path(path), report, max_file_bytes)
    if data is None:
        return report
    data = _decode_bom(data, report)
    if b"\n" not in data and b"\r" in data:
        data = data.replace(b"\r", b"\n")
        report.file_problems.append(Problem(0, "cr_line_endings", "(warning) CR-only line endings (old Mac) read as "
                                                                  "line breaks: convert them to LF (tr '\\r' '\\n')"))
    whole = _whole_file_problem(data)
    if whole is not None:  # every item counts as an invalid row; the problem is printed once
        problem, items = whole
        report.rows = [RowResult(problem.line, data=items[0] if items else None, problems=[problem])]
        report.rows += [RowResult(problem.line, data=item, same_as_previous=True) for item in items[1:]]
        return report
    lines, ends_with_newline = _split_lines(data)
    has_rows = any(raw.strip() for raw in lines)
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            if has_rows:  # an all-blank file is reported once, as empty_file
                report.file_problems.append(Problem(number, "blank_line", "(warning) blank line skipped; remove it"))
            continue
        row = RowResult(number)
        report.rows.append(row)
        try:
            if len(raw) > max_line_bytes:
                row.problems.append(Problem(number, "line_too_long", f"the line is {_size(len(raw))}, over the "
                                                                     f"{_size(max_line_bytes)} limit per row (no chat "
                                                                     f"row needs that much): shorten or split the row"))
            else:
                _check_line(row, raw, is_last=number == len(lines) and not ends_with_newline, openai=openai)
        except Exception as err:  # noqa: BLE001 - the promise is: never a traceback on any input
            row.problems.append(Problem(number, "internal_error", f"{type(err).__name__}: {err}"[:200]))
        if not row.valid:
            row.raw = raw
    if not report.rows:
        report.file_problems.append(Problem(0, "empty_file", "the file holds no rows: write one JSON object per line"))
        return report
    report.file_problems.sort(key=lambda p: p.line)
    if tokenizer is not None:
        check_tokens(report, tokenizer, max_tokens)
    return report


def _check_line(row: RowResult, raw: bytes, is_last: bool, openai: bool) -> None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        byte = raw[err.start:err.start + 1]
        row.problems.append(Problem(row.line, "invalid_utf8", f"byte {err.start + 1} ({byte!r}) is not UTF-8: "
                                                              f"re-save the file as UTF-8"))
        return
    try:
        row.data = parse_json_line(text)
    except DuplicateKeyError as err:
        row.problems.append(Problem(row.line, "duplicate_key", f"key {err.key!r} appears twice in one object (JSON "
                                                               f"keeps only the last, silently): keep one of them"))
        return
    except ValueError as err:
        column = f", column {err.colno}" if isinstance(err, json.JSONDecodeError) else ""
        reason = err.msg if isinstance(err, json.JSONDecodeError) else str(err)
        if "\x00" in text:  # every other byte NUL: UTF-16 (or UTF-32) saved without its byte-order mark
            row.problems.append(Problem(row.line, "not_json", f"the line holds NUL characters: the file looks like "
                                                              f"UTF-16 or UTF-32 without a byte-order mark: re-save "
                                                              f"it as UTF-8"))
            return
        if is_last:
            row.problems.append(Problem(row.line, "truncated_line", f"the last line is not complete JSON "
                                                                    f"({reason}{column}): the file looks cut off; "
                                                                    f"regenerate it"))
        else:
            row.problems.append(Problem(row.line, "not_json", f"{reason}{column}: write one JSON object per line"
                                                              f" (double quotes, no trailing commas)"))
        return
    where = surrogate_where(row.data) if _SURROGATE_ESCAPE.search(text) else None
    if where is not None:
        row.problems.append(Problem(row.line, "lone_surrogate", f"{where} holds a lone surrogate escape (such as "
                                                                f"\\ud800 without its pair): it is not a character and "
                                                                f"cannot be written as UTF-8: remove it or write the "
                                                                f"real character"))
        return
    row.problems.extend(check_row(row.data, row.line, openai))


# --------------------------------------------------------------------------------------------- tokenizer checks


def check_tokens(report: ValidationReport, tokenizer: Any, max_tokens: int | None = None) -> ValidationReport:
    """Add token counts, ``too_long`` warnings and ``no_trainable_tokens`` errors to the valid rows of a report."""
    require_generation_markers(tokenizer)
    rows = [r for r in report.rows if r.valid]
    stats = token_stats([r.data["messages"] for r in rows], tokenizer, max_tokens)
    for row, stat in zip(rows, stats):
        if isinstance(stat, str):
            row.problems.append(Problem(row.line, "template_error", f"the chat template fails: {stat}"))
            continue
        row.tokens, assistant, row.trainable = stat
        if max_tokens is not None and row.tokens > max_tokens:
            row.problems.append(Problem(row.line, "too_long", f"(warning) {row.tokens} tokens > max {max_tokens}: "
                                                              f"truncated, {row.trainable} of {assistant} assistant "
                                                              f"tokens left"))
        if row.trainable == 0:
            why = (f"truncation to {max_tokens} tokens removes the whole answer" if assistant
                   else "the template marks no assistant token")
            row.problems.append(Problem(row.line, "no_trainable_tokens", f"0 trainable tokens ({why}): "
                                                                         f"shorten the prompt or raise the max length"))
    return report
