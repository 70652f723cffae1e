"""Prompts and references from chat rows, and batched greedy generation. Taught in 04_evaluation.

The decoding settings (:data:`DECODING`) are the course's one way of generating answers: 01, 03 and 04 use them.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from helpers.data.rows import answer_of, ticket_text
from helpers.evaluate.common import EvaluationError


# ---------------------------------------------------------------------------------------------------- rows


def conversations_from_rows(rows: Sequence[dict[str, Any]]) -> list[list[dict[str, str]]]:
    """The prompt part of each chat row (the final assistant turn dropped). Taught in 04_evaluation."""
    conversations = []
    for i, row in enumerate(rows):
        messages = row.get("messages") if isinstance(row, dict) else None
        if not messages:
            raise EvaluationError(f"row {i} has no 'messages' list: pass chat rows like data/tickets/test.jsonl")
        if messages[-1].get("role") == "assistant":
            messages = messages[:-1]
        conversations.append([dict(m) for m in messages])
    return conversations


def references_from_rows(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The reference answer (final assistant turn, a JSON string) of each chat row. Taught in 04_evaluation."""
    references = []
    for i, row in enumerate(rows):
        answer = answer_of(row) if isinstance(row, dict) else None
        if answer is None:
            raise EvaluationError(f"row {i} does not end with an assistant turn: it has no reference answer")
        references.append(answer)
    return references


