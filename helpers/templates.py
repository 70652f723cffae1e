"""Chat templates and their tokens: the tiny model's template, ``{% generation %}`` markers, which tokens are trained.

Notebooks reach it through ``helpers.models``, which re-exports every name (02_dataset teaches the markers that
assistant-only loss needs). It sits below ``data`` and ``models``: the dataset checks (:mod:`helpers.data.validation`), the environment check, the model
loaders and the builders all ask it whether a template marks the assistant's turns. :func:`turn_tokens` and
:func:`token_stats` count the tokens of a rendered chat that assistant-only loss trains on (re-exported by
``helpers.data``, as 02_dataset uses them).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # heavy imports stay out of module import time
    from transformers import PreTrainedTokenizerBase

SPECIAL_TOKENS = ("<|end|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|bos|>")
EOS, PAD = "<|end|>", "<|pad|>"

# Assistant turns sit inside {% generation %} so trainers can compute assistant-only loss masks; the <|end|> that
# closes an answer is inside the block, so the model learns to stop. System and user turns end with a newline, not
# <|end|>: pretraining put <|end|> between unrelated documents, so a template that closed the ticket's turn with it
# would tell the model that nothing before the answer matters.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|assistant|>\n' }}{% generation %}{{ message['content'] + '<|end|>' }}{% endgeneration %}{{ '\n' }}"
    "{%- else -%}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\n' }}{%- endif -%}"
)


GENERATION_MARKER = re.compile(r"\{%-?\s*generation\s*-?%\}")  # {% generation %}, {%- generation -%}, ...


def has_generation_markers(template: str | dict[str, str] | None) -> bool:
    """Does a chat template wrap assistant turns in ``{% generation %}`` (what assistant-only loss needs)?

    Taught in 02_dataset.
    """
    if isinstance(template, dict):  # templates shipped as named variants: the default one is used
        template = template.get("default", "")
    return bool(template) and GENERATION_MARKER.search(template) is not None


# The course's own marker patch, for ChatML templates that render every turn with one expression (SmolLM2's, the cpu
# profile's model): the assistant's content and its <|im_end|> go inside {% generation %}, everything else is unchanged.
# The newline may be written as an escape or, as in a template read from a GGUF file, as the character itself.
CHATML_TURN = re.compile(
    r"\{\{-?\s*'<\|im_start\|>'\s*\+\s*message\[?\.?'?role'?\]?\s*\+\s*'(?:\\n|\n)'\s*\+\s*"
    r"message\[?\.?'?content'?\]?\s*\+\s*'<\|im_end\|>'\s*\+\s*'(?:\\n|\n)'\s*-?\}\}")
CHATML_MARKED = ("{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\\n' }}{% generation %}"
                 "{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}{% else %}{{ '<|im_start|>' + "
                 "message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endif %}")
# Conversations the patched template must render exactly as the original: the course's row shapes (system + user +
# assistant, no system, several turns) with and without the generation prompt.
RENDER_CHECKS = (
    [{"role": "system", "content": "Reply in JSON."}, {"role": "user", "content": "Order ORD-1 is late."},
     {"role": "assistant", "content": '{"order_id": "ORD-1"}'}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
     {"role": "user", "content": "Refund, please."}, {"role": "assistant", "content": "Done."}],
    [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
)


def mark_chatml_template(template: str) -> str | None:
    """The course's ``{% generation %}`` patch of a ChatML template, or None when the template is not of that form.

    Used by :func:`use_training_template` (02 teaches it). One expression renders every turn in such templates
    (``'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'``); the patch renders the
    assistant's turns with the same text, its content and ``<|im_end|>`` marked for the loss mask.
    """
    if has_generation_markers(template) or len(CHATML_TURN.findall(template)) != 1:
        return None
    return CHATML_TURN.sub(lambda _m: CHATML_MARKED, template)


def rendering_differences(tokenizer: "PreTrainedTokenizerBase", original: str, patched: str,
                          conversations: Sequence[list[dict[str, str]]] = RENDER_CHECKS) -> list[str]:
    """Conversations the two templates render differently (empty when the patch changes no text)."""
    problems = []
    for i, messages in enumerate(conversations):
        for prompt in (False, True) if messages[-1]["role"] == "user" else (False,):
            a, b = (tokenizer.apply_chat_template(messages, chat_template=t, tokenize=False,
                                                  add_generation_prompt=prompt) for t in (original, patched))
            if a != b:
                problems.append(f"conversation {i} (add_generation_prompt={prompt}): {a[:80]!r} != {b[:80]!r}")
    return problems


def use_training_template(tokenizer: "PreTrainedTokenizerBase", log: Any = print) -> bool:
    """Give a tokenizer a training copy of its chat template (same text, assistant turns marked). Taught in 02.

    Hub instruct models (Qwen2.5, Llama 3, SmolLM2, ...) ship templates without ``{% generation %}`` markers, so
    assistant-only loss would train on nothing. TRL ships marked copies of many templates; for a ChatML template TRL
    does not know (SmolLM2's), the course marks it itself (:func:`mark_chatml_template`) and checks that the copy
    renders the same text (:func:`rendering_differences`). The course uses the copy everywhere (training, evaluation,
    the saved adapter), so the model is served with the template it was trained with. Returns True when replaced.
    """
    template = getattr(tokenizer, "chat_template", None)
    if not template or has_generation_markers(template):
        return False
    from trl.chat_template_utils import get_training_chat_template

    name = getattr(tokenizer, "name_or_path", "") or "this tokenizer"
    try:
        patched, source = get_training_chat_template(tokenizer), "TRL's training copy"
    except ValueError:
        patched, source = mark_chatml_template(template), "the course's marked copy"
        if patched is None:
            log(f"warning: the chat template of {name} has no {{% generation %}} markers, TRL has no training copy of "
                "it and it is not a ChatML template the course can mark: assistant-only loss is impossible until you "
                "add the markers around the assistant turns yourself")
            return False
        problems = rendering_differences(tokenizer, template, patched)
        if problems:
            log(f"warning: the course's marked copy of {name}'s chat template renders differently ({problems[0]}): "
                "kept the original template; assistant-only loss is impossible with it")
            return False
    if patched is None:
        return False
    tokenizer.chat_template = patched
    log(f"chat template of {name}: no {{% generation %}} markers, replaced by {source} of the same template "
        "(identical text, assistant turns marked for the loss mask)")
    return True


class TemplateError(ValueError):
    """A tokenizer whose chat template cannot give assistant-only masks; the message says how to fix it."""


def chat_template_of(tokenizer: Any) -> str:
    """The tokenizer's chat template as text (the default one when there are several)."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default") or next(iter(template.values()), None)
    if not template:
        raise TemplateError("the tokenizer has no chat template: set tokenizer.chat_template (see 02_dataset, "
                            "section 2) before rendering or training on chat rows")
    return template


def require_generation_markers(tokenizer: Any) -> None:
    """Raise :class:`TemplateError` unless the chat template wraps assistant turns in ``{% generation %}``."""
    if not has_generation_markers(chat_template_of(tokenizer)):
        raise TemplateError(
            "the chat template has no {% generation %} markers, so assistant-only masking is impossible "
            "(return_assistant_tokens_mask gives all zeros and assistant_only_loss trains nothing): wrap each "
            "assistant turn in {% generation %}...{% endgeneration %} in tokenizer.chat_template (see "
            "helpers.models.CHAT_TEMPLATE, or trl.chat_template_utils.get_training_chat_template(tokenizer) for "
            "templates TRL knows), or train on prompt/completion rows with completion_only_loss instead"
        )


def token_stats(messages_list: list[list[dict]], tokenizer: Any, max_tokens: int | None = None) -> list[
        tuple[int, int, int] | str]:
    """Per conversation (tokens, assistant tokens, trainable tokens after truncation) or the template's error text."""
    limit = max_tokens if max_tokens is not None else 10**12
    kwargs = dict(tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    results: list[tuple[int, int, int] | str] = []
    for start in range(0, len(messages_list), 256):
        chunk = messages_list[start:start + 256]
        try:  # batched is ~4x faster; a row the template rejects sends its chunk through the per-row path
            outs = tokenizer.apply_chat_template(chunk, **kwargs)
            pairs = list(zip(outs["input_ids"], outs["assistant_masks"]))
        except Exception:  # noqa: BLE001
            pairs = []
            for messages in chunk:
                try:
                    out = tokenizer.apply_chat_template(messages, **kwargs)
                    pairs.append((out["input_ids"], out["assistant_masks"]))
                except Exception as err:  # noqa: BLE001
                    pairs.append((f"{type(err).__name__}: {err}"[:160], None))
        for ids, mask in pairs:
            results.append(ids if mask is None else (len(ids), int(sum(mask)), int(sum(mask[:limit]))))
    return results


def turn_tokens(messages: list[dict[str, Any]], tokenizer: Any) -> list[dict[str, Any]]:
    """Per message: its role, its tokens in the rendered chat and how many of them assistant-only loss trains on.

    Taught in 02_dataset. Each turn's span is the growth of the rendered prefix (messages ``[:k]``), so the spans add up
    to the whole conversation; a template that renders a prefix differently from the start of the whole chat (one
    that looks ahead) raises :class:`TemplateError`.
    """
    require_generation_markers(tokenizer)
    kwargs = dict(tokenize=True, return_dict=True)
    full = tokenizer.apply_chat_template(messages, return_assistant_tokens_mask=True, **kwargs)
    ids, mask = list(full["input_ids"]), list(full["assistant_masks"])
    out, start = [], 0
    for k, message in enumerate(messages, start=1):
        prefix = list(tokenizer.apply_chat_template(messages[:k], **kwargs)["input_ids"])
        if prefix != ids[:len(prefix)] or len(prefix) < start:
            raise TemplateError(f"the chat template renders messages[:{k}] differently from the start of the whole "
                                f"conversation, so tokens cannot be assigned to turns")
        out.append({"turn": k - 1, "role": message.get("role"), "tokens": len(prefix) - start,
                    "trained": int(sum(mask[start:len(prefix)]))})
        start = len(prefix)
    if start != len(ids):  # tokens after the last turn (a template's closing text)
        out.append({"turn": len(messages), "role": "(template end)", "tokens": len(ids) - start,
                    "trained": int(sum(mask[start:]))})
    return out
