"""JSON-schema-constrained generation: the format guaranteed by the decoder, not learned. Taught in 04_evaluation.

At every step of greedy decoding a *token mask* forbids each token that would take the answer out of the JSON
Schema: an unknown key, a category outside the enum, a letter where ``order_id``'s pattern wants a digit, whitespace
between keys, text after the closing brace. The model still picks the most likely token, but only among the allowed
ones. The masks come from `llguidance <https://github.com/guidance-ai/llguidance>`_ (pinned in pyproject.toml), which
compiles the schema into a grammar and computes each mask lazily from the tokenizer's vocabulary, so it works with any
byte-level BPE vocabulary (the tiny model's 4 k tokens, Qwen2.5's 151 k) without an up-front index.

What the constraint guarantees: every answer that ends (the model emits its end token before ``max_new_tokens``)
parses as one JSON object and passes the schema: ``json_valid`` and ``schema_valid`` are 1.0 by construction.
What it does not guarantee:

* right values. ``"category": "billing"`` is as valid as the right ``"shipping"``; an order id of the right shape may
  be one the ticket never named. Constraints fix the format, not the content: compare ``field_accuracy``.
* an ending. A string without ``maxLength`` (``product``) lets an untrained model ramble until the token cap; the cut
  answer is not valid JSON. :func:`constrained_generate` reports such answers (``outputs.truncated``, a warning or an
  error) instead of hiding them; raise ``max_new_tokens`` or give the schema's strings a ``maxLength``.
* the model's best answer. The mask can only remove tokens: where the model wanted to write something else, the
  forced path may be one it finds unlikely, and its values there are guesses.

The answers are written the way the dataset writes them (``json.dumps``: ``", "`` and ``": "``, keys in the order of
the schema's ``required`` list), so a fine-tuned model's own answers pass the mask unchanged and the four-way table
(prompted, prompted + constrained, fine-tuned, fine-tuned + constrained) compares like with like. Decoding is the
course's greedy :data:`helpers.evaluate.DECODING`, batched and left-padded like :func:`helpers.evaluate.generate`.

Nothing runs on import; llguidance, torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

from helpers.data.generate import TICKET_SCHEMA
from helpers.evaluate.generation import decoding_kwargs, generate_tokens

LLGUIDANCE_PIN = "llguidance==1.9.1"  # the pin of pyproject.toml (tests/test_constrained.py checks they agree)
INSTALL_HINT = f"pip install {LLGUIDANCE_PIN}"

# The JSON text the mask allows: no free whitespace (a base model would otherwise fill the cap with spaces and
# newlines) and json.dumps' separators, the format of every reference answer in data/tickets.
JSON_OPTIONS: dict[str, Any] = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": ",
                                "lenient": False}


class ConstrainedGenerationError(ValueError):
    """Constrained generation cannot run, or an answer was cut; the message names what and the fix."""


class ConstrainedOutputs(list):
    """The answers (a list of strings, like :func:`helpers.evaluate.generate`) plus which ones were cut.

    ``truncated`` holds the indices of answers that reached ``max_new_tokens`` before the schema's JSON was complete:
    they are not valid JSON, and :func:`helpers.evaluate.score` counts them as invalid.
    """

    def __init__(self, texts: list[str], truncated: list[int], max_new_tokens: int):
        super().__init__(texts)
        self.truncated = truncated
        self.max_new_tokens = max_new_tokens


def require_llguidance() -> Any:
    """The llguidance module, or a :class:`ConstrainedGenerationError` that says how to install the pinned version."""
    try:
        import llguidance
        import llguidance.hf  # noqa: F401 - the transformers tokenizer bridge
    except ImportError as err:
        raise ConstrainedGenerationError(
            f"constrained generation needs llguidance ({err}): install the course's pin with `{INSTALL_HINT}` "
            f"(or `pip install -e .` in the course folder, which installs every pin of pyproject.toml)"
        ) from None
    return llguidance


def ordered_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` whose ``properties`` follow its ``required`` list (then the rest), in every object.

    llguidance writes an object's keys in the order of ``properties``; the course's answers use ``required``'s order
    (summary first). Key order does not change what the schema accepts, only which valid text the mask allows.
    """

    def reorder(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: reorder(v) for k, v in node.items()}
            props = node.get("properties")
            if isinstance(props, dict) and isinstance(node.get("required"), list):
                first = [k for k in node["required"] if k in props]
                node["properties"] = {k: props[k] for k in first + [k for k in props if k not in first]}
            return node
        if isinstance(node, list):
            return [reorder(v) for v in node]
        return node

    return reorder(copy.deepcopy(schema))


