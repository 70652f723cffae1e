"""Tier 1: the tiny model's build recipe (helpers.build.tiny): the copying levers of issue 11, without pretraining."""

import random
import re

import pytest

from helpers.build import tiny
from helpers.data.generate import pretraining_texts


@pytest.fixture(scope="module")
def grouped_tokenizer():
    docs = pretraining_texts(300) + [tiny.copy_document(random.Random(i)) for i in range(300)]
    return tiny.train_tokenizer(docs, tiny.TinyRecipe(vocab_size=600, digit_groups=3))


@pytest.mark.parametrize("written", ["order no. 738000", "order #738000", "ORD 738000", "(ORD-738000)", "ord#738000"])
def test_digit_groups_tokenise_an_order_number_the_same_way_wherever_it_stands(grouped_tokenizer, written):
    text = f"Hi, {written} is late. I found order ORD-738000."
    pieces = grouped_tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)
    assert [p for p, _ in pieces if p.isdigit()] == ["738", "000", "738", "000"], pieces
    tokens = grouped_tokenizer.tokenize(text)
    digits = [t for t in tokens if t.isdigit()]  # no digit token carries a space or a dash: the two copies match
    assert digits[: len(digits) // 2] == digits[len(digits) // 2:] and "".join(digits) == "738000" * 2, tokens


def test_without_digit_groups_bpe_may_split_the_same_number_differently():
    docs = pretraining_texts(300)
    tok = tiny.train_tokenizer(docs, tiny.TinyRecipe(vocab_size=600, digit_groups=0))
    assert tok.tokenize(" 738000") != tok.tokenize("-738000")[1:], "the lesson the recipe's digit_groups fixes"


def test_induction_batch_repeats_one_span_within_each_row():
    import torch

    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        rows = tiny.induction_batch(gen, batch=4, length=64, low=300, high=4096)
        assert rows.shape == (4, 64) and int(rows.min()) >= 300 and int(rows.max()) < 4096
        for row in rows.tolist():
            tail = row[-8:]  # the second copy ends the row; its first copy occurs earlier
            starts = [i for i in range(len(row) - 8 - 8 + 1) if row[i:i + 8] == tail]
            assert starts, "the span at the end of a row occurs once before it"


def test_copy_documents_repeat_their_identifiers():
    rng = random.Random(3)
    docs = [tiny.copy_document(rng) for _ in range(200)]
    assert len(set(docs)) == 200
    for doc in docs:
        numbers = re.findall(r"\d{2,}", doc)
        assert numbers and any(numbers.count(n) >= 2 for n in numbers), doc


def test_the_shipped_model_records_its_recipe_and_copy_probe():
    import json
    from dataclasses import asdict

    from helpers.config import TINY_MODEL_DIR

    shipped = json.loads((TINY_MODEL_DIR / "recipe.json").read_text())
    assert shipped["recipe"] == asdict(tiny.TinyRecipe()), "data/tiny-llama was built with the current default recipe"
    assert 0.0 <= shipped["copy_probe"] <= 1.0
    card = (TINY_MODEL_DIR / "README.md").read_text()
    assert f"{shipped['copy_probe']:.0%}" in card and "copy" in card
