"""Tests of helpers.train on a random-initialised tiny Llama (real NF4 path, seconds per run)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nbformat
import pytest

from helpers import config, memory, train
from helpers.config import NOTEBOOKS_DIR, TINY_MODEL_DIR
from helpers.data.generate import generate_tickets
from helpers.train import TrainingSetupError

NOTEBOOK = NOTEBOOKS_DIR / "03_qlora_training.ipynb"
DEFAULTS = train.TrainDefaults(eval_steps=3, logging_steps=1, early_stopping_patience=10)


@pytest.fixture(scope="module")
def tiny_dir(random_llama) -> Path:
    """A 2-layer random Llama with the course tokenizer (the shipped tiny model's tokenizer and chat template)."""
    return random_llama()


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return generate_tickets(60)


def tiny_cfg(folder: Path, **changes) -> config.Profile:
    values = dict(model_id=str(folder), max_steps=6, per_device_batch_size=2, lora_r=4, lora_alpha=8)
    return config.get_profile("cpu-tiny").replace(**{**values, **changes})


class _Disconnect(Exception):
    pass


def _killer(at_step: int):
    from transformers import TrainerCallback

    class Kill(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == at_step:
                raise _Disconnect(f"simulated disconnect at step {at_step}")

    return Kill()


def _manifest(folder: Path) -> dict:
    return json.loads((folder / train.MANIFEST_NAME).read_text())


def test_resume_after_a_kill_matches_the_uninterrupted_run(tiny_dir, rows, tmp_path):
    cfg = tiny_cfg(tiny_dir)
    straight = train.train_adapter(cfg, tmp_path / "straight", rows[:40], rows[40:50], defaults=DEFAULTS)
    with pytest.raises(_Disconnect):
        train.train_adapter(cfg, tmp_path / "resumed", rows[:40], rows[40:50], defaults=DEFAULTS,
                            callbacks=[_killer(4)])
    assert train.last_checkpoint(tmp_path / "resumed" / "checkpoints").endswith("checkpoint-3")
    resumed = train.train_adapter(cfg, tmp_path / "resumed", rows[:40], rows[40:50], defaults=DEFAULTS, resume=True)
    a, b = _manifest(straight)["metrics"], _manifest(resumed)["metrics"]
    assert b["resumed_from"].endswith("checkpoint-3") and a["resumed_from"] is None
    assert a["global_step"] == b["global_step"] == 6
    assert abs(a["final_train_loss"] - b["final_train_loss"]) < 1e-3
    assert abs(a["last_eval_loss"] - b["last_eval_loss"]) < 1e-3


def test_manifest_records_data_configs_versions_and_metrics(tiny_dir, rows, tmp_path):
    files = []
    for name, part in (("train", rows[:40]), ("validation", rows[40:50])):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in part))
        files.append(path)
    out = train.train_adapter(tiny_cfg(tiny_dir, max_steps=3), tmp_path / "adapter", train.read_jsonl(files[0]),
                              train.read_jsonl(files[1]), defaults=DEFAULTS, data_files=files)
    m = _manifest(out)
    from helpers.models import sha256

    assert m["data_files"][str(files[0])]["sha256"] == sha256(files[0])
    assert m["validation"]["train"]["rows"] == 40 and m["validation"]["train"]["fully_masked"] == 0
    assert set(m["configs"]) == {"bnb", "lora", "sft"}
    assert m["configs"]["lora"]["r"] == 4 and m["configs"]["sft"]["assistant_only_loss"] is True
    assert m["configs"]["bnb"]["bnb_4bit_quant_type"] == "nf4"
    assert m["versions"]["trl"] and m["versions"]["peft"] and m["hardware"]["cpu_count"] >= 1
    assert m["seed"] == config.SEED and m["wall_time_s"] > 0
    assert m["metrics"]["global_step"] == 3 and math.isfinite(m["metrics"]["final_train_loss"])
    assert (out / "adapter_model.safetensors").is_file() and (out / train.CURVES_NAME).is_file()


