"""The training command never damages a file and never crashes: bad configs, rows, folders and checkpoints are refused
in one line before the model loads; a diverging run saves nothing; a new run keeps the earlier one (issue 27)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import config, course, models, train
from helpers.config import REPO_ROOT
from helpers.train import ScriptConfigError, TrainingSetupError, load_run_config

# A 2-step run on a few rows: a model load and two QLoRA steps of the tiny model (~15 s on 2 busy cores).
SMALL = """profile: cpu-tiny
output_dir: {out}
max_steps: {steps}
eval_steps: 2
logging_steps: 1
train_limit: 16
validation_limit: 4
score: false
learning_rate: {lr}
"""


def write(folder: Path, text: str, name: str = "run.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------ values checked at load time


@pytest.mark.parametrize("line, expected", [
    ("learning_rate: nan", "must be a finite number > 0"),
    ("learning_rate: .inf", "must be a finite number > 0"),
    ("learning_rate: 0", "must be a finite number > 0"),
    ("learning_rate: -2e-4", "must be a finite number > 0"),
    ("lora_dropout: 1", "must be in [0, 1)"),
    ("lora_dropout: -0.1", "must be in [0, 1)"),
    ("seed: -1", "must be in [0, 4294967295]"),
    ("seed: 4294967296", "must be in [0, 4294967295]"),
    ("optim: adamw_torhc", "did you mean 'adamw_torch'"),
    ("optim: sgd-please", "is not a transformers optimizer"),
    ("train_file: data/tickets/nothing.jsonl", "not found"),
    ("validation_file: data/tickets", "a folder, not a file"),
])
def test_a_bad_value_names_file_line_key_and_range(tmp_path, line, expected):
    path = write(tmp_path, f"profile: cpu-tiny\noutput_dir: {tmp_path / 'out'}\n{line}\n")
    with pytest.raises(ScriptConfigError) as err:
        load_run_config(path)
    message = str(err.value)
    assert f"{path}:3:" in message and line.split(":")[0] in message and expected in message, message


def test_a_learning_rate_far_outside_the_usual_range_loads_with_a_warning(tmp_path, capsys):
    path = write(tmp_path, f"profile: cpu-tiny\noutput_dir: {tmp_path / 'out'}\nlearning_rate: 3\n")
    assert load_run_config(path).get("learning_rate") == 3
    err = capsys.readouterr().err
    assert "warning:" in err and f"{path}:3" in err and "far outside the course's range" in err


@pytest.mark.parametrize("where, expected", [
    ("data/tiny-llama", "files that no training run made"),
    (".", "the repository itself"),
    ("README.md", "is a file, not a folder"),
    ("README.md/inside", "is a file"),
])
def test_an_output_dir_the_run_did_not_make_is_refused_before_anything_loads(tmp_path, where, expected):
    path = write(tmp_path, f"profile: cpu-tiny\noutput_dir: {where}\n")
    with pytest.raises(ScriptConfigError, match="output_dir") as err:
        load_run_config(path)
    assert f"{path}:2:" in str(err.value) and expected in str(err.value), str(err.value)


def test_a_read_only_output_dir_is_refused(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access  # root may write anywhere: the permission answer is the operating system's, faked here
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == locked else real_access(path, mode))
    with pytest.raises(ScriptConfigError, match="cannot be written") as err:
        load_run_config(write(tmp_path, f"profile: cpu-tiny\noutput_dir: {locked / 'run'}\n"))
    assert "is not writable for you" in str(err.value) and not (locked / "run").exists()


def test_the_script_refuses_the_shipped_model_folder_and_leaves_it_untouched(tmp_path):
    """`output_dir: data/tiny-llama` once exited 0 and rewrote the shipped model's files."""
    before = snapshot(config.TINY_MODEL_DIR)
    path = write(tmp_path, "profile: cpu-tiny\noutput_dir: data/tiny-llama\n")
    run = subprocess.run([sys.executable, "-m", "helpers.train", "--config", str(path)], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("error: ") and "files that no training run made" in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert snapshot(config.TINY_MODEL_DIR) == before and models.checksum_problems(config.TINY_MODEL_DIR) == []


# ------------------------------------------------------------------------------------ rows checked before the model


@pytest.mark.parametrize("row, expected", [
    ({"prompt": "Ticket: hi", "completion": "{}"}, "prompt/completion row"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "no_assistant_message"),
    ({"messages": [{"role": "customer", "content": "hi"}, {"role": "assistant", "content": "{}"}]}, "unknown_role"),
])
def test_rows_the_script_cannot_train_are_named_by_line(tmp_path, row, expected):
    good = (REPO_ROOT / "data" / "tickets" / "validation.jsonl").read_text(encoding="utf-8").splitlines()[:3]
    rows = tmp_path / "rows.jsonl"
    rows.write_text("\n".join(good + [json.dumps(row)]) + "\n", encoding="utf-8")
    with pytest.raises(TrainingSetupError) as err:
        train.read_chat_rows(rows)
    assert f"{rows.name}:4:" in str(err.value) and expected in str(err.value), str(err.value)
    if "prompt" in row:
        assert "python -m helpers.data convert" in str(err.value) and "--to messages" in str(err.value)


def test_bad_rows_stop_the_command_in_one_line_and_write_nothing(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    path = write(tmp_path, SMALL.format(out=out, steps=2, lr=2e-3) + f"train_file: {rows}\n")
    run = subprocess.run([sys.executable, "-m", "helpers.train", "--config", str(path)], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "rows.jsonl:1: no_assistant_message" in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not out.exists()


# ------------------------------------------------------------------------------------ the run's folder


def finished_run(out: Path) -> dict[str, bytes]:
    """A folder as a finished run leaves it: marker, adapter, manifest, a checkpoint."""
    train.claim_output_dir(out, resume=False, log=lambda m: None)
    (out / "adapter_model.safetensors").write_bytes(b"weights")
    (out / train.MANIFEST_NAME).write_text('{"written_at": "then"}')
    (out / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    (out / "checkpoints" / "checkpoint-4" / "optimizer.pt").write_bytes(b"moments")
    return snapshot(out)


def test_a_new_run_in_a_finished_runs_folder_keeps_it_and_says_where(tmp_path):
    out = tmp_path / "run"
    before = finished_run(out)
    said = []
    kept = train.claim_output_dir(out, resume=False, log=said.append)
    assert kept is not None and kept.parent == out / "previous"
    assert {k: v for k, v in snapshot(kept).items()} == {k: v for k, v in before.items() if k != train.RUN_MARKER}
    assert sorted(p.name for p in out.iterdir()) == sorted([train.RUN_MARKER, "previous"])
    assert "kept in" in said[0] and "nothing deleted" in said[0]
    again = train.claim_output_dir(out, resume=False, log=said.append)  # nothing new to keep: nothing moved
    assert again is None and len(list((out / "previous").iterdir())) == 1


def test_resume_keeps_the_folder_as_it_is(tmp_path):
    out = tmp_path / "run"
    before = finished_run(out)
    assert train.claim_output_dir(out, resume=True, log=lambda m: None) is None
    assert snapshot(out) == before


def test_a_checkpoint_of_another_shape_or_damaged_is_refused_before_the_model_loads(tmp_path):
    from safetensors.torch import save_file
    import torch

    checkpoint = tmp_path / "checkpoint-2"
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 2, "log_history": []}))
    (checkpoint / "adapter_config.json").write_text(json.dumps({"r": 16, "lora_alpha": 32}))
    save_file({"a": torch.zeros(2, 2)}, str(checkpoint / "adapter_model.safetensors"))
    (checkpoint / "optimizer.pt").write_bytes(b"x" * 10)
    lora = SimpleNamespace(r=16, lora_alpha=32)
    train.check_checkpoint(checkpoint, lora)  # the same shape: fine
    with pytest.raises(TrainingSetupError, match=r"another LoRA shape \(r: checkpoint 16, config 8\)"):
        train.check_checkpoint(checkpoint, SimpleNamespace(r=8, lora_alpha=32))
    weights = checkpoint / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:20])  # cut off, as by a full disk
    with pytest.raises(TrainingSetupError, match="is damaged") as err:
        train.check_checkpoint(checkpoint, lora)
    assert "delete that folder" in str(err.value) and "without --resume" in str(err.value)


