"""Ship the fine-tuned model: adapters, a verified 16-bit merge, a model card, JSON inference, the OpenAI path, GGUF.

Taught in 06_export. Nothing runs on import: torch, transformers and peft are imported inside the functions.

* Adapters are small: :func:`adapter_files` lists what a saved adapter holds, :func:`load_adapters` puts several on
  one base (switch with ``model.set_adapter(name)``, switch off with ``with model.disable_adapter():``).
* :func:`merge_to_16bit` folds an adapter into a full-precision copy of the base (never the 4-bit one) and saves it
  with the training chat template and the end/pad ids; :func:`verify_merge` proves the merged folder behaves like
  base + adapter (:class:`VerifyReport`, one named check per way a merge goes wrong).
* :func:`model_card` writes README.md with Hub front matter and no machine paths.
* :func:`generate_json` is the serving call: tickets in, parsed and checked JSON out, one item per ticket.
* :func:`openai_training_cost` and :data:`OPENAI_CODE` are the hosted alternative.

* :func:`to_gguf` runs llama.cpp's own converter (``convert_hf_to_gguf.py`` from the pinned llama-cpp-python 0.3.36
  source distribution, :func:`converter_dir`); :func:`verify_gguf` reads the file back against the merged weights;
  :func:`gguf_answers` runs it with llama.cpp (``make gguf``); :func:`ollama_modelfile` and :func:`check_modelfile`
  write and check Ollama's Modelfile. The converter knows hub tokenizers only: the ``cpu-tiny`` model's is refused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from helpers.config import PROFILES, Profile
from helpers.evaluate import generation  # generation.generate, looked up when called: tests replace it
from helpers.models import free_memory

from helpers.config import model_cache_dir, repo_relative
from helpers.data.formats import to_openai
from helpers.data.generate import SYSTEM_PROMPT, TICKET_SCHEMA
from helpers.evaluate.constrained import constrained_generate
from helpers.evaluate.generation import generate_tokens
from helpers.models import load_model, load_tokenizer, saved_chat_template

if TYPE_CHECKING:  # heavy imports stay out of module import time
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

HALF_DTYPES = ("float16", "bfloat16")
MERGE_DTYPES = ("float32", *HALF_DTYPES)
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
CARD_NAME = "README.md"


class ExportError(ValueError):
    """An export step that cannot run or would ship something broken; the message names what, where and the fix."""


# ---------------------------------------------------------------------------------------------------- adapters


def adapter_files(adapter_dir: str | Path) -> dict[str, bytes]:
    """The files of a saved adapter (name -> bytes, top level only: no checkpoints). Taught in 06_export.

    What you ship or upload when you ship an adapter: its config and weights (megabytes, not the base's gigabytes),
    the tokenizer with the chat template it was trained with, and the run manifest.
    """
    folder = Path(adapter_dir)
    missing = [name for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS) if not (folder / name).is_file()]
    if missing:
        raise ExportError(f"{folder} is not a saved adapter ({', '.join(missing)} missing): point at the folder "
                          f"train_adapter / trainer.save_model wrote (03_qlora_training)")
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def load_adapters(base: "PreTrainedModel", adapters: dict[str, str | Path]) -> "PeftModel":
    """Several adapters on one base model, by name; the first is active. Taught in 06_export.

    ``model.set_adapter(name)`` switches between them in place (no reload of the base), and inside
    ``with model.disable_adapter():`` the model is the bare base again.
    """
    from peft import PeftModel

    if not adapters:
        raise ExportError("no adapters given: pass {name: adapter_dir}, e.g. {'tickets': artifacts / 'adapter'}")
    names = list(adapters)
    for name in names:
        adapter_files(adapters[name])  # each folder must hold an adapter: fails with its path
    model = PeftModel.from_pretrained(base, str(adapters[names[0]]), adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(str(adapters[name]), adapter_name=name)
    model.set_adapter(names[0])
    model.eval()
    return model


# ---------------------------------------------------------------------------------------------------- merge


def _base_profile(cfg_or_base: Profile | str | Path, dtype: Any = None) -> Profile:
    """The profile to load the base with: the given one, or cpu-tiny's settings for a path / hub id (fp32)."""
    if not isinstance(cfg_or_base, (Profile, str, Path)):
        kind = type(cfg_or_base).__name__
        raise ExportError(
            f"merge/verify take the profile or the base model's path, not a loaded {kind}: they load a fresh "
            f"full-precision copy, because merging into the 4-bit model you trained on rounds every merged weight "
            f"(pass cfg, or cfg.model_id)")
    cfg = cfg_or_base if isinstance(cfg_or_base, Profile) else PROFILES["cpu-tiny"].replace(model_id=str(cfg_or_base))
    name = str(dtype).replace("torch.", "") if dtype is not None else cfg.torch_dtype
    if name not in MERGE_DTYPES:
        raise ExportError(f"cannot merge in {dtype!r}: merge into a 16- or 32-bit copy of the base "
                          f"(dtype one of {', '.join(MERGE_DTYPES)}), never a 4- or 8-bit one")
    return cfg.replace(torch_dtype=name)


def _refuse_quantized_checkpoint(model_id: str) -> None:
    """A base saved already quantized (``quantization_config`` in its config.json) cannot be merged exactly."""
    from transformers import AutoConfig

    try:
        quant = getattr(AutoConfig.from_pretrained(model_id), "quantization_config", None)
    except (OSError, ValueError):
        return  # load_model reports a missing or broken base with its own message
    if quant:
        method = quant.get("quant_method", "?") if isinstance(quant, dict) else type(quant).__name__
        raise ExportError(
            f"the base {model_id!r} is saved quantized ({method}): merging into quantized weights rounds every "
            f"merged weight, so the result is not the model you evaluated. Merge into the original 16-bit "
            f"checkpoint of the same model (the one without a quantization_config)")


def load_full_base(cfg_or_base: Profile | str | Path, dtype: Any = None) -> "PreTrainedModel":
    """The base model in full precision (the profile's torch_dtype; fp32 for a path), never in 4-bit."""
    cfg = _base_profile(cfg_or_base, dtype)
    _refuse_quantized_checkpoint(cfg.model_id)
    return load_model(cfg, quantized=False)


def _serving_tokenizer(cfg_or_base: Profile | str | Path, adapter_dir: Path) -> "PreTrainedTokenizerBase":
    """The tokenizer saved with the adapter (its training chat template); the base's when the adapter has none."""
    from transformers import AutoTokenizer

    if not (adapter_dir / "tokenizer_config.json").is_file():
        return load_tokenizer(_base_profile(cfg_or_base).model_id, log=lambda _m: None)
    try:  # saved by train_adapter from load_tokenizer: pad token and template are already the course's
        return AutoTokenizer.from_pretrained(adapter_dir)
    except Exception as err:  # noqa: BLE001 - OSError, ValueError, the tokenizers library's own errors
        raise ExportError(f"cannot load the tokenizer saved in {adapter_dir} ({type(err).__name__}: {err}): save "
                          f"it again with tokenizer.save_pretrained(adapter_dir)") from None


def _with_id(value: Any, token_id: int) -> Any:
    """``value`` (an id, a list of ids or None) that includes ``token_id``."""
    if value is None:
        return token_id
    ids = list(value) if isinstance(value, (list, tuple)) else [value]
    return value if token_id in ids else [token_id, *ids]  # the base's own end ids keep working too


def _ids(value: Any) -> list[int]:
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [] if value is None else [int(value)]


def set_end_ids(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase") -> None:
    """Make the model's config and generation config end on the tokenizer's EOS and pad with its pad token.

    A server (vLLM, TGI, llama.cpp) reads these files, not the course's code: an EOS id missing there is a model
    that never stops.
    """
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    if eos is None:
        raise ExportError("the tokenizer has no eos_token: load it with helpers.models.load_tokenizer")
    text_config = model.config.get_text_config()
    for config in {id(c): c for c in (model.config, text_config)}.values():
        config.eos_token_id = _with_id(config.eos_token_id, eos)
        if pad is not None:
            config.pad_token_id = pad
    model.generation_config.eos_token_id = _with_id(model.generation_config.eos_token_id, eos)
    if pad is not None:
        model.generation_config.pad_token_id = pad


def merge_to_16bit(cfg_or_base_path: Profile | str | Path, adapter_dir: str | Path, out_dir: str | Path,
                   dtype: Any = None) -> Path:
    """Fold a LoRA adapter into a full-precision copy of the base and save a standalone model. Taught in 06_export.

    The base is loaded in the profile's ``torch_dtype`` (fp32 on the CPU, fp16 on a T4, bf16 on an A100/H100) or in
    ``dtype``, never in 4-bit: merging into NF4 weights would add a rounding error to every merged weight. Saved in
    ``out_dir``: the weights (safetensors), the adapter's tokenizer with the chat template it was trained with, and
    config / generation config whose EOS and pad ids are the tokenizer's. Returns ``out_dir``.
    """
    from peft import PeftModel

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    adapter_files(adapter_dir)
    if out_dir.resolve() in (adapter_dir.resolve(), Path(_base_profile(cfg_or_base_path).model_id).resolve()):
        raise ExportError(f"out_dir {out_dir} is the adapter or base folder: write the merged model to a new folder")
    tokenizer = _serving_tokenizer(cfg_or_base_path, adapter_dir)
    base = load_full_base(cfg_or_base_path, dtype)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    set_end_ids(merged, tokenizer)
    merged.config.name_or_path = out_dir.name  # not this machine's path
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    del base, merged
    free_memory()  # the full-precision copy goes now, not at some later garbage collection
    return out_dir


# ---------------------------------------------------------------------------------------------------- verify

# Largest |logit difference| allowed between base + adapter and the merged model, as a fraction of the largest
# |logit|. Unmerged, a layer computes x @ W + (x @ A) @ B * s; merged, x @ (W + B @ A * s): the same sum in another
# order, so in fp32 (eps 1.2e-7) they differ by rounding only. Measured on the tests' 2-layer model (an adapter that
# moves the logits by more than their own scale): 4e-6 of the scale in fp32, so 1e-4 leaves a 25x margin for deeper
# models and other kernels, while the wrong adapter differs by 1.6 (16 000x the tolerance). Stored in fp16 (eps
# 9.8e-4) or bf16 (eps 7.8e-3), every merged weight is rounded once more: measured 5e-3 (fp16) and 6e-2 (bf16) on the
# same model, hence 1e-2 and 1e-1; the same tolerance decides which greedy divergences are near-ties.
TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 1e-1}


@dataclass
class VerifyReport:
    """The named checks of a merge: ``checks[name] = (ok, detail)``, plus the measured numbers."""

    checks: dict[str, tuple[bool, str]] = field(default_factory=dict)
    numbers: dict[str, float] = field(default_factory=dict)
    subject: str = "the merged model"  # what was verified, and how to make it again (the error's last sentence)
    fix: str = ("Merge again with helpers.export.merge_to_16bit from the adapter you evaluated, and do not edit the "
                "merged folder's tokenizer or config files by hand")

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return all(ok for ok, _ in self.checks.values())

    @property
    def failed(self) -> list[str]:
        """The names of the failed checks."""
        return [name for name, (ok, _) in self.checks.items() if not ok]

    def add(self, name: str, ok: bool, detail: str) -> None:
        """Record one check."""
        self.checks[name] = (bool(ok), detail)

    def raise_if_failed(self) -> "VerifyReport":
        """Raise :class:`ExportError` naming every failed check and what it saw; return self when all passed."""
        if self.failed:
            lines = "; ".join(f"{name}: {self.checks[name][1]}" for name in self.failed)
            raise ExportError(f"{self.subject} failed {len(self.failed)} of {len(self.checks)} checks: {lines}. "
                              f"{self.fix}")
        return self

    def __str__(self) -> str:
        return "\n".join(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}" for name, (ok, detail) in self.checks.items())


def _conversations(items: Sequence[str | list[dict[str, str]]]) -> list[list[dict[str, str]]]:
    """Tickets (strings) as the course's chat prompt (system prompt + ticket); conversations pass through."""
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            out.append([{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": item}])
        elif isinstance(item, list) and all(isinstance(m, dict) and "content" in m for m in item):
            out.append([dict(m) for m in item])
        else:
            raise ExportError(f"item {i} is a {type(item).__name__}: pass ticket strings or conversations "
                              f"(lists of {{'role', 'content'}} messages)")
    return out


def _sequence_logits(model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]],
                     answers: list[list[int]]) -> list[tuple[int, Any]]:
    """(prompt length, logits) of each prompt followed by a given answer: one unpadded forward pass per row."""
    import torch

    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for conversation, answer in zip(conversations, answers):
            text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
            prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt + list(answer)], device=device)
            out.append((len(prompt), model(input_ids=ids).logits[0].float().cpu()))
    return out


