"""08_scale_out: the pipeline as a script (``python -m helpers.train --config ...``), its configs, resume, and a
2-process DDP run on the CPU (gloo) that must match a 1-process run with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import train
from helpers.config import PROFILES, REPO_ROOT
from helpers.train import ScriptConfigError, load_run_config

CONFIGS = REPO_ROOT / "configs"
# Few steps, few rows: the 1-process run, its resume and the 2-process run take about a minute together on 2 cores.
SMALL = """profile: cpu-tiny
output_dir: {out}
max_steps: {steps}
per_device_batch_size: {batch}
eval_steps: 2
logging_steps: 1
train_limit: 48
validation_limit: 8
score_limit: 4
lora_dropout: 0     # dropout draws different random numbers in 1 and 2 processes: off for the comparison
"""
LOSS_RTOL = 1e-4  # per-step training loss, 2 processes x batch 2 vs 1 process x batch 4 (measured: ~1e-7)
WEIGHT_ATOL = 1e-3  # adapter weights after 4 AdamW steps (measured: 2.8e-5; the weights reach ~0.06)


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------- configs


def test_every_profile_has_a_config_that_loads():
    for name in PROFILES:
        script = load_run_config(CONFIGS / f"{name}.yaml")
        assert script.profile().name == name
        assert script.output_dir() == REPO_ROOT / "artifacts" / name / "script"


@pytest.mark.parametrize("text, expected", [
    ("profile: cpu-tiny\nmax_step: 5\n", [":2:", "unknown key 'max_step'", "did you mean 'max_steps'", "the keys are"]),
    ("profile: cpu-tiny\nmax_steps: five\n", [":2:", "max_steps = 'five' is a str, expected int"]),
    ("profile: cpu-tiny\nmax_steps: true\n", [":2:", "is a bool, expected int"]),
    ("profile: cpu-tiny\nmax_steps: 0\n", [":2:", "max_steps = 0 must be > 0"]),
    ("profile: cpu-tiny\ntrain_limit: -3\n", [":2:", "must be >= 0"]),
    ("profile: cpu-tiny\nresume: 1\n", [":2:", "resume = 1 is a int, expected bool"]),
    ("profile: cpu-tiny\nmax_steps: 4\nmax_steps: 5\n", [":3:", "'max_steps' is set twice (lines 2, 3)"]),
    ("profile: cpu-tny\n", [":1:", "unknown profile 'cpu-tny'", "did you mean 'cpu-tiny'"]),
    ("max_steps: 4\n", ["no `profile:` key"]),
    ("", ["the file is empty", "profile: cpu-tiny"]),
    ("- profile\n- cpu-tiny\n", ["expected `key: value` lines, found a list"]),
    ("profile: cpu-tiny\nmax_steps: [1\n", ["not valid YAML"]),
])
def test_a_bad_config_names_the_file_line_key_and_fix(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ScriptConfigError) as err:
        load_run_config(path)
    message = str(err.value)
    assert message.startswith(str(path)), message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_values_are_applied_and_yaml_1_1_exponents_read_as_numbers(tmp_path):
    path = write(tmp_path, "profile: cpu-tiny\nlearning_rate: 2e-4\nlora_r: 8\neval_steps: 7\noutput_dir: runs/x\n"
                           "train_file: data/tickets/validation.jsonl\nscore_limit:\n")
    script = load_run_config(path)
    assert script.profile().learning_rate == 2e-4 and script.profile().lora_r == 8
    assert script.defaults().eval_steps == 7
    assert script.output_dir() == REPO_ROOT / "runs" / "x"
    assert script.file("train_file", "train") == REPO_ROOT / "data" / "tickets" / "validation.jsonl"
    assert script.file("test_file", "test") == REPO_ROOT / "data" / "tickets" / "test.jsonl"
    assert "score_limit" not in script.values  # `key:` with no value keeps the default


def test_the_command_line_says_one_line_for_a_missing_file_and_an_unknown_key(tmp_path):
    env = {**os.environ, "COURSE_TRACEBACK": ""}
    missing = tmp_path / "nope.yaml"
    run = subprocess.run([sys.executable, "-m", "helpers.train", "--config", str(missing)], cwd=REPO_ROOT,
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 2 and run.stderr.strip().count("\n") == 0, run.stderr
    assert run.stderr.startswith(f"error: {missing}: config file not found")
    bad = write(tmp_path, "profile: cpu-tiny\nbatch_size: 4\n")
    code = train.main(["--config", str(bad)])
    assert code == 2


def test_the_accelerate_configs_load_and_carry_what_qlora_needs():
    from accelerate.commands.config.config_args import load_config_from_file

    found = {p.stem: load_config_from_file(str(p)) for p in sorted((CONFIGS / "accelerate").glob("*.yaml"))}
    assert set(found) == {"ddp", "fsdp_qlora", "deepspeed_zero2", "deepspeed_zero3"}
    assert found["ddp"].distributed_type == "MULTI_GPU"
    fsdp = found["fsdp_qlora"].fsdp_config
    assert fsdp["fsdp_use_orig_params"] is False and fsdp["fsdp_cpu_ram_efficient_loading"] is True
    assert fsdp["fsdp_sync_module_states"] is True
    assert found["deepspeed_zero2"].deepspeed_config["zero_stage"] == 2
    assert found["deepspeed_zero3"].deepspeed_config["zero_stage"] == 3


def test_a_sharded_launch_stores_the_4bit_weights_in_the_compute_dtype(monkeypatch):
    import torch

    from helpers import models

    cfg = PROFILES["a100"]
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    assert models.sharded_launch() is None
    assert models.bnb_config(cfg).bnb_4bit_quant_storage == torch.uint8
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    assert models.sharded_launch() is None  # ZeRO-2 keeps whole weights on every GPU
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    assert models.sharded_launch() == "zero3"
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert models.sharded_launch() == "fsdp"
    storage = models.bnb_config(cfg, quant_storage=cfg.bnb_compute_dtype).bnb_4bit_quant_storage
    assert storage == torch.bfloat16


# ---------------------------------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    """4 steps of batch 4 in this process (checkpoints at steps 2 and 4)."""
    out = tmp_path_factory.mktemp("one") / "adapter"
    path = write(out.parent, SMALL.format(out=out, steps=4, batch=4))
    assert train.main(["--config", str(path)]) == 0
    return out


def manifest(folder: Path) -> dict:
    return json.loads((folder / train.MANIFEST_NAME).read_text())


def test_the_script_writes_an_adapter_a_manifest_and_test_scores(one_process):
    m = manifest(one_process)
    assert (one_process / "adapter_model.safetensors").is_file() and (one_process / "adapter_config.json").is_file()
    assert m["metrics"]["global_step"] == 4 and m["script"]["world_size"] == 1
    assert m["script"]["global_batch"] == 4 and m["script"]["launcher"] == "single process"
    assert m["script"]["scored_rows"] == 4 and 0 <= m["script"]["test_scores"]["field_accuracy"] <= 1
    assert [s for s, _ in m["script"]["train_losses"]] == [1, 2, 3, 4]
    checkpoints = sorted(p.name for p in (one_process / "checkpoints").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-2", "checkpoint-4"]


def test_two_processes_on_the_cpu_match_one_process_with_the_same_global_batch(one_process, tmp_path):
    """torchrun, 2 CPU processes (gloo), batch 2 each, 4-bit base: the same losses, adapter and manifest as 1 x 4."""
    from safetensors.numpy import load_file

    out = tmp_path / "adapter"
    path = write(tmp_path, SMALL.format(out=out, steps=4, batch=2))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread per process on a 2-core machine
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "helpers.train", "--config", str(path)], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    two = manifest(out)
    one = json.loads((one_process / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert two["script"]["world_size"] == 2 and two["script"]["launcher"] == "ddp"
    assert two["script"]["global_batch"] == 4 and two["configs"]["sft"]["per_device_train_batch_size"] == 2
    one_losses = [h["loss"] for h in one["log_history"] if "loss" in h]
    two_losses = [loss for _, loss in two["script"]["train_losses"]]
    assert len(one_losses) == len(two_losses) == 4
    for a, b in zip(one_losses, two_losses):
        assert abs(a - b) <= LOSS_RTOL * abs(a), (one_losses, two_losses)
    a = load_file(str(one_process / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors"))
    b = load_file(str(out / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors"))
    assert sorted(a) == sorted(b)
    assert max(float(abs(a[k] - b[k]).max()) for k in a) <= WEIGHT_ATOL
    assert sorted(manifest(out)) == sorted(manifest(one_process))  # the same kind of manifest


def test_resume_continues_from_the_newest_checkpoint(one_process, tmp_path):
    """Last in the file: it trains one_process's run further (the comparison above reads its step-4 checkpoint)."""
    before = manifest(one_process)["script"]["train_losses"]
    path = write(tmp_path, SMALL.format(out=one_process, steps=6, batch=4))
    assert train.main(["--config", str(path), "--resume"]) == 0
    m = manifest(one_process)
    assert m["metrics"]["resumed_from"].endswith("checkpoint-4")
    assert m["metrics"]["global_step"] == 6
    # steps 1-4 come back from the checkpoint's trainer state exactly as logged; 5 and 6 are new
    assert m["script"]["train_losses"][:4] == before and [s for s, _ in m["script"]["train_losses"][4:]] == [5, 6]


