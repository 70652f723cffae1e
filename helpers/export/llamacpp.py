"""GGUF and Ollama: llama.cpp's own converter, the file read back, answers from llama.cpp, a Modelfile (06_export).

:func:`to_gguf` runs ``convert_hf_to_gguf.py`` from the pinned llama-cpp-python source distribution
(:func:`converter_dir`); :func:`verify_gguf` reads the file back against the merged weights; :func:`gguf_answers`
runs it with llama.cpp (``make gguf``); :func:`ollama_modelfile` and :func:`check_modelfile` write and check Ollama's
Modelfile. The converter knows hub tokenizers only: the ``cpu-tiny`` model's is refused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

from helpers.config import model_cache_dir
from helpers.export.merge import ExportError
from helpers.export.verify import VerifyReport

# llama.cpp's own converter, from the pinned llama-cpp-python source distribution (no converter of the course's own).
# Fetched once with pip (76.6 MB), its SHA-256 checked, and three parts unpacked into the user cache:
# convert_hf_to_gguf.py, conversion/ (one module per architecture) and gguf-py/ (the gguf writer it was made with).
LLAMA_CPP_SDIST = "llama-cpp-python==0.3.36"
LLAMA_CPP_SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
LLAMA_CPP_SDIST_ENV_VAR = "COURSE_LLAMA_CPP_SDIST"  # a local copy of the file (an offline machine: no pip download)
CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion", "gguf-py")
GGUF_TYPES = ("f32", "f16", "bf16", "q8_0")
# What verify_gguf allows between a GGUF tensor and the merged weight it came from. f32 and f16 / bf16 files hold the
# weight rounded once to the file's type: compared with the same rounding, exactly. q8_0 stores blocks of 32 values as
# int8 times one fp16 scale (the block's largest |w| / 127): every value within one step of its block, so within one
# step of the tensor's largest block.
GGUF_Q8_STEP = 1 / 127


class GGUFError(ExportError):
    """A GGUF conversion or check that cannot be done; the message says what and how to fix it."""


def _converter_cache() -> Path:

    return model_cache_dir().parent / f"llama.cpp-{LLAMA_CPP_SDIST.split('==')[1]}"


def llama_cpp_sdist(log: Callable[[str], None] = print) -> Path:
    """The pinned llama-cpp-python source distribution, SHA-256 checked, kept in the user cache (used by to_gguf).

    ``$COURSE_LLAMA_CPP_SDIST`` names a local copy (a machine without a package index); otherwise pip downloads it
    once (``pip download llama-cpp-python==0.3.36 --no-deps --no-binary llama-cpp-python``, 76.6 MB). It holds
    llama.cpp's converter (:func:`converter_dir`) and builds the llama.cpp runtime (``make gguf``).
    """
    import hashlib
    import subprocess
    import sys
    import tempfile

    name = f"llama_cpp_python-{LLAMA_CPP_SDIST.split('==')[1]}.tar.gz"
    local = os.environ.get(LLAMA_CPP_SDIST_ENV_VAR, "").strip()
    sdist = Path(local).expanduser() if local else _converter_cache().parent / name
    if local and not sdist.is_file():
        raise GGUFError(f"${LLAMA_CPP_SDIST_ENV_VAR} = {sdist}: no such file; unset it to download the sdist")
    if not sdist.is_file():
        log(f"downloading {LLAMA_CPP_SDIST}'s source distribution (76.6 MB, once) for llama.cpp's converter")
        with tempfile.TemporaryDirectory(prefix="llama-cpp-sdist-") as tmp:
            run = subprocess.run([sys.executable, "-m", "pip", "download", LLAMA_CPP_SDIST, "--no-deps", "--no-binary",
                                  "llama-cpp-python", "-d", tmp, "-q"], capture_output=True, text=True)
            found = Path(tmp) / name
            if run.returncode != 0 or not found.is_file():
                last = (run.stderr.strip().splitlines() or ["no file"])[-1]
                raise GGUFError(f"pip could not download {LLAMA_CPP_SDIST} ({last}): connect to PyPI once, or set "
                                f"${LLAMA_CPP_SDIST_ENV_VAR} to a copy of {name}")
            sdist.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(found), str(sdist))
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != LLAMA_CPP_SDIST_SHA256:
        raise GGUFError(f"{sdist}: SHA-256 {digest[:16]}... is not the pinned {LLAMA_CPP_SDIST_SHA256[:16]}...: a "
                        f"damaged or different file; delete it and the course fetches {LLAMA_CPP_SDIST} again")
    return sdist


def converter_dir(log: Callable[[str], None] = print) -> Path:
    """llama.cpp's converter, unpacked once from :func:`llama_cpp_sdist` into the user cache (used by to_gguf)."""
    import tarfile
    import tempfile

    cache = _converter_cache()
    if all((cache / part).exists() for part in CONVERTER_PARTS) and (cache / "SOURCE.json").is_file():
        return cache
    sdist = llama_cpp_sdist(log)
    with tempfile.TemporaryDirectory(prefix="llama-cpp-converter-") as tmp:
        staging = Path(tmp) / "unpacked"
        with tarfile.open(sdist, "r:gz") as archive:
            prefix = f"{sdist.name[:-len('.tar.gz')]}/vendor/llama.cpp/"
            members = [m for m in archive.getmembers() if m.name.startswith(prefix) and
                       m.name[len(prefix):].split("/")[0] in CONVERTER_PARTS and (m.isfile() or m.isdir())]
            for member in members:
                member.name = member.name[len(prefix):]
            archive.extractall(staging, members=members, filter="data")
        missing = [part for part in CONVERTER_PARTS if not (staging / part).exists()]
        if missing:
            raise GGUFError(f"{sdist.name} lacks vendor/llama.cpp/{missing[0]}: not the pinned {LLAMA_CPP_SDIST}")
        (staging / "SOURCE.json").write_text(json.dumps({"sdist": LLAMA_CPP_SDIST, "sha256": LLAMA_CPP_SDIST_SHA256,
                                                         "parts": list(CONVERTER_PARTS)}, indent=1) + "\n")
        if cache.exists():
            shutil.rmtree(cache)
        cache.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), str(cache))
    log(f"llama.cpp's converter ready in {cache}")
    return cache