def _behaviour(model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]], max_new_tokens: int,
               answers: list[list[int]] | None = None) -> tuple[list[tuple[int, Any]], list[list[int]]]:
    """Greedy answer tokens (the course's decoding) of one model, and its logits over prompt + ``answers``
    (default: its own answers), so two models can be compared on the same token sequences."""
    model.eval()
    tokens = [t for t, _ in generate_tokens(model, tokenizer, conversations, max_new_tokens, progress=False)]
    return _sequence_logits(model, tokenizer, conversations, tokens if answers is None else answers), tokens


def _greedy_check(ref_tokens: list[list[int]], new_tokens: list[list[int]], ref_logits: list[tuple[int, Any]],
                  eos: int, tie: float, decode: Callable[[list[int]], str]) -> tuple[bool, str]:
    """Identical greedy answers, except where base + adapter itself was within ``tie`` of choosing the other token.

    At the first token where the answers part, the reference's logit margin between its token and the merged
    model's token is read; a margin below the logit tolerance is a near-tie that rounding may flip (16-bit
    merges), a larger one is a real difference.
    """
    identical = ties = 0
    first_bad = None
    for row, (ref, new) in enumerate(zip(ref_tokens, new_tokens)):
        if ref == new:
            identical += 1
            continue
        j = next((k for k, (a, b) in enumerate(zip(ref, new)) if a != b), min(len(ref), len(new)))
        prompt_len, logits = ref_logits[row]
        step = logits[prompt_len - 1 + j]  # the logits that chose answer token j
        a, b = (ref[j] if j < len(ref) else eos), (new[j] if j < len(new) else eos)
        margin = float(step[a] - step[b])
        if margin <= tie:
            ties += 1
        elif first_bad is None:
            first_bad = (f"; prompt {row} parts at token {j} with margin {margin:.3g} > {tie:.3g}: base + adapter "
                         f"wrote {decode(ref)[:60]!r}, merged {decode(new)[:60]!r}")
    detail = f"{identical} of {len(ref_tokens)} answers identical"
    if ties:
        detail += f", {ties} part at a near-tie (margin <= {tie:.3g})"
    return first_bad is None, detail + (first_bad or "")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def verify_merge(cfg_or_base_path: Profile | str | Path, adapter_dir: str | Path, merged_dir: str | Path,
                 prompts: Sequence[str | list[dict[str, str]]], tolerance: float | None = None,
                 max_new_tokens: int = 32, dtype: Any = None) -> VerifyReport:
    """Check that a merged folder behaves like base + adapter and serves the same way. Taught in 06_export.

    ``prompts`` are tickets or conversations (a handful is enough: 4-16). The checks:

    * ``greedy_outputs_identical`` — the course's greedy decoding gives the same answer tokens, prompt by prompt,
      except where base + adapter itself had a near-tie (two tokens within the logit tolerance) at the parting token;
    * ``max_logit_diff`` — the largest |logit difference| over every prompt and answer token, divided by the largest
      |logit|, is at most ``tolerance`` (default :data:`TOLERANCE` for the dtype: 1e-4 in fp32, see its comment);
    * ``chat_template_preserved`` — the merged folder's chat template is the adapter's (the one trained with);
    * ``eos_pad_preserved`` — config.json, generation_config.json and the tokenizer of the merged folder end on the
      adapter tokenizer's EOS and pad with its pad token;
    * ``generation_config_preserved`` — every other generation default equals the base's (no sampling sneaked in).

    Both models run with the adapter's tokenizer, so the first two checks compare weights only. The reference is
    computed first and freed before the merged model loads (peak memory: one model).
    """

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    adapter_dir, merged_dir = Path(adapter_dir), Path(merged_dir)
    if not (merged_dir / "config.json").is_file():
        raise ExportError(f"no merged model in {merged_dir} (config.json missing): run merge_to_16bit first")
    cfg = _base_profile(cfg_or_base_path, dtype)
    tolerance = TOLERANCE[cfg.torch_dtype] if tolerance is None else tolerance
    conversations = _conversations(prompts)
    if not conversations:
        raise ExportError("no prompts: pass a few held-out tickets (4-16) to compare the two models on")
    tokenizer = _serving_tokenizer(cfg_or_base_path, adapter_dir)
    reference = PeftModel.from_pretrained(load_full_base(cfg), str(adapter_dir))
    base_generation = reference.generation_config.to_diff_dict()
    ref_logits, ref_tokens = _behaviour(reference, tokenizer, conversations, max_new_tokens)
    del reference
    free_memory()  # one model at a time: the reference goes before the merged copy loads

    import torch

    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=getattr(torch, cfg.torch_dtype))
    if cfg.device == "cuda":
        merged = merged.to("cuda")
    new_logits, new_tokens = _behaviour(merged, tokenizer, conversations, max_new_tokens, answers=ref_tokens)
    del merged
    free_memory()

    report = VerifyReport()
    scale = max(float(logits.abs().max()) for _, logits in ref_logits)
    diff = max(float((a - b).abs().max()) if a.shape == b.shape else float("inf")
               for (_, a), (_, b) in zip(ref_logits, new_logits))
    relative = diff / max(scale, 1e-12)
    report.numbers.update(max_logit_diff=diff, logit_scale=scale, relative_logit_diff=relative, tolerance=tolerance)
    ok, detail = _greedy_check(ref_tokens, new_tokens, ref_logits, tokenizer.eos_token_id, tolerance * scale,
                               tokenizer.decode)
    report.add("greedy_outputs_identical", ok, detail)
    report.add("max_logit_diff", relative <= tolerance,
               f"max |diff| {diff:.3g} = {relative:.3g} of the logit scale {scale:.3g} (tolerance {tolerance:g}, "
               f"{cfg.torch_dtype}; over every prompt and answer token)")

    expected_template = saved_chat_template(adapter_dir) or tokenizer.chat_template
    merged_template = saved_chat_template(merged_dir)
    report.add("chat_template_preserved", bool(merged_template) and merged_template == expected_template,
               "identical to the adapter's" if merged_template == expected_template else
               "missing in the merged folder" if not merged_template else "differs from the adapter's")

    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    problems = []
    config = _read_json(merged_dir / "config.json") or {}
    generation = _read_json(merged_dir / "generation_config.json")
    if generation is None:
        problems.append("generation_config.json missing")
    for name, values in (("config.json", config), ("generation_config.json", generation or {})):
        if eos not in _ids(values.get("eos_token_id")):
            problems.append(f"{name} eos_token_id {values.get('eos_token_id')} lacks {eos}")
        if pad is not None and values.get("pad_token_id") != pad:
            problems.append(f"{name} pad_token_id {values.get('pad_token_id')} != {pad}")
    try:
        merged_tok = AutoTokenizer.from_pretrained(merged_dir)
        if (merged_tok.eos_token_id, merged_tok.pad_token_id) != (eos, pad):
            problems.append(f"tokenizer eos/pad ids {merged_tok.eos_token_id}/{merged_tok.pad_token_id} != {eos}/{pad}")
    except Exception as err:  # noqa: BLE001 - a deleted or broken tokenizer file, whatever tokenizers raises
        problems.append(f"the merged tokenizer does not load ({type(err).__name__})")
    report.add("eos_pad_preserved", not problems,
               "; ".join(problems) or f"eos {eos} and pad {pad} in config, generation config and tokenizer")

    if generation is None:
        report.add("generation_config_preserved", False, "generation_config.json missing in the merged folder")
    else:
        saved = GenerationConfig.from_dict(generation).to_diff_dict()
        ignore = {"transformers_version", "eos_token_id", "pad_token_id"}  # end ids: eos_pad_preserved
        changed = sorted(k for k in (set(saved) | set(base_generation)) - ignore
                         if saved.get(k) != base_generation.get(k))
        report.add("generation_config_preserved", not changed,
                   "same defaults as the base" if not changed else
                   "changed: " + ", ".join(f"{k} {base_generation.get(k)!r} -> {saved.get(k)!r}" for k in changed))
    return report


