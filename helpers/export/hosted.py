"""The hosted alternative of 06_export: what fine-tuning on OpenAI would cost and the client calls it takes.

:func:`openai_training_cost` counts a dataset's tokens the way OpenAI's cookbook does; :data:`OPENAI_CODE` is the
client code the notebook shows (not run: it needs an API key and is billed).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable

from helpers.data.formats import to_openai
from helpers.export.merge import ExportError

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
