"""Profiles: one switch, detected from the hardware, with a clear error for a bad name."""

from __future__ import annotations

import types

import pytest

from helpers import config


def fake_torch(cuda: bool, capability=(7, 5), memory_gib: float = 80.0):
    props = types.SimpleNamespace(major=capability[0] if capability else 0, minor=capability[1] if capability else 0,
                                  total_memory=int(memory_gib * 2**30))
    cuda_ns = types.SimpleNamespace(is_available=lambda: cuda, get_device_capability=lambda i=0: capability,
                                    get_device_properties=lambda i=0: props)
    return types.SimpleNamespace(cuda=cuda_ns)


@pytest.mark.parametrize("cuda,capability,memory_gib,expected", [
    (False, None, None, "cpu"), (True, (7, 5), 15.0, "t4"), (True, (8, 0), 39.4, "a100"),
    (True, (8, 0), 79.2, "a100"), (True, (9, 0), 79.6, "h100"), (True, (9, 0), 139.8, "h100"),
    # 24 GB cards with bf16 get the 7B recipe sized for them, not the A100's (which the pre-flight would refuse)
    (True, (8, 9), 22.5, "l4"), (True, (8, 6), 22.3, "l4"), (True, (8, 6), 23.6, "l4"), (True, (8, 9), 23.6, "l4"),
    # small bf16 cards and old big cards get the 1.5B recipe
    (True, (8, 6), 11.8, "t4"), (True, (7, 0), 31.7, "t4"),
])
def test_detection_follows_compute_capability_and_memory(monkeypatch, cuda, capability, memory_gib, expected):
    monkeypatch.setitem(__import__("sys").modules, "torch", fake_torch(cuda, capability, memory_gib or 0))
    assert config.detect_profile() == expected


def test_every_gpu_profile_names_the_gpu_auto_detection_would_pick_it_on():
    from helpers import memory

    capability = {"T4 16 GB": (7, 5), "L4 24 GB": (8, 9), "A100 40 GB": (8, 0), "H100 80 GB": (9, 0)}
    gpus = {gpu.name: gpu.memory_gib for gpu in memory.GPUS}
    for name, profile in config.PROFILES.items():
        if profile.device == "cpu":
            assert profile.gpu == "" and not profile.needs_hub
            continue
        assert profile.gpu in gpus, f"{name}: gpu {profile.gpu!r} is not in helpers.memory.GPUS"
        assert config.profile_for_gpu(capability[profile.gpu], gpus[profile.gpu]) == name
        assert profile.needs_hub


def test_dtypes_follow_the_hardware():
    assert config.PROFILES["cpu-tiny"].bnb_compute_dtype == "float32"  # bf16 compute on CPU is ~20x slower
    assert config.PROFILES["t4"].bnb_compute_dtype == "float16"  # compute capability 7.5 has no bf16
    assert config.PROFILES["a100"].bnb_compute_dtype == "bfloat16"
    assert config.PROFILES["h100"].bnb_compute_dtype == "bfloat16"
    assert all(p.load_in_4bit for p in config.PROFILES.values()), "every profile runs the same QLoRA path"


def test_explicit_name_beats_env_which_beats_detection(monkeypatch):
    monkeypatch.setenv(config.PROFILE_ENV_VAR, "t4")
    assert config.get_profile("auto").name == "t4"
    assert config.get_profile("cpu-tiny").name == "cpu-tiny"
    monkeypatch.delenv(config.PROFILE_ENV_VAR)
    monkeypatch.setitem(__import__("sys").modules, "torch", fake_torch(False))
    assert config.get_profile(None).name == "cpu"


def test_unknown_profile_is_one_clear_line():
    with pytest.raises(config.ProfileError) as err:
        config.get_profile("t5")
    message = str(err.value)
    assert "'t5'" in message and "cpu-tiny" in message and "COURSE_PROFILE" in message and "\n" not in message


def test_tiny_profile_is_local_and_gpu_profiles_are_hub_ids():
    assert config.get_profile("cpu-tiny").model_id == str(config.TINY_MODEL_DIR)
    assert config.get_profile("cpu-tiny").device == "cpu"
    for name in ("t4", "l4", "a100", "h100"):
        assert "/" in config.PROFILES[name].model_id and config.PROFILES[name].device == "cuda"


def test_artifacts_dir_is_per_profile(tmp_path, monkeypatch):
    monkeypatch.delenv(config.ARTIFACTS_ENV_VAR, raising=False)
    monkeypatch.setattr(config, "ARTIFACTS_DIR", tmp_path)
    path = config.artifacts_dir(config.get_profile("cpu-tiny"), "adapter")
    assert path == tmp_path / "cpu-tiny" / "adapter" and path.is_dir()