# ---------------------------------------------------------------------------------------------------- model card

# A slash that starts a path (not inside a word, a URL or a relative path), then at least one folder.
ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])(?:/|[A-Za-z]:\\)[\w.+@-]+[/\\]")


def portable_name(value: Any) -> str:
    """A path or model id as a card may print it: repo-relative, a hub id as is, another machine path by its name."""
    text = str(repo_relative(str(value)))
    if text.startswith(("~", "/")) or re.match(r"[A-Za-z]:\\", text) or ABSOLUTE_PATH.search(text):
        return Path(text.replace("\\", "/")).name or "local"
    return text


def _card_front_matter(base_model: str, library: str, license: str, datasets: Sequence[str],
                       metrics: dict[str, Any]) -> str:
    from huggingface_hub import ModelCardData

    tags = ["lora", "qlora", "sft", "trl", "json-extraction", "support-tickets", "course"]
    data = ModelCardData(base_model=base_model, library_name=library, license=license, tags=tags,
                         datasets=list(datasets) or None, metrics=sorted(metrics) or None,
                         pipeline_tag="text-generation")
    return f"---\n{data.to_yaml()}\n---\n"


def _metric_table(metrics: dict[str, Any]) -> list[str]:
    """Markdown rows: one per metric; a metric given as {column: value} gets one column each (e.g. tuned, majority)."""
    columns: list[str] = []
    for value in metrics.values():
        for key in value if isinstance(value, dict) else ["value"]:
            columns += [key] if key not in columns else []
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else "" if v is None else str(v)  # noqa: E731
    rows = [f"| metric | {' | '.join(columns)} |", "|---" * (len(columns) + 1) + "|"]
    for name, value in metrics.items():
        cells = value if isinstance(value, dict) else {"value": value}
        rows.append(f"| {name} | {' | '.join(fmt(cells.get(c)) for c in columns)} |")
    return rows


