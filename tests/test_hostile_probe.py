"""Issue 27, the second probe: every ``python -m helpers.*`` command given empty, special, looping and unwritable paths,
``--help`` where an action was expected, wrong values and files that are not what they claim. Each case ends in one
line naming what and how to fix it (exit 1 or 2): never a traceback, never the "unexpected" bug line, never a write
into the current folder or a place the command did not check."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from helpers import cli, colab, config, course, memory, models, train
from helpers.build import fallback as fallback_build
from helpers.build import kb as kb_build
from helpers.build import tiny as tiny_build
from helpers.data.__main__ import main as data_main

HAS_PROC = Path("/proc/self").is_dir()


def call(main, *args: str) -> tuple[int, str]:
    """A command's exit code and everything it printed (argparse's own errors exit through SystemExit)."""
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = exc.code
    return code, ""


@pytest.fixture
def run(capsys):
    def go(main, *args: str) -> tuple[int, str]:
        code, _ = call(main, *args)
        captured = capsys.readouterr()
        return code, captured.out + captured.err
    return go


@pytest.fixture
def loop(tmp_path) -> Path:
    """A symlink that points at another that points back."""
    (tmp_path / "loop-a").symlink_to(tmp_path / "loop-b")
    (tmp_path / "loop-b").symlink_to(tmp_path / "loop-a")
    return tmp_path / "loop-a"


def rows_file(folder: Path, *rows: dict) -> Path:
    path = folder / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


CHAT = {"messages": [{"role": "user", "content": "Where is order ORD-12345?"},
                     {"role": "assistant", "content": '{"category": "shipping"}'}]}


# ----------------------------------------------------------------------------------------- the one path check


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc and /sys (Linux)")
@pytest.mark.parametrize("target, words", [("/proc/course-x", "/proc refuses new files"),
                                           ("/sys/course-x/y", "/sys refuses new files")])
def test_places_that_refuse_new_files_are_found_even_for_root(target, words):
    """os.access says yes to root everywhere; the probe folder finds /proc and /sys (and read-only mounts)."""
    assert words in config.unwritable(target) and words in config.unwritable_folder(target)


def test_empty_looping_and_mismatched_paths_are_named(tmp_path, loop):
    (tmp_path / "f.txt").write_text("x")
    assert config.unwritable("") == "the path is empty"
    assert "symlink that leads nowhere or loops" in config.unwritable(loop)
    assert "symlink that leads nowhere or loops" in config.unwritable_folder(loop / "below")
    assert "is a file, not a folder" in config.unwritable_folder(tmp_path / "f.txt")
    assert "is a folder, not a file" in config.unwritable(tmp_path)
    assert config.unwritable(tmp_path / "new" / "deeper" / "x.jsonl") is None
    assert not list(tmp_path.glob(".course-probe-*")), "the probe folder is removed"


def test_an_os_error_is_one_line_with_the_path_not_a_bug_report(capsys):
    def main():
        open("/nonexistent-course-folder/x", "rb")

    assert cli.run(main) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: /nonexistent-course-folder/x: No such file or directory") and "unexpected" not in err


# ------------------------------------------------------------------------------------------------ colab


@pytest.mark.parametrize("args", [["install", "--help"], ["set-repo", "--help"], ["repo", "--help"]])
def test_colab_help_is_help_and_never_installs_or_rewrites(monkeypatch, run, args):
    monkeypatch.setattr(colab, "install", lambda **kw: pytest.fail("--help ran the install"))
    monkeypatch.setattr(colab, "set_repo", lambda repo: pytest.fail("--help rewrote the repository settings"))
    code, out = run(colab.main, *args)
    assert code == 0 and "usage:" in out


@pytest.mark.parametrize("args", [["repo", "extra"], ["install", "now"], ["set-repo"], []])
def test_colab_refuses_stray_arguments(monkeypatch, run, args):
    monkeypatch.setattr(colab, "install", lambda **kw: pytest.fail("a stray argument ran the install"))
    code, out = run(colab.main, *args)
    assert code == 2 and "error:" in out


# ------------------------------------------------------------------------------------------------- data


@pytest.mark.parametrize("args", [["split", "{rows}", "--out-dir", ""], ["validate", ""],
                                  ["convert", "{rows}", "--out", ""], ["clean", "{rows}", "--out", "",
                                                                       "--rejects", "{tmp}/r.jsonl"]])
def test_an_empty_path_is_refused_not_read_as_the_current_folder(tmp_path, monkeypatch, run, args):
    rows = rows_file(tmp_path, CHAT)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    code, out = run(data_main, *(a.format(rows=rows, tmp=tmp_path) for a in args))
    assert code == 2 and "an empty path" in out and not any(work.iterdir())


def test_a_quoted_tilde_means_the_home_folder(tmp_path, monkeypatch, run):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    monkeypatch.chdir(tmp_path)
    code, out = run(data_main, "convert", str(rows_file(tmp_path, CHAT)), "--out", "~/rows.jsonl")
    assert code == 0 and (tmp_path / "home" / "rows.jsonl").is_file() and not (tmp_path / "~").exists()


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc (Linux)")
def test_convert_into_a_place_that_refuses_files_says_so_before_reading(tmp_path, loop, run):
    rows = rows_file(tmp_path, CHAT)
    code, out = run(data_main, "convert", str(rows), "--out", "/proc/course-x.jsonl")
    assert code == 2 and "/proc refuses new files" in out and "Errno" not in out and ".tmp" not in out
    code, out = run(data_main, "convert", str(rows), "--out", str(loop))
    assert code == 2 and "leads nowhere or loops" in out


def test_convert_with_an_empty_tokenizer_folder_is_a_one_line_error(tmp_path, run):
    (tmp_path / "tok").mkdir()
    code, out = run(data_main, "convert", str(rows_file(tmp_path, CHAT)), "--out", str(tmp_path / "o.jsonl"),
                    "--to", "text", "--tokenizer", str(tmp_path / "tok"))
    assert code == 2 and "tokenizer_unusable" in out and "unexpected" not in out
    assert not (tmp_path / "o.jsonl").exists()


def test_convert_refuses_unknown_roles_and_files_without_rows(tmp_path, run):
    wizard = {"messages": [CHAT["messages"][0], {"role": "wizard", "content": "x"}, CHAT["messages"][1]]}
    code, out = run(data_main, "convert", str(rows_file(tmp_path, CHAT, wizard)), "--out", str(tmp_path / "o.jsonl"))
    assert code == 2 and "row 2: unknown_role" in out and "'wizard'" in out and not (tmp_path / "o.jsonl").exists()
    header_only = tmp_path / "h.csv"
    header_only.write_text("prompt,completion\n", encoding="utf-8")
    code, out = run(data_main, "convert", str(header_only), "--out", str(tmp_path / "o.jsonl"))
    assert code == 2 and "no rows to convert" in out and not (tmp_path / "o.jsonl").exists()


def test_clean_that_keeps_nothing_because_nothing_was_a_chat_row_fails(tmp_path, run):
    garbage = tmp_path / "g.jsonl"
    garbage.write_bytes(bytes(range(256)) * 8)
    code, out = run(data_main, "clean", str(garbage), "--out", str(tmp_path / "o.jsonl"), "--rejects",
                    str(tmp_path / "r.jsonl"))
    assert code == 1 and "none of the" in out and "is a chat row" in out
    assert (tmp_path / "r.jsonl").stat().st_size > 0, "the rows are in the rejects file, with their reasons"


def test_utf16_without_a_byte_order_mark_is_named(tmp_path, run):
    path = tmp_path / "rows.jsonl"
    path.write_bytes((json.dumps(CHAT) + "\n").encode("utf-16-le"))
    code, out = run(data_main, "validate", str(path))
    assert code == 1 and "UTF-16 or UTF-32 without a byte-order mark" in out


def test_split_names_a_file_level_problem_without_counting_rows_as_invalid(tmp_path, run):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(("".join(json.dumps(CHAT) + "\n" for _ in range(3))).encode("utf-16"))
    code, out = run(data_main, "split", str(path), "--out-dir", str(tmp_path / "splits"))
    assert code == 2 and "wrong_encoding" in out and "0 of 3" not in out and not (tmp_path / "splits").exists()


@pytest.mark.parametrize("line, words", [
    ('{"text": 5, "pii": []}', "rows.jsonl:1: expected"),
    ('{"text": "a b", "pii": [["zz", "a"]]}', "unknown kind 'zz'"),
    ('{"text": "a b", "pii": [["email"]]}', "rows.jsonl:1: expected"),
    ("[1, 2]", "rows.jsonl:1: expected"),
    ("{", "rows.jsonl:1: not JSON"),
])
def test_pii_scores_names_the_line_of_a_malformed_labelled_set(tmp_path, run, line, words):
    path = tmp_path / "rows.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    code, out = run(data_main, "pii-scores", "--set", str(path))
    assert code == 2 and words in out and "unexpected" not in out


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_pii_scores_refuses_a_device_instead_of_reading_it_forever(run):
    code, out = run(data_main, "pii-scores", "--set", "/dev/zero")
    assert code == 2 and "not a regular file" in out


def test_kb_check_of_a_missing_or_damaged_knowledge_base_is_one_line(tmp_path, run):
    code, out = run(kb_build.main, "check", "--out", str(tmp_path))
    assert code == 2 and out.startswith(f"error: {tmp_path}: no knowledge base")
    damaged = tmp_path / "kb"
    import shutil

    shutil.copytree(config.KB_DIR, damaged)
    with (damaged / "questions.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"id": 1}\n')
    code, out = run(kb_build.main, "check", "--out", str(damaged))
    assert code == 2 and "malformed question" in out and "unexpected" not in out


# ---------------------------------------------------------------------------------------- course, models, build


def test_student_refuses_an_empty_looping_or_refusing_folder(tmp_path, loop, run):
    code, out = run(course.main, "student", "--out", "")
    assert code == 2 and "an empty path" in out
    code, out = run(course.main, "student", "--out", str(loop))
    assert code == 2 and "leads nowhere or loops" in out
    if HAS_PROC:
        code, out = run(course.main, "student", "--out", "/proc/course-x")
        assert code == 2 and "/proc refuses new files" in out


@pytest.mark.parametrize("args, words", [
    (["run", "--timeout", "99999999"], "from 1 to 86400"),
    (["run", "--timeout", "0"], "from 1 to 86400"),
    (["run", "--profile", "", "--only", "00"], "an empty profile name"),
])
def test_course_run_refuses_values_before_any_kernel_starts(run, args, words):
    code, out = run(course.main, *args)
    assert code == 2 and words in out


def test_build_tiny_checks_steps_and_refusing_folders_before_pretraining(tmp_path, run):
    most = 20 * tiny_build.TinyRecipe().steps
    for main, prefix in ((models.main, ["build-tiny"]), (tiny_build.main, [])):
        code, out = run(main, *prefix, "--out", str(tmp_path / "new"), "--steps", str(10**12))
        assert code == 2 and f"outside 1 to {most}" in out
        if HAS_PROC:
            code, out = run(main, *prefix, "--out", "/proc/course-x")
            assert code == 2 and "/proc refuses new files" in out
    assert not (tmp_path / "new").exists()


def test_fallback_verify_takes_no_build_options(run):
    code, out = run(fallback_build.main, "--verify", "--only", "03")
    assert code == 2 and "--verify only reads the shipped files" in out


def test_env_refuses_an_empty_profile_name(run):
    from helpers import env

    code, out = run(env.main, "")
    assert code == 2 and "an empty profile name" in out


# ------------------------------------------------------------------------------------------------- memory


def test_a_given_head_dim_is_used_and_a_bad_one_refused(tmp_path):
    gemma_like = {"vocab_size": 256000, "hidden_size": 3072, "intermediate_size": 24576, "num_hidden_layers": 28,
                  "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 256}
    (tmp_path / "config.json").write_text(json.dumps(gemma_like))
    shape = memory.resolve_shape(tmp_path)
    assert shape.linear_shapes()["q_proj"] == (3072, 4096) and shape.linear_shapes()["o_proj"] == (4096, 3072)
    assert shape.linear_shapes()["k_proj"] == (3072, 4096)
    for bad in ("x", 0, 10**6, True):
        (tmp_path / "config.json").write_text(json.dumps({**gemma_like, "head_dim": bad}))
        with pytest.raises(memory.MemoryEstimateError, match="head_dim is"):
            memory.resolve_shape(tmp_path)


# ---------------------------------------------------------------------------------------------- train script


def test_a_config_that_is_not_a_regular_small_file_is_refused(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("profile: cpu-tiny\n" + "#" * (train.CONFIG_MAX_BYTES + 10) + "\n")
    cases = [(tmp_path, "is not a regular file"), (big, "not a run config")]
    if Path("/dev/null").exists():
        cases.append((Path("/dev/null"), "is not a regular file"))
    if HAS_PROC:
        cases.append((Path("/proc/self/mem"), "cannot read the config"))
    for path, words in cases:
        with pytest.raises(train.ScriptConfigError, match=words):
            train.load_run_config(path)


def test_output_dir_refusing_looping_and_home_relative(tmp_path, loop, monkeypatch):
    config_path = tmp_path / "run.yaml"
    targets = [(str(loop), "leads nowhere or loops")]
    if HAS_PROC:
        targets += [("/proc/course-x", "/proc refuses new files"), ("/sys/course-x", "/sys refuses new files")]
    for target, words in targets:
        config_path.write_text(f"profile: cpu-tiny\noutput_dir: {target}\n")
        with pytest.raises(train.ScriptConfigError, match=words):
            train.load_run_config(config_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config_path.write_text("profile: cpu-tiny\noutput_dir: ~/runs/a\n")
    assert train.load_run_config(config_path).output_dir() == tmp_path / "home" / "runs" / "a"


@pytest.mark.skipif(os.name != "posix" or sys.platform == "darwin", reason="Linux paths")
def test_no_command_answers_a_hostile_path_with_the_bug_line(tmp_path, loop):
    """The same hostile paths through the real command lines, as a learner types them."""
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(config.REPO_ROOT)}
    commands = [
        ["helpers.data", "validate", str(loop)],
        ["helpers.data", "clean", str(loop), "--out", str(tmp_path / "o"), "--rejects", str(tmp_path / "r")],
        ["helpers.data", "pii-scores", "--set", str(loop)],
        ["helpers.data.kb", "check", "--out", str(loop)],
        ["helpers.memory", "--model", str(loop)],
        ["helpers.memory", "--model", loop.name],  # relative: a local path, not a hub id to fetch for 30 s
        ["helpers.course", "student", "--out", str(loop)],
    ]
    for args in commands:
        done = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env, timeout=120,
                              cwd=tmp_path)
        out = done.stdout + done.stderr
        assert done.returncode in (1, 2), (args, out)
        assert "Traceback" not in out and "unexpected" not in out, (args, out)


# ------------------------------------------------------------------------------------------------- third probe


def test_a_tilde_of_no_user_is_one_line_everywhere(tmp_path, run):
    """``~nobody-here/x``: Path.expanduser raises a bare RuntimeError, which was the bug line in every command."""
    code, out = run(data_main, "validate", "~course-no-such-user/x.jsonl")
    assert code == 2 and "names no user on this machine" in out and "unexpected" not in out
    assert "names no user" in config.unwritable("~course-no-such-user/x")
    with pytest.raises(memory.MemoryEstimateError, match="names no user"):
        memory.resolve_shape("~course-no-such-user/config.json")
    config_path = tmp_path / "run.yaml"
    for key in ("output_dir", "train_file"):
        config_path.write_text(f"profile: cpu-tiny\n{key}: ~course-no-such-user/x\n")
        with pytest.raises(train.ScriptConfigError, match=f"run.yaml:2: {key} = .*names no user"):
            train.load_run_config(config_path)


def test_a_nul_byte_or_blank_path_in_a_run_config_is_refused(tmp_path):
    assert "NUL byte" in config.unwritable("a\0b")
    config_path = tmp_path / "run.yaml"
    for line, words in (('output_dir: "runs/a\\0b"', "holds a NUL byte"), ("output_dir: ' '", "is blank"),
                        ("train_file: ''", "is blank"), ("test_file: ' '", "is blank")):
        config_path.write_text(f"profile: cpu-tiny\n{line}\n")
        with pytest.raises(train.ScriptConfigError, match=f"run.yaml:2: .*{words}"):
            train.load_run_config(config_path)


@pytest.mark.parametrize("key", ["max_steps", "per_device_batch_size", "gradient_accumulation_steps",
                                 "max_seq_length", "lora_r", "lora_alpha", "eval_steps", "logging_steps"])
def test_run_config_numbers_too_large_for_any_run_are_refused(tmp_path, key):
    config_path = tmp_path / "run.yaml"
    config_path.write_text(f"profile: cpu-tiny\n{key}: {10**30}\n")
    with pytest.raises(train.ScriptConfigError, match=f"run.yaml:2: {key} = {10**30} is over"):
        train.load_run_config(config_path)


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="needs /dev/null")
def test_a_data_file_that_is_a_device_or_a_loop_is_named_not_missing(tmp_path, loop):
    config_path = tmp_path / "run.yaml"
    for target, words in (("/dev/null", "not a regular file"), (str(loop), "leads nowhere or loops")):
        config_path.write_text(f"profile: cpu-tiny\ntrain_file: {target}\n")
        with pytest.raises(train.ScriptConfigError, match=words):
            train.load_run_config(config_path)


def test_train_refuses_an_empty_config_path(run):
    code, out = run(train.main, "--config", "")
    assert code == 2 and "an empty path" in out


@pytest.mark.parametrize("model, words", [("", "an empty model name"), (" ", "an empty model name"),
                                          ("a b", "is not a preset, a local path or a hub id")])
def test_memory_names_an_empty_or_impossible_model(monkeypatch, run, model, words):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out = run(memory.main, "--model", model)
    assert code == 2 and words in out and "unexpected" not in out


@pytest.mark.parametrize("args", [["validate", "{rows}", "--tokenizer", ""],
                                  ["convert", "{rows}", "--out", "{tmp}/o.jsonl", "--to", "text", "--tokenizer", " "]])
def test_an_empty_tokenizer_is_refused_not_ignored(tmp_path, run, args):
    rows = rows_file(tmp_path, CHAT)
    code, out = run(data_main, *(a.format(rows=rows, tmp=tmp_path) for a in args))
    assert code == 2 and "an empty tokenizer" in out and not (tmp_path / "o.jsonl").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_nothing_writes_into_is_refused_not_waited_on_forever(tmp_path, monkeypatch, run):
    from helpers.data import validation

    monkeypatch.setattr(validation, "FIFO_WAIT_S", 0.2)
    fifo = tmp_path / "rows.jsonl"
    os.mkfifo(fifo)
    code, out = run(data_main, "validate", str(fifo))
    assert code == 2 and "a named pipe that nothing wrote into" in out
    csv_fifo = tmp_path / "rows.csv"
    os.mkfifo(csv_fifo)
    code, out = run(data_main, "convert", str(csv_fifo), "--out", str(tmp_path / "o.jsonl"))
    assert code == 2 and "a named pipe that nothing wrote into" in out and not (tmp_path / "o.jsonl").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_nothing_reads_from_is_refused_and_a_read_one_is_written(tmp_path, monkeypatch, run):
    import threading

    from helpers.data import validation

    monkeypatch.setattr(validation, "FIFO_WAIT_S", 0.2)
    rows = rows_file(tmp_path, CHAT)
    fifo = tmp_path / "out.jsonl"
    os.mkfifo(fifo)
    code, out = run(data_main, "convert", str(rows), "--out", str(fifo))
    assert code == 2 and "a named pipe that nothing read from for 0.2 s" in out
    code, out = run(data_main, "clean", str(rows), "--out", str(fifo), "--rejects", str(tmp_path / "r.jsonl"))
    assert code == 2 and f"{fifo}: cannot write the outputs (a named pipe that nothing read from" in out
    received = []
    ready = threading.Event()

    def read_all():
        import select

        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the reader's end is open before the command runs
        ready.set()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.poll(5000)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as f:
            received.append(f.read().decode("utf-8"))

    reader = threading.Thread(target=read_all)
    reader.start()
    assert ready.wait(5)
    code, out = run(data_main, "convert", str(rows), "--out", str(fifo))
    reader.join(5)
    assert code == 0 and received and json.loads(received[0].splitlines()[0]) == CHAT


@pytest.mark.parametrize("damage, words", [
    (lambda kb: (kb / "questions.jsonl").write_bytes(b"\xff\xfe\x00garbage"), "questions.jsonl: not UTF-8 text"),
    (lambda kb: next(iter(sorted((kb / "policies").glob("*.md")))).write_bytes(b"\xc4\x00"), ".md: not UTF-8 text"),
    (lambda kb: (kb / "questions.jsonl").write_text("\n\n"), "holds no questions"),
])
def test_kb_check_names_a_damaged_file_and_refuses_no_questions(tmp_path, run, damage, words):
    import shutil

    kb = tmp_path / "kb"
    shutil.copytree(config.KB_DIR, kb)
    damage(kb)
    code, out = run(kb_build.main, "check", "--out", str(kb))
    assert code == 2 and words in out and "rebuild" in out and "codec" not in out


def test_a_key_yaml_reads_as_another_type_is_named_by_its_line(tmp_path):
    """`true: 3` is the bool key True to YAML: the error still says which line."""
    path = tmp_path / "run.yaml"
    path.write_text("profile: cpu-tiny\ntrue: 3\n")
    with pytest.raises(train.ScriptConfigError, match=r"run\.yaml:2: unknown key True"):
        train.load_run_config(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_convert_reads_a_named_pipe_once_and_keeps_every_row(tmp_path, run):
    """`convert <(command)` said "the file holds no rows": the input was read twice and a pipe gives its bytes once."""
    import threading

    fifo = tmp_path / "rows.jsonl"
    os.mkfifo(fifo)
    rows = "".join(json.dumps(CHAT) + "\n" for _ in range(3))
    writer = threading.Thread(target=lambda: fifo.write_text(rows, encoding="utf-8"))
    writer.start()
    code, out = run(data_main, "convert", str(fifo), "--out", str(tmp_path / "o.jsonl"))
    writer.join(timeout=10)
    assert code == 0 and "wrote 3 rows" in out
    assert len((tmp_path / "o.jsonl").read_text(encoding="utf-8").splitlines()) == 3
