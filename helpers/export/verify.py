"""Proof that a merged folder behaves like base + adapter: :func:`verify_merge` and its :class:`VerifyReport`.

06_export runs it after every merge: one named check per way a merge goes wrong (missing files, another chat
template, end ids, logits beyond the dtype's tolerance, greedy answers that differ).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from helpers.config import Profile
from helpers.data.generate import SYSTEM_PROMPT
from helpers.evaluate.generation import generate_tokens
from helpers.export.merge import ExportError, _base_profile, _ids, _serving_tokenizer, load_full_base
from helpers.models import free_memory, saved_chat_template

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
