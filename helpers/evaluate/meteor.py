"""METEOR for the summaries, offline: exact and Porter-stem matches, no WordNet synonyms. Taught in 04_evaluation.

METEOR (Banerjee & Lavie 2005; Lavie & Agarwal 2007) aligns the words of a prediction with the reference's, then
scores the alignment: unigram precision P and recall R, their recall-weighted harmonic mean
``F = P·R / (α·P + (1-α)·R)``, and a fragmentation penalty ``γ·(chunks / matches)^β`` that is large when the
matched words come in many separate runs (a reordering). Score ``= F · (1 - penalty)``, with α = 0.9, β = 3, γ = 0.5.

The alignment is nltk's (installed with rouge-score): exact matches first, then matches of Porter stems. nltk's
third stage matches WordNet synonyms, which needs a corpus download; offline it is replaced by a matcher that knows
no synonyms (:data:`NO_SYNONYMS`), so this is METEOR without its synonym stage and scores a synonym as a miss.
"""

from __future__ import annotations

from typing import Any

from helpers.evaluate.common import EvaluationError
from helpers.evaluate.metrics import unicode_tokens

ALPHA, BETA, GAMMA = 0.9, 3.0, 0.5


class _NoSynonyms:
    """A stand-in for nltk's WordNet reader that knows no synonyms (WordNet is a download we do not make)."""

    def synsets(self, word: str) -> list[Any]:
        """No synsets: the synonym stage matches nothing."""
        return []


NO_SYNONYMS = _NoSynonyms()


def meteor_parts(prediction: str, reference: str) -> dict[str, float]:
    """METEOR and its parts (matches, P, R, F-mean, chunks, penalty) for one pair. Taught in 04_evaluation."""
    from nltk.translate.meteor_score import _count_chunks, align_words

    if not isinstance(prediction, str) or not isinstance(reference, str):
        raise EvaluationError(f"METEOR scores two strings, got {type(prediction).__name__} and "
                              f"{type(reference).__name__}: pass the summaries, not the JSON objects")
    hyp, ref = unicode_tokens(prediction), unicode_tokens(reference)
    matches, _, _ = align_words(hyp, ref, wordnet=NO_SYNONYMS)
    parts = {"matches": float(len(matches)), "precision": 0.0, "recall": 0.0, "fmean": 0.0, "chunks": 0.0,
             "penalty": 0.0, "meteor": 0.0}
    if not matches:
        return parts
    precision, recall = len(matches) / len(hyp), len(matches) / len(ref)
    fmean = precision * recall / (ALPHA * precision + (1 - ALPHA) * recall)
    chunks = _count_chunks(matches)
    penalty = GAMMA * (chunks / len(matches)) ** BETA
    parts.update(precision=precision, recall=recall, fmean=fmean, chunks=float(chunks), penalty=penalty,
                 meteor=fmean * (1 - penalty))
    return parts


def meteor(prediction: str, reference: str) -> float:
    """Sentence METEOR (exact + stem stages, α 0.9, β 3, γ 0.5) of a prediction. Taught in 04_evaluation."""
    return meteor_parts(prediction, reference)["meteor"]