def test_the_non_finite_guard_stops_at_a_nan_loss_and_lets_finite_ones_pass():
    guard = train.non_finite_guard()
    args, state = SimpleNamespace(learning_rate=2e-4), SimpleNamespace(global_step=7)
    guard.on_log(args, state, None, logs={"loss": 1.5, "grad_norm": 0.3})
    for key in ("loss", "eval_loss", "grad_norm"):
        with pytest.raises(train.NonFiniteLossError, match=f"became nan at step 7"):
            guard.on_log(args, state, None, logs={key: math.nan})


def test_a_diverging_run_stops_saves_nothing_and_the_earlier_run_is_kept_whole(tmp_path):
    """A good 2-step run, then a new run in its folder at a learning rate of 1e30: the eval loss at step 2 is not
    finite, the command ends with one error line, nothing is saved, and the good run is kept byte for byte."""
    out = tmp_path / "run"
    assert train.main(["--config", str(write(tmp_path, SMALL.format(out=out, steps=2, lr=2e-3)))]) == 0
    before = snapshot(out)
    assert (out / "adapter_model.safetensors").is_file() and (out / train.MANIFEST_NAME).is_file()
    diverge = write(tmp_path, SMALL.format(out=out, steps=4, lr=1e30), "diverge.yaml")
    run = subprocess.run([sys.executable, "-m", "helpers.train", "--config", str(diverge)],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 2, run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if "error" in line.lower()]  # progress bars around it
    assert len(errors) == 1 and errors[0].startswith("error: the eval loss became nan at step 2"), run.stderr[-2000:]
    assert "saved nothing" in errors[0] and "Traceback" not in run.stderr
    (kept,) = (out / "previous").iterdir()
    assert snapshot(kept) == {k: v for k, v in before.items() if k != train.RUN_MARKER}
    assert not (out / "adapter_model.safetensors").exists() and not (out / train.MANIFEST_NAME).exists()
    assert not list((out / "checkpoints").glob("checkpoint-*"))


