"""The environment check flags each problem with a concrete fix."""

from __future__ import annotations

import types

import pytest

from helpers import config, env

NO_GPU = {"cuda": False, "cuda_version": None, "name": None, "capability": None, "memory_gib": None}
T4 = {"cuda": True, "cuda_version": "12.4", "name": "Tesla T4", "capability": (7, 5), "memory_gib": 15.0}


def test_versions_outside_pins_are_flagged_with_the_install_command():
    findings = env.version_findings({"transformers": "4.46.0", "peft": None, "torch": "2.13.0+cpu"},
                                    {"transformers": "5.23.0", "peft": "0.21.2", "torch": "2.13.0"})
    by_what = {f.what.split()[0]: f for f in findings}
    assert by_what["transformers"].level == "warn" and "transformers==5.23.0" in by_what["transformers"].fix
    assert by_what["peft"].level == "error" and "peft==0.21.2" in by_what["peft"].fix
    assert by_what["torch"].level == "ok", "a local build suffix (+cpu) matches the pin"


def test_gpu_profile_without_gpu_is_an_error():
    findings = env.hardware_findings(config.PROFILES["t4"], NO_GPU)
    assert [f.level for f in findings] == ["error"] and "cpu-tiny" in findings[0].fix


def test_bf16_on_a_t4_is_an_error_with_the_fp16_fix():
    findings = env.hardware_findings(config.PROFILES["a100"], T4)
    assert any(f.level == "error" and "bf16" in f.what and "fp16" in f.fix for f in findings)


def test_bf16_compute_on_a_cpu_without_native_bf16_is_flagged(monkeypatch):
    slow = config.PROFILES["cpu-tiny"].replace(bnb_compute_dtype="bfloat16")
    monkeypatch.setattr(env, "cpu_has_native_bf16", lambda: False)
    assert any("emulated" in f.what and "16x" in f.what for f in env.hardware_findings(slow, NO_GPU))
    monkeypatch.setattr(env, "cpu_has_native_bf16", lambda: True)  # AVX512-BF16 / AMX: bf16 is the faster choice
    assert not any(f.level == "warn" for f in env.hardware_findings(slow, NO_GPU))


def test_adjust_for_hardware_switches_bf16_to_fp16_on_a_t4(monkeypatch, capsys):
    monkeypatch.setattr(env, "gpu_info", lambda: T4)
    fixed = env.adjust_for_hardware(config.PROFILES["a100"])
    assert (fixed.torch_dtype, fixed.bnb_compute_dtype) == ("float16", "float16")
    assert "switching" in capsys.readouterr().out


def tok(template="{% generation %}", pad=1, eos=2):
    return types.SimpleNamespace(chat_template=template, pad_token_id=pad, eos_token_id=eos)


def test_tokenizer_problems():
    assert env.tokenizer_findings(tok())[0].level == "ok"
    assert env.tokenizer_findings(tok(template=None))[0].level == "error"
    assert "generation" in env.tokenizer_findings(tok(template="{{ messages }}"))[0].what
    pad_eos = env.tokenizer_findings(tok(pad=2, eos=2))
    assert pad_eos[0].level == "warn" and "stop" in pad_eos[0].what


def test_check_raises_on_errors_and_passes_on_the_cpu_profile(monkeypatch):
    monkeypatch.setattr(env, "gpu_info", lambda: NO_GPU)
    with pytest.raises(env.EnvironmentProblem, match="cpu-tiny"):
        env.check(config.PROFILES["t4"], quiet=True)
    findings = env.check(config.PROFILES["cpu-tiny"], quiet=True)
    assert not [f for f in findings if f.level == "error"]


def test_pins_come_from_pyproject():
    pins = env.pinned_versions()
    assert {"torch", "transformers", "peft", "trl", "bitsandbytes"} <= set(pins)
