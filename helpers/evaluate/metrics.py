"""Parsing and scoring JSON answers: every metric of :data:`METRIC_DOCS`. Taught in 04_evaluation.

Reference packages are called directly: ``jsonschema`` for the schema, ``rouge-score`` (with a Unicode tokenizer:
its default one drops every non-ASCII character), and ``sacrebleu`` for BLEU and chrF.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any, Iterable, Sequence

from helpers.data.answers import _schema_errors, _schema_validator, parse_json
from helpers.evaluate.common import FIELD_KEYS, INVALID, SUMMARY_KEY, EvaluationError, error_kinds

# Keys of :func:`score`, each documented once here (the notebook prints this table).
METRIC_DOCS: dict[str, str] = {
    "n": "number of scored examples",
    "json_valid": "fraction of outputs that parse as one JSON object (a ```json fence around it is allowed)",
    "schema_valid": "fraction of outputs that pass the JSON Schema (jsonschema, draft 2020-12)",
    "field_accuracy": "mean of the four field accuracies below; invalid JSON or a missing key counts as wrong",
    "field_accuracy_category": "fraction with the exact reference category",
    "field_accuracy_product": "fraction with the exact reference product (null when the ticket names none)",
    "field_accuracy_order_id": "fraction with the exact reference order id (null when the ticket names none)",
    "field_accuracy_priority": "fraction with the exact reference priority",
    "exact_match": "fraction whose whole object equals the reference, summary included",
    "summary_token_f1": "mean token F1 (lower-cased Unicode words) between predicted and reference summary",
    "summary_rouge_l": "mean ROUGE-L F-measure of the summary (rouge-score with a Unicode tokenizer)",
    "summary_bleu": "corpus BLEU of the summaries (sacrebleu, 0-1 scale = sacrebleu score / 100)",
    "summary_chrf": "corpus chrF of the summaries (sacrebleu, 0-1 scale = sacrebleu score / 100)",
    "category_accuracy": "classification view of the category: same value as field_accuracy_category",
    "category_macro_f1": "macro-F1 of the category over the taxonomy classes seen in references or predictions",
}
PER_EXAMPLE_METRICS = (
    "json_valid", "schema_valid", "field_accuracy", *(f"field_accuracy_{k}" for k in FIELD_KEYS),
    "exact_match", "summary_token_f1", "summary_rouge_l",
)
CORPUS_METRICS = ("summary_bleu", "summary_chrf", "category_macro_f1")


# ---------------------------------------------------------------------------------------------------- parsing

def _reference_object(reference: str | dict[str, Any], index: int) -> dict[str, Any]:
    if isinstance(reference, dict):
        return reference
    value = parse_json(reference) if isinstance(reference, str) else None
    if value is None:
        raise EvaluationError(
            f"reference {index} is not a JSON object ({str(reference)[:60]!r}): pass the assistant answers of the "
            f"dataset rows (helpers.evaluate.references_from_rows) or dicts"
        )
    return value


# ---------------------------------------------------------------------------------------------------- metrics

_WORD = re.compile(r"\w+", re.UNICODE)


def unicode_tokens(text: str) -> list[str]:
    """Lower-cased Unicode word tokens (keeps é, ß, 中文 that rouge-score's default tokenizer drops)."""
    return _WORD.findall((text or "").lower())


class UnicodeTokenizer:
    """A rouge-score tokenizer (an object with ``tokenize``) that keeps non-ASCII words. Taught in 04_evaluation."""

    def tokenize(self, text: str) -> list[str]:
        """Lower-cased Unicode word tokens."""
        return unicode_tokens(text)


def token_f1(prediction: str, reference: str) -> float:
    """Token-overlap F1 (SQuAD style, Unicode words) between two strings."""
    pred, ref = unicode_tokens(prediction), unicode_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure from rouge-score with the Unicode tokenizer."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=UnicodeTokenizer())
    return scorer.score(reference, prediction)["rougeL"].fmeasure


def macro_f1(predictions: Sequence[str], references: Sequence[str], labels: Iterable[str] | None = None) -> float:
    """Macro-F1 over ``labels`` (default: classes seen in either list, except the invalid class)."""
    if labels is None:
        labels = sorted((set(references) | set(predictions)) - {INVALID})
    scores = []
    for label in labels:
        tp = sum(p == label and r == label for p, r in zip(predictions, references))
        fp = sum(p == label and r != label for p, r in zip(predictions, references))
        fn = sum(p != label and r == label for p, r in zip(predictions, references))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else 0.0


def _sacrebleu_metrics() -> tuple[Any, Any]:
    from sacrebleu.metrics import BLEU, CHRF

    return BLEU(), CHRF()


def _corpus_scores(bleu_stats: Sequence[Sequence[float]], chrf_stats: Sequence[Sequence[float]]) -> tuple[float, float]:
    """Corpus BLEU and chrF (0-1) from summed per-example sacrebleu statistics."""
    import numpy as np

    bleu, chrf = _sacrebleu_metrics()
    if len(bleu_stats) == 0:
        return 0.0, 0.0
    b = bleu._compute_score_from_stats(np.asarray(bleu_stats).sum(axis=0).tolist()).score
    c = chrf._compute_score_from_stats(np.asarray(chrf_stats).sum(axis=0).tolist()).score
    return b / 100, c / 100


def score_rows(
    predictions: Sequence[str], references: Sequence[str | dict[str, Any]], schema: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """One record per example: parsed fields, every per-example metric and its error kinds. Taught in 04_evaluation."""
    if len(predictions) != len(references):
        raise EvaluationError(f"{len(predictions)} predictions but {len(references)} references: pass one per example")
    validator = _schema_validator(schema)
    bleu, chrf = _sacrebleu_metrics()
    refs = [_reference_object(r, i) for i, r in enumerate(references)]
    pred_objs = [parse_json(p) for p in predictions]
    pred_summaries = [str((o or {}).get(SUMMARY_KEY) or "") for o in pred_objs]
    ref_summaries = [str(r.get(SUMMARY_KEY) or "") for r in refs]
    bleu_stats = bleu._extract_corpus_statistics(pred_summaries, [ref_summaries])
    chrf_stats = chrf._extract_corpus_statistics(pred_summaries, [ref_summaries])
    records = []
    for i, (text, obj, ref) in enumerate(zip(predictions, pred_objs, refs)):
        valid = obj is not None
        schema_errors = _schema_errors(obj, validator) if valid else ["invalid JSON"]
        record: dict[str, Any] = {"index": i, "prediction": text, "reference": json.dumps(ref, ensure_ascii=False),
                                  "json_valid": float(valid), "schema_valid": float(not schema_errors)}
        for key in FIELD_KEYS:
            record[f"field_accuracy_{key}"] = float(valid and key in obj and obj[key] == ref.get(key))
        record["field_accuracy"] = sum(record[f"field_accuracy_{k}"] for k in FIELD_KEYS) / len(FIELD_KEYS)
        record["exact_match"] = float(valid and obj == ref)
        record["summary_token_f1"] = token_f1(pred_summaries[i], ref_summaries[i])
        record["summary_rouge_l"] = rouge_l(pred_summaries[i], ref_summaries[i])
        record["pred_category"] = obj.get("category") if valid and isinstance(obj.get("category"), str) else INVALID
        record["ref_category"] = str(ref.get("category"))
        record["schema_errors"] = schema_errors if valid else []
        record["errors"] = error_kinds(obj, ref, schema_errors, record["summary_token_f1"])
        record["bleu_stats"], record["chrf_stats"] = list(bleu_stats[i]), list(chrf_stats[i])
        records.append(record)
    return records


def aggregate(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The :func:`score` dictionary from per-example records. Taught in 04_evaluation."""
    n = len(records)
    result: dict[str, float] = {"n": n}
    for key in PER_EXAMPLE_METRICS:
        result[key] = sum(r[key] for r in records) / n if n else 0.0
    result["summary_bleu"], result["summary_chrf"] = _corpus_scores(
        [r["bleu_stats"] for r in records], [r["chrf_stats"] for r in records]
    )
    result["category_accuracy"] = result["field_accuracy_category"]
    result["category_macro_f1"] = macro_f1([r["pred_category"] for r in records], [r["ref_category"] for r in records])
    return {key: result[key] for key in METRIC_DOCS}


def score(
    predictions: Sequence[str], references: Sequence[str | dict[str, Any]], schema: dict[str, Any] | None = None
) -> dict[str, float]:
    """Every metric of :data:`METRIC_DOCS` for predictions against references. Taught in 04_evaluation."""
    return aggregate(score_rows(predictions, references, schema))