@pytest.mark.parametrize("profile, processes, expected", [
    ("cpu-tiny", 2, (2, 1)), ("cpu-tiny", 4, (1, 1)), ("t4", 2, (4, 2)), ("t4", 8, (2, 1)), ("a100", 2, (8, 1)),
    ("a100", 8, (2, 1)), ("h100", 1, (16, 1)),
])
def test_the_global_batch_is_kept_across_processes(profile, processes, expected):
    cfg = PROFILES[profile]
    per_device, accumulation = train.data_parallel_batch(cfg, processes)
    assert (per_device, accumulation) == expected
    assert per_device * accumulation * processes == cfg.per_device_batch_size * cfg.gradient_accumulation_steps


def test_a_global_batch_that_cannot_be_split_says_how_to_fix_it():
    with pytest.raises(train.TrainingSetupError, match="3 processes cannot split evenly"):
        train.data_parallel_batch(PROFILES["cpu-tiny"], 3)


def test_the_notebooks_multi_gpu_commands_parse_and_name_files_that_exist():
    """08's skip-execution launches cannot run here (no GPU); their arguments are checked with accelerate's parser."""
    import shlex

    import nbformat
    from accelerate.commands.launch import launch_command_parser

    nb = nbformat.read(REPO_ROOT / "notebooks" / "08_scale_out.ipynb", as_version=4)
    lines = [line for c in nb.cells if "skip-execution" in c.metadata.get("tags", [])
             for line in c.source.splitlines() if "accelerate launch" in line]
    assert len(lines) == 3
    for line in lines:
        args = launch_command_parser().parse_args(shlex.split(line.split("accelerate launch", 1)[1]))
        assert args.module and args.training_script == "helpers.train"
        assert (REPO_ROOT / args.config_file).is_file()
        script = load_run_config(REPO_ROOT / args.training_script_args[args.training_script_args.index("--config") + 1])
        assert script.profile().device == "cuda"
