"""Checkers for 08_scale_out's exercises (GPUs for FSDP, process counts, sorted batches). Taught in 08_scale_out."""

from __future__ import annotations

import numbers
from typing import Any, Sequence

from helpers import memory, train
from helpers.check._core import report, unanswered
from helpers.train import batched_padding

SMALL_GPU = "L4 24 GB"  # the 24 GB card of memory.GPUS
MAX_PROCESSES = 16  # exercise 8.2 looks at 1 .. 16 processes


def _int(answer: Any) -> bool:
    return isinstance(answer, numbers.Integral) and not isinstance(answer, bool)


def _fewest_gpus(est: Any, strategy: str, gib: float, limit: int = 1024) -> int | None:

    return next((n for n in range(1, limit + 1) if memory.per_device(est, n, strategy)["total"] <= gib), None)


def exercise_08_1(answer: Any, seq_len: int, batch: int) -> bool:
    """Exercise 8.1: fewest 24 GB GPUs on which FSDP fits full fine-tuning of Llama 3 8B. Taught in 08_scale_out."""
    key = "08_1"
    if unanswered(answer) or not _int(answer):
        return report(key, False, "answer_1 must be an int: a number of GPUs")
    setup = memory.TrainSetup(method="full", seq_len=seq_len, batch=batch, grad_checkpointing=True)
    est = memory.estimate(memory.PRESETS["llama-3-8b"], setup)
    card = next(gpu for gpu in memory.GPUS if gpu.name == SMALL_GPU)
    truth = _fewest_gpus(est, "fsdp", card.memory_gib * memory.HEADROOM)
    if truth is None:
        return report(key, False, f"with SEQ_LEN={seq_len} and BATCH={batch} no number of GPUs fits (activations are "
                                  f"not sharded): lower them and try again")
    if answer == truth:
        return report(key, True, "", f"{truth} GPUs; ZeRO-2 keeps the whole weights on every GPU and needs more")
    if answer == _fewest_gpus(est, "fsdp", card.memory_gib):
        return report(key, False, "the table keeps 5% headroom (memory.HEADROOM): compare with memory_gib x HEADROOM")
    if answer == _fewest_gpus(est, "zero2", card.memory_gib * memory.HEADROOM):
        return report(key, False, "that is ZeRO-2: the exercise asks for FSDP, which also splits the weights")
    return report(key, False, "estimate llama-3-8b with method='full' (grad_checkpointing=True, SEQ_LEN, BATCH), then "
                              "try n = 1, 2, ... until memory.per_device(est, n, 'fsdp')['total'] fits the L4's "
                              "memory_gib x memory.HEADROOM")


def exercise_08_2(answer: Any, cfg: Any) -> bool:
    """Exercise 8.2: the process counts (1-16) that keep the profile's global batch. Taught in 08_scale_out."""
    key = "08_2"
    if hasattr(answer, "tolist") and not isinstance(answer, str):  # a numpy array or a pandas Series
        answer = answer.tolist()
    if unanswered(answer) or not isinstance(answer, (list, tuple, set)) or not all(_int(n) for n in answer):
        return report(key, False, f"answer_2 must be a list of ints: the process counts from 1 to {MAX_PROCESSES}")
    truth = []
    for n in range(1, MAX_PROCESSES + 1):
        try:
            train.data_parallel_batch(cfg, n)
            truth.append(n)
        except train.TrainingSetupError:
            pass
    answer = sorted(answer)
    if answer == truth:
        return report(key, True, "", f"the divisors of the global batch "
                                     f"({cfg.per_device_batch_size} x {cfg.gradient_accumulation_steps})")
    if set(truth) < set(answer):
        return report(key, False, "some of these cannot split the global batch evenly: call train.data_parallel_batch "
                                  "for each and keep those that do not raise train.TrainingSetupError")
    return report(key, False, f"try every n from 1 to {MAX_PROCESSES} with train.data_parallel_batch(cfg, n) and keep "
                              f"the n for which it does not raise")


def _sorted_waste(lengths: Sequence[int], batch_size: int, reverse: bool) -> float:

    return batched_padding(sorted(lengths, reverse=reverse), batch_size)


def exercise_08_3(answer: Any, lengths: Sequence[int], batch_size: int) -> bool:
    """Exercise 8.3: the padding share of dynamic padding when rows are batched by length. Taught in 08_scale_out."""
    key = "08_3"
    if unanswered(answer) or not isinstance(answer, numbers.Real) or isinstance(answer, bool):
        return report(key, False, "answer_3 must be a float: the share of padding tokens, between 0 and 1")
    truths = [_sorted_waste(lengths, batch_size, reverse) for reverse in (False, True)]  # either direction counts
    if any(abs(answer - t) <= 1e-4 for t in truths):
        shuffled = train.padding_fraction(lengths, batch_size)
        return report(key, True, "", f"sorting cuts the padding from {shuffled:.1%} (shuffled) to {answer:.2%}")
    if abs(answer - train.padding_fraction(lengths, batch_size)) <= 1e-4:
        return report(key, False, "that is the shuffled batches' share (train.padding_fraction): sort the lengths "
                                  "first")
    if any(abs(answer - 100 * t) <= 1e-2 for t in truths):
        return report(key, False, "give a share between 0 and 1, not a percentage")
    return report(key, False, "sort `lengths`, cut them into consecutive batches of the per-device batch size, pad "
                              "each batch to its longest row, and return 1 - real tokens / padded tokens")
