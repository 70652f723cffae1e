"""Issue 12, item 16: no absolute path of this machine in a shared adapter, its manifest or an executed notebook."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import torch

from helpers import config, course, models, train
from helpers.config import REPO_ROOT

CFG = config.get_profile("cpu-tiny")
MACHINE_PATHS = (str(REPO_ROOT), str(Path.home()))


def leaks(text: str) -> list[str]:
    return [p for p in MACHINE_PATHS if p and p != "/" and p in text]


def test_adapter_and_manifest_hold_repo_relative_paths_and_load_back(tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    base = models.load_model(CFG, quantized=False)
    peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    model = get_peft_model(base, peft_config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.fill_(0.01)  # non-zero so that loading back is visible in the outputs
    adapter_dir = tmp_path / "adapter"
    model.save_pretrained(adapter_dir)
    train.write_manifest(adapter_dir, CFG, {"lora": peft_config}, [train.split_path("train")], {}, {}, 1.0)
    adapter_config = (adapter_dir / "adapter_config.json").read_text()
    manifest = (adapter_dir / train.MANIFEST_NAME).read_text()
    assert leaks(adapter_config) == [] and leaks(manifest) == []
    assert json.loads(adapter_config)["base_model_name_or_path"] == "data/tiny-llama"
    assert "data/tickets/train.jsonl" in json.loads(manifest)["data_files"]
    ids = torch.tensor([[1, 2, 3, 4]])
    expected = model(input_ids=ids).logits
    loaded = PeftModel.from_pretrained(models.load_model(CFG, quantized=False), str(adapter_dir))
    assert torch.allclose(loaded(input_ids=ids).logits, expected, atol=1e-5)


def test_hub_ids_and_outside_paths_stay_as_they_are():
    assert config.repo_relative("Qwen/Qwen2.5-1.5B-Instruct") == "Qwen/Qwen2.5-1.5B-Instruct"
    assert config.repo_relative(str(REPO_ROOT / "data" / "tiny-llama")) == "data/tiny-llama"
    assert config.repo_relative({"a": [str(REPO_ROOT)]}) == {"a": ["."]}
    assert config.repo_relative("/opt/elsewhere/x") == "/opt/elsewhere/x"


def test_executed_notebooks_hold_no_machine_path(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell('PROFILE = "auto"  # p', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("from pathlib import Path\nfrom helpers import config\n"
                                          "print(config.TINY_MODEL_DIR, Path.home() / 'x')\nconfig.KB_DIR")]
    (tmp_path / "nb").mkdir()
    nbformat.write(nb, tmp_path / "nb" / "00_paths.ipynb")
    assert course.run_course("cpu-tiny", folder=tmp_path / "nb", runs_dir=tmp_path / "runs", timeout=120) == 0
    executed = next((tmp_path / "runs").iterdir()) / "00_paths.ipynb"
    text = executed.read_text()
    assert "data/tiny-llama" in text and leaks(text) == []


def test_a_moved_artifacts_folder_is_written_as_artifacts(monkeypatch, tmp_path):
    # Colab with DRIVE = True (or the fallback course's own folder): $COURSE_ARTIFACTS lies outside the repository, and
    # a manifest must not carry that machine's path (06 checks every exported file for one)
    monkeypatch.setenv(config.ARTIFACTS_ENV_VAR, str(tmp_path / "drive" / "artifacts"))
    moved = tmp_path / "drive" / "artifacts"
    assert config.repo_relative(str(moved / "cpu-tiny" / "checkpoints")) == "artifacts/cpu-tiny/checkpoints"
    assert config.repo_relative({"output_dir": str(moved)}) == {"output_dir": "artifacts"}
    assert config.repo_relative(str(REPO_ROOT / "data" / "tiny-llama")) == "data/tiny-llama"