def _default_schema() -> dict[str, Any]:

    return TICKET_SCHEMA


def ll_tokenizer(tokenizer: Any, eos_ids: list[int]) -> Any:
    """llguidance's view of a transformers fast tokenizer (its byte-level vocabulary), ending on ``eos_ids``."""
    llg = require_llguidance()
    try:
        return llg.hf.from_tokenizer(tokenizer, eos_token=list(eos_ids))
    except ValueError as err:  # a slow (Python) tokenizer
        raise ConstrainedGenerationError(
            f"llguidance needs a fast tokenizer ({err}): load it with helpers.models.load_tokenizer(cfg)"
        ) from None


def compile_schema(schema: dict[str, Any] | None = None, lltok: Any = None) -> str:
    """The llguidance grammar of a JSON Schema (default: the course's ticket schema), checked before any generation.

    A schema llguidance cannot compile (an unknown type, a regex with look-around, a keyword it does not implement)
    raises :class:`ConstrainedGenerationError` with llguidance's reason.
    """
    llg = require_llguidance()
    schema = _default_schema() if schema is None else schema
    if not isinstance(schema, dict):
        raise ConstrainedGenerationError(f"the schema must be a JSON Schema dict, got {type(schema).__name__}")
    try:
        grammar = llg.LLMatcher.grammar_from_json_schema(ordered_schema(schema), overrides=JSON_OPTIONS)
        is_error, messages = llg.LLMatcher.validate_grammar_with_warnings(grammar, lltok)
    except (ValueError, TypeError) as err:
        is_error, messages = True, [str(err)]
    if is_error:
        reason = "; ".join(m.strip().replace("\n", " ") for m in messages) or "unknown error"
        raise ConstrainedGenerationError(
            f"llguidance cannot compile this JSON schema: {reason}. Simplify that part of the schema (llguidance "
            f"{LLGUIDANCE_PIN.split('==')[1]} supports types, enum, const, required, additionalProperties, "
            f"min/maxLength, pattern without look-around, anyOf/oneOf, $ref)"
        )
    return grammar


class SchemaLogitsProcessor:
    """A transformers logits processor: masks, row by row, every token the schema's grammar forbids next.

    One llguidance matcher per row of the batch; a row stops being masked once it has emitted an end token
    (``generate`` pads it from then on). Build one per ``generate`` call: it keeps the rows' state.
    """

    def __init__(self, lltok: Any, grammar: str, batch_size: int, eos_ids: list[int]):
        llg = require_llguidance()
        self.matchers = [llg.LLMatcher(lltok, grammar) for _ in range(batch_size)]
        self.executor = llg.LLExecutor()
        self.eos_ids = set(eos_ids)
        self.done = [False] * batch_size
        self.words = (lltok.vocab_size + 31) // 32  # the mask: one bit per token, 32 tokens per int32
        self.prompt_length: int | None = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch
        from llguidance.torch import fill_next_token_bitmask_par

        if self.prompt_length is None:
            self.prompt_length = input_ids.shape[1]
        else:  # the token chosen at the previous step
            for i, token in enumerate(input_ids[:, -1].tolist()):
                if self.done[i]:
                    continue
                if token in self.eos_ids:
                    self.done[i] = True
                elif not self.matchers[i].consume_token(token):
                    raise ConstrainedGenerationError(
                        f"row {i}: the grammar rejected token {token} it had allowed: {self.matchers[i].get_error()}"
                    )
        live = [i for i, done in enumerate(self.done) if not done]
        if not live:
            return scores
        bitmask = torch.zeros((len(self.done), self.words), dtype=torch.int32)
        fill_next_token_bitmask_par(self.executor, [(self.matchers[i], i) for i in live], bitmask)
        for i in live:
            if self.matchers[i].is_error():
                raise ConstrainedGenerationError(f"row {i}: llguidance failed: {self.matchers[i].get_error()}")
        shifts = torch.arange(32, dtype=torch.int32)
        allowed = ((bitmask.unsqueeze(-1) >> shifts) & 1).bool().reshape(len(self.done), -1)
        vocab = scores.shape[-1]  # the model's logits can be wider than the tokenizer (Qwen2.5 pads to 151936)
        if allowed.shape[1] < vocab:
            allowed = torch.cat([allowed, allowed.new_zeros((allowed.shape[0], vocab - allowed.shape[1]))], dim=1)
        allowed = allowed[:, :vocab]
        allowed[[i for i, done in enumerate(self.done) if done]] = True  # finished rows: leave them alone
        return scores.masked_fill(~allowed.to(scores.device), float("-inf"))