def _run_facts(manifest: dict[str, Any]) -> list[str]:
    """The run manifest's key facts as markdown bullets (profile, data, adapter, steps, losses, versions)."""
    settings = manifest.get("profile_settings") or {}
    configs = manifest.get("configs") or {}
    lora, sft, bnb = configs.get("lora") or {}, configs.get("sft") or {}, configs.get("bnb")
    metrics = manifest.get("metrics") or {}
    versions = manifest.get("versions") or {}
    gpu = (manifest.get("hardware") or {}).get("gpu")
    facts = [
        f"profile `{manifest.get('profile')}`, seed {manifest.get('seed')}, "
        f"{manifest.get('wall_time_s')} s on {gpu['name'] if gpu else 'CPU'}",
        f"method: {'QLoRA (4-bit NF4 base)' if bnb else 'LoRA'}, rank {lora.get('r')}, alpha {lora.get('lora_alpha')}, "
        f"dropout {lora.get('lora_dropout')}, target modules {lora.get('target_modules')}",
        f"{metrics.get('global_step')} optimizer steps of batch {settings.get('per_device_batch_size')} x "
        f"{settings.get('gradient_accumulation_steps')}, learning rate {sft.get('learning_rate', settings.get('learning_rate'))}, "
        f"max length {sft.get('max_length', settings.get('max_seq_length'))}, assistant-only loss "
        f"{sft.get('assistant_only_loss')}",
        f"final training loss {metrics.get('final_train_loss')}, best validation loss {metrics.get('best_eval_loss')}",
        "libraries: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v),
    ]
    decoding = manifest.get("decoding")
    if decoding:
        facts.append("decoding: " + ", ".join(f"{k}={v}" for k, v in decoding.items()))
    return [f"- {fact}" for fact in facts]