GENERATION_TAGS = re.compile(r"\{%-?\s*(?:end)?generation\s*-?%\}")


def serving_template(template: str) -> str:
    """A chat template without the ``{% generation %}`` markers of training (llama.cpp's Jinja does not know them).

    The markers only tell transformers which tokens are the answer; removing them renders the same text.
    """
    return GENERATION_TAGS.sub("", template)


def _stage_for_gguf(merged_dir: Path, staging: Path) -> Path:
    """The merged folder as llama.cpp's converter reads it: links to the weights, the serving chat template."""
    staging.mkdir(parents=True, exist_ok=True)
    for path in merged_dir.iterdir():
        if path.is_file():
            (staging / path.name).symlink_to(path.resolve())
    template_file = merged_dir / "chat_template.jinja"
    if template_file.is_file():
        (staging / template_file.name).unlink()
        (staging / template_file.name).write_text(serving_template(template_file.read_text(encoding="utf-8")))
    config_file = merged_dir / "tokenizer_config.json"
    if config_file.is_file():
        settings = json.loads(config_file.read_text(encoding="utf-8"))
        if isinstance(settings.get("chat_template"), str):
            settings["chat_template"] = serving_template(settings["chat_template"])
            (staging / config_file.name).unlink()
            (staging / config_file.name).write_text(json.dumps(settings, indent=2))
    return staging


