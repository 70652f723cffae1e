"""GGUF: llama.cpp's own converter (from the pinned llama-cpp-python sdist) on the ``cpu`` profile's SmolLM2, the file
read back and checked against the merged weights, a refused tokenizer, a cut-off file, a tensor altered after the
conversion, and Ollama's Modelfile. The llama.cpp runtime tier runs only where ``make gguf`` built it.

The converter is fetched once with pip (76.6 MB, cached in the user cache like the cpu model) and each conversion
takes 10-30 s on 2 cores: about 3 minutes for the module, the first time.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from helpers import config, evaluate, export, models
from helpers.data.generate import SYSTEM_PROMPT


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    """The cpu model's folder as merge_to_16bit leaves a merged model: weights, config, and the *training* chat
    template (with {% generation %} markers), which the GGUF must carry without them."""
    source = models.ensure_model(config.get_profile("cpu").model_id)
    folder = tmp_path_factory.mktemp("merged") / "smol-merged"
    folder.mkdir()
    for path in source.iterdir():
        if path.suffix in (".json", ".safetensors") and path.name not in ("SOURCE.json",):
            (folder / path.name).symlink_to(path)
    marked = models.mark_chatml_template((source / "chat_template.jinja").read_text(encoding="utf-8"))
    assert marked and models.has_generation_markers(marked)
    (folder / "chat_template.jinja").write_text(marked, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def files(merged, tmp_path_factory):
    out = tmp_path_factory.mktemp("gguf")
    return {kind: export.to_gguf(merged, out / f"smol-{kind}.gguf", kind, log=lambda _m: None)
            for kind in ("f16", "q8_0")}


def test_the_converter_comes_from_the_pinned_sdist():
    folder = export.converter_dir(log=lambda _m: None)
    source = json.loads((folder / "SOURCE.json").read_text())
    assert source["sdist"] == export.LLAMA_CPP_SDIST and source["sha256"] == export.LLAMA_CPP_SDIST_SHA256
    assert (folder / "convert_hf_to_gguf.py").is_file() and (folder / "gguf-py" / "gguf").is_dir()


@pytest.mark.parametrize("kind", ["f16", "q8_0"])
def test_a_converted_file_matches_the_merged_model(files, merged, kind):
    report = export.verify_gguf(files[kind], merged)
    assert report.passed, str(report)
    assert set(report.checks) == {"readable", "metadata", "tensor_names", "shapes", "values", "chat_template",
                                  "special_tokens"}
    if kind == "q8_0":
        assert 0 < report.numbers["q8_worst_step_fraction"] <= export.GGUF_Q8_STEP
        assert files["q8_0"].stat().st_size < 0.6 * files["f16"].stat().st_size


def test_the_gguf_carries_the_serving_template(files, merged):
    import gguf

    template = gguf.GGUFReader(str(files["f16"])).fields["tokenizer.chat_template"].contents()
    assert not models.has_generation_markers(template) and "<|im_start|>" in template
    assert template == export.serving_template((merged / "chat_template.jinja").read_text())


def test_a_cut_off_file_fails_readable(files, tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(files["q8_0"].read_bytes()[: files["q8_0"].stat().st_size // 2])
    report = export.verify_gguf(cut, Path(files["q8_0"]).parent / "none")
    assert report.failed == ["readable"]
    with pytest.raises(export.ExportError, match="readable: not a whole GGUF file"):
        report.raise_if_failed()


def test_a_tensor_altered_after_conversion_fails_values(files, merged, tmp_path):
    import gguf

    altered = tmp_path / "altered.gguf"
    shutil.copy(files["f16"], altered)
    tensor = next(t for t in gguf.GGUFReader(str(altered)).tensors if t.name == "blk.3.ffn_down.weight")
    with open(altered, "r+b") as handle:  # flip the bits of the first 32 values
        handle.seek(tensor.data_offset)
        flipped = bytes(b ^ 0x55 for b in handle.read(64))
        handle.seek(tensor.data_offset)
        handle.write(flipped)
    report = export.verify_gguf(altered, merged)
    assert report.failed == ["values"] and "blk.3.ffn_down.weight" in report.checks["values"][1]


def test_the_tiny_models_tokenizer_is_refused_by_name(tmp_path):
    with pytest.raises(export.GGUFError, match="does not know .* tokenizer.*cpu profile"):
        export.to_gguf(config.TINY_MODEL_DIR, tmp_path / "tiny.gguf", "f16", log=lambda _m: None)
    assert not list(tmp_path.iterdir()), "nothing is left behind"
    with pytest.raises(export.GGUFError, match="outtype 'q4_k_m'"):
        export.to_gguf(config.TINY_MODEL_DIR, tmp_path / "tiny.gguf", "q4_k_m")
    with pytest.raises(export.GGUFError, match="not a merged model folder"):
        export.to_gguf(tmp_path, tmp_path / "x.gguf")


def test_the_modelfile_restates_the_files_template_and_stop(files, tmp_path):
    modelfile = export.ollama_modelfile(files["q8_0"], files["q8_0"].parent / "Modelfile", system=SYSTEM_PROMPT)
    report = export.check_modelfile(modelfile, files["q8_0"])
    assert report.passed, str(report)
    text = modelfile.read_text()
    assert 'PARAMETER stop "<|im_end|>"' in text and f"FROM ./{files['q8_0'].name}" in text
    broken = tmp_path / "Modelfile"
    broken.write_text(text.replace('PARAMETER stop "<|im_end|>"', 'PARAMETER stop "</s>"').replace(
        "FROM ./", f"FROM {files['q8_0'].parent}/"))
    assert export.check_modelfile(broken, files["q8_0"]).failed == ["stop"]


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                    reason="the llama.cpp runtime is not built here (make gguf builds it)")
def test_llama_cpp_answers_like_the_merged_model(files, merged):
    """Greedy through llama.cpp with the file's own template: valid JSON where the HF model gives it."""
    from helpers import data

    rows = data.load_split("test")[:4]
    conversations = evaluate.conversations_from_rows(rows)
    result = export.gguf_answers(files["f16"], conversations, max_new_tokens=64)
    assert len(result["outputs"]) == 4 and result["new_tokens"] > 0 and result["tokens_per_s"] > 0
