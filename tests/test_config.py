"""Profiles: one switch, detected from the hardware, with a clear error for a bad name."""

from __future__ import annotations

import types

import pytest

from helpers import config


def fake_torch(cuda: bool, capability=(7, 5)):
    cuda_ns = types.SimpleNamespace(is_available=lambda: cuda, get_device_capability=lambda i=0: capability)
    return types.SimpleNamespace(cuda=cuda_ns)


@pytest.mark.parametrize("cuda,capability,expected", [
    (False, None, "cpu-tiny"), (True, (7, 5), "t4"), (True, (8, 0), "a100"), (True, (8, 9), "a100"),
    (True, (9, 0), "h100"),
])
def test_detection_follows_compute_capability(monkeypatch, cuda, capability, expected):
    monkeypatch.setitem(__import__("sys").modules, "torch", fake_torch(cuda, capability))
    assert config.detect_profile() == expected


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
    assert config.get_profile(None).name == "cpu-tiny"


def test_unknown_profile_is_one_clear_line():
    with pytest.raises(config.ProfileError) as err:
        config.get_profile("t5")
    message = str(err.value)
    assert "'t5'" in message and "cpu-tiny" in message and "COURSE_PROFILE" in message and "\n" not in message


def test_tiny_profile_is_local_and_gpu_profiles_are_hub_ids():
    assert config.get_profile("cpu-tiny").model_id == str(config.TINY_MODEL_DIR)
    assert config.get_profile("cpu-tiny").device == "cpu"
    for name in ("t4", "a100", "h100"):
        assert "/" in config.PROFILES[name].model_id and config.PROFILES[name].device == "cuda"


def test_artifacts_dir_is_per_profile(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "ARTIFACTS_DIR", tmp_path)
    path = config.artifacts_dir(config.get_profile("cpu-tiny"), "adapter")
    assert path == tmp_path / "cpu-tiny" / "adapter" and path.is_dir()


def test_set_seed_repeats():
    import random

    config.set_seed(3)
    a = random.random()
    config.set_seed(3)
    assert random.random() == a
