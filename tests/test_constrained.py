"""Tier 2: helpers.evaluate.constrained — schema-constrained generation fixes the format (not the content) of any model."""

from __future__ import annotations

import json
import re
import sys

import pytest

from helpers import config, evaluate as ev, models
from helpers.evaluate import constrained as cg
from helpers.data.generate import CATEGORIES, PRIORITIES, TICKET_SCHEMA

CFG = config.get_profile("cpu-tiny")
ROWS = [json.loads(line) for line in (config.REPO_ROOT / "data" / "tickets" / "test.jsonl").read_text().splitlines()]
SAMPLE = ROWS[:8]


@pytest.fixture(scope="module")
def tokenizer():
    return models.load_tokenizer(CFG, log=lambda *a: None)


@pytest.fixture(scope="module")
def base_model():
    return models.load_model(CFG, quantized=False)  # the untrained base: it continues text, it writes no JSON


@pytest.fixture(scope="module")
def lltok(tokenizer):
    return cg.ll_tokenizer(tokenizer, [tokenizer.eos_token_id])


# ---------------------------------------------------------------------------------------------------- setup errors


def test_the_pin_is_the_pyproject_pin():
    from helpers import env

    name, version = cg.LLGUIDANCE_PIN.split("==")
    assert env.pinned_versions()[name] == version
    assert cg.INSTALL_HINT == f"pip install {cg.LLGUIDANCE_PIN}"


def test_missing_library_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "llguidance", None)  # import llguidance now raises ImportError
    with pytest.raises(cg.ConstrainedGenerationError, match=re.escape(f"pip install {cg.LLGUIDANCE_PIN}")):
        cg.require_llguidance()


@pytest.mark.parametrize("schema, reason", [
    ({"type": "wat"}, "Invalid type"),
    ({"type": "object", "properties": {"a": {"type": "string", "pattern": "(?<=x)a"}}}, "look-around"),
    ({"type": "object", "properties": {"a": {"type": "string", "format": "no-such-format"}}}, "format"),
])
def test_a_schema_llguidance_cannot_compile_fails_before_generation(tokenizer, schema, reason):
    with pytest.raises(cg.ConstrainedGenerationError, match=f"cannot compile this JSON schema: .*{reason}"):
        cg.compile_schema(schema)

    class NoModel:  # would fail if generation started
        generation_config = None

    with pytest.raises(cg.ConstrainedGenerationError, match="cannot compile"):
        cg.constrained_generate(NoModel(), tokenizer, ev.conversations_from_rows(SAMPLE[:1]), schema, 8)


# ---------------------------------------------------------------------------------------------------- the grammar


def test_keys_follow_required_so_the_datasets_answers_pass_unchanged(tokenizer, lltok):
    ordered = cg.ordered_schema(TICKET_SCHEMA)
    assert list(ordered["properties"]) == TICKET_SCHEMA["required"]
    assert list(TICKET_SCHEMA["properties"])[0] == "category", "the original is not modified"
    grammar = cg.compile_schema(TICKET_SCHEMA, lltok)
    for reference in ev.references_from_rows(ROWS):  # what a fine-tuned model writes: the mask never changes it
        assert cg.complete(lltok, grammar, tokenizer(reference, add_special_tokens=False)["input_ids"]), reference
    assert not cg.complete(lltok, grammar, tokenizer('{"summary": "Late"', add_special_tokens=False)["input_ids"])
    assert not cg.complete(lltok, grammar, tokenizer('{"category": "x"}', add_special_tokens=False)["input_ids"])


def test_no_hardcoded_ids_a_digit_splitting_tokenizer_works_too(tokenizer):
    from tokenizers import Regex, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = tokenizer.backend_tokenizer.__class__.from_str(tokenizer.backend_tokenizer.to_str())
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r"\d"), "isolated"),
                                                     backend.pre_tokenizer])
    split = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|end|>")
    ids = split("ORD-123456", add_special_tokens=False)["input_ids"]
    assert [split.decode([i]) for i in ids][-6:] == list("123456"), "digits are single tokens"
    lltok = cg.ll_tokenizer(split, [split.eos_token_id])
    grammar = cg.compile_schema(TICKET_SCHEMA, lltok)
    for reference in ev.references_from_rows(SAMPLE):
        assert cg.complete(lltok, grammar, split(reference, add_special_tokens=False)["input_ids"])