def test_oom_sized_config_is_refused_before_loading(tiny_dir, rows, monkeypatch, tmp_path):
    import helpers.models

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the memory pre-flight")

    monkeypatch.setattr(helpers.models, "load_model", no_load)
    cfg = tiny_cfg(tiny_dir, per_device_batch_size=512, max_seq_length=1024)
    with pytest.raises(memory.MemoryPreflightError, match="gradient checkpointing"):
        train.train_adapter(cfg, tmp_path / "x", rows[:4], rows[4:6], memory_limit_gib=1.0)


def test_tokenizer_without_assistant_markers_fails_before_training(tiny_dir, rows, monkeypatch, tmp_path):
    import shutil

    import helpers.models

    folder = tmp_path / "nomarkers"
    shutil.copytree(tiny_dir, folder)
    template = (folder / "chat_template.jinja").read_text()
    plain = template.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    (folder / "chat_template.jinja").write_text(plain)
    monkeypatch.setattr(helpers.models, "load_model", lambda *a, **k: pytest.fail("loaded a model"))
    with pytest.raises(TrainingSetupError, match=r"generation %\}"):
        train.train_adapter(tiny_cfg(folder), tmp_path / "out", rows[:4], rows[4:6])


def test_dataset_with_every_label_masked_is_refused_with_count_and_fix(rows):
    from helpers.models import load_tokenizer

    tok = load_tokenizer(TINY_MODEL_DIR)
    with pytest.raises(TrainingSetupError, match=r"5 of 5 rows.*raise max_length"):
        train.check_assistant_masks(tok, rows[:5], max_length=32)  # the system prompt alone is longer
    no_answer = [{"messages": r["messages"][:2]} for r in rows[:3]]
    with pytest.raises(TrainingSetupError, match="3 of 3 rows"):
        train.check_assistant_masks(tok, no_answer, max_length=384)
    report = train.check_assistant_masks(tok, rows[:5], max_length=384)
    assert report.fully_masked == [] and 0 < report.mean_trained_tokens < report.mean_tokens


def test_bf16_below_compute_capability_8_switches_to_fp16():
    messages = []
    cfg, flags = train.precision(config.get_profile("a100"), capability=(7, 5), log=messages.append)
    assert cfg.torch_dtype == cfg.bnb_compute_dtype == "float16"
    assert flags == {"bf16": False, "fp16": True} and "fp16" in messages[0]
    cfg, flags = train.precision(config.get_profile("a100"), capability=(8, 0), log=messages.append)
    assert cfg.bnb_compute_dtype == "bfloat16" and flags == {"bf16": True, "fp16": False} and len(messages) == 1
    assert train.precision(config.get_profile("cpu-tiny"))[1] == {"bf16": False, "fp16": False, "use_cpu": True}


def test_live_curves_is_a_plain_class_that_answers_every_trainer_event():
    import subprocess
    import sys
    from types import SimpleNamespace

    from transformers import TrainerCallback

    code = "import sys, helpers.train as t; print('transformers' in sys.modules, isinstance(t.LiveCurves, type))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=config.REPO_ROOT, check=True)
    assert out.stdout.split() == ["False", "True"], "importing helpers.train must not import transformers"
    curves = train.LiveCurves(draw=False)
    events = [name for name in vars(TrainerCallback) if name.startswith("on_")]
    assert len(events) > 10
    for name in events:  # how transformers' CallbackHandler calls a callback: by name, with these arguments
        state = SimpleNamespace(global_step=0)
        assert getattr(curves, name)(None, state, None, model=None, logs={}, metrics={}) is None
    with pytest.raises(AttributeError):
        curves.not_an_event


