"""USE_FALLBACK: the shipped results are intact, load only into a run with the same settings, and say why not."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from helpers import config, course, train
from helpers.build import fallback as build


def test_the_shipped_fallback_is_intact():
    folder = config.FALLBACK_DIR / "cpu-tiny"
    assert build.verify(folder) == [], "data/fallback/cpu-tiny differs from FALLBACK.json: rebuild or restore it"
    files = json.loads((folder / "FALLBACK.json").read_text())["files"]
    for adapter in ("adapter", "dpo", "grpo", "runs/continue-control", "runs/continue-fix", "scale_out/one-1p",
                    "scale_out/one-resume-1p", "scale_out/ddp-2p"):
        assert f"{adapter}/adapter_model.safetensors" in files, f"{adapter}: no adapter shipped"
    assert "method_comparison.json" in files
    runs = {name.split("/")[1] for name in files if name.startswith("runs/") and name.endswith("run_manifest.json")}
    assert len(runs) >= 10, f"05's tracked runs: {sorted(runs)}"
    for name in runs:  # every shipped run carries what 05 shows without training: answers, curves, its fingerprint
        record = json.loads((folder / "runs" / name / "run_manifest.json").read_text())["run"]
        assert record["outputs"] and len(record["outputs"]) == record["scored_rows"] and record["inputs_sha256"]


def test_fallback_dir_off_on_and_refused(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv(config.FALLBACK_ENV_VAR, raising=False)
    assert config.fallback_dir(False, "cpu-tiny") is None
    assert config.fallback_dir(True, "cpu-tiny") == config.FALLBACK_DIR / "cpu-tiny"
    assert "USE_FALLBACK" in capsys.readouterr().out
    monkeypatch.setenv(config.FALLBACK_ENV_VAR, "1")
    assert config.fallback_dir(False, "cpu-tiny") is not None, "COURSE_FALLBACK=1 turns it on for every notebook"
    with pytest.raises(config.FallbackError, match=r"cpu-tiny only.*USE_FALLBACK = False"):
        config.fallback_dir(False, "t4")
    monkeypatch.setattr(config, "FALLBACK_DIR", tmp_path)
    with pytest.raises(config.FallbackError, match="git checkout -- data/fallback"):
        config.fallback_dir(True, "cpu-tiny")


def test_course_runner_refuses_a_fallback_for_a_gpu_profile(tmp_path):
    with pytest.raises(config.FallbackError, match="cpu-tiny only"):
        course.run_course("t4", fallback=True, runs_dir=tmp_path)
    assert not any(tmp_path.iterdir()), "nothing ran"


@pytest.fixture(scope="module")
def tiny_peft():
    from peft import get_peft_model

    from helpers import models

    cfg = config.get_profile("cpu-tiny")
    return cfg, get_peft_model(models.load_model(cfg, quantized=False), train.lora_config(cfg))


def fake_trainer(model, tmp_path, **settings):
    from transformers import TrainerState
    from trl import SFTConfig

    args = SFTConfig(output_dir=str(tmp_path / "out"), report_to="none", max_steps=10, bf16=False, **settings)
    return SimpleNamespace(model=model, args=args, state=TrainerState())


def test_load_fallback_loads_the_same_run_and_refuses_another(tiny_peft, tmp_path):
    import torch
    from peft import get_peft_model_state_dict

    cfg, model = tiny_peft
    shipped = tmp_path / "shipped"
    made = fake_trainer(model, tmp_path, learning_rate=1e-3)
    made.state.global_step, made.state.max_steps = 10, 10
    made.state.log_history = [{"step": 5, "loss": 2.0}, {"step": 10, "loss": 1.0, "eval_loss": 1.5}]
    weights = {k: torch.full_like(v, 0.25) for k, v in get_peft_model_state_dict(model).items()}
    from safetensors.torch import save_file

    shipped.mkdir()
    save_file(weights, str(shipped / "adapter_model.safetensors"))
    model.peft_config["default"].save_pretrained(str(shipped))
    train.save_log(made, shipped)

    other = fake_trainer(model, tmp_path, learning_rate=2e-3)
    with pytest.raises(config.FallbackError, match=r"learning_rate: shipped 0\.001, now 0\.002"):
        train.load_fallback(other, shipped)
    same = fake_trainer(model, tmp_path, learning_rate=1e-3)
    curves = train.LiveCurves(draw=False)
    train.load_fallback(same, shipped, curves)
    loaded = get_peft_model_state_dict(model)
    assert all(torch.equal(loaded[k], weights[k]) for k in weights), "the shipped weights are in the model"
    assert same.state.global_step == 10 and same.state.log_history == made.state.log_history
    assert curves.train == [(5, 2.0), (10, 1.0)] and curves.eval == [(10, 1.5)]
    (shipped / "trainer_log.json").unlink()
    with pytest.raises(config.FallbackError, match="lacks trainer_log.json"):
        train.load_fallback(same, shipped)


def test_copy_fallback(tmp_path):
    to = train.copy_fallback(config.FALLBACK_DIR / "cpu-tiny", "adapter", tmp_path / "adapter")
    assert (to / "adapter_config.json").is_file() and (to / "adapter_model.safetensors").is_file()
    with pytest.raises(config.FallbackError, match="no shipped adapter"):
        train.copy_fallback(tmp_path, "nothing", tmp_path / "x")


def test_a_tracked_run_is_shipped_only_for_the_same_inputs(tmp_path):
    cfg = config.get_profile("cpu-tiny")
    rows = [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "{}"}]}]
    sha = train._inputs_sha(cfg, rows, {"learning_rate": 1e-3, "targets": {"q_proj", "v_proj", "k_proj"}})
    assert sha == train._inputs_sha(cfg, rows, {"targets": {"k_proj", "v_proj", "q_proj"}, "learning_rate": 1e-3})
    assert sha != train._inputs_sha(cfg, rows, {"learning_rate": 2e-3, "targets": {"q_proj", "v_proj", "k_proj"}})
    assert sha != train._inputs_sha(cfg.replace(lora_r=4), rows, {"learning_rate": 1e-3,
                                                                  "targets": {"q_proj", "v_proj", "k_proj"}})
    source = tmp_path / "shipped" / "runs" / "recipe"
    source.mkdir(parents=True)
    record = {"name": "recipe", "row": {"run": "recipe", "steps": 5, "train_s": 1.0, "eval_loss": 0.5},
              "outputs": ["{}"], "curves": {"train": [[5, 1.0]], "eval": [[5, 0.5]]}, "alert_messages": [],
              "inputs_sha256": sha}
    (source / "run_manifest.json").write_text(json.dumps({"run": record}))
    run = train._shipped_run(source, tmp_path / "runs" / "recipe", sha)
    assert run.outputs == ["{}"] and run.curves["train"] == [(5, 1.0)] and (run.dir / "run_manifest.json").is_file()
    with pytest.raises(config.FallbackError, match="other inputs or settings"):
        train._shipped_run(source, tmp_path / "runs2" / "recipe", "0" * 64)
    with pytest.raises(config.FallbackError, match="no shipped run"):
        train._shipped_run(tmp_path / "nothing", tmp_path / "runs3" / "x", sha)


def test_shipped_results_and_launches_only_for_the_same_settings(tmp_path, monkeypatch):
    monkeypatch.setenv(config.ARTIFACTS_ENV_VAR, str(tmp_path / "artifacts"))
    cfg = config.get_profile("cpu-tiny")
    rows = [{"method": "qlora", "eval_loss": 1.5}]
    saved = train.save_results(cfg, "method_comparison", rows, {"steps": 30})
    assert train.shipped_results(saved.parent, "method_comparison", {"steps": 30}) == rows
    with pytest.raises(config.FallbackError, match="measured with"):
        train.shipped_results(saved.parent, "method_comparison", {"steps": 31})
    with pytest.raises(config.FallbackError, match="is missing"):
        train.shipped_results(tmp_path, "nothing", {})

    shipped = tmp_path / "fallback" / "scale_out" / "one-1p"
    shipped.mkdir(parents=True)
    (shipped / "config.json").write_text(json.dumps({"profile": "cpu-tiny", "max_steps": 40}))
    (shipped / "run_manifest.json").write_text(json.dumps({"metrics": {"global_step": 40}, "wall_time_s": 9.0}))
    (shipped / "adapter_config.json").write_text("{}")
    config_path = tmp_path / "one.yaml"
    config_path.write_text(f"profile: cpu-tiny\nmax_steps: 40\noutput_dir: {tmp_path / 'out'}\n")
    manifest = train.launch_script(config_path, fallback=tmp_path / "fallback")
    assert manifest["metrics"]["global_step"] == 40 and (tmp_path / "out" / "adapter_config.json").is_file()
    config_path.write_text(f"profile: cpu-tiny\nmax_steps: 80\noutput_dir: {tmp_path / 'out'}\n")
    with pytest.raises(config.FallbackError, match=r"max_steps: shipped 40, now 80"):
        train.launch_script(config_path, fallback=tmp_path / "fallback")
    with pytest.raises(config.FallbackError, match="no shipped launch"):
        train.launch_script(config_path, resume=True, fallback=tmp_path / "fallback")



def test_a_tracked_runs_fingerprint_does_not_depend_on_where_the_repository_is(monkeypatch):
    # the shipped runs were fingerprinted in one clone and are looked up in another: cpu-tiny's model_id is a path
    from pathlib import Path

    cfg = config.get_profile("cpu-tiny")
    rows = [{"messages": [{"role": "user", "content": "a"}]}]
    here = train._inputs_sha(cfg.replace(model_id=str(config.REPO_ROOT / "data" / "tiny-llama")), rows)
    assert here != train._inputs_sha(cfg.replace(model_id="Qwen/Qwen2.5-1.5B-Instruct"), rows)
    monkeypatch.setattr(config, "REPO_ROOT", Path("/elsewhere/course"))
    assert train._inputs_sha(cfg.replace(model_id="/elsewhere/course/data/tiny-llama"), rows) == here
