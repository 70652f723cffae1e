"""Checkers for 00_setup's exercises: the profile rule and what 4-bit NF4 stores. Taught in 00_setup."""

from __future__ import annotations

from typing import Any

from helpers import config
from helpers.check._core import report, unanswered

# The machines of exercise 0.1: name -> (compute capability or None, GPU memory in GiB or None).
MACHINES = {
    "laptop, no GPU": (None, None),
    "Colab T4, 15 GiB": ((7, 5), 15.0),
    "RTX 3080, 10 GiB": ((8, 6), 10.0),
    "A10G, 22 GiB": ((8, 6), 22.0),
    "A100, 80 GiB": ((8, 0), 80.0),
    "H100, 80 GiB": ((9, 0), 80.0),
}


def exercise_00_1(answer: Any) -> bool:
    """Exercise 0.1: the profile auto-detection picks for each machine of ``MACHINES``. Taught in 00_setup."""
    key = "00_1"
    if unanswered(answer) or not isinstance(answer, dict) or any(v is None for v in answer.values()):
        return report(key, False, "answer_1 must be a dict: each machine's name -> a profile name (a str)")
    if set(answer) != set(MACHINES):
        return report(key, False, "keep the machine names of the starter as the dict's keys, one profile for each")
    wrong = [name for name, (capability, gib) in MACHINES.items()
             if str(answer[name]).strip().lower() != config.profile_for_gpu(capability, gib)]
    if wrong:
        return report(key, False, f"{len(wrong)} machine(s) wrong, e.g. {wrong[0]!r}: the compute capability decides "
                                  "bf16 and the memory decides the model size (read section 0.3 or "
                                  "config.profile_for_gpu)")
    return report(key, True, "", "capability decides bf16, memory decides whether a 7B run fits")


def exercise_00_2(answer: Any, model_4bit: Any) -> bool:
    """Exercise 0.2: how many weights of ``model_4bit`` are stored in 4 bits. Taught in 00_setup."""
    import bitsandbytes as bnb

    key = "00_2"
    if unanswered(answer) or isinstance(answer, bool) or not isinstance(answer, int):
        return report(key, False, "answer_2 must be an int: the number of weights (not bytes) kept in 4-bit")
    layers = [m for m in model_4bit.modules() if isinstance(m, bnb.nn.Linear4bit)]
    in_4bit = sum(m.in_features * m.out_features for m in layers)
    if answer == in_4bit:
        total = sum(p.numel() for p in model_4bit.parameters() if not isinstance(p, bnb.nn.Params4bit))
        return report(key, True, "", f"{len(layers)} Linear4bit layers; every other parameter ({total:,}) "
                                     "stays in full precision")
    packed = sum(m.weight.numel() for m in layers)
    if answer == packed:
        return report(key, False, "weight.numel() of a Linear4bit counts the packed storage (two 4-bit values per "
                                  "byte), not the weights: use each layer's in_features and out_features")
    return report(key, False, "count the weights of the bnb.nn.Linear4bit layers only (in_features x out_features "
                              "each); embeddings, norms and the LM head are not quantized")