def test_live_curves_alerts_and_headless_png(tmp_path):
    from types import SimpleNamespace

    from transformers import TrainerControl

    curves = train.LiveCurves(tmp_path, overfit_patience=2, draw=False, log=lambda _m: None)
    control = TrainerControl()
    for step, loss, eval_loss in [(1, 2.0, 1.5), (2, 1.5, 1.6), (3, 1.0, 1.7), (4, 0.5, 1.8)]:
        state = SimpleNamespace(global_step=step)
        curves.on_log(None, state, control, logs={"loss": loss})
        curves.on_log(None, state, control, logs={"eval_loss": eval_loss})
    assert any("overfitting" in a for a in curves.alerts) and not control.should_training_stop
    curves.on_log(None, SimpleNamespace(global_step=5), control, logs={"loss": 0.0})
    assert any("exactly 0" in a for a in curves.alerts)
    curves.on_log(None, SimpleNamespace(global_step=6), control, logs={"loss": float("nan")})
    assert control.should_training_stop and any("nan" in a for a in curves.alerts)
    assert (tmp_path / train.CURVES_NAME).stat().st_size > 1000


def test_packing_only_when_padding_wastes_tokens():
    assert train.padding_fraction([100] * 16, 8) == 0.0
    assert not train.packing_helps([100] * 16, 8)
    assert train.packing_helps([20, 300] * 8, 8)


