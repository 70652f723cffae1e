"""Validate chat-messages JSONL before training: every bad row at its line, never a traceback. Taught in 02_dataset.

The checks follow OpenAI's fine-tuning format checks and add the ones a local trainer needs:

* **Rows.** One JSON object per physical line. A UTF-8 BOM, CRLF line endings and a final newline (or its absence)
  are fine. A blank line is *skipped with a warning* (``blank_line``): it is not a row, so it is never counted as
  lost data, and the warning points at it so a stray editor artefact is still visible.
* **Keys.** Top level: ``messages`` (required), ``metadata`` (our provenance, an object) and ``tools`` (a list).
  A message: ``role``, ``content``, ``name``, ``weight``, ``tool_calls``, ``tool_call_id``. Anything else is
  ``unknown_key`` (a typo such as ``"contnet"`` would otherwise train on nothing). ``openai=True`` is stricter:
  top level ``messages`` only, messages ``role``/``content``/``weight`` only, roles system/user/assistant only.
* **Roles.** ``system``, ``user``, ``assistant``, ``tool``. ``weight`` (0 or 1) only on assistant messages.
  ``content`` must be a string, except ``null`` on an assistant message that carries ``tool_calls``.
* **With a tokenizer.** Token count with the model's real chat template; rows over ``max_tokens`` get the warning
  ``too_long`` (they will be truncated); the trainable tokens left after assistant-only masking and truncation
  must be > 0 (``no_trainable_tokens``, an error: that row would train nothing). A template without
  ``{% generation %}`` markers cannot give assistant masks: :class:`TemplateError` says so and how to fix it.

Output: one line per problem ``PATH:LINE: CODE: message`` (LINE is the 1-based physical line, 0 for the whole file),
then ``rows: N, valid: K, invalid: M``. Exit code 0 all valid, 1 any invalid, 2 file unreadable (missing, a
directory, empty) or a tokenizer that cannot be used.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# code -> what it means; every code has a test in tests/test_data_validate.py that triggers it.
ERROR_CODES: dict[str, str] = {
    "file_missing": "the path does not exist",
    "is_directory": "the path is a directory, not a file",
    "unreadable": "the file cannot be opened (permissions, I/O error)",
    "empty_file": "the file holds no rows (zero bytes or only blank lines)",
    "json_array": "the whole file is one JSON array, not JSON Lines",
    "invalid_utf8": "the line is not valid UTF-8",
    "not_json": "the line is not valid JSON",
    "truncated_line": "the last line is incomplete JSON without a final newline (the file was cut off)",
    "not_object": "the line is JSON but not an object",
    "unknown_key": "a key the format does not allow (top level or inside a message)",
    "missing_messages": "no 'messages' key",
    "messages_not_list": "'messages' is not a list",
    "empty_messages": "'messages' is an empty list",
    "message_not_object": "a message is not a JSON object",
    "missing_role": "a message has no 'role'",
    "unknown_role": "a role outside the allowed roles",
    "missing_content": "a message has no 'content'",
    "content_not_string": "'content' is not a string",
    "empty_assistant_content": "an assistant message with empty content (nothing to learn)",
    "invalid_weight": "'weight' is not 0 or 1, or sits on a non-assistant message",
    "wrong_type": "'metadata', 'tools', 'name', 'tool_calls' or 'tool_call_id' has the wrong type",
    "no_assistant_message": "the conversation has no assistant message",
    "last_not_assistant": "the last message is not from the assistant",
    "template_error": "the tokenizer's chat template fails on this row",
    "no_trainable_tokens": "no assistant token survives assistant-only masking and truncation",
    "internal_error": "the validator itself failed on this row (a bug: please report it)",
}
WARNING_CODES: dict[str, str] = {
    "blank_line": "a blank line, skipped (not a row)",
    "too_long": "more tokens than max_tokens: the row will be truncated",
}
UNREADABLE_CODES = ("file_missing", "is_directory", "unreadable", "empty_file")

TOP_KEYS = frozenset({"messages", "metadata", "tools"})
MESSAGE_KEYS = frozenset({"role", "content", "name", "weight", "tool_calls", "tool_call_id"})
ROLES = frozenset({"system", "user", "assistant", "tool"})
OPENAI_TOP_KEYS = frozenset({"messages"})
OPENAI_MESSAGE_KEYS = frozenset({"role", "content", "weight"})
OPENAI_ROLES = frozenset({"system", "user", "assistant"})

GENERATION_MARKER = re.compile(r"\{%-?\s*generation\s*-?%\}")


class TemplateError(ValueError):
    """A tokenizer whose chat template cannot give assistant-only masks; the message says how to fix it."""


@dataclass(frozen=True)
class Problem:
    """One finding: where (1-based physical line, 0 = whole file), a stable code and a message with the fix."""

    line: int
    code: str
    message: str

    @property
    def is_error(self) -> bool:
        return self.code not in WARNING_CODES

    def format(self, path: str | Path) -> str:
        """``PATH:LINE: CODE: message``."""
        return f"{path}:{self.line}: {self.code}: {self.message}"


@dataclass
class RowResult:
    """One row (a non-blank line): its line, the parsed object when it parsed, its problems and token counts."""

    line: int
    data: Any = None
    problems: list[Problem] = field(default_factory=list)
    tokens: int | None = None
    trainable: int | None = None
    same_as_previous: bool = False  # an item of a JSON-array file: invalid, reported once on the first item

    @property
    def valid(self) -> bool:
        return not self.same_as_previous and not any(p.is_error for p in self.problems)


@dataclass
class ValidationReport:
    """Everything :func:`validate` found in one file."""

    path: str
    rows: list[RowResult] = field(default_factory=list)
    file_problems: list[Problem] = field(default_factory=list)  # line-0 or line-less findings

    @property
    def unreadable(self) -> bool:
        return any(p.code in UNREADABLE_CODES for p in self.file_problems)

    @property
    def n_rows(self) -> int:
        return len(self.rows)

    @property
    def n_valid(self) -> int:
        return sum(r.valid for r in self.rows)

    @property
    def n_invalid(self) -> int:
        return self.n_rows - self.n_valid

    @property
    def problems(self) -> list[Problem]:
        """All problems in line order (whole-file problems, line 0, first)."""
        return sorted(self.file_problems + [p for r in self.rows for p in r.problems], key=lambda p: p.line)

    @property
    def exit_code(self) -> int:
        """0 all valid, 1 any invalid, 2 unreadable."""
        if self.unreadable:
            return 2
        return 1 if self.n_invalid or any(p.is_error for p in self.file_problems) else 0

    def summary(self) -> str:
        return f"rows: {self.n_rows}, valid: {self.n_valid}, invalid: {self.n_invalid}"

    def lines(self) -> list[str]:
        """The CLI output: one line per problem, then the summary line."""
        return [p.format(self.path) for p in self.problems] + [self.summary()]

    def valid_rows(self) -> list[dict[str, Any]]:
        return [r.data for r in self.rows if r.valid]

    def codes(self) -> list[str]:
        return [p.code for p in self.problems]


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json_line(text: str) -> Any:
    """Strict JSON: NaN/Infinity rejected; raises ValueError (also for nesting too deep to parse)."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("nested too deeply to parse") from None


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
    has_tool_calls = role == "assistant" and bool(msg.get("tool_calls")) and not openai
    if "content" not in msg:
        if not has_tool_calls:
            problems.append(Problem(line, "missing_content", f"{where} has no 'content': add the message text"))
    elif not isinstance(msg["content"], str):
        if not (msg["content"] is None and has_tool_calls):
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
    for key, types, hint in (("name", str, "a string"), ("tool_call_id", str, "a string"),
                             ("tool_calls", list, "a list")):
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
    if "tools" in obj and "tools" in allowed and not isinstance(obj["tools"], list):
        problems.append(Problem(line, "wrong_type", f"tools is {type(obj['tools']).__name__}: use a list"))
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
    return problems


