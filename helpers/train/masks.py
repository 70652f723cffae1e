"""Training rows and what the loss sees: assistant-only masks, padding arithmetic, packing. Taught in 03_qlora_training.

:func:`check_assistant_masks` proves that the loss falls on the assistant's answer only (a template without
``{% generation %}`` markers would train on the prompt too), and :func:`padding_fraction`, :func:`batched_padding` and
:func:`packing_helps` measure how much of a batch is padding, the number that decides whether packing pays.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from helpers.config import SEED
from helpers.data.formats import DataFormatError, read_jsonl as read_rows
from helpers.data.rows import split_path as data_split_path
from helpers.templates import has_generation_markers
from helpers.train.setup import DEFAULTS, TrainingSetupError

if TYPE_CHECKING:  # heavy imports stay out of module import time
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a split file, read by the data stage's reader; a missing file says how to build it."""
    path = Path(path)
    if not path.is_file():
        raise TrainingSetupError(f"{path} not found: build the splits with `python -m helpers.data` (02_dataset)")
    try:
        return read_rows(path)
    except DataFormatError as err:  # "PATH:LINE: CODE: message" with the fix
        raise TrainingSetupError(str(err)) from None


def split_path(name: str) -> Path:
    """``data/tickets/<name>.jsonl`` (``train``, ``validation`` or ``test``): :func:`helpers.data.split_path`."""
    return data_split_path(name)


def to_dataset(rows: Sequence[dict[str, Any]]) -> "Dataset":
    """A ``datasets.Dataset`` with only the ``messages`` column SFTTrainer reads. Taught in 03."""
    from datasets import Dataset

    return Dataset.from_list([{"messages": row["messages"]} for row in rows])


@dataclass
class MaskReport:
    """How many tokens of each row the assistant-only loss trains on (after truncation to ``max_length``)."""

    rows: int
    fully_masked: list[int]  # row indices with no trained token left
    truncated: int  # rows longer than max_length
    mean_tokens: float
    mean_trained_tokens: float
    max_tokens: int
    lengths: list[int] = field(repr=False, default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The numbers without the per-row lengths (for the manifest)."""
        out = asdict(self)
        out.pop("lengths")
        out["fully_masked"] = len(self.fully_masked)
        return out


def check_assistant_masks(tokenizer: "PreTrainedTokenizerBase", rows: Sequence[dict[str, Any]], max_length: int,
                          where: str = "train") -> MaskReport:
    """Check, before training, that assistant-only loss has tokens to train on in every row. Taught in 03."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise TrainingSetupError("the tokenizer has no chat template: load it with helpers.models.load_tokenizer(cfg) "
                                 "or set tokenizer.chat_template to one with {% generation %} markers")
    if not has_generation_markers(template):
        raise TrainingSetupError(
            "the tokenizer's chat template does not mark assistant turns ({% generation %}...{% endgeneration %} is "
            "missing), so assistant_only_loss=True would train on nothing: wrap the assistant content and its "
            "end-of-turn token in those markers (see helpers.models.CHAT_TEMPLATE) or use a template TRL can patch "
            "(trl.chat_template_utils.get_training_chat_template)")
    lengths, trained, fully_masked, truncated = [], [], [], 0
    for i, row in enumerate(rows):
        out = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        mask = list(out["assistant_masks"])[:max_length]
        truncated += len(out["input_ids"]) > max_length
        lengths.append(min(len(out["input_ids"]), max_length))
        trained.append(sum(mask))
        if sum(mask) == 0:
            fully_masked.append(i)
    n = len(lengths)
    report = MaskReport(rows=n, fully_masked=fully_masked, truncated=truncated,
                        mean_tokens=sum(lengths) / max(n, 1), mean_trained_tokens=sum(trained) / max(n, 1),
                        max_tokens=max(lengths, default=0), lengths=lengths)
    if n == 0:
        raise TrainingSetupError(f"the {where} split has no rows: build the splits with `python -m helpers.data`")
    if len(fully_masked) == n:
        raise TrainingSetupError(
            f"every label is masked in the {where} split ({n} of {n} rows have no assistant token within "
            f"max_length={max_length}): the loss would be zero or every row dropped; give each row an assistant "
            f"answer and raise max_length above the prompt length (longest row: {report.max_tokens} tokens)")
    if fully_masked:
        print(f"warning: {len(fully_masked)} of {n} {where} rows have no assistant token within max_length="
              f"{max_length} (first: row {fully_masked[0]}); SFTTrainer drops them: raise max_length to keep them")
    return report


def padding_fraction(lengths: Sequence[int], batch_size: int, seed: int = SEED) -> float:
    """Fraction of the tokens in shuffled, padded batches that would be padding. Taught in 03."""
    order = list(lengths)
    random.Random(seed).shuffle(order)
    return batched_padding(order, batch_size)


def batched_padding(order: Sequence[int], batch_size: int) -> float:
    """Fraction of padding when rows of these lengths are batched in this order, each padded to its longest."""
    real = padded = 0
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        real += sum(batch)
        padded += max(batch) * len(batch)
    return 1 - real / padded if padded else 0.0


def packing_helps(lengths: Sequence[int], batch_size: int, threshold: float = DEFAULTS.packing_threshold) -> bool:
    """Pack several rows per sequence only when padding would waste more than ``threshold``. Taught in 03."""
    return padding_fraction(lengths, batch_size) > threshold