def to_gguf(merged_dir: str | Path, out: str | Path, outtype: str = "f16",
            log: Callable[[str], None] = print) -> Path:
    """Convert a merged model folder to one GGUF file with llama.cpp's own converter. Taught in 06_export.

    ``outtype`` is one of :data:`GGUF_TYPES` (``q8_0``: 8-bit blocks, about half of f16). The chat template goes in
    without its training markers (:func:`serving_template`). A tokenizer llama.cpp does not know (the ``cpu-tiny``
    model's own) is refused with :class:`GGUFError`. The file is written beside ``out`` and renamed when complete.
    """
    import subprocess
    import sys
    import tempfile
    import time

    merged_dir, out = Path(merged_dir), Path(out)
    if outtype not in GGUF_TYPES:
        raise GGUFError(f"outtype {outtype!r}: use one of {', '.join(GGUF_TYPES)}")
    if not (merged_dir / "config.json").is_file() or not any(merged_dir.glob("*.safetensors")):
        raise GGUFError(f"{merged_dir} is not a merged model folder (config.json and *.safetensors): merge first "
                        f"with helpers.export.merge_to_16bit")
    try:
        import sentencepiece  # noqa: F401 - the converter's Llama path tries it first
    except ImportError:
        raise GGUFError("llama.cpp's converter needs the sentencepiece package: install the course's pins "
                        "(make install, or pip install -e .)") from None
    converter = converter_dir(log)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="gguf-stage-") as tmp:
        staged = _stage_for_gguf(merged_dir, Path(tmp) / merged_dir.name)
        run = subprocess.run([sys.executable, str(converter / "convert_hf_to_gguf.py"), str(staged), "--outtype",
                              outtype, "--outfile", str(partial)], capture_output=True, text=True, cwd=converter)
    if run.returncode != 0:
        partial.unlink(missing_ok=True)
        text = run.stderr + run.stdout
        if "pre-tokenizer was not recognized" in text or "BPE pre-tokenizer" in text:
            raise GGUFError(f"llama.cpp's converter does not know {merged_dir.name}'s tokenizer (it recognises a "
                            f"tokenizer by a hash of how it splits a fixed text, and lists hub tokenizers only): the "
                            f"cpu-tiny model's own tokenizer is refused; export the cpu profile (SmolLM2) or a GPU "
                            f"profile (Qwen2.5) instead")
        last = [line for line in text.strip().splitlines() if line.strip()][-1:] or ["no output"]
        raise GGUFError(f"llama.cpp's converter failed on {merged_dir} (exit {run.returncode}): {last[0][:300]}")
    partial.replace(out)
    log(f"{out.name}: {out.stat().st_size / 2**20:.1f} MB ({outtype}) in {time.time() - started:.0f} s")
    return out


def _gguf_field(reader: Any, key: str) -> Any:
    field_ = reader.fields.get(key)
    return None if field_ is None else field_.contents()