def _split_lines(data: bytes) -> tuple[list[bytes], bool]:
    """Physical lines (split on LF only: U+2028 inside a JSON string is not a line break), CR and BOM removed."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    ends_with_newline = data.endswith(b"\n")
    lines = data.split(b"\n")
    if ends_with_newline:
        lines.pop()
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines], ends_with_newline


def _json_array_problem(data: bytes) -> tuple[Problem, int] | None:
    """A whole-file JSON array (a common mistake): one problem at line 1 and the item count."""
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    if not body.lstrip().startswith(b"["):
        return None
    try:
        items = parse_json_line(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(items, list) or (body.count(b"\n") <= 1 and not any(isinstance(x, dict) for x in items)):
        return None  # a one-line array of scalars is an ordinary not_object row
    line = 1 + body[: len(body) - len(body.lstrip())].count(b"\n")
    return Problem(line, "json_array", f"the file is one JSON array of {len(items)} items, not JSON Lines: write "
                                       f"one object per line (python -m helpers.data convert FILE --out FILE.jsonl)"), \
        max(1, len(items))


def _read(path: Path, report: ValidationReport) -> bytes | None:
    try:
        if not path.exists():
            report.file_problems.append(Problem(0, "file_missing", "no such file: check the path"))
        elif path.is_dir():
            report.file_problems.append(Problem(0, "is_directory", "this is a directory: pass a .jsonl file inside it"))
        else:
            return path.read_bytes()
    except (OSError, ValueError) as err:  # permissions, a name too long, a NUL byte in the path...
        reason = getattr(err, "strerror", None) or str(err)
        report.file_problems.append(Problem(0, "unreadable", f"cannot read the file ({reason})"))
    return None


def validate(
    path: str | Path, tokenizer: Any = None, max_tokens: int | None = None, openai: bool = False
) -> ValidationReport:
    """Check a chat JSONL file row by row (with a tokenizer: tokens and label coverage). Taught in 02_dataset."""
    report = ValidationReport(str(path))
    data = _read(Path(path), report)
    if data is None:
        return report
    array = _json_array_problem(data)
    if array is not None:  # every item counts as an invalid row; the problem is printed once
        problem, count = array
        report.rows = [RowResult(problem.line, problems=[problem])]
        report.rows += [RowResult(problem.line, same_as_previous=True) for _ in range(count - 1)]
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
            _check_line(row, raw, is_last=number == len(lines) and not ends_with_newline, openai=openai)
        except Exception as err:  # noqa: BLE001 - the promise is: never a traceback on any input
            row.problems.append(Problem(number, "internal_error", f"{type(err).__name__}: {err}"[:200]))
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
    except ValueError as err:
        column = f", column {err.colno}" if isinstance(err, json.JSONDecodeError) else ""
        reason = err.msg if isinstance(err, json.JSONDecodeError) else str(err)
        if is_last:
            row.problems.append(Problem(row.line, "truncated_line", f"the last line is not complete JSON "
                                                                    f"({reason}{column}): the file looks cut off; "
                                                                    f"regenerate it"))
        else:
            row.problems.append(Problem(row.line, "not_json", f"{reason}{column}: write one JSON object per line"
                                                              f" (double quotes, no trailing commas)"))
        return
    row.problems.extend(check_row(row.data, row.line, openai))


# --------------------------------------------------------------------------------------------- tokenizer checks


def chat_template_of(tokenizer: Any) -> str:
    """The tokenizer's chat template as text (the default one when there are several)."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default") or next(iter(template.values()), None)
    if not template:
        raise TemplateError("the tokenizer has no chat template: set tokenizer.chat_template (see 02_dataset, "
                            "section 2) before rendering or training on chat rows")
    return template


