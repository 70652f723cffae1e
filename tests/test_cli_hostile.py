"""Issue 12: helpers.memory, helpers.models, helpers.course and helpers.env on hostile input: one line, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import config, course, memory, models
from helpers.config import REPO_ROOT

LLAMA = {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
         "num_attention_heads": 32, "num_key_value_heads": 8}


def run_module(*args: str, shell_tail: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    if shell_tail:
        cmd = " ".join(f"'{a}'" for a in (sys.executable, "-m", *args)) + shell_tail
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300)
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=REPO_ROOT, env=env,
                          timeout=300)


def memory_cli(capsys, *args: str) -> tuple[int, list[str]]:
    try:
        rc = memory.main(list(args))
    except SystemExit as exc:
        rc = exc.code
    captured = capsys.readouterr()
    return rc, (captured.out + captured.err).splitlines()


# ------------------------------------------------------------------------------------------ 9: memory


@pytest.mark.parametrize("change, words", [
    ({"num_attention_heads": 0}, ["num_attention_heads", "0"]),
    ({"hidden_size": "abc"}, ["hidden_size", "'abc'"]),
    ({"hidden_size": -4096}, ["hidden_size", "-4096"]),
    ({"num_hidden_layers": 2.5}, ["num_hidden_layers", "2.5"]),
    ({"vocab_size": True}, ["vocab_size"]),
    ({"num_key_value_heads": 0}, ["num_key_value_heads"]),
    ({"num_local_experts": 8, "num_experts_per_tok": 2}, ["mixture-of-experts", "num_local_experts=8"]),
])
def test_bad_config_values_are_one_line_errors(tmp_path, capsys, change, words):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**LLAMA, **change}))
    rc, out = memory_cli(capsys, "--model", str(path))
    assert rc == 2 and len(out) == 1 and out[0].startswith("error: ") and all(w in out[0] for w in words), out


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", b"[1, 2]", b"", b"{", b'"text"'])
def test_unreadable_config_files_are_one_line_errors(tmp_path, capsys, content):
    path = tmp_path / "config.json"
    path.write_bytes(content)
    rc, out = memory_cli(capsys, "--model", str(path))
    assert rc == 2 and len(out) == 1 and out[0].startswith("error: ") and str(path) in out[0], out


@pytest.mark.parametrize("args", [["--lora-targets", ","], ["--lora-targets", ""], ["--batch", "0"],
                                  ["--seq-len", "-1"], ["--batch", "1000000000"], ["--seq-len", "99999999999"],
                                  ["--lora-r", "0"]])
def test_nonsense_setups_are_refused(capsys, args):
    rc, out = memory_cli(capsys, "--model", "llama-7b", *args)
    assert rc == 2 and any("error" in line for line in out), out


def test_the_largest_allowed_setup_gives_a_short_list_of_changes():
    setup = memory.TrainSetup(method="full", seq_len=memory.MAX_SEQ_LEN, batch=memory.MAX_BATCH, optimizer="adamw")
    for gpu in memory.GPUS:
        result = memory.verdict(memory.PRESETS["llama-7b"], setup, gpu.memory_gib)
        knobs = [c.split("=")[0].split(" (")[0] for c in result["changes"]]
        assert len(knobs) == len(set(knobs)) <= 6, result["changes"]
    small = memory.verdict(memory.PRESETS["llama-7b"], memory.TrainSetup(batch=64, seq_len=4096), 40.0)
    assert small["verdict"] == "fits with these changes"
    assert sum(c.startswith("per_device_train_batch_size") for c in small["changes"]) == 1


def test_mixture_of_experts_is_refused_not_sized_as_dense():
    mixtral = {**LLAMA, "hidden_size": 4096, "intermediate_size": 14336, "num_local_experts": 8,
               "num_experts_per_tok": 2, "model_type": "mixtral"}
    with pytest.raises(memory.MemoryEstimateError, match="mixture-of-experts"):
        memory.shape_from_config(mixtral)
    with pytest.raises(memory.MemoryEstimateError, match="n_routed_experts=64"):
        memory.shape_from_config({**LLAMA, "n_routed_experts": 64})
    assert memory.shape_from_config({**LLAMA, "num_local_experts": 1}).num_layers == 32  # one expert is dense


@pytest.mark.parametrize("module", ["helpers.memory --model llama-7b", "helpers.memory --model llama-7b --json",
                                    "helpers.env cpu-tiny", "helpers.course list", "helpers.models info"])
def test_piped_into_head_has_no_traceback(module):
    proc = run_module(*module.split(), shell_tail=" | head -1")
    assert proc.stdout.count("\n") == 1 and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
    # a reader that is gone before the first write (deterministic: `true` reads nothing)
    proc = run_module(*module.split(), shell_tail=" | true")
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


# ------------------------------------------------------------------------------------------ 10: models


@pytest.fixture
def tiny_copy(tmp_path):
    folder = tmp_path / "tiny"
    shutil.copytree(config.TINY_MODEL_DIR, folder)
    return folder


def test_truncated_weights_are_a_model_load_error_naming_the_file(tiny_copy):
    weights = tiny_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    cfg = config.get_profile("cpu-tiny").replace(model_id=str(tiny_copy))
    with pytest.raises(models.ModelLoadError, match="model.safetensors") as err:
        models.load_model(cfg)
    assert "SHA256SUMS" in str(err.value) and "\n" not in str(err.value)
    (tiny_copy / "SHA256SUMS").unlink()  # a folder of the learner's own, without checksums: still one line
    with pytest.raises(models.ModelLoadError, match="cannot load model"):
        models.load_model(cfg, quantized=False)


def test_missing_tokenizer_json_is_a_model_load_error(tiny_copy):
    (tiny_copy / "tokenizer.json").unlink()
    with pytest.raises(models.ModelLoadError, match="tokenizer.json"):
        models.load_tokenizer(str(tiny_copy))
    (tiny_copy / "SHA256SUMS").unlink()
    with pytest.raises(models.ModelLoadError):
        models.load_tokenizer(str(tiny_copy))


def test_info_checks_the_checksums_and_survives_a_broken_recipe(tiny_copy, monkeypatch, capsys):
    monkeypatch.setattr(models, "TINY_MODEL_DIR", tiny_copy)
    assert models.main(["info"]) == 0
    capsys.readouterr()
    weights = tiny_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert models.main(["info"]) == 2
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and "model.safetensors" in out[0] and "git checkout" in out[0]
    shutil.copy(config.TINY_MODEL_DIR / "model.safetensors", weights)
    for broken in ("{not json", '{"params": 1}', "[]"):
        (tiny_copy / "recipe.json").write_text(broken)
        (tiny_copy / "SHA256SUMS").unlink(missing_ok=True)
        assert models.main(["info"]) == 2
        out = capsys.readouterr().out.splitlines()
        assert len(out) == 1 and "recipe.json" in out[0], out


# ------------------------------------------------------------------------------------------ 11: course and env


def test_only_with_an_empty_prefix_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        course.main(["run", "--only", ""])
    assert exc.value.code == 2 and "--only" in capsys.readouterr().err


def test_env_help_is_help_not_an_unknown_profile():
    proc = run_module("helpers.env", "--help")
    assert proc.returncode == 0 and "usage:" in proc.stdout and "unknown profile" not in proc.stdout
    proc = run_module("helpers.env", "gpu-huge")
    assert proc.returncode == 2 and "unknown profile 'gpu-huge'" in proc.stdout and "Traceback" not in proc.stderr


def test_progress_and_error_name_the_same_cell(tmp_path, capsys):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell('PROFILE = "auto"  # p', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_markdown_cell("text"), nbformat.v4.new_code_cell("raise ValueError('boom')")]
    (tmp_path / "nb").mkdir()
    nbformat.write(nb, tmp_path / "nb" / "00_x.ipynb")
    assert course.run_course("cpu-tiny", folder=tmp_path / "nb", runs_dir=tmp_path / "runs", timeout=120) == 1
    out = capsys.readouterr().out
    progress = [line.strip() for line in out.splitlines() if line.strip().startswith("00_x: cell")]
    last_progress_cell = progress[-1].split("cell ")[1].split("/")[0]
    assert f"failed at cell {last_progress_cell}:" in out, out


def test_course_timeout_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exc:
        course.main(["run", "--timeout", "-5"])
    assert exc.value.code == 2 and "--timeout" in capsys.readouterr().err