def tickets_from_rows(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The ticket text (last user turn) of each chat row. Taught in 04_evaluation."""
    return [ticket_text({"messages": conversation}) for conversation in conversations_from_rows(rows)]


# ---------------------------------------------------------------------------------------------------- generation


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every id that ends an answer: the tokenizer's EOS plus the model's generation-config EOS ids."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos]:
        if value is not None and int(value) not in ids:
            ids.append(int(value))
    if not ids:
        raise EvaluationError("the tokenizer has no eos_token: set tokenizer.eos_token to the end-of-turn token")
    return ids


# Plain greedy decoding, every setting spelled out: a hub model's generation_config can carry sampling defaults
# (Qwen2.5: temperature 0.7, top_p 0.8, top_k 20, repetition_penalty 1.05-1.1) that generate() would otherwise apply,
# and a repetition penalty makes copying an order id from the ticket *less* likely. The values are transformers'
# neutral defaults (unused without sampling, so no warning). Recorded in the run manifest and the course report.
DECODING: dict[str, Any] = {"do_sample": False, "num_beams": 1, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
                            "temperature": 1.0, "top_p": 1.0, "top_k": 50}


def decoding_kwargs(model: Any, tokenizer: Any, max_new_tokens: int) -> dict[str, Any]:
    """The ``generate()`` arguments of the course's decoding: :data:`DECODING`, the cap, every EOS id, the pad id."""
    eos_ids = _eos_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    return {**DECODING, "max_new_tokens": max_new_tokens, "eos_token_id": eos_ids, "pad_token_id": pad_id,
            "use_cache": True}


# Answers per generation batch when the caller names none. 16 suits a GPU's memory and the fp32 CPU models. On a CPU
# that computes in bf16 (the cpu profile) a decoding step costs little more for 48 rows than for 16:
# bench/bench_generate_batch.py measured the larger batches faster on the 2-core course machine (bench/results.md).
BATCH_SIZE = 16
CPU_BF16_BATCH_SIZE = 48


def default_batch_size(model: Any, n_rows: int) -> int:
    """The batch size ``generate`` uses when given none. Taught in 04_evaluation.

    :data:`BATCH_SIZE` (16), except for a model on the CPU that computes in bf16 (a 4-bit base's compute dtype, else
    its weights' dtype): there the rows are split into equal batches of at most :data:`CPU_BF16_BATCH_SIZE` (50 rows:
    two of 25, not 48 and a batch of 2 that takes nearly as long).
    """
    import math

    import torch

    if next(model.parameters()).device.type != "cpu":
        return BATCH_SIZE
    quant = getattr(getattr(model, "config", None), "quantization_config", None)
    compute = (quant.get("bnb_4bit_compute_dtype") if isinstance(quant, dict)
               else getattr(quant, "bnb_4bit_compute_dtype", None)) if quant is not None else None
    dtype = compute if compute is not None else getattr(model, "dtype", None)
    if dtype not in (torch.bfloat16, "bfloat16", "torch.bfloat16"):
        return BATCH_SIZE
    batches = max(1, math.ceil(n_rows / CPU_BF16_BATCH_SIZE))
    return max(1, math.ceil(n_rows / batches))


def generate_tokens(
    model: Any,
    tokenizer: Any,
    conversations: list[list[dict[str, str]]],
    max_new_tokens: int,
    batch_size: int | None = None,
    progress: bool = True,
    processor: Callable[[int], Any] | None = None,
    desc: str = "generate",
    sampling: dict[str, Any] | None = None,
) -> list[tuple[list[int], bool]]:
    """The batched greedy loop behind :func:`generate` (and ``constrained_generate``): per conversation, in input
    order, the new token ids up to the first end token and whether one was reached. ``processor(n_rows)``, if given,
    returns a logits processor for each batch; ``sampling`` (e.g. ``{"do_sample": True, "temperature": 0.8}``)
    replaces greedy decoding's settings. ``batch_size=None``: :func:`default_batch_size`."""
    import torch
    from tqdm.auto import tqdm

    batch_size = default_batch_size(model, len(conversations)) if batch_size is None else batch_size
    settings = decoding_kwargs(model, tokenizer, max_new_tokens)  # greedy, no penalties, every EOS id
    settings.update(sampling or {})
    eos_ids = settings["eos_token_id"]
    prompts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))  # longest first: similar lengths per batch
    results: list[tuple[list[int], bool]] = [([], False)] * len(encoded)
    config = model.config
    saved = (tokenizer.padding_side, config.use_cache, model.training)
    tokenizer.padding_side = "left"  # decoder-only models continue from the right end of every row
    config.use_cache = True  # gradient checkpointing switches the KV cache off; generation needs it back
    model.eval()
    device = next(model.parameters()).device
    try:
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        for batch in tqdm(batches, desc=desc, disable=not progress):
            inputs = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt").to(device)
            extra = {"logits_processor": [processor(len(batch))]} if processor else {}
            with torch.no_grad():
                out = model.generate(**inputs, **settings, **extra)
            for row, i in zip(out[:, inputs["input_ids"].shape[1]:].tolist(), batch):
                stop = next((j for j, t in enumerate(row) if t in eos_ids), None)  # cut at the first EOS
                results[i] = (row[:stop], stop is not None)
    finally:
        tokenizer.padding_side, config.use_cache = saved[0], saved[1]
        model.train(saved[2])
    return results


def generate(
    model: Any,
    tokenizer: Any,
    conversations: list[list[dict[str, str]]],
    max_new_tokens: int,
    batch_size: int | None = None,
    progress: bool = True,
    sampling: dict[str, Any] | None = None,
) -> list[str]:
    """Batched greedy answers to chat prompts, in input order, new text only. Taught in 04_evaluation.

    ``batch_size=None``: 16, or up to 48 for a model on a CPU that computes in bf16 (:func:`default_batch_size`).
    ``sampling`` (``{"do_sample": True, "temperature": 0.8}``) samples instead: how GRPO explores (07).
    """
    if max_new_tokens < 1 or (batch_size is not None and batch_size < 1):
        raise EvaluationError(f"max_new_tokens={max_new_tokens} and batch_size={batch_size} must both be >= 1")
    if not getattr(tokenizer, "chat_template", None):
        raise EvaluationError("the tokenizer has no chat_template: load it with helpers.models.load_tokenizer(cfg)")
    rows = generate_tokens(model, tokenizer, conversations, max_new_tokens, batch_size, progress, sampling=sampling)
    return [tokenizer.decode(tokens, skip_special_tokens=True).strip() for tokens, _ in rows]