# ------------------------------------------------------------------------------------ the other commands' outputs


@pytest.mark.parametrize("make_out", [
    lambda tmp: (tmp / "file.txt").write_text("x") and tmp / "file.txt",
    lambda tmp: (tmp / "file.txt").write_text("x") and tmp / "file.txt" / "below",
    lambda tmp: ((tmp / "o").mkdir(), (tmp / "o" / "student").write_text("x")) and tmp / "o",
])
def test_course_student_checks_its_output_folder_first(tmp_path, capsys, make_out):
    out = make_out(tmp_path)
    assert course.main(["student", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "give a folder you can write to" in err


def test_build_tiny_checks_its_output_before_pretraining(tmp_path, capsys):
    target = tmp_path / "model.bin"
    target.write_text("x")
    assert models.main(["build-tiny", "--out", str(target)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err and target.read_text() == "x"
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    assert models.main(["build-tiny", "--out", str(tmp_path / "notes")]) == 2
    assert "not a tiny model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:  # --steps is checked by the parser (second probe)
        models.main(["build-tiny", "--out", str(tmp_path / "new"), "--steps", "0"])
    assert stopped.value.code == 2 and not (tmp_path / "new").exists()


# ------------------------------------------------------------------------------------ the course runner


def test_a_cell_past_the_time_limit_is_named_in_one_line(tmp_path, monkeypatch):
    import nbformat

    folder = tmp_path / "notebooks"
    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("PROFILE = 'auto'", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("import time\ntime.sleep(60)")]
    nbformat.write(nb, folder / "99_slow.ipynb")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    result = course.run_notebook(folder / "99_slow.ipynb", tmp_path, "cpu-tiny", timeout=3)
    assert result.status == "failed" and result.failed_cell is not None
    assert result.error.startswith(f"cell {result.failed_cell} ran past the 3-second limit per cell")
    assert "--timeout 6" in result.error and "--fallback" in result.error and "\n" not in result.error


def test_the_runner_and_the_package_ask_torch_threads_to_wait_passively():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    probe = "import os, helpers; print(os.environ.get('OMP_WAIT_POLICY'))"
    run = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert run.stdout.strip() == "PASSIVE"
    late = "import os, torch, helpers; print(os.environ.get('OMP_WAIT_POLICY'))"  # too late to matter: not claimed
    run = subprocess.run([sys.executable, "-c", late], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert run.stdout.strip() == "None"
    assert "OMP_WAIT_POLICY" in (REPO_ROOT / "Makefile").read_text().split("\ncourse:")[1].split("\n\n")[0]


# ------------------------------------------------------------------------------------ the data and memory commands


def data_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "helpers.data", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)


def test_convert_refuses_a_csv_header_that_names_a_column_twice(tmp_path):
    """csv.DictReader keeps the last of two same-named columns: the first was dropped without a word."""
    source = tmp_path / "rows.csv"
    source.write_text("prompt,completion,completion\nhi,first,second\n", encoding="utf-8")
    run = data_command("convert", str(source), "--out", str(tmp_path / "rows.jsonl"))
    assert run.returncode == 2 and "rows.csv:1: not_csv" in run.stdout + run.stderr
    assert "'completion' more than once" in run.stdout + run.stderr and not (tmp_path / "rows.jsonl").exists()


def test_clean_given_a_csv_points_at_convert(tmp_path):
    source = tmp_path / "rows.csv"
    source.write_text("prompt,completion\nhi,there\n", encoding="utf-8")
    run = data_command("clean", str(source), "--out", str(tmp_path / "o.jsonl"), "--rejects", str(tmp_path / "r.jsonl"))
    assert run.returncode == 2 and "this is a CSV file" in run.stdout and "python -m helpers.data convert" in run.stdout
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "r.jsonl").exists()


def test_list_style_content_says_how_to_fix_it(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]},
                                             {"role": "assistant", "content": "{}"}]}) + "\n", encoding="utf-8")
    run = data_command("validate", str(rows))
    assert run.returncode == 1 and "rows.jsonl:1: content_not_string" in run.stdout
    assert "list of text parts" in run.stdout and "join the parts" in run.stdout