def require_generation_markers(tokenizer: Any) -> None:
    """Raise :class:`TemplateError` unless the chat template wraps assistant turns in ``{% generation %}``."""
    if not GENERATION_MARKER.search(chat_template_of(tokenizer)):
        raise TemplateError(
            "the chat template has no {% generation %} markers, so assistant-only masking is impossible "
            "(return_assistant_tokens_mask gives all zeros and assistant_only_loss trains nothing): wrap each "
            "assistant turn in {% generation %}...{% endgeneration %} in tokenizer.chat_template (see "
            "helpers.models.CHAT_TEMPLATE, or trl.chat_template_utils.get_training_chat_template(tokenizer) for "
            "templates TRL knows), or train on prompt/completion rows with completion_only_loss instead"
        )


def token_stats(messages_list: list[list[dict]], tokenizer: Any, max_tokens: int | None = None) -> list[
        tuple[int, int, int] | str]:
    """Per conversation (tokens, assistant tokens, trainable tokens after truncation) or the template's error text."""
    limit = max_tokens if max_tokens is not None else 10**12
    kwargs = dict(tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    results: list[tuple[int, int, int] | str] = []
    for start in range(0, len(messages_list), 256):
        chunk = messages_list[start:start + 256]
        try:  # batched is ~4x faster; a row the template rejects sends its chunk through the per-row path
            outs = tokenizer.apply_chat_template(chunk, **kwargs)
            pairs = list(zip(outs["input_ids"], outs["assistant_masks"]))
        except Exception:  # noqa: BLE001
            pairs = []
            for messages in chunk:
                try:
                    out = tokenizer.apply_chat_template(messages, **kwargs)
                    pairs.append((out["input_ids"], out["assistant_masks"]))
                except Exception as err:  # noqa: BLE001
                    pairs.append((f"{type(err).__name__}: {err}"[:160], None))
        for ids, mask in pairs:
            results.append(ids if mask is None else (len(ids), int(sum(mask)), int(sum(mask[:limit]))))
    return results


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