def _data_facts(manifest: dict[str, Any]) -> list[str]:
    validation = manifest.get("validation") or {}
    lines = []
    for split in ("train", "validation"):
        info = validation.get(split)
        if info:
            lines.append(f"- {split}: {info.get('rows')} rows, {info.get('mean_tokens', 0):.0f} tokens on average "
                         f"({info.get('mean_trained_tokens', 0):.0f} trained: the assistant's answer), "
                         f"{info.get('truncated')} truncated")
    for path, info in (manifest.get("data_files") or {}).items():
        digest = (info or {}).get("sha256")
        lines.append(f"- file `{portable_name(path)}`" + (f", sha256 `{digest[:16]}...`" if digest else ""))
    return lines or ["- not recorded (no run manifest)"]


def model_card(manifest: dict[str, Any], metrics: dict[str, Any], base_model: str, out_dir: str | Path,
               license: str = "apache-2.0", datasets: Sequence[str] = (), limits: Sequence[str] = ()) -> Path:
    """Write ``README.md`` (Hub front matter, intended use, limits, data, run facts, metrics). Taught in 06_export.

    ``out_dir`` is an adapter folder (``library_name: peft``) or a merged model (``transformers``); ``manifest`` is
    its ``run_manifest.json``; ``metrics`` maps a metric to a value or to ``{column: value}`` (tuned, base,
    majority answer...). ``limits`` adds what your own evaluation found. No absolute path of this machine is
    written: paths are repo-relative, other local paths shown by their folder name. Returns the card's path.
    """
    out_dir = Path(out_dir)
    if (out_dir / ADAPTER_CONFIG).is_file():
        library = "peft"
    elif (out_dir / "config.json").is_file():
        library = "transformers"
    else:
        raise ExportError(f"{out_dir} holds neither an adapter ({ADAPTER_CONFIG}) nor a model (config.json): write "
                          f"the card into the folder you ship")
    base = portable_name(base_model)
    title = portable_name(out_dir.resolve())
    how = (["```python", "from peft import PeftModel", "from transformers import AutoModelForCausalLM, AutoTokenizer",
            f'base = AutoModelForCausalLM.from_pretrained("{base}")', f'model = PeftModel.from_pretrained(base, "{title}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{title}")  # the chat template the adapter was trained with',
            "```"] if library == "peft" else
           ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
            f'model = AutoModelForCausalLM.from_pretrained("{title}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{title}")  # the training chat template', "```"])
    lines = [
        f"# {title}", "",
        f"`{base}` fine-tuned to turn customer support tickets into JSON (summary, category, product, order_id, "
        f"priority), as {'a LoRA adapter' if library == 'peft' else 'a merged, standalone model'}.", "",
        "## Intended use", "",
        "Extraction of the five fields from English support tickets of the course's fictional shop, with the system "
        "prompt the model was trained with (`helpers.data.generate.SYSTEM_PROMPT`) and greedy decoding. A teaching "
        "artifact of the fine-tuning course: not for decisions about real customers.", "",
        "## Limits", "",
        "- Trained on synthetic tickets generated by the course (one shop, fourteen products, English): other shops, "
        "products or languages are out of distribution.",
        "- Valid JSON is learned, not guaranteed: parse and validate every answer (`helpers.export.generate_json`), "
        "or decode with the JSON schema as a constraint.",
        "- A valid answer can still be wrong (a category, an order id the ticket never named): check the metrics "
        "below against the majority-answer baseline before relying on a field.",
        *[f"- {limit}" for limit in limits], "",
        "## Training data", "", *_data_facts(manifest), "",
        "## Training run", "", *_run_facts(manifest), "",
        "## Evaluation (held-out test split)", "", *(_metric_table(metrics) if metrics else ["not measured"]), "",
        "## How to use", "", *how, "",
    ]
    text = _card_front_matter(base, library, license, datasets, metrics) + "\n".join(lines)
    leak = ABSOLUTE_PATH.search(text)
    if leak:
        raise ExportError(f"the model card would contain a machine path ({text[leak.start():leak.start() + 60]!r}): "
                          f"pass repo-relative paths or hub ids")
    path = out_dir / CARD_NAME
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------- inference


