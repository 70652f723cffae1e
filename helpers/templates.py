"""Chat templates and their tokens: the tiny model's template, ``{% generation %}`` markers and the course's ChatML patch.

Notebooks reach it through ``helpers.models``, which re-exports every name (02_dataset teaches the markers that
assistant-only loss needs). It sits below ``data`` and ``models``: the dataset checks (:mod:`helpers.data.validation`), the environment check, the model
loaders and the builders all ask it whether a template marks the assistant's turns.
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
