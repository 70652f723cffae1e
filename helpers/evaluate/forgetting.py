"""Forgetting as a number: the cross-entropy of general text before and after fine-tuning. Taught in 05_iterate.

Canaries (04) pass or fail; this measure moves continuously, so a small drift shows before a canary breaks. The
texts are general prose in the style of the tiny model's pretraining (Python docstrings, everyday English) and of
any pretrained LLM's, never a support ticket or a JSON answer: the task's own text would *fall* in loss after tuning.
"""

from __future__ import annotations

from typing import Any, Sequence

from helpers.evaluate.common import EvaluationError

GENERAL_TEXTS = (
    "Return a new list containing all items from the iterable in ascending order. A custom key function can be "
    "supplied to customize the sort order, and the reverse flag can be set to request the result in descending order.",
    "Open the file and return a corresponding file object. If the file cannot be opened, an OSError is raised.",
    "Remove and return the item at the given position in the list. If no index is specified, the last item is "
    "removed and returned.",
    "Return True if all characters in the string are digits and there is at least one character, False otherwise.",
    "Split the string at the first occurrence of the separator, and return a tuple containing the part before the "
    "separator, the separator itself, and the part after the separator.",
    "The dictionary maps each key to a value. Looking up a key that is not present raises a KeyError unless a "
    "default value is given.",
    "This function is called when the object is about to be destroyed. It should release any resources that the "
    "object holds, such as open files or network connections.",
    "Return the absolute value of a number. The argument may be an integer, a floating point number, or an object "
    "implementing the method that defines it.",
    "The weather was warm and sunny, so we decided to walk to the park and have lunch by the lake.",
    "She opened the window, made a cup of tea, and sat down to read the letter that had arrived that morning.",
    "The train was late again, and the station was crowded with people waiting to get home after work.",
    "Every morning he waters the plants on the balcony before he leaves for the office.",
    "The library is open from nine in the morning until six in the evening, except on public holidays.",
    "If you have any questions about the event, please contact the organisers by email or by phone.",
    "The children played in the garden while their parents prepared dinner in the kitchen.",
    "We thank you for your patience and look forward to seeing you again next year.",
)


def text_loss(model: Any, tokenizer: Any, texts: Sequence[str] = GENERAL_TEXTS) -> float:
    """Mean cross-entropy (nats per predicted token) of raw ``texts``, no chat template. Taught in 05_iterate.

    Every token after each text's first is predicted; the mean is over all of them, so long texts weigh more.
    """
    if not texts:
        raise EvaluationError("text_loss needs at least one text (evaluate.GENERAL_TEXTS is the course's set)")
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for text in texts:
            nll, n = text_nll(model, tokenizer, text)
            total, count = total + nll, count + n
    finally:
        model.train(was_training)
    if count == 0:
        raise EvaluationError("every text is shorter than two tokens: nothing to predict")
    return total / count


def text_nll(model: Any, tokenizer: Any, text: str) -> tuple[float, int]:
    """Summed cross-entropy (nats) of raw ``text``'s tokens after the first, and how many there are (0 for one token).

    No chat template and no special tokens: the base language model's own view of the text (also behind the
    canaries' fluency preferences).
    """
    import torch

    device = next(model.parameters()).device
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"].to(device)
    if ids.shape[1] < 2:
        return 0.0, 0
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    logits = logits[0, -ids.shape[1]:-1]  # prompt tuning prepends virtual tokens' logits: skip them
    return float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum")), ids.shape[1] - 1