def complete(lltok: Any, grammar: str, tokens: list[int]) -> bool:
    """True when ``tokens`` (an answer, end token excluded) are a whole JSON text of the grammar."""
    llg = require_llguidance()
    matcher = llg.LLMatcher(lltok, grammar)
    return matcher.try_consume_tokens(tokens) == len(tokens) and matcher.is_accepting()


def constrained_generate(
    model: Any,
    tokenizer: Any,
    conversations: list[list[dict[str, str]]],
    schema: dict[str, Any] | None = None,
    max_new_tokens: int = 128,
    batch_size: int | None = None,
    progress: bool = True,
    on_truncated: str = "warn",
) -> ConstrainedOutputs:
    """Batched greedy answers whose JSON is held to ``schema`` (default: the ticket schema), new text only.

    Taught in 04_evaluation. The same decoding as :func:`helpers.evaluate.generate` (``DECODING``, every end token,
    left padding, longest prompts first) plus the schema's token mask, so the only difference in a comparison is the
    constraint. Works with a plain, 4-bit or PEFT-wrapped model. Answers cut by ``max_new_tokens`` are listed in
    ``outputs.truncated``; ``on_truncated`` says what else happens: ``"warn"`` (a warning naming them), ``"raise"``
    (a :class:`ConstrainedGenerationError`) or ``"ignore"``. ``batch_size=None``: generate()'s default for the model
    (:func:`helpers.evaluate.default_batch_size`).
    """
    if max_new_tokens < 1 or (batch_size is not None and batch_size < 1):
        raise ConstrainedGenerationError(f"max_new_tokens={max_new_tokens} and batch_size={batch_size} must be >= 1")
    if on_truncated not in ("warn", "raise", "ignore"):
        raise ConstrainedGenerationError(f"on_truncated={on_truncated!r}: use 'warn', 'raise' or 'ignore'")
    if not getattr(tokenizer, "chat_template", None):
        raise ConstrainedGenerationError("the tokenizer has no chat_template: load it with "
                                         "helpers.models.load_tokenizer(cfg)")
    settings = decoding_kwargs(model, tokenizer, max_new_tokens)  # greedy, no penalties, every EOS id
    eos_ids = settings["eos_token_id"]
    lltok = ll_tokenizer(tokenizer, eos_ids)
    grammar = compile_schema(schema, lltok)  # fails here, before any generation, on a schema it cannot compile
    rows = generate_tokens(model, tokenizer, conversations, max_new_tokens, batch_size, progress,
                           processor=lambda n: SchemaLogitsProcessor(lltok, grammar, n, eos_ids),
                           desc="constrained generate")
    texts = [tokenizer.decode(answer, skip_special_tokens=True).strip() for answer, _ in rows]
    truncated = [i for i, (answer, stopped) in enumerate(rows) if not stopped and not complete(lltok, grammar, answer)]
    if truncated and on_truncated != "ignore":
        message = (f"{len(truncated)} of {len(texts)} constrained answers reached max_new_tokens={max_new_tokens} "
                   f"before their JSON was complete (indices {truncated[:10]}{' ...' if len(truncated) > 10 else ''})"
                   f": they are not valid JSON. Raise max_new_tokens, or give the schema's strings a maxLength")
        if on_truncated == "raise":
            raise ConstrainedGenerationError(message)
        warnings.warn(message, stacklevel=2)
    return ConstrainedOutputs(texts, truncated, max_new_tokens)


def allowed_next(tokenizer: Any, prefix: str, schema: dict[str, Any] | None = None, limit: int = 20) -> list[str]:
    """The tokens the schema allows after ``prefix`` (an answer's beginning), decoded: shows the mask at work.

    Taught in 04_evaluation: after ``'{"summary": "Late", "category": "'`` only the category names' first pieces
    are left. At most ``limit`` tokens are listed; the end token shows as the tokenizer writes it.
    """
    llg = require_llguidance()
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    lltok = ll_tokenizer(tokenizer, eos)
    matcher = llg.LLMatcher(lltok, compile_schema(schema, lltok))
    tokens = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    if matcher.try_consume_tokens(tokens) != len(tokens):
        raise ConstrainedGenerationError(f"the schema does not allow the prefix {prefix!r}: "
                                         f"{matcher.get_error() or 'a token outside the grammar'}")
    mask = matcher.compute_bitmask()
    ids = [t for t in range(lltok.vocab_size) if mask[t // 8] >> (t % 8) & 1]
    return [tokenizer.decode([t]) for t in ids[:limit]]