def test_pii_scores_on_an_empty_set_is_an_error_not_perfect_precision(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    run = data_command("pii-scores", "--set", str(empty))
    assert run.returncode == 2 and "holds no cases" in run.stdout and "1.000" not in run.stdout


@pytest.mark.parametrize("numbers, expected", [
    (dict(hidden_size=100, num_attention_heads=3), "not divisible by num_attention_heads"),
    (dict(hidden_size=96, num_attention_heads=4, num_key_value_heads=8), "must divide num_attention_heads"),
    (dict(hidden_size=96, num_attention_heads=4, num_key_value_heads=3), "must divide num_attention_heads"),
    (dict(hidden_size=40_960_000, num_attention_heads=4), "beyond any released model"),
    (dict(hidden_size=96, num_attention_heads=4, num_hidden_layers=100_000), "beyond any released model"),
])
def test_the_memory_estimator_refuses_impossible_configs(tmp_path, numbers, expected):
    from helpers import memory

    config_json = {"vocab_size": 1000, "num_hidden_layers": 2, "intermediate_size": 256, **numbers}
    (tmp_path / "config.json").write_text(json.dumps(config_json))
    with pytest.raises(memory.MemoryEstimateError, match=expected):
        memory.resolve_shape(tmp_path)


def test_the_memory_estimator_says_what_it_assumed(tmp_path, capsys):
    from helpers import memory

    (tmp_path / "config.json").write_text(json.dumps({"vocab_size": 1000, "hidden_size": 96, "num_hidden_layers": 2,
                                                      "num_attention_heads": 4}))
    assert memory.resolve_shape(tmp_path).intermediate_size == 384
    assert memory.main(["--model", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "assumed: intermediate_size = 4 x hidden_size = 384" in out and "assumed: num_key_value_heads" in out
    assert memory.resolve_shape(config.TINY_MODEL_DIR).assumed == ()  # a complete config assumes nothing


def test_the_bootstrap_cell_asks_torch_threads_to_wait_passively_in_a_learners_own_kernel(monkeypatch):
    """Every notebook's first code cell runs before torch loads: the only place a learner's Jupyter kernel can get it."""
    from helpers import colab

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    exec(compile(colab.bootstrap_source(), "bootstrap", "exec"), {})
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # a learner's own choice is kept
    exec(compile(colab.bootstrap_source(), "bootstrap", "exec"), {})
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
