"""Canaries: general-capability checks before and after fine-tuning (forgetting). Taught in 04_evaluation."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from helpers.evaluate.common import EvaluationError
from helpers.evaluate.forgetting import text_nll
from helpers.evaluate.generation import decoding_kwargs, generate

if TYPE_CHECKING:  # heavy imports stay out of module import time
    import pandas as pd


@dataclass(frozen=True)
class Canary:
    """One general-capability check run before and after fine-tuning.

    ``continuation``: greedy raw-text continuation of ``prompt`` must contain ``expected`` (``"a|b"``: either).
    ``preference``: the model must give ``prompt`` a higher total log-likelihood than ``worse``.
    ``instruction``: the greedy chat answer to ``prompt`` must contain ``expected`` (instruct models only).
    """

    name: str
    kind: str
    prompt: str
    expected: str = ""
    worse: str = ""
    max_new_tokens: int = 8


def _log_likelihood(model: Any, tokenizer: Any, text: str) -> float:
    """Total log-probability of ``text``'s tokens after the first (nats)."""
    return -text_nll(model, tokenizer, text)[0]


def _continue_text(model: Any, tokenizer: Any, text: str, max_new_tokens: int) -> str:
    """Greedy raw-text continuation (no chat template: the base LM's own skill)."""
    import torch

    inputs = tokenizer(text, add_special_tokens=False, return_tensors="pt").to(next(model.parameters()).device)
    with torch.no_grad():
        out = model.generate(**inputs, **decoding_kwargs(model, tokenizer, max_new_tokens))
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def run_canaries(model: Any, tokenizer: Any, canaries: Sequence[Canary]) -> "pd.DataFrame":
    """Pass/fail of every canary with what the model did (output or log-likelihood margin). Taught in 04_evaluation."""
    import pandas as pd

    saved_cache, was_training = model.config.use_cache, model.training
    model.config.use_cache = True
    model.eval()
    rows = []
    try:
        for c in canaries:
            if c.kind == "preference":
                margin = _log_likelihood(model, tokenizer, c.prompt) - _log_likelihood(model, tokenizer, c.worse)
                rows.append({"name": c.name, "kind": c.kind, "passed": margin > 0,
                             "detail": f"margin {margin:+.2f} nats"})
            elif c.kind in ("continuation", "instruction"):
                if c.kind == "continuation":
                    out = _continue_text(model, tokenizer, c.prompt, c.max_new_tokens)
                else:
                    conv = [[{"role": "user", "content": c.prompt}]]
                    out = generate(model, tokenizer, conv, c.max_new_tokens, progress=False)[0]
                passed = any(alt.lower() in out.lower() for alt in c.expected.split("|"))
                rows.append({"name": c.name, "kind": c.kind, "passed": passed,
                             "detail": out.strip()[:80]})
            else:
                raise EvaluationError(
                    f"canary {c.name!r} has kind {c.kind!r}: use continuation, preference or instruction")
    finally:
        model.config.use_cache = saved_cache
        model.train(was_training)
    return pd.DataFrame(rows)


def canary_regressions(before: "pd.DataFrame", after: "pd.DataFrame") -> list[str]:
    """Names of canaries that passed before and fail after (forgetting). Taught in 04_evaluation."""
    was = dict(zip(before["name"], before["passed"]))
    now = dict(zip(after["name"], after["passed"]))
    return [name for name, ok in was.items() if ok and not now.get(name, False)]


def _shuffled(text: str, seed: int = 0) -> str:
    """The same words in a seeded random order (a fluent sentence's ungrammatical twin)."""
    words = text.rstrip(".").split()
    rng = random.Random(seed)
    while True:
        shuffled = words[:]
        rng.shuffle(shuffled)
        if shuffled != words or len(set(words)) < 2:
            return " ".join(shuffled) + "."


# Fluent sentences in the style of the tiny model's pretraining text (stdlib docstrings, support tickets): the model
# should find each likelier than the same words shuffled. They test language knowledge, not the JSON task.
FLUENCY_SENTENCES = (
    "Return the number of items in the list.",
    "Raise ValueError if the argument is negative.",
    "If the file does not exist, an exception is raised.",
    "This method returns a new string with the given prefix removed.",
    "The default value is None.",
    "My order has not arrived yet and the tracking number does not work.",
    "I would like to return the headphones I bought last week.",
    "Please let me know when the package will be delivered.",
)

# Raw-text continuations whose greedy completion (6 tokens) must contain ``expected``: set phrases of the tiny model's
# pretraining text that the shipped base model completes (checked in 04_evaluation before any adapter is applied).
CONTINUATIONS = (
    ("doc_file_exist", "If the file does not", "exist"),
    ("doc_shallow", "Return a shallow", "list"),
    ("doc_value_of", "Return the value of the", "operand"),
    ("ticket_emergency", "Please treat this as an", "emergency"),
    ("ticket_arrive", "was supposed to arrive last", "week"),
    ("ticket_right_away", "I need an answer right", "away"),
    ("ticket_chance", "No rush, whenever you get a", "chance"),
    ("ticket_greeting", "Dear Nimbus", "support"),
)

INSTRUCTIONS = (
    ("capital", "What is the capital of France? Answer with one word.", "Paris"),
    ("arithmetic", "What is 12 times 3? Answer with the number only.", "36|thirty-six"),
    ("translate", "Translate 'thank you' into French. Answer with the translation only.", "merci"),
    ("python_keyword", "Which Python keyword defines a function? Answer with the keyword only.", "def"),
    ("antonym", "What is the opposite of 'hot'? Answer with one word.", "cold"),
    ("list_count", "How many items are in this list: apple, pear, plum? Answer with the number only.", "3|three"),
)


def default_canaries(cfg: Any) -> list[Canary]:
    """The forgetting suite: fluency preferences, plus the tiny model's continuations or GPU instructions. Taught in 04.

    The continuations are phrases the shipped tiny model completes; a hub instruct model is checked on short
    instructions instead (the tiny base model cannot follow any).
    """
    suite = [Canary(f"fluency_{i}", "preference", text, worse=_shuffled(text, seed=i))
             for i, text in enumerate(FLUENCY_SENTENCES)]
    if getattr(cfg, "name", cfg) == "cpu-tiny":
        return suite + [Canary(f"continue_{name}", "continuation", prompt, expected=expected, max_new_tokens=6)
                        for name, prompt, expected in CONTINUATIONS]
    return suite + [Canary(f"instruct_{name}", "instruction", prompt, expected=expected, max_new_tokens=16)
                    for name, prompt, expected in INSTRUCTIONS]