def _llama_permute(weights: Any, n_head: int, n_head_kv: int | None = None) -> Any:
    """llama.cpp's reordering of a Llama q / k projection (rotary pairs interleaved), as its converter applies it."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def verify_gguf(gguf_path: str | Path, merged_dir: str | Path) -> VerifyReport:
    """Read a GGUF file back and check it against the merged folder it came from. Taught in 06_export.

    Named checks: ``readable`` (a whole GGUF file), ``tensor_names`` (every merged weight, under llama.cpp's names,
    and nothing else), ``shapes``, ``values`` (exactly, after the same rounding, for f32 / f16 / bf16 tensors; within
    one quantisation step for q8_0, :data:`GGUF_Q8_STEP`), ``chat_template`` (the merged folder's, without training
    markers), ``special_tokens`` (EOS and pad ids) and ``metadata`` (architecture, layers, context length).
    """
    import numpy as np
    from safetensors import safe_open

    import gguf

    gguf_path, merged_dir = Path(gguf_path), Path(merged_dir)
    report = VerifyReport(subject=f"the GGUF file {gguf_path.name}",
                          fix="Convert it again with helpers.export.to_gguf from the merged folder; a GGUF is never "
                              "edited by hand")
    try:
        reader = gguf.GGUFReader(str(gguf_path))
        tensors = {t.name: t for t in reader.tensors}
    except Exception as err:  # noqa: BLE001 - a cut-off or foreign file raises many kinds of errors
        report.add("readable", False, f"not a whole GGUF file ({type(err).__name__}: {str(err)[:120]})")
        return report
    report.add("readable", True, f"GGUF v{_gguf_field(reader, 'GGUF.version')}, {len(tensors)} tensors")
    config = json.loads((merged_dir / "config.json").read_text(encoding="utf-8"))
    arch = str(_gguf_field(reader, "general.architecture"))
    arch_id = {name: key for key, name in gguf.MODEL_ARCH_NAMES.items()}.get(arch)
    layers = int(config.get("num_hidden_layers", 0))
    expected_meta = {"general.architecture": config.get("model_type"), f"{arch}.block_count": layers,
                     f"{arch}.context_length": config.get("max_position_embeddings")}
    seen_meta = {key: _gguf_field(reader, key) for key in expected_meta}
    wrong_meta = {k: (seen_meta[k], v) for k, v in expected_meta.items() if seen_meta[k] != v}
    report.add("metadata", not wrong_meta and arch_id is not None,
               "; ".join(f"{k}: file {a!r}, merged {b!r}" for k, (a, b) in wrong_meta.items()) or
               f"{arch}, {layers} layers, context {seen_meta[f'{arch}.context_length']}")
    if arch_id is None:
        return report
    names = gguf.get_tensor_name_map(arch_id, layers)
    tied = bool(config.get("tie_word_embeddings", False))
    hf: dict[str, str] = {}
    unmapped = []
    weight_files = sorted(merged_dir.glob("*.safetensors"))
    for path in weight_files:
        with safe_open(str(path), framework="np") as weights:
            for name in weights.keys():
                if tied and name == "lm_head.weight":
                    continue
                mapped = names.get_name(name, try_suffixes=(".weight", ".bias"))
                if mapped is None:
                    unmapped.append(name)
                else:
                    hf[mapped] = name
    missing, extra = sorted(set(hf) - set(tensors)), sorted(set(tensors) - set(hf))
    report.add("tensor_names", not (missing or extra or unmapped),
               f"missing {missing[:3]}, unexpected {extra[:3]}, unknown to llama.cpp {unmapped[:3]}"
               if missing or extra or unmapped else f"all {len(hf)} merged tensors, under llama.cpp's names")
    heads, kv_heads = int(config.get("num_attention_heads", 0)), config.get("num_key_value_heads")
    bad_shapes, bad_values, worst, kinds = [], [], 0.0, set()
    for path in weight_files:
        with safe_open(str(path), framework="pt") as weights:
            for gname in sorted(set(hf) & set(tensors)):
                if hf[gname] not in weights.keys():
                    continue
                mine = weights.get_tensor(hf[gname]).float().numpy()
                if arch == "llama" and gname.endswith("attn_q.weight"):
                    mine = _llama_permute(mine, heads, heads)
                elif arch == "llama" and gname.endswith("attn_k.weight"):
                    mine = _llama_permute(mine, heads, kv_heads)
                tensor = tensors[gname]
                kind = tensor.tensor_type.name
                kinds.add(kind)
                theirs = np.asarray(gguf.quants.dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
                if theirs.shape != mine.shape:
                    theirs = theirs.reshape(mine.shape) if theirs.size == mine.size else theirs
                if theirs.shape != mine.shape:
                    bad_shapes.append(f"{gname} {tuple(theirs.shape)} vs {tuple(mine.shape)}")
                    continue
                if kind == "F16":
                    expected = mine.astype(np.float16).astype(np.float32)
                elif kind == "BF16":
                    import torch

                    expected = torch.from_numpy(mine).to(torch.bfloat16).float().numpy()
                else:
                    expected = mine
                diff = float(np.abs(theirs - expected).max()) if mine.size else 0.0
                allowed = float(np.abs(mine).max()) * GGUF_Q8_STEP if kind == "Q8_0" else 0.0
                if kind == "Q8_0" and mine.size:
                    worst = max(worst, diff / max(float(np.abs(mine).max()), 1e-30))
                if not diff <= allowed:  # NaN (a value that is not a number) fails too
                    bad_values.append(f"{gname} ({kind}): max |difference| {diff:.3g} > {allowed:.3g}")
    report.add("shapes", not bad_shapes, "; ".join(bad_shapes[:3]) or "every tensor as in the merged folder")
    exact = sorted(kinds - {"Q8_0"})
    said = ([f"{' / '.join(exact)} tensors equal the merged weights rounded to their type"] if exact else []) + (
        [f"Q8_0 tensors within one step (worst {worst:.4f} of a tensor's largest |w|, allowed {GGUF_Q8_STEP:.4f})"]
        if "Q8_0" in kinds else [])
    report.add("values", not bad_values and bool(kinds), "; ".join(bad_values[:3]) or "; ".join(said) or "no tensor")
    report.numbers["q8_worst_step_fraction"] = worst
    template_file = merged_dir / "chat_template.jinja"
    merged_template = template_file.read_text(encoding="utf-8") if template_file.is_file() else json.loads(
        (merged_dir / "tokenizer_config.json").read_text(encoding="utf-8")).get("chat_template")
    file_template = _gguf_field(reader, "tokenizer.chat_template")
    report.add("chat_template", merged_template is not None and file_template == serving_template(merged_template),
               "the merged folder's template, without training markers" if file_template is not None and
               merged_template is not None and file_template == serving_template(merged_template)
               else "missing or different from the merged folder's")
    generation = json.loads((merged_dir / "generation_config.json").read_text(encoding="utf-8")) \
        if (merged_dir / "generation_config.json").is_file() else {}
    eos = generation.get("eos_token_id", config.get("eos_token_id"))
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    pad = generation.get("pad_token_id", config.get("pad_token_id"))
    file_eos, file_pad = _gguf_field(reader, "tokenizer.ggml.eos_token_id"), \
        _gguf_field(reader, "tokenizer.ggml.padding_token_id")
    ok = file_eos in eos_ids and (pad is None or file_pad == pad)
    report.add("special_tokens", ok, f"eos {file_eos} (merged {sorted(eos_ids)}), pad {file_pad} (merged {pad})")
    return report


def gguf_answers(gguf_path: str | Path, conversations: Sequence[list[dict[str, str]]], max_new_tokens: int,
                 n_ctx: int = 2048) -> dict[str, Any]:
    """Answer conversations through llama.cpp (llama-cpp-python), greedy, with the chat template the file carries.

    Taught in 06_export. Returns ``{"outputs", "new_tokens", "seconds", "tokens_per_s"}``. Needs the llama.cpp
    runtime (``make gguf`` builds it from the pinned source distribution); :class:`GGUFError` says so when it is
    missing.
    """
    import time

    try:
        from llama_cpp import Llama
    except ImportError:
        raise GGUFError("the llama.cpp runtime is not installed: `make gguf` builds llama-cpp-python from its pinned "
                        "source distribution (a C++ compiler and cmake; minutes)") from None
    llm = Llama(model_path=str(gguf_path), n_ctx=n_ctx, seed=0, verbose=False)
    outputs, new_tokens = [], 0
    started = time.perf_counter()
    for conversation in conversations:
        reply = llm.create_chat_completion(messages=list(conversation), temperature=0.0, max_tokens=max_new_tokens)
        outputs.append(reply["choices"][0]["message"]["content"] or "")
        new_tokens += int(reply["usage"]["completion_tokens"])
    seconds = time.perf_counter() - started
    return {"outputs": outputs, "new_tokens": new_tokens, "seconds": round(seconds, 2),
            "tokens_per_s": round(new_tokens / seconds, 1) if seconds else None}


# Ollama's TEMPLATE for ChatML (Go template syntax); .System and .Prompt are Ollama's names for the two turns.
CHATML_OLLAMA = ("{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}<|im_start|>user\n"
                 "{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n")


def _gguf_token(reader: Any, token_id: int) -> str:
    tokens = reader.fields["tokenizer.ggml.tokens"]
    return bytes(tokens.parts[tokens.data[token_id]]).decode("utf-8")


def _render_jinja(template: str, messages: list[dict[str, str]]) -> str:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, add_generation_prompt=True)


def _render_ollama(template: str, system: str, prompt: str) -> str:
    """The one Go-template form :data:`CHATML_OLLAMA` uses, filled in as Ollama would."""
    text = re.sub(r"\{\{ if \.System \}\}(.*?)\{\{ end \}\}", lambda m: m.group(1) if system else "", template,
                  flags=re.S)
    return text.replace("{{ .System }}", system).replace("{{ .Prompt }}", prompt)


def ollama_modelfile(gguf_path: str | Path, out: str | Path, system: str = "") -> Path:
    """Write Ollama's ``Modelfile`` for a GGUF file, from the file's own chat template and end-of-turn token.

    Taught in 06_export. Ollama does not read the Jinja template inside the GGUF: the Modelfile restates it in Go
    template syntax, with greedy decoding and the end token as a stop. Only ChatML templates are translated (the
    ``cpu`` and GPU profiles' models); check the result with :func:`check_modelfile`.
    """
    import gguf

    gguf_path, out = Path(gguf_path), Path(out)
    reader = gguf.GGUFReader(str(gguf_path))
    template = _gguf_field(reader, "tokenizer.chat_template") or ""
    if "<|im_start|>" not in template or "<|im_end|>" not in template:
        raise GGUFError(f"{gguf_path.name}'s chat template is not ChatML: write its Modelfile TEMPLATE by hand from "
                        f"the template in the file's metadata (tokenizer.chat_template)")
    stop = _gguf_token(reader, int(_gguf_field(reader, "tokenizer.ggml.eos_token_id")))
    lines = [f"FROM ./{os.path.relpath(gguf_path, out.parent)}", f'TEMPLATE """{CHATML_OLLAMA}"""']
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += ["PARAMETER temperature 0", f'PARAMETER stop "{stop}"']
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def check_modelfile(modelfile: str | Path, gguf_path: str | Path) -> VerifyReport:
    """Check a Modelfile against its GGUF file (Ollama itself is not run): named checks ``from``, ``stop``,
    ``template`` (it renders a system + user turn as the file's Jinja template does) and ``greedy``."""
    import gguf

    modelfile, gguf_path = Path(modelfile), Path(gguf_path)
    text = modelfile.read_text(encoding="utf-8")
    report = VerifyReport(subject=f"the Modelfile {modelfile.name}",
                          fix="Write it again with helpers.export.ollama_modelfile from the GGUF file")
    source = re.search(r"^FROM (.+)$", text, flags=re.M)
    target = (modelfile.parent / source.group(1).strip()).resolve() if source else None
    report.add("from", target is not None and target == gguf_path.resolve() and target.is_file(),
               f"FROM {source.group(1).strip() if source else '(none)'}")
    reader = gguf.GGUFReader(str(gguf_path))
    stop = _gguf_token(reader, int(_gguf_field(reader, "tokenizer.ggml.eos_token_id")))
    stops = re.findall(r'^PARAMETER stop "(.*)"$', text, flags=re.M)
    report.add("stop", stop in stops, f"stops {stops}, the file's end-of-turn token {stop!r}")
    template = re.search(r'^TEMPLATE """(.*?)"""', text, flags=re.M | re.S)
    system = re.search(r'^SYSTEM """(.*?)"""', text, flags=re.M | re.S)
    system_text = system.group(1) if system else "You are a support assistant."
    user = "Hi, my order ORD-123456 arrived broken."
    jinja = _render_jinja(_gguf_field(reader, "tokenizer.chat_template"),
                          [{"role": "system", "content": system_text}, {"role": "user", "content": user}])
    rendered = _render_ollama(template.group(1), system_text, user) if template else None
    report.add("template", rendered == jinja, "renders a system and a user turn as the GGUF's Jinja template does"
               if rendered == jinja else f"renders {rendered!r:.80} instead of {jinja!r:.80}")
    report.add("greedy", bool(re.search(r"^PARAMETER temperature 0$", text, flags=re.M)), "temperature 0")
    return report
