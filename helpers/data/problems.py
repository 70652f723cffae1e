"""What validation finds, as data: a problem at a line, a row's result, a file's report.

:func:`helpers.data.validation.validate` fills these; every code it can give is listed here with what it means (one
table for the validator, the CLI and the tests). ``helpers.data.validation`` re-exports every name.
"""

from __future__ import annotations

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
    "weight_not_honoured": "'weight: 0' on an assistant message: the course's trainer would train on it anyway",
    "too_large": "the file is over the size limit (or an endless stream): nothing is parsed",
    "line_too_long": "the line is over the size limit per row: it is not parsed",
    "lone_surrogate": "a string holds a lone surrogate escape such as \\ud800 (not a character; cannot be written)",
    "duplicate_key": "one JSON object holds the same key twice (JSON keeps only the last)",
    "pretty_printed": "the file holds pretty-printed JSON objects spread over lines, not JSON Lines",
    "wrong_encoding": "the file is UTF-16 or UTF-32 (rows were read through its byte-order mark), not UTF-8",
    "wrong_type": "'metadata', 'tools', 'name', 'tool_calls' or 'tool_call_id' has the wrong type",
    "no_assistant_message": "the conversation has no assistant message",
    "last_not_assistant": "the last message is not from the assistant",
    "roles_not_alternating": "two user (or two assistant) turns in a row: a turn was lost or two should be one",
    "template_error": "the tokenizer's chat template fails on this row",
    "no_trainable_tokens": "no assistant token survives assistant-only masking and truncation",
    "internal_error": "the validator itself failed on this row (a bug: please report it)",
}
WARNING_CODES: dict[str, str] = {
    "blank_line": "a blank line, skipped (not a row)",
    "too_long": "more tokens than max_tokens: the row will be truncated",
    "cr_line_endings": "CR-only line endings (old Mac files): read as line breaks",
}
UNREADABLE_CODES = ("file_missing", "is_directory", "unreadable", "empty_file", "too_large")


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
        return f"{display_path(path)}:{self.line}: {self.code}: {self.message}"


@dataclass
class RowResult:
    """One row (a non-blank line): its line, the parsed object when it parsed, its problems and token counts."""

    line: int
    data: Any = None
    problems: list[Problem] = field(default_factory=list)
    tokens: int | None = None
    trainable: int | None = None
    same_as_previous: bool = False  # an item of a JSON-array file: invalid, reported once on the first item
    raw: bytes | None = None  # the line as read, kept for invalid rows so that rejects lose no text

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


def display_path(path: str | Path) -> str:
    """A path on one printable line: newlines, tabs and undecodable bytes shown as escapes (``\\n``, ``\\udcff``)."""
    text = str(path)
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