def generate_json(model: Any, tokenizer: Any, tickets: Sequence[str], max_new_tokens: int,
                  schema: dict[str, Any] | None = None, batch_size: int = 16) -> list[dict[str, Any]]:
    """Tickets in, one ``{"ok", "value", "error", "raw"}`` per ticket out, in order. Taught in 06_export.

    The prompt is the course's (system prompt + ticket, the tokenizer's chat template) and the decoding its greedy
    :data:`helpers.evaluate.DECODING`. With ``schema`` the answers are decoded under that JSON Schema
    (:func:`helpers.evaluate.constrained_generate`). Every answer is parsed and validated against ``schema`` (default:
    the ticket schema): ``ok`` is True only for a JSON object that passes; otherwise ``value`` is None and ``error``
    says why (not JSON, a schema violation, cut at ``max_new_tokens``). ``raw`` is the text the model wrote.
    """
    from jsonschema import Draft202012Validator

    if isinstance(tickets, str) or not all(isinstance(t, str) for t in tickets):
        raise ExportError("tickets must be a list of strings (the ticket texts)")
    conversations = _conversations(list(tickets))
    if schema is None:
        raws, truncated = generation.generate(model, tokenizer, conversations, max_new_tokens, batch_size, progress=False), []
    else:
        raws = constrained_generate(model, tokenizer, conversations, schema, max_new_tokens, batch_size,
                                    progress=False, on_truncated="ignore")
        truncated = raws.truncated
    validator = Draft202012Validator(schema or TICKET_SCHEMA)
    items = []
    for i, raw in enumerate(raws):
        value, error = None, None
        try:
            parsed = json.loads(raw)
        except ValueError as err:
            error = f"not JSON ({err})"
        else:
            problems = sorted(e.message for e in validator.iter_errors(parsed))
            if not isinstance(parsed, dict):
                error = f"a JSON {type(parsed).__name__}, not an object"
            elif problems:
                error = "schema: " + "; ".join(problems[:3])
            else:
                value = parsed
        if i in truncated:
            error = f"cut at max_new_tokens={max_new_tokens} before the JSON was complete; {error}"
        items.append({"ok": value is not None, "value": value, "error": error, "raw": raw})
    return items