def test_artifacts_can_live_elsewhere_for_example_on_drive(tmp_path, monkeypatch):
    monkeypatch.setenv(config.ARTIFACTS_ENV_VAR, str(tmp_path / "drive"))
    path = config.artifacts_dir("t4", "adapter")
    assert path == tmp_path / "drive" / "t4" / "adapter" and path.is_dir()


def test_set_seed_repeats():
    import random

    config.set_seed(3)
    a = random.random()
    config.set_seed(3)
    assert random.random() == a


def test_one_bf16_rule_by_compute_capability():
    a100 = config.PROFILES["a100"]
    assert config.has_native_bf16((8, 0)) and not config.has_native_bf16((7, 5)) and not config.has_native_bf16(None)
    fp16 = config.bf16_fallback(a100, (7, 5))
    assert (fp16.torch_dtype, fp16.bnb_compute_dtype) == ("float16", "float16")
    assert config.bf16_fallback(a100, (8, 0)) is None and config.bf16_fallback(a100, None) is None
    assert config.bf16_fallback(config.PROFILES["t4"], (7, 5)) is None  # already fp16: nothing to switch


def test_large_exports_stay_on_this_machine_when_artifacts_are_on_drive(tmp_path, monkeypatch):
    """06's merged model (3 GB on t4, ~15 GB on 7B) would fill a free Google Drive: it stays local unless asked."""
    monkeypatch.setenv(config.ARTIFACTS_ENV_VAR, str(tmp_path / "drive"))
    assert config.artifacts_dir("t4", "adapter") == tmp_path / "drive" / "t4" / "adapter"
    local = config.artifacts_dir("t4", "merged", local=True)
    assert local == config.ARTIFACTS_DIR / "t4" / "merged" and local.is_dir()
    local.rmdir()
    if not any(local.parent.iterdir()):
        local.parent.rmdir()


def test_a_profile_budget_replaces_defaults_only_and_says_so(capsys):
    cpu, tiny = config.get_profile("cpu"), config.get_profile("cpu-tiny")
    table = config.BUDGETS["cpu"]["05_iterate"]
    defaults = {name: default for name, (default, _) in table.items()}
    assert config.budget(tiny, "05_iterate", **defaults) == tuple(defaults.values())
    assert capsys.readouterr().out == ""  # no budget on cpu-tiny: nothing changes, nothing printed
    chosen = config.budget(cpu, "05_iterate", **(defaults | {"VAL_ROWS": 7}))
    assert dict(zip(defaults, chosen)) == {name: smaller for name, (_, smaller) in table.items()} | {"VAL_ROWS": 7}
    out = capsys.readouterr().out  # a value the learner set (7) is kept, and said to be
    assert f"SWEEP_STEPS = {table['SWEEP_STEPS'][1]}" in out and "kept as set in the parameters cell: VAL_ROWS = 7" in out
    with pytest.raises(config.ProfileError, match="OVERFIT_STEPS"):  # the table and the call must not drift apart
        config.budget(cpu, "05_iterate", **{name: v for name, v in defaults.items() if name != "OVERFIT_STEPS"})


def test_a_budget_keeps_what_the_course_runner_injected(monkeypatch, capsys):
    cpu = config.get_profile("cpu")
    table = config.BUDGETS["cpu"]["05_iterate"]
    defaults = {name: default for name, (default, _) in table.items()}
    monkeypatch.setenv(config.PARAMS_VAR, "PROFILE,SWEEP_STEPS")  # e.g. a bench script's candidate equal to a default
    chosen = dict(zip(defaults, config.budget(cpu, "05_iterate", **defaults)))
    assert chosen["SWEEP_STEPS"] == defaults["SWEEP_STEPS"] and chosen["VAL_ROWS"] == table["VAL_ROWS"][1]
    assert f"kept as set in the parameters cell: SWEEP_STEPS = {defaults['SWEEP_STEPS']}" in capsys.readouterr().out


@pytest.mark.parametrize("profile,notebook", [(p, n) for p, table in config.BUDGETS.items() for n in table])
def test_every_budget_names_the_notebooks_defaults_and_its_setup_cell_passes_them(profile, notebook):
    import json

    from helpers import cloud

    defaults = cloud._cells_parameters(notebook)  # the literal values of the parameters cell
    budget = config.BUDGETS[profile][notebook]
    assert {name: defaults.get(name) for name in budget} == {name: pair[0] for name, pair in budget.items()}
    assert all(smaller != default for default, smaller in budget.values())
    cells = json.loads((config.NOTEBOOKS_DIR / f"{notebook}.ipynb").read_text())["cells"]
    call = next(source for source in ("".join(c["source"]) for c in cells) if f'cfg, "{notebook}", ' in source)
    assert all(f"{name}={name}" in call for name in budget), call