def test_read_jsonl_names_the_bad_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"messages": []}\n{oops\n')
    with pytest.raises(TrainingSetupError, match=r"rows.jsonl:2"):
        train.read_jsonl(path)


def _notebook_namespace() -> dict:
    """Run notebook 03's parameters cell and the cells that build the configs, with a stand-in checkpoint dir."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    params = next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    ns: dict = {}
    exec("import torch\nfrom transformers import BitsAndBytesConfig\nfrom peft import LoraConfig\n"
         "from trl import SFTConfig\nfrom helpers import config, memory, train", ns)
    exec(params, ns)
    ns.update(cfg=config.get_profile("cpu-tiny"), checkpoint_dir=Path("/tmp/ckpt"), packing=False,
              flags={"bf16": False, "fp16": False})
    for needle in ("BitsAndBytesConfig(", "LoraConfig(", "SFTConfig("):
        cell = next(c for c in code if needle in c and "import" not in c)
        exec(cell.split("\nmodel =")[0], ns)  # the config only, not the model load that follows it
    return ns


def test_no_pinned_memory_without_a_gpu():
    """torch warns on every DataLoader that pins memory without an accelerator: the CPU profile must not ask for it."""
    assert train.sft_config(config.get_profile("cpu-tiny"), "/tmp/ckpt").dataloader_pin_memory is False
    assert train.sft_config(config.get_profile("t4"), "/tmp/ckpt").dataloader_pin_memory is True


def test_notebook_03_builds_the_same_configs_as_train_adapter():
    from helpers.models import bnb_config

    ns = _notebook_namespace()
    cfg = ns["cfg"]
    assert ns["bnb_config"].to_dict() == bnb_config(cfg).to_dict()
    assert ns["peft_config"].to_dict() == train.lora_config(cfg).to_dict()
    assert ns["LORA_DROPOUT"] == train.DEFAULTS.lora_dropout and ns["EVAL_STEPS"] == train.DEFAULTS.eval_steps
    assert ns["TARGET_MODULES"] == train.DEFAULTS.target_modules
    assert ns["EARLY_STOPPING_PATIENCE"] == train.DEFAULTS.early_stopping_patience
    mine = train.sft_config(cfg, ns["checkpoint_dir"], packing=False, flags=ns["flags"]).to_dict()
    taught = ns["training_args"].to_dict()
    assert taught == mine


def test_keep_4bit_trainable_restores_gradients_after_an_eval_pass(tiny_dir):
    """bitsandbytes packs 4-bit CPU weights during an eval pass; without the fix the next backward loses gradient."""
    import torch
    from bitsandbytes.functional import has_avx512bf16
    from peft import get_peft_model

    from helpers import models

    cfg = tiny_cfg(tiny_dir)
    ids = models.load_tokenizer(cfg)("Return the number of items in the list.", return_tensors="pt")["input_ids"]
    model = get_peft_model(models.load_model(cfg, quantized=True), train.lora_config(cfg, dropout=0.0))
    train.match_adapter_dtype(model, cfg)

    def grads() -> "torch.Tensor":
        model.train()
        model.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])

    def same(a: "torch.Tensor", b: "torch.Tensor") -> bool:
        # Unpacking round-trips the block scales through the packed format: ~0.4% off, against ~99% for the bug.
        return ((a - b).norm() / a.norm()).item() < 0.02

    fresh = grads()
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)  # what a generation or an evaluation pass does
    after_eval = grads()
    if has_avx512bf16():  # this CPU packs: the bug is real here, so the test can fail
        assert not same(fresh, after_eval), "expected the packed kernel to change the gradients"
    assert train.keep_4bit_trainable(model) > 0 or not has_avx512bf16()  # nothing to undo on other CPUs
    assert same(fresh, grads())
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)  # packing stays off: later evaluation passes cannot break training again
    assert same(fresh, grads())


def test_adapter_dtype_keeps_bf16_weights_only_where_their_updates_survive():
    import torch

    bf16 = config.get_profile("cpu-tiny").replace(bnb_compute_dtype="bfloat16")

    def fresh() -> torch.nn.Module:
        layer = torch.nn.Linear(4, 4).to(torch.bfloat16)
        layer.bias.requires_grad_(False)  # frozen tensors are left as they are
        return layer

    kept = fresh()
    assert train.match_adapter_dtype(kept, bf16) == 0 and kept.weight.dtype == torch.bfloat16
    assert train.match_adapter_dtype(kept, bf16, 5e-4) == 0 and kept.weight.dtype == torch.bfloat16
    small = fresh()  # 07's rates: bf16 would round an Adam step of 2e-5 away on a weight of 0.05
    assert (torch.tensor(0.05, dtype=torch.bfloat16) + 2e-5).item() == \
        torch.tensor(0.05, dtype=torch.bfloat16).item()
    assert train.match_adapter_dtype(small, bf16, 2e-5) == 1
    assert small.weight.dtype == torch.float32 and small.bias.dtype == torch.bfloat16
    fp32 = fresh()
    assert train.match_adapter_dtype(fp32, config.get_profile("cpu-tiny"), 5e-4) == 1


@pytest.mark.parametrize("entry", ["experiment", "train_adapter"])
def test_a_finished_run_frees_its_model_without_waiting_for_the_garbage_collector(tmp_path, monkeypatch, entry):
    """Accelerate and PEFT keep bound methods of the model on the model (a reference cycle): without an explicit full
    collection each run's model outlived it, and 05's dozen runs stacked up on a GPU (issue 26)."""
    import gc
    import weakref

    from helpers import data, models

    loaded = []
    real_load = models.load_model

    def watched(*args, **kwargs):
        model = real_load(*args, **kwargs)
        loaded.append(weakref.ref(model))
        return model

    monkeypatch.setattr(models, "load_model", watched)
    cfg = config.get_profile("cpu-tiny")
    rows, held_out = data.load_split("train")[:8], data.load_split("validation")[:4]
    gc.disable()  # as on a busy kernel where no automatic full collection happens to run in between
    try:
        if entry == "experiment":
            run = train.experiment(cfg, "freed", tmp_path, rows, held_out, max_steps=1, eval_steps=1,
                                   save_adapter=False)
            assert run.row["steps"] == 1
            del run
        else:
            train.train_adapter(cfg, tmp_path / "adapter", rows, held_out, max_steps=1, eval_steps=1)
        assert loaded and all(ref() is None for ref in loaded), "the run's model is still alive after it returned"
    finally:
        gc.enable()