# ---------------------------------------------------------------------------------------------------- OpenAI

# OpenAI's documented way to count a chat row (the cookbook's num_tokens_from_messages): 3 tokens of framing per
# message, 1 for the role, the content's tokens, and 3 that prime the reply. Its tokenizer is not ours.
TOKENS_PER_MESSAGE, TOKENS_PER_ROW = 4, 3

# The client calls notebook 06 shows (openai 3.57; a test checks every keyword against the installed client's
# signatures). Not run in the course: it needs an API key and is billed. UPPER_SNAKE names are notebook parameters.
OPENAI_CODE = '''\
from openai import OpenAI

client = OpenAI()  # reads OPENAI_API_KEY from the environment
train_file = client.files.create(file=open(OPENAI_TRAIN_FILE, "rb"), purpose="fine-tune")
validation_file = client.files.create(file=open(OPENAI_VALIDATION_FILE, "rb"), purpose="fine-tune")
job = client.fine_tuning.jobs.create(
    training_file=train_file.id,
    validation_file=validation_file.id,
    model=OPENAI_BASE_MODEL,
    suffix="support-tickets",
    seed=SEED,
    method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": OPENAI_EPOCHS}}},
)
job = client.fine_tuning.jobs.retrieve(job.id)  # status: validating_files, queued, running, succeeded, failed
events = client.fine_tuning.jobs.list_events(fine_tuning_job_id=job.id, limit=20)
answer = client.chat.completions.create(
    model=job.fine_tuned_model,  # "ft:<base model>:<org>:support-tickets:<id>" once the job succeeded
    messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": TICKET}],
    temperature=0,
)
print(answer.choices[0].message.content)
'''


