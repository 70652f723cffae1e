"""helpers.data.validate: every error code from a file that triggers it, at its line, with exit code and summary."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.config import REPO_ROOT
from helpers.data import validate
from helpers.data.__main__ import main
from helpers.data.validation import ERROR_CODES, WARNING_CODES, TemplateError, check_row

FIXTURES = Path(__file__).parent / "fixtures" / "data"

# fixture -> (code, line, rows, valid, invalid, exit code)
CASES = {
    "not_json": ("not_json", 2, 3, 2, 1, 1),
    "not_object": ("not_object", 2, 3, 2, 1, 1),
    "unknown_key": ("unknown_key", 2, 3, 2, 1, 1),
    "unknown_key_top": ("unknown_key", 2, 3, 2, 1, 1),
    "missing_messages": ("missing_messages", 2, 3, 2, 1, 1),
    "messages_not_list": ("messages_not_list", 2, 3, 2, 1, 1),
    "empty_messages": ("empty_messages", 2, 3, 2, 1, 1),
    "message_not_object": ("message_not_object", 2, 3, 2, 1, 1),
    "missing_role": ("missing_role", 2, 3, 2, 1, 1),
    "unknown_role": ("unknown_role", 2, 3, 2, 1, 1),
    "missing_content": ("missing_content", 2, 3, 2, 1, 1),
    "content_not_string": ("content_not_string", 2, 3, 2, 1, 1),
    "empty_assistant_content": ("empty_assistant_content", 2, 3, 2, 1, 1),
    "invalid_weight": ("invalid_weight", 2, 3, 2, 1, 1),
    "wrong_type": ("wrong_type", 2, 3, 2, 1, 1),
    "no_assistant_message": ("no_assistant_message", 2, 3, 2, 1, 1),
    "last_not_assistant": ("last_not_assistant", 2, 3, 2, 1, 1),
    "roles_not_alternating": ("roles_not_alternating", 2, 3, 2, 1, 1),  # line 3: a valid multi-turn row
    "invalid_utf8": ("invalid_utf8", 2, 3, 2, 1, 1),
    "truncated_line": ("truncated_line", 3, 3, 2, 1, 1),
    "json_array": ("json_array", 1, 2, 0, 2, 1),
    "empty_file": ("empty_file", 0, 0, 0, 0, 2),
    "blank_only": ("empty_file", 0, 0, 0, 0, 2),
    "blank_line": ("blank_line", 2, 2, 2, 0, 0),
}


def run_cli(capsys, *args: str) -> tuple[int, list[str]]:
    code = main(["validate", *args])
    return code, capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_code_at_its_line_with_exit_code_and_summary(name, capsys):
    code, line, rows, valid, invalid, exit_code = CASES[name]
    path = FIXTURES / f"{name}.jsonl"
    rc, out = run_cli(capsys, str(path))
    assert rc == exit_code
    assert out[-1] == f"rows: {rows}, valid: {valid}, invalid: {invalid}"
    assert out[0].startswith(f"{path}:{line}: {code}: "), out
    assert len(out) == 2, "exactly one problem is reported for a file with one bad row"


def test_file_missing_and_directory_exit_2(capsys, tmp_path):
    rc, out = run_cli(capsys, str(tmp_path / "nope.jsonl"))
    assert rc == 2 and out == [f"{tmp_path / 'nope.jsonl'}:0: file_missing: no such file: check the path",
                               "rows: 0, valid: 0, invalid: 0"]
    rc, out = run_cli(capsys, str(tmp_path))
    assert rc == 2 and out[0].startswith(f"{tmp_path}:0: is_directory: ") and out[-1] == "rows: 0, valid: 0, invalid: 0"


def test_unreadable_file_exit_2(capsys, monkeypatch):
    def refuse(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    rc, out = run_cli(capsys, str(FIXTURES / "blank_line.jsonl"))
    assert rc == 2 and ": unreadable: cannot read the file (Permission denied)" in out[0]


def test_bom_crlf_and_missing_final_newline_lose_no_row():
    report = validate(FIXTURES / "bom_crlf.jsonl")
    assert report.problems == [] and report.summary() == "rows: 3, valid: 3, invalid: 0" and report.exit_code == 0
    assert [r.line for r in report.rows] == [1, 2, 3]


def test_blank_line_is_a_warning_not_a_lost_row():
    report = validate(FIXTURES / "blank_line.jsonl")
    assert [(p.line, p.code, p.is_error) for p in report.problems] == [(2, "blank_line", False)]
    assert [r.line for r in report.rows] == [1, 3] and report.exit_code == 0


def test_internal_error_is_reported_not_raised(monkeypatch, capsys):
    def boom(obj, line, openai=False):
        raise RuntimeError("bug")

    monkeypatch.setattr(sys.modules["helpers.data.validation"], "check_row", boom)
    rc, out = run_cli(capsys, str(FIXTURES / "blank_line.jsonl"))
    assert rc == 1 and out[0].endswith(":1: internal_error: RuntimeError: bug")
    assert out[-1] == "rows: 2, valid: 0, invalid: 2"


def test_every_documented_code_has_a_triggering_test():
    covered = {c[0] for c in CASES.values()} | {"file_missing", "is_directory", "unreadable", "internal_error",
                                                 "template_error", "no_trainable_tokens", "too_long"}
    # issue 12, each triggered in tests/test_data_hostile.py
    covered |= {"weight_not_honoured", "too_large", "line_too_long", "lone_surrogate", "duplicate_key",
                "pretty_printed", "wrong_encoding", "cr_line_endings"}
    assert set(ERROR_CODES) | set(WARNING_CODES) == covered


@pytest.mark.parametrize("row, code", [
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": None,
                                                      "tool_calls": [{"id": "1"}]}]}, None),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": True}]},
     "invalid_weight"),
    ({"messages": [{"role": "user", "content": "q", "weight": 1}, {"role": "assistant", "content": "a"}]},
     "invalid_weight"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0}]},
     "weight_not_honoured"),  # OpenAI skips such a turn; the course's trainer would not (issue 12)
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 1}]}, None),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "tools": {}},
     "wrong_type"),
    ({"messages": [{"role": 3, "content": "q"}, {"role": "assistant", "content": "a"}]}, "unknown_role"),
])
def test_row_rules(row, code):
    codes = [p.code for p in check_row(row, 7)]
    assert codes == ([code] if code else [])


def test_openai_mode_is_stricter():
    row = {"messages": [{"role": "tool", "content": "q", "name": "x"}, {"role": "assistant", "content": "a"}],
           "metadata": {}}
    assert [p.code for p in check_row(row, 1)] == []
    # name and the tool role are OpenAI's too (issue 12); our metadata and roles it lacks are not
    assert sorted(p.code for p in check_row(row, 1, openai=True)) == ["unknown_key"]
    row = {"messages": [{"role": "developer", "content": "q"}, {"role": "assistant", "content": "a"}]}
    assert [p.code for p in check_row(row, 1, openai=True)] == ["unknown_role"]


# ------------------------------------------------------------------------------------------------ tokenizer


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """A small BPE tokenizer with the course chat template (trained here: no download, no shipped model needed)."""
    from helpers.data.generate import pretraining_texts
    from helpers.build.tiny import TinyRecipe, train_tokenizer

    tok = train_tokenizer(pretraining_texts(300), TinyRecipe(vocab_size=400))
    path = tmp_path_factory.mktemp("tok")
    tok.save_pretrained(path)
    return path


def test_token_checks_lines_codes_and_exit(capsys, tokenizer_dir):
    path = FIXTURES / "tokens.jsonl"
    rc, out = run_cli(capsys, str(path), "--tokenizer", str(tokenizer_dir), "--max-tokens", "120")
    assert rc == 1
    assert [ln.split(": ")[0] + ": " + ln.split(": ")[1] for ln in out[:-1]] == [
        f"{path}:2: too_long", f"{path}:2: no_trainable_tokens", f"{path}:3: template_error"]
    assert out[-1] == "rows: 3, valid: 1, invalid: 2"


def test_token_counts_and_coverage(tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    report = validate(FIXTURES / "tokens.jsonl", tokenizer=tok)  # no max: nothing truncated
    first = report.rows[0]
    ids = tok.apply_chat_template(first.data["messages"], tokenize=True, return_dict=True)["input_ids"]
    assert first.tokens == len(ids) and 0 < first.trainable < first.tokens
    for row in report.rows[:2]:  # the mask covers exactly the answer and its <|end|>
        answer = row.data["messages"][-1]["content"] + tok.eos_token
        assert row.valid and row.trainable == len(tok(answer, add_special_tokens=False)["input_ids"])


def test_template_without_generation_markers_is_a_clear_error(capsys, tokenizer_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(TemplateError, match="assistant-only masking is impossible"):
        validate(FIXTURES / "bom_crlf.jsonl", tokenizer=tok)
    tok.save_pretrained(tmp_path)
    rc, out = run_cli(capsys, str(FIXTURES / "bom_crlf.jsonl"), "--tokenizer", str(tmp_path))
    assert rc == 2 and len(out) == 1 and "no_generation_markers" in out[0] and "{% generation %}" in out[0]


def test_max_tokens_without_tokenizer_is_a_usage_error(capsys):
    rc, out = run_cli(capsys, str(FIXTURES / "bom_crlf.jsonl"), "--max-tokens", "10")
    assert rc == 2
    assert out == ["error: --max-tokens needs --tokenizer PATH (token counts use the model's chat template)"]


# ------------------------------------------------------------------------------------------------ fuzzing

VALID = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]})


def _garbage(rng: random.Random) -> bytes:
    """A line nobody has seen: random bytes, NUL bytes, deep or huge JSON, broken structures."""
    kind = rng.randrange(8)
    if kind == 0:
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    elif kind == 1:
        data = b"[" * rng.randrange(1000, 200000)
    elif kind == 2:
        data = b'{"messages": [{"role": "user", "content": "a\x00b"}]}'
    elif kind == 3:
        data = b'{"messages": "' + b"x" * rng.randrange(10**5, 10**6) + b'"}'
    elif kind == 4:
        depth = rng.randrange(50, 900)
        data = b'{"messages": ' + b"[" * depth + b"]" * depth + b"}"
    elif kind == 5:
        data = rng.choice([b"NaN", b"1e99999", b"9" * 5000, b"null", b"true", b'{"messages": [1, [2], null]}'])
    elif kind == 6:
        data = VALID.encode()[: rng.randrange(1, len(VALID) - 1)]
    else:
        data = rng.choice([b"\xef\xbb\xbf{", b"\xff\xfe{\x00", b"{'messages': []}", b'{"messages": [{}]}'])
    data = data.replace(b"\n", b" ")
    return data if data.strip() else b"?"


def test_fuzz_reports_each_bad_row_at_its_line_and_never_crashes(tmp_path, capsys):
    rng = random.Random(1234)
    for trial in range(40):
        lines, bad = [], set()
        for number in range(1, rng.randrange(2, 30)):
            if rng.random() < 0.5:
                lines.append(_garbage(rng))
                bad.add(number)
            else:
                lines.append(VALID.encode())
        path = tmp_path / f"fuzz{trial}.jsonl"
        path.write_bytes(b"\n".join(lines) + (b"\n" if rng.random() < 0.7 else b""))
        report = validate(path)
        assert {r.line for r in report.rows if not r.valid} == bad, f"trial {trial}"
        assert "internal_error" not in report.codes()
        rc, out = run_cli(capsys, str(path))
        assert rc == (1 if bad else 0)
        assert out[-1] == f"rows: {len(lines)}, valid: {len(lines) - len(bad)}, invalid: {len(bad)}"


def test_cli_on_random_bytes_prints_no_traceback(tmp_path):
    rng = random.Random(7)
    path = tmp_path / "noise.jsonl"
    path.write_bytes(bytes(rng.randrange(256) for _ in range(5000)) + b"\n" + b"[" * 100000)
    proc = subprocess.run([sys.executable, "-m", "helpers.data", "validate", str(path)], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 1 and proc.stderr == ""
    assert "Traceback" not in proc.stdout and proc.stdout.splitlines()[-1].startswith("rows: ")


def test_unusable_tokenizer_is_one_line_exit_2(capsys, tmp_path):
    rc, out = run_cli(capsys, str(FIXTURES / "bom_crlf.jsonl"), "--tokenizer", str(tmp_path / "no-such-tokenizer"))
    assert rc == 2 and len(out) == 1 and out[0].startswith(f"{tmp_path / 'no-such-tokenizer'}: tokenizer_unusable: ")


def test_impossible_paths_are_exit_2_not_a_traceback(tmp_path):
    too_long = validate(tmp_path / ("a" * 5000))
    assert too_long.exit_code == 2 and too_long.codes() == ["unreadable"]
    assert validate("bad\x00name.jsonl").exit_code == 2


@pytest.mark.parametrize("roles, ok", [
    (["system", "user", "assistant", "user", "assistant"], True),  # a multi-turn row: valid
    (["user", "assistant", "user", "assistant", "user", "assistant"], True),
    (["system", "user", "assistant", "tool", "assistant"], True),  # a tool result between a call and its answer
    (["system", "user", "user", "assistant"], False),
    (["system", "user", "assistant", "assistant"], False),
    (["user", "assistant", "system", "assistant"], False),  # a system turn does not end a turn
])
def test_multi_turn_rows_alternate(roles, ok):
    messages = []
    for role in roles:
        msg = {"role": role, "content": "{}" if role == "assistant" else "x"}
        if role == "assistant" and len(messages) + 1 < len(roles) and roles[len(messages) + 1] == "tool":
            msg["tool_calls"] = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
        messages.append(msg)
    codes = [p.code for p in check_row({"messages": messages}, 1)]
    assert ("roles_not_alternating" not in codes) is ok, codes
    assert "roles_not_alternating" not in [p.code for p in check_row({"messages": messages}, 1, openai=True)]


def test_turn_tokens_split_a_multi_turn_row_and_train_every_assistant_turn(tokenizer_dir):
    from transformers import AutoTokenizer

    from helpers.data.validation import turn_tokens

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    messages = [{"role": "system", "content": "Extract JSON."}, {"role": "user", "content": "Where is my order?"},
                {"role": "assistant", "content": '{"order_id": null}'},
                {"role": "user", "content": "Sorry, it is ORD-123456."},
                {"role": "assistant", "content": '{"order_id": "ORD-123456"}'}]
    turns = turn_tokens(messages, tok)
    full = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    assert [t["role"] for t in turns] == [m["role"] for m in messages]
    assert sum(t["tokens"] for t in turns) == len(full["input_ids"])
    assert sum(t["trained"] for t in turns) == sum(full["assistant_masks"])
    for turn, message in zip(turns, messages):
        if message["role"] == "assistant":  # the answer and its end token, not the role header
            answer = tok(message["content"] + tok.eos_token, add_special_tokens=False)["input_ids"]
            assert turn["trained"] == len(answer)
        else:
            assert turn["trained"] == 0
    tok.chat_template = "{{ messages | length }}" + tok.chat_template  # looks ahead: prefixes render differently
    with pytest.raises(TemplateError, match="differently"):
        turn_tokens(messages, tok)