def test_the_mask_leaves_only_the_enum(tokenizer):
    allowed = cg.allowed_next(tokenizer, '{"summary": "Late parcel", "category": "', limit=100)
    assert allowed and all(any(c.startswith(a) for c in CATEGORIES) for a in allowed), allowed
    after_id = cg.allowed_next(tokenizer, '{"summary": "Late parcel", "category": "shipping", "product": null, '
                                          '"order_id": "ORD-12', limit=100)
    assert after_id and all(a.isdigit() for a in after_id), after_id
    with pytest.raises(cg.ConstrainedGenerationError, match="does not allow the prefix"):
        cg.allowed_next(tokenizer, '{"colour": ')


def test_logits_wider_than_the_vocabulary_are_masked(lltok):
    import torch

    processor = cg.SchemaLogitsProcessor(lltok, cg.compile_schema(TICKET_SCHEMA, lltok), 2, [0])
    scores = torch.zeros((2, lltok.vocab_size + 64))  # Qwen2.5's logits are padded past its tokenizer
    out = processor(torch.zeros((2, 3), dtype=torch.long), scores)
    assert out.shape == scores.shape and torch.isinf(out[:, lltok.vocab_size:]).all()
    assert (~torch.isinf(out)).sum(dim=1).tolist() == [1, 1], "an answer starts with '{': one token"


# ---------------------------------------------------------------------------------------------------- generation


def test_constraints_fix_the_format_of_an_untrained_model_not_its_content(base_model, tokenizer):
    conversations, references = ev.conversations_from_rows(SAMPLE), ev.references_from_rows(SAMPLE)
    plain = ev.generate(base_model, tokenizer, conversations, 128, batch_size=8, progress=False)
    fixed = cg.constrained_generate(base_model, tokenizer, conversations, TICKET_SCHEMA, 128, batch_size=8,
                                    progress=False, on_truncated="raise")
    assert isinstance(fixed, list) and len(fixed) == len(SAMPLE) and fixed.truncated == []
    before, after = ev.score(plain, references), ev.score(fixed, references)
    assert before["json_valid"] == 0.0 and before["schema_valid"] == 0.0  # the base model writes no JSON
    assert after["json_valid"] == 1.0 and after["schema_valid"] == 1.0  # every answer parses and passes
    assert after["field_accuracy"] < 0.5  # the format is right; the values are still mostly wrong
    for text in fixed:
        answer = json.loads(text)
        assert list(answer) == TICKET_SCHEMA["required"]
        assert answer["category"] in CATEGORIES and answer["priority"] in PRIORITIES
        assert answer["order_id"] is None or re.fullmatch(r"ORD-[0-9]{6}", answer["order_id"])
    assert fixed == cg.constrained_generate(base_model, tokenizer, conversations, TICKET_SCHEMA, 128,
                                            batch_size=3, progress=False), "greedy: batching changes nothing"


def test_a_peft_wrapped_model_works_and_the_model_is_left_as_found(base_model, tokenizer):
    from peft import LoraConfig, get_peft_model

    conversations = ev.conversations_from_rows(SAMPLE[:2])
    expected = cg.constrained_generate(base_model, tokenizer, conversations, max_new_tokens=128, progress=False)
    peft_model = get_peft_model(base_model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    try:
        peft_model.train()
        side = tokenizer.padding_side
        got = cg.constrained_generate(peft_model, tokenizer, conversations, max_new_tokens=128, progress=False)
        assert got == expected  # a fresh LoRA adapter changes nothing (its B matrices are zero)
        assert peft_model.training and tokenizer.padding_side == side
    finally:
        peft_model.unload()  # the module-scoped base model without the LoRA layers again


def test_an_answer_cut_by_max_new_tokens_is_reported_not_hidden(base_model, tokenizer):
    conversations = ev.conversations_from_rows(SAMPLE[:2])
    with pytest.warns(UserWarning, match=r"2 of 2 constrained answers reached max_new_tokens=6"):
        cut = cg.constrained_generate(base_model, tokenizer, conversations, max_new_tokens=6, progress=False)
    assert cut.truncated == [0, 1] and all(ev.parse_json(t) is None for t in cut)
    start = '{"summary": "'  # the schema's JSON begins so, however the model splits it into tokens
    assert all(start.startswith(t) or t.startswith(start) for t in cut), cut
    with pytest.raises(cg.ConstrainedGenerationError, match="Raise max_new_tokens"):
        cg.constrained_generate(base_model, tokenizer, conversations, max_new_tokens=6, progress=False,
                                on_truncated="raise")
