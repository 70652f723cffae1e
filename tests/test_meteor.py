"""Tier 2: METEOR without WordNet (helpers.evaluate.meteor) against hand-computed values and nltk's meteor_score."""

from __future__ import annotations

import random

import pytest

from helpers import evaluate as ev
from helpers.data.generate import generate_tickets


def test_the_papers_formula_by_hand_one_gap_two_chunks():
    # 6 of 6 predicted words match, 6 of 7 reference words; "then" splits the alignment into two chunks.
    parts = ev.meteor_parts("the president spoke to the audience", "the president then spoke to the audience")
    precision, recall = 1.0, 6 / 7
    fmean = 10 * precision * recall / (recall + 9 * precision)  # Banerjee & Lavie 2005, alpha = 0.9
    penalty = 0.5 * (2 / 6) ** 3
    assert (parts["matches"], parts["chunks"]) == (6, 2)
    assert parts["fmean"] == pytest.approx(fmean)
    assert parts["penalty"] == pytest.approx(penalty)
    assert parts["meteor"] == pytest.approx(fmean * (1 - penalty)) == pytest.approx(0.853462, abs=1e-6)


def test_stems_match_and_reordering_is_penalised():
    # "refunded"/"refund" and "requests"/"requested" match only through their Porter stems.
    parts = ev.meteor_parts("customer requests a refunded order", "refund requested for the order")
    assert parts["matches"] == 3 and parts["chunks"] == 3  # request, refund (crossed), order
    assert parts["meteor"] == pytest.approx(0.6 * (1 - 0.5 * (3 / 3) ** 3))
    same_words = ev.meteor("order late shipping", "shipping order late")
    assert same_words < ev.meteor("shipping order late", "shipping order late") == pytest.approx(1 - 0.5 / 27)
    assert ev.meteor("a b c", "x y z") == 0.0 and ev.meteor("", "x") == 0.0


def test_equals_nltk_meteor_score_with_the_same_synonym_free_matcher():
    from nltk.translate.meteor_score import meteor_score

    rows = generate_tickets(60, seed=5)
    summaries = [ev.parse_json(r["messages"][-1]["content"])["summary"] for r in rows]
    rng = random.Random(0)
    for reference in summaries:
        words = ev.unicode_tokens(rng.choice(summaries)) + ev.unicode_tokens(reference)[:3]
        rng.shuffle(words)
        prediction = " ".join(words)
        expected = meteor_score([ev.unicode_tokens(reference)], ev.unicode_tokens(prediction), wordnet=ev.NO_SYNONYMS)
        assert ev.meteor(prediction, reference) == pytest.approx(expected)


def test_rejects_objects_instead_of_summaries():
    with pytest.raises(ev.EvaluationError, match="summaries"):
        ev.meteor({"summary": "x"}, "x")
