"""Issue 12: the data command line on hostile input: never lose data, never a traceback, one line per problem."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.config import REPO_ROOT
from helpers.data import clean_file, validate
from helpers.data.__main__ import main
from helpers.data.formats import DataFormatError, write_jsonl

ROW = {"messages": [{"role": "system", "content": "S"},
                    {"role": "user", "content": "Where is my order ORD-123456? It is late again."},
                    {"role": "assistant", "content": '{"category": "shipping"}'}]}


def chat(text: str, answer: str = '{"category": "billing"}') -> dict:
    return {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": text},
                         {"role": "assistant", "content": answer}]}


def lines_of(*rows: dict | str) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def cli(capsys, *args: str) -> tuple[int, list[str]]:
    try:
        rc = main(list(args))
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code
    captured = capsys.readouterr()
    return rc, (captured.out + captured.err).splitlines()


def run_module(*args: str, cwd: Path = REPO_ROOT, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env=env)


# ------------------------------------------------------------------------------------------ 1, 2, 5: data loss


def test_clean_refuses_out_equal_to_input_and_leaves_the_input_alone(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(lines_of(ROW, ROW, "not json"), encoding="utf-8")
    before = src.read_bytes()
    rc, out = cli(capsys, "clean", str(src), "--out", str(src), "--rejects", str(tmp_path / "r.jsonl"))
    assert rc == 2 and len(out) == 1 and "--out" in out[0] and "input" in out[0]
    rc, out = cli(capsys, "clean", str(src), "--out", str(tmp_path / "o.jsonl"), "--rejects",
                  str(tmp_path / "." / "in.jsonl"))
    assert rc == 2 and len(out) == 1 and "--rejects" in out[0]
    assert src.read_bytes() == before and not (tmp_path / "o.jsonl").exists()


def test_clean_refuses_out_equal_to_rejects(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(lines_of(ROW), encoding="utf-8")
    rc, out = cli(capsys, "clean", str(src), "--out", str(tmp_path / "x"), "--rejects", str(tmp_path / "x"))
    assert rc == 2 and len(out) == 1 and "--out" in out[0] and "--rejects" in out[0]
    assert not (tmp_path / "x").exists()


def test_rejects_keep_the_raw_text_of_lines_that_are_not_json(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(lines_of(ROW, "this is my ticket, not JSON: {oops").encode() + b"\xff\xfe raw bytes\n")
    clean_file(src, tmp_path / "o.jsonl", tmp_path / "r.jsonl")
    rejects = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rejects[0]["line"] == 2 and rejects[0]["raw"] == "this is my ticket, not JSON: {oops"
    assert rejects[1]["line"] == 3 and "raw" not in rejects[1]
    import base64

    assert base64.b64decode(rejects[1]["raw_base64"]) == b"\xff\xfe raw bytes"


def test_a_crash_while_writing_leaves_the_old_file_in_place(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old good content\n")

    def rows():
        yield ROW
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError):
        write_jsonl(rows(), target)
    assert target.read_text() == "old good content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"], "no temporary file left behind"


def test_written_files_get_ordinary_permissions(tmp_path):
    path = write_jsonl([ROW], tmp_path / "o.jsonl")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("where", ["below_a_file", "a_directory"])
def test_unwritable_rejects_fails_before_anything_is_written(tmp_path, capsys, where):
    src = tmp_path / "in.jsonl"
    src.write_text(lines_of(ROW, chat("Another ticket about my PulseBuds that keep disconnecting.")))
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    rejects = tmp_path / "file" / "r.jsonl" if where == "below_a_file" else tmp_path / "dir"
    rc, out = cli(capsys, "clean", str(src), "--out", str(tmp_path / "o.jsonl"), "--rejects", str(rejects))
    assert rc == 2 and len(out) == 1 and out[0].startswith("error: --rejects ")
    assert rc == 2 and len(out) == 1 and str(rejects) in out[0]
    assert not (tmp_path / "o.jsonl").exists()


# ------------------------------------------------------------------------------------------ 3: lone surrogates


def test_lone_surrogate_is_flagged_by_validate_and_rejected_by_the_others(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(lines_of(ROW, '{"messages": [{"role": "user", "content": "bad \\ud800 char"}, '
                                 '{"role": "assistant", "content": "ok"}]}'), encoding="utf-8")
    report = validate(src)
    assert report.codes() == ["lone_surrogate"] and report.rows[1].problems[0].line == 2
    assert "messages[0].content" in report.rows[1].problems[0].message
    rc, out = cli(capsys, "clean", str(src), "--out", str(tmp_path / "o.jsonl"), "--rejects",
                  str(tmp_path / "r.jsonl"))
    assert rc == 0 and "invalid: 1, kept: 1" in out[0]
    rejects = (tmp_path / "r.jsonl").read_text(encoding="utf-8")
    assert "invalid:lone_surrogate" in rejects and "\\\\ud800" in rejects  # the raw line, escape kept
    rc, out = cli(capsys, "split", str(src), "--out-dir", str(tmp_path / "splits"))
    assert rc == 2 and len(out) == 1 and "lone_surrogate" in out[0]
    rc, out = cli(capsys, "convert", str(src), "--out", str(tmp_path / "c.jsonl"), "--to", "prompt_completion")
    assert rc == 2 and len(out) == 1 and "lone_surrogate" in out[0] and ":2:" in out[0]
    assert not (tmp_path / "c.jsonl").exists()


# ------------------------------------------------------------------------------------------ 4: bounds


def test_endless_stream_is_refused_with_a_bound(tmp_path):
    report = validate("/dev/zero", max_file_bytes=1 << 20)
    assert report.exit_code == 2 and report.codes() == ["too_large"]
    proc = run_module("helpers.data", "validate", "/dev/zero", timeout=120)
    assert proc.returncode == 2 and "too_large" in proc.stdout and "Traceback" not in proc.stderr + proc.stdout


def test_huge_file_is_refused_without_reading_it(tmp_path, monkeypatch):
    big = tmp_path / "big.jsonl"
    with big.open("wb") as f:
        f.truncate(3 << 30)  # a sparse 3 GiB file
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read a file over the limit"))
    report = validate(big)
    assert report.exit_code == 2 and report.codes() == ["too_large"] and "split" in report.lines()[0]


def test_an_overlong_line_is_one_error_and_never_reaches_the_tokenizer(tmp_path):
    src = tmp_path / "in.jsonl"
    huge = chat("x" * 5000)
    src.write_text(lines_of(ROW, huge, ROW))

    class Boom:
        chat_template = "{% generation %}"

        def apply_chat_template(self, messages, **kwargs):
            if len(messages) != len(ROW["messages"]) or len(json.dumps(messages)) > 4000:
                raise AssertionError("the tokenizer saw the overlong row")
            n = len(messages)
            return {"input_ids": [[1, 2, 3]] * n, "assistant_masks": [[0, 1, 1]] * n} if isinstance(
                messages[0], list) else {"input_ids": [1, 2, 3], "assistant_masks": [0, 1, 1]}

    report = validate(src, tokenizer=Boom(), max_line_bytes=4096)
    assert [(p.line, p.code) for p in report.problems] == [(2, "line_too_long")]
    assert report.summary() == "rows: 3, valid: 2, invalid: 1"


# ------------------------------------------------------------------------------------------ 6: option ranges


@pytest.mark.parametrize("args", [
    ["clean", "IN", "--out", "O", "--rejects", "R", "--near-threshold", "1.5"],
    ["clean", "IN", "--out", "O", "--rejects", "R", "--near-threshold", "-1"],
    ["clean", "IN", "--out", "O", "--rejects", "R", "--near-threshold", "0"],
    ["clean", "IN", "--out", "O", "--rejects", "R", "--near-threshold", "nan"],
    ["clean", "IN", "--out", "O", "--rejects", "R", "--min-chars", "-3"],
    ["clean", "IN", "--out", "O", "--rejects", "R", "--min-chars", "50", "--max-chars", "10"],
    ["split", "IN", "--out-dir", "D", "--near-threshold", "2"],
    ["validate", "IN", "--max-tokens", "-5", "--tokenizer", "T"],
    ["validate", "IN", "--max-tokens", "0", "--tokenizer", "T"],
])
def test_out_of_range_options_are_refused_by_the_parser(args, capsys, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(lines_of(ROW))
    args = [str(src) if a == "IN" else str(tmp_path / a) if a in ("O", "R", "D", "T") else a for a in args]
    rc, out = cli(capsys, *args)
    assert rc == 2 and any(line.startswith("python -m helpers.data") and "error:" in line for line in out), out
    assert not (tmp_path / "O").exists() and not (tmp_path / "D").exists()


# ------------------------------------------------------------------------------------------ 7: split


def test_split_on_prompt_completion_rows_says_convert_first(tmp_path, capsys):
    src = tmp_path / "pc.jsonl"
    src.write_text(lines_of({"prompt": "p", "completion": "c"}))
    rc, out = cli(capsys, "split", str(src), "--out-dir", str(tmp_path / "s"))
    assert rc == 2 and len(out) == 1 and "convert" in out[0] and f"{src}:1:" in out[0]
    assert not (tmp_path / "s").exists()


def test_split_on_invalid_rows_refuses_instead_of_writing_empty_splits(tmp_path, capsys):
    src = tmp_path / "bad.jsonl"
    src.write_text(lines_of({"messages": []}, {"messages": "x"}))
    rc, out = cli(capsys, "split", str(src), "--out-dir", str(tmp_path / "s"))
    assert rc == 2 and len(out) == 1 and "2 of 2 rows are invalid" in out[0] and "clean" in out[0]
    assert not (tmp_path / "s").exists()


def test_split_warns_about_an_empty_split_and_never_overwrites_its_input(tmp_path, capsys):
    out_dir = tmp_path / "s"
    out_dir.mkdir()
    src = out_dir / "train.jsonl"
    src.write_text(lines_of(ROW, chat("My PulseBuds keep disconnecting from Bluetooth every few minutes.")))
    rc, out = cli(capsys, "split", str(src), "--out-dir", str(out_dir))
    assert rc == 2 and len(out) == 1 and "input" in out[0]
    src2 = tmp_path / "two.jsonl"
    src2.write_bytes(src.read_bytes())
    rc, out = cli(capsys, "split", str(src2), "--out-dir", str(tmp_path / "s2"))
    assert rc == 0 and any(line.startswith("warning: ") and "empty" in line for line in out)


# ------------------------------------------------------------------------------------------ 8: convert


def test_convert_reads_a_utf16_csv_and_refuses_non_string_contents(tmp_path, capsys):
    src = tmp_path / "in.csv"
    src.write_bytes("prompt,completion\nwhere is my parcel? ☂,{\"category\": \"shipping\"}\n".encode("utf-16"))
    rc, out = cli(capsys, "convert", str(src), "--out", str(tmp_path / "o.jsonl"))
    assert rc == 0, out
    row = json.loads((tmp_path / "o.jsonl").read_text(encoding="utf-8"))
    assert row["messages"][0]["content"] == "where is my parcel? ☂"
    latin = tmp_path / "latin.csv"
    latin.write_bytes("prompt,completion\ncafé,ok\n".encode("latin-1"))
    rc, out = cli(capsys, "convert", str(latin), "--out", str(tmp_path / "l.jsonl"))
    assert rc == 2 and len(out) == 1 and "UTF-8" in out[0] and str(latin) in out[0]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines_of({"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": ["a"]}]}))
    rc, out = cli(capsys, "convert", str(bad), "--out", str(tmp_path / "b.jsonl"), "--to", "prompt_completion")
    assert rc == 2 and len(out) == 1 and "not a string" in out[0] and not (tmp_path / "b.jsonl").exists()


def test_convert_refuses_to_overwrite_its_input(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(lines_of(ROW))
    before = src.read_bytes()
    rc, out = cli(capsys, "convert", str(src), "--out", str(src), "--to", "openai")
    assert rc == 2 and len(out) == 1 and src.read_bytes() == before


# ------------------------------------------------------------------------------------------ 12, 13: weight, OpenAI


def test_weight_zero_is_rejected_with_a_reason_outside_openai_mode(tmp_path):
    row = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0},
                        {"role": "user", "content": "q2"}, {"role": "assistant", "content": "b"}]}
    src = tmp_path / "w.jsonl"
    src.write_text(lines_of(row))
    report = validate(src)
    assert report.codes() == ["weight_not_honoured"] and "weight 0" in report.problems[0].message
    assert validate(src, openai=True).codes() == []


def test_openai_mode_follows_the_current_chat_fine_tuning_format():
    from helpers.data.validation import check_row

    tool_row = {"messages": [
        {"role": "system", "content": "s"}, {"role": "user", "content": "q", "name": "ann"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                              "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
        {"role": "assistant", "content": "the answer is 42", "weight": 1}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}], "parallel_tool_calls": False}
    assert [p.code for p in check_row(tool_row, 1, openai=True)] == []
    legacy = {"messages": [{"role": "user", "content": "q"},
                           {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}},
                           {"role": "function", "name": "f", "content": "1"},
                           {"role": "assistant", "content": "a"}], "functions": [{"name": "f"}]}
    assert [p.code for p in check_row(legacy, 1, openai=True)] == []
    assert [p.code for p in check_row({"messages": ROW["messages"], "metadata": {}}, 1, openai=True)] == [
        "unknown_key"]


# ------------------------------------------------------------------------------------------ 14: wrong answers


def test_clean_never_emits_a_row_that_fails_validate(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(lines_of(ROW, chat("My PulseBuds keep disconnecting from Bluetooth every few minutes.", "\u200b")))
    result = clean_file(src, tmp_path / "o.jsonl", tmp_path / "r.jsonl")
    assert validate(tmp_path / "o.jsonl").exit_code == 0 and result.stats["kept"] == 1
    assert result.rejects[0]["reject"]["reason"] == "invalid_after_cleaning:empty_assistant_content"
    assert result.stats["valid_in"] == result.stats["kept"] + result.stats["rejected"]


def test_duplicate_keys_are_an_error(tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_text(lines_of('{"messages": [{"role": "user", "role": "assistant", "content": "x"}]}', ROW))
    report = validate(src)
    assert report.codes() == ["duplicate_key"] and "'role'" in report.problems[0].message


def test_cr_only_line_endings_are_read_as_lines(tmp_path):
    src = tmp_path / "mac.jsonl"
    src.write_bytes((json.dumps(ROW) + "\r" + json.dumps(ROW) + "\r").encode())
    report = validate(src)
    assert report.summary() == "rows: 2, valid: 2, invalid: 0" and report.exit_code == 0
    assert report.codes() == ["cr_line_endings"] and not report.problems[0].is_error


def test_one_pretty_printed_object_is_one_error(tmp_path):
    src = tmp_path / "pretty.jsonl"
    src.write_text(json.dumps(ROW, indent=2) + "\n" + json.dumps(ROW, indent=2) + "\n")
    report = validate(src)
    assert report.codes() == ["pretty_printed"] and report.n_rows == 2 and report.exit_code == 1
    assert "2 JSON objects" in report.problems[0].message and "jq -c" in report.problems[0].message


def test_symlink_loop_is_not_reported_as_missing(tmp_path):
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop)
    report = validate(loop)
    assert report.exit_code == 2 and report.codes() == ["unreadable"] and "symbolic link" in report.lines()[0]
    dangling = tmp_path / "dangling.jsonl"
    dangling.symlink_to(tmp_path / "gone.jsonl")
    assert "symbolic link" in validate(dangling).lines()[0]


def test_odd_file_names_keep_one_line_per_problem(tmp_path, capsys):
    src = tmp_path / "two\nlines\udcff.jsonl"
    try:
        src.write_text(lines_of(ROW, "{bad"))
    except (UnicodeEncodeError, OSError):
        src = tmp_path / "two\nlines.jsonl"
        src.write_text(lines_of(ROW, "{bad"))
    rc, out = cli(capsys, "validate", str(src))
    assert rc == 1 and len(out) == 2 and "two\\nlines" in out[0]
    out[0].encode("utf-8")


# ------------------------------------------------------------------------------------------ beyond the list


@pytest.mark.parametrize("content", [b"", b"\x00\x01\x02binary\xff" * 100, b"\n\n\n", b"[1, 2", b"\xef\xbb\xbf",
                                     b"{}\n" * 3, b'"just a string"\n', b"\xff\xfe{\x00}\x00"])
@pytest.mark.parametrize("command", ["validate", "clean", "split", "convert"])
def test_no_traceback_on_hostile_files(tmp_path, capsys, content, command):
    src = tmp_path / "in.jsonl"
    src.write_bytes(content)
    extra = {"validate": [], "clean": ["--out", str(tmp_path / "o.jsonl"), "--rejects", str(tmp_path / "r.jsonl")],
             "split": ["--out-dir", str(tmp_path / "s")], "convert": ["--out", str(tmp_path / "c.jsonl")]}[command]
    rc, out = cli(capsys, command, str(src), *extra)
    assert rc in (0, 1, 2) and out and not any("Traceback" in line for line in out)
    assert src.read_bytes() == content


@pytest.mark.parametrize("command", ["validate", "clean", "split", "convert"])
def test_a_directory_as_input_is_one_line(tmp_path, capsys, command):
    extra = {"validate": [], "clean": ["--out", str(tmp_path / "o.jsonl"), "--rejects", str(tmp_path / "r.jsonl")],
             "split": ["--out-dir", str(tmp_path / "s")], "convert": ["--out", str(tmp_path / "c.jsonl")]}[command]
    rc, out = cli(capsys, command, str(tmp_path), *extra)
    assert rc == 2 and "is_directory" in out[0]


def test_broken_pipe_is_not_a_traceback(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(lines_of(*["{bad"] * 20000))
    proc = subprocess.run(f"'{sys.executable}' -m helpers.data validate '{src}' | head -1", shell=True,
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.stdout.count("\n") == 1 and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_a_utf16_jsonl_is_read_flagged_and_converted_to_utf8(tmp_path, capsys):
    src = tmp_path / "u16.jsonl"
    src.write_bytes(lines_of(ROW, ROW).encode("utf-16"))
    report = validate(src)
    assert report.codes() == ["wrong_encoding"] and report.n_valid == 2 and report.exit_code == 1
    rc, out = cli(capsys, "convert", str(src), "--out", str(tmp_path / "u8.jsonl"))
    assert rc == 0 and validate(tmp_path / "u8.jsonl").exit_code == 0


def test_a_pipe_or_device_as_output_is_written_in_place_not_replaced(tmp_path):
    import stat
    import threading

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    write_jsonl([ROW], fifo)
    reader.join(10)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and json.loads(got[0]) == ROW


def test_build_into_a_path_below_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    rc, out = cli(capsys, "build", "--out", str(tmp_path / "file" / "sub"))
    assert rc == 2 and len(out) == 1 and out[0].startswith("error: --out ")
