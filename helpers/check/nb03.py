"""Checkers for 03_qlora_training's exercises: LoRA's size, the assistant mask. Taught in 03_qlora_training."""

from __future__ import annotations

from typing import Any

from helpers.check._core import report, unanswered


def _int(answer: Any) -> bool:
    return isinstance(answer, int) and not isinstance(answer, bool)


def exercise_03_1(answer: Any, shape: Any, r: int) -> bool:
    """Exercise 3.1: parameters of a rank-``r`` adapter on q_proj and v_proj only. Taught in 03_qlora_training."""
    key = "03_1"
    if unanswered(answer) or not _int(answer):
        return report(key, False, "answer_1 must be an int: a number of parameters")
    linears = shape.linear_shapes()
    per_block = sum(r * (d_in + d_out) for name, (d_in, d_out) in linears.items() if name in ("q_proj", "v_proj"))
    truth = shape.num_layers * per_block
    if answer == truth:
        return report(key, True, "", f"r·(d_in + d_out) for two matrices in each of {shape.num_layers} blocks")
    if answer == per_block:
        return report(key, False, "that is one block: every decoder layer has its own q_proj and v_proj")
    return report(key, False, "an adapter on a d_in x d_out matrix trains A (r x d_in) and B (d_out x r); add q_proj's "
                              "and v_proj's (shape.linear_shapes() gives d_in, d_out) and multiply by the layers")


def exercise_03_2(answer: Any, tokenizer: Any, row: dict[str, Any]) -> bool:
    """Exercise 3.2: how many tokens of one training row get a loss. Taught in 03_qlora_training."""
    key = "03_2"
    if unanswered(answer) or not _int(answer):
        return report(key, False, "answer_2 must be an int: a number of tokens")
    rendered = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True,
                                             return_assistant_tokens_mask=True)
    truth = int(sum(rendered["assistant_masks"]))
    if answer == truth:
        return report(key, True, "", f"of {len(rendered['input_ids'])} tokens in the row")
    if answer == len(rendered["input_ids"]):
        return report(key, False, "that is every token of the row: count only those the assistant mask keeps")
    return report(key, False, "render the row's messages with the chat template and return_assistant_tokens_mask=True "
                              "(as in section 3.2), then count the positions where the mask is 1; the end-of-turn "
                              "token counts too")