def _token_counter(tokenizer_or_counter: Any) -> Callable[[str], int]:
    if hasattr(tokenizer_or_counter, "encode"):
        return lambda text: len(tokenizer_or_counter.encode(text, add_special_tokens=False))
    if callable(tokenizer_or_counter):
        return lambda text: int(tokenizer_or_counter(text))
    raise ExportError("pass a tokenizer (with .encode) or a function text -> number of tokens, e.g. "
                      "tiktoken.encoding_for_model(model).encode wrapped in len")


def openai_training_cost(rows: Iterable[dict[str, Any]], tokenizer_or_counter: Any, epochs: int,
                         price_per_million: float, price_date: str) -> dict[str, Any]:
    """Estimated tokens and price of an OpenAI fine-tuning job on ``rows``. Taught in 06_export.

    OpenAI bills the tokens of its own tokenizer, times the epochs; this counts them with ``tokenizer_or_counter``
    (a tokenizer, or a function text -> count such as ``len(tiktoken...encode(text))``) plus OpenAI's per-message
    framing (:data:`TOKENS_PER_MESSAGE`, :data:`TOKENS_PER_ROW`), so it is an estimate: another tokenizer counts
    another number (the tiny model's 4 k-token vocabulary counts more tokens than OpenAI's 200 k). Prices change:
    ``price_per_million`` is USD per million training tokens read from OpenAI's pricing page on ``price_date``.
    """
    if epochs < 1 or price_per_million < 0:
        raise ExportError(f"epochs={epochs} must be >= 1 and price_per_million={price_per_million} >= 0")
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(price_date)):
        raise ExportError(f"price_date={price_date!r}: give the date you read the price, as YYYY-MM-DD")
    count = _token_counter(tokenizer_or_counter)
    n_rows = tokens = longest = 0
    for row in rows:
        messages = to_openai(row)["messages"]
        row_tokens = TOKENS_PER_ROW + sum(TOKENS_PER_MESSAGE + count(m["content"]) for m in messages)
        n_rows, tokens, longest = n_rows + 1, tokens + row_tokens, max(longest, row_tokens)
    if not n_rows:
        raise ExportError("no rows: pass the training rows (e.g. load_split('train'))")
    billed = tokens * epochs
    return {"rows": n_rows, "tokens_per_epoch": tokens, "longest_row_tokens": longest, "epochs": epochs,
            "billed_tokens": billed, "price_per_million": price_per_million, "price_date": str(price_date),
            "cost_usd": round(billed * price_per_million / 1e6, 4),
            "note": "estimate: OpenAI counts with its own tokenizer"}


# ---------------------------------------------------------------------------------------------------- GGUF

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
