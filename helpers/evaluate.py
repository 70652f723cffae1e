"""Base vs tuned: generation, metrics, A/B with CIs, judge, canaries, error analysis. Taught in 04_evaluation.

Everything here scores the course task (support ticket -> JSON with ``category``, ``product``, ``order_id``,
``priority``, ``summary``) with reference packages called directly: ``jsonschema`` for the schema, ``rouge-score``
(with a Unicode tokenizer: its default one drops every non-ASCII character), and ``sacrebleu`` for BLEU and chrF.
Nothing runs on import; torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import csv
import html
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

if TYPE_CHECKING:  # heavy imports stay out of module import time
    import pandas as pd
    from matplotlib.figure import Figure

FIELD_KEYS = ("category", "product", "order_id", "priority")  # the categorical / identifier fields
SUMMARY_KEY = "summary"
INVALID = "<invalid>"  # the "class" of a prediction with no usable category

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


class EvaluationError(ValueError):
    """Input the evaluation cannot score; the message names what, where and the fix."""


# ---------------------------------------------------------------------------------------------------- rows


def conversations_from_rows(rows: Sequence[dict[str, Any]]) -> list[list[dict[str, str]]]:
    """The prompt part of each chat row (the final assistant turn dropped). Taught in 04_evaluation."""
    conversations = []
    for i, row in enumerate(rows):
        messages = row.get("messages") if isinstance(row, dict) else None
        if not messages:
            raise EvaluationError(f"row {i} has no 'messages' list: pass chat rows like data/tickets/test.jsonl")
        if messages[-1].get("role") == "assistant":
            messages = messages[:-1]
        conversations.append([dict(m) for m in messages])
    return conversations


def references_from_rows(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The reference answer (final assistant turn, a JSON string) of each chat row. Taught in 04_evaluation."""
    references = []
    for i, row in enumerate(rows):
        messages = row.get("messages") if isinstance(row, dict) else None
        if not messages or messages[-1].get("role") != "assistant":
            raise EvaluationError(f"row {i} does not end with an assistant turn: it has no reference answer")
        references.append(messages[-1]["content"])
    return references


def tickets_from_rows(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The ticket text (last user turn) of each chat row. Taught in 04_evaluation."""
    tickets = []
    for conversation in conversations_from_rows(rows):
        users = [m["content"] for m in conversation if m.get("role") == "user"]
        tickets.append(users[-1] if users else "")
    return tickets


# ---------------------------------------------------------------------------------------------------- generation


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every id that ends an answer: the tokenizer's EOS plus the model's generation-config EOS ids."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos]:
        if value is not None and int(value) not in ids:
            ids.append(int(value))
    if not ids:
        raise EvaluationError("the tokenizer has no eos_token: set tokenizer.eos_token to the end-of-turn token")
    return ids


# Plain greedy decoding, every setting spelled out: a hub model's generation_config can carry sampling defaults
# (Qwen2.5: temperature 0.7, top_p 0.8, top_k 20, repetition_penalty 1.05-1.1) that generate() would otherwise apply,
# and a repetition penalty makes copying an order id from the ticket *less* likely. The values are transformers'
# neutral defaults (unused without sampling, so no warning). Recorded in the run manifest and the course report.
DECODING: dict[str, Any] = {"do_sample": False, "num_beams": 1, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
                            "temperature": 1.0, "top_p": 1.0, "top_k": 50}


def decoding_kwargs(model: Any, tokenizer: Any, max_new_tokens: int) -> dict[str, Any]:
    """The ``generate()`` arguments of the course's decoding: :data:`DECODING`, the cap, every EOS id, the pad id."""
    eos_ids = _eos_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    return {**DECODING, "max_new_tokens": max_new_tokens, "eos_token_id": eos_ids, "pad_token_id": pad_id,
            "use_cache": True}


def generate(
    model: Any,
    tokenizer: Any,
    conversations: list[list[dict[str, str]]],
    max_new_tokens: int,
    batch_size: int = 16,
    progress: bool = True,
) -> list[str]:
    """Batched greedy answers to chat prompts, in input order, new text only. Taught in 04_evaluation."""
    import torch
    from tqdm.auto import tqdm

    if max_new_tokens < 1 or batch_size < 1:
        raise EvaluationError(f"max_new_tokens={max_new_tokens} and batch_size={batch_size} must both be >= 1")
    if not getattr(tokenizer, "chat_template", None):
        raise EvaluationError("the tokenizer has no chat_template: load it with helpers.models.load_tokenizer(cfg)")
    settings = decoding_kwargs(model, tokenizer, max_new_tokens)  # greedy, no penalties, every EOS id
    eos_ids = settings["eos_token_id"]
    prompts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))  # longest first: similar lengths per batch
    outputs: list[str] = [""] * len(encoded)
    config = model.config
    saved = (tokenizer.padding_side, config.use_cache, model.training)
    tokenizer.padding_side = "left"  # decoder-only models continue from the right end of every row
    config.use_cache = True  # gradient checkpointing switches the KV cache off; generation needs it back
    model.eval()
    device = next(model.parameters()).device
    try:
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        for batch in tqdm(batches, desc="generate", disable=not progress):
            inputs = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt").to(device)
            with torch.no_grad():
                out = model.generate(**inputs, **settings)
            for row, i in zip(out[:, inputs["input_ids"].shape[1]:].tolist(), batch):
                stop = next((j for j, t in enumerate(row) if t in eos_ids), len(row))  # cut at the first EOS
                outputs[i] = tokenizer.decode(row[:stop], skip_special_tokens=True).strip()
    finally:
        tokenizer.padding_side, config.use_cache = saved[0], saved[1]
        model.train(saved[2])
    return outputs


# ---------------------------------------------------------------------------------------------------- parsing

_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.DOTALL | re.IGNORECASE)


def parse_json(text: str) -> dict[str, Any] | None:
    """The JSON object a model answered (a surrounding ```json fence allowed), or None. Taught in 04_evaluation."""
    text = (text or "").strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


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


def _schema_validator(schema: dict[str, Any] | None) -> Any:
    from jsonschema import Draft202012Validator

    if schema is None:
        from helpers.data.generate import TICKET_SCHEMA

        schema = TICKET_SCHEMA
    return Draft202012Validator(schema)


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
    """Token-overlap F1 (SQuAD style, Unicode words) between two strings. Taught in 04_evaluation."""
    pred, ref = unicode_tokens(prediction), unicode_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure from rouge-score with the Unicode tokenizer. Taught in 04_evaluation."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=UnicodeTokenizer())
    return scorer.score(reference, prediction)["rougeL"].fmeasure


def macro_f1(predictions: Sequence[str], references: Sequence[str], labels: Iterable[str] | None = None) -> float:
    """Macro-F1 over ``labels`` (default: classes seen in either list, except the invalid class). Taught in 04."""
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


def _schema_errors(obj: dict[str, Any], validator: Any) -> list[str]:
    return sorted(e.message for e in validator.iter_errors(obj))


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


# ---------------------------------------------------------------------------------------------------- errors

ERROR_KINDS: dict[str, str] = {
    "invalid_json": "the output is not one JSON object",
    "schema_violation": "parsed, but fails the JSON Schema (wrong type, enum, pattern, extra or missing key)",
    "missing_field": "a required key is absent",
    "hallucinated_field": "a key that is not in the schema",
    "wrong_category": "category differs from the reference",
    "wrong_product": "product differs from the reference",
    "wrong_order_id": "the ticket names an order but the answer gives another id or null",
    "hallucinated_order_id": "the ticket names no order but the answer invents an id",
    "wrong_priority": "priority differs from the reference",
    "weak_summary": "summary token F1 below 0.5",
}


def error_kinds(
    obj: dict[str, Any] | None, ref: dict[str, Any], schema_errors: Sequence[str] = (), summary_f1: float = 1.0
) -> list[str]:
    """The kinds of mistake in one parsed answer (keys of :data:`ERROR_KINDS`). Taught in 04_evaluation."""
    if obj is None:
        return ["invalid_json"]
    kinds = ["schema_violation"] if schema_errors else []
    if any(k not in obj for k in ref):
        kinds.append("missing_field")
    if any(k not in ref for k in obj):
        kinds.append("hallucinated_field")
    for key in ("category", "product", "priority"):
        if key in obj and obj[key] != ref.get(key):
            kinds.append(f"wrong_{key}")
    if "order_id" in obj and obj["order_id"] != ref.get("order_id"):
        kinds.append("hallucinated_order_id" if ref.get("order_id") is None else "wrong_order_id")
    if summary_f1 < 0.5:
        kinds.append("weak_summary")
    return kinds


def error_table(records: Sequence[dict[str, Any]], examples: int = 2) -> "pd.DataFrame":
    """Failures grouped by kind: count, share of examples and a few example outputs. Taught in 04_evaluation."""
    import pandas as pd

    rows = []
    for kind, meaning in ERROR_KINDS.items():
        hits = [r for r in records if kind in r["errors"]]
        samples = [f"#{r['index']}: {r['prediction'][:80]!r}" for r in hits[:examples]]
        rows.append({"kind": kind, "count": len(hits), "share": len(hits) / max(len(records), 1),
                     "meaning": meaning, "examples": " | ".join(samples)})
    return pd.DataFrame(rows).sort_values("count", ascending=False, kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------- A/B


def _metric_stats(records: Sequence[dict[str, Any]], metric: str, labels: Sequence[str]) -> Any:
    """Per-example statistics whose column sums determine ``metric`` (so a resample is a gather + sum)."""
    import numpy as np

    if metric in PER_EXAMPLE_METRICS:
        return np.array([[r[metric]] for r in records], dtype=float)
    if metric == "summary_bleu":
        return np.array([r["bleu_stats"] for r in records], dtype=float)
    if metric == "summary_chrf":
        return np.array([r["chrf_stats"] for r in records], dtype=float)
    if metric == "category_macro_f1":  # per class: true positive, false positive, false negative
        cols = []
        for label in labels:
            cols += [[r["pred_category"] == label and r["ref_category"] == label for r in records],
                     [r["pred_category"] == label and r["ref_category"] != label for r in records],
                     [r["pred_category"] != label and r["ref_category"] == label for r in records]]
        return np.array(cols, dtype=float).T.reshape(len(records), -1)
    raise EvaluationError(f"unknown metric {metric!r}: use one of {', '.join(PER_EXAMPLE_METRICS + CORPUS_METRICS)}")


def _metric_from_sums(metric: str, sums: Any, n: int) -> Any:
    """The metric for each row of summed statistics (rows = bootstrap resamples)."""
    import numpy as np

    if metric in PER_EXAMPLE_METRICS:
        return sums[:, 0] / n
    if metric == "category_macro_f1":
        tp, fp, fn = sums[:, 0::3], sums[:, 1::3], sums[:, 2::3]
        denom = 2 * tp + fp + fn
        f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
        present = (tp + fp + fn) > 0  # a class absent from a resample's references and predictions does not count
        return np.where(present.any(axis=1), (f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1), 0.0)
    bleu, chrf = _sacrebleu_metrics()
    scorer = bleu if metric == "summary_bleu" else chrf
    return np.array([scorer._compute_score_from_stats(row.tolist()).score / 100 for row in sums])


def paired_bootstrap(
    base: Sequence[dict[str, Any]],
    tuned: Sequence[dict[str, Any]],
    metrics: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> "pd.DataFrame":
    """Tuned minus base for each metric, with a paired bootstrap CI and win/tie/loss counts. Taught in 04_evaluation."""
    import numpy as np
    import pandas as pd

    if len(base) != len(tuned) or not base:
        raise EvaluationError(f"paired A/B needs the same non-empty examples: got {len(base)} base, {len(tuned)} tuned")
    if [r["reference"] for r in base] != [r["reference"] for r in tuned]:
        raise EvaluationError("base and tuned records are scored against different references: score the same rows")
    metrics = list(metrics or PER_EXAMPLE_METRICS + CORPUS_METRICS)
    n = len(base)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))  # the same resamples for both systems
    labels = sorted({r["ref_category"] for r in base} | {r["pred_category"] for r in [*base, *tuned]} - {INVALID})
    alpha = (1 - confidence) / 2
    rows = []
    for metric in metrics:
        sb, st = _metric_stats(base, metric, labels), _metric_stats(tuned, metric, labels)
        point_b = _metric_from_sums(metric, sb.sum(axis=0, keepdims=True), n)[0]
        point_t = _metric_from_sums(metric, st.sum(axis=0, keepdims=True), n)[0]
        diffs = _metric_from_sums(metric, st[idx].sum(axis=1), n) - _metric_from_sums(metric, sb[idx].sum(axis=1), n)
        row = {"metric": metric, "base": point_b, "tuned": point_t, "diff": point_t - point_b,
               "ci_low": float(np.quantile(diffs, alpha)), "ci_high": float(np.quantile(diffs, 1 - alpha))}
        if metric in PER_EXAMPLE_METRICS:
            delta = st[:, 0] - sb[:, 0]
            row.update(wins=int((delta > 0).sum()), ties=int((delta == 0).sum()), losses=int((delta < 0).sum()))
        else:  # corpus metrics have no per-example value to compare
            row.update(wins=None, ties=None, losses=None)
        row["significant"] = bool(row["ci_low"] > 0 or row["ci_high"] < 0)
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.astype({"wins": "Int64", "ties": "Int64", "losses": "Int64"})  # empty for corpus metrics


def plot_ab(table: "pd.DataFrame", title: str = "tuned - base (95% paired bootstrap CI)") -> "Figure":
    """A forest plot of the A/B differences with their CIs. Taught in 04_evaluation."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.35 * len(table) + 1.2))
    y = list(range(len(table)))[::-1]
    colors = ["tab:green" if lo > 0 else "tab:red" if hi < 0 else "tab:gray"
              for lo, hi in zip(table["ci_low"], table["ci_high"])]
    for yi, diff, lo, hi, color in zip(y, table["diff"], table["ci_low"], table["ci_high"], colors):
        ax.errorbar([diff], [yi], xerr=[[diff - lo], [hi - diff]], fmt="o", color=color, capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, table["metric"])
    ax.set_xlabel("difference (tuned - base)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------- judge

JUDGE_RUBRIC = """You are grading two answers to the same support-ticket extraction task.
The correct answer is a JSON object with the keys summary, category, product, order_id, priority.
Score each answer on: (1) valid JSON with exactly those keys; (2) category, product, order_id and priority correct
for the ticket (null when the ticket does not say; never an invented order id); (3) a short, faithful summary.
Judge content only: ignore the order in which the answers are shown and their length.
End your reply with exactly one verdict line: [[A]] if answer A is better, [[B]] if answer B is better, [[TIE]] if
they are equally good or equally bad."""

_SECTION = "\n### {}\n"


def judge_prompt(ticket: str, answer_a: str, answer_b: str, reference: str | None = None) -> str:
    """The rubric prompt for one pairwise comparison (reference optional). Taught in 04_evaluation."""
    parts = [JUDGE_RUBRIC, _SECTION.format("Ticket") + ticket]
    if reference is not None:
        parts.append(_SECTION.format("Reference answer") + reference)
    parts += [_SECTION.format("Answer A") + answer_a, _SECTION.format("Answer B") + answer_b,
              _SECTION.format("Verdict")]
    return "\n".join(parts)


def prompt_sections(prompt: str) -> dict[str, str]:
    """The ``### Name`` sections of a :func:`judge_prompt` (for judges that read them). Taught in 04_evaluation."""
    pieces = re.split(r"\n### (Ticket|Reference answer|Answer A|Answer B|Verdict)\n", prompt)
    return {name: text.strip() for name, text in zip(pieces[1::2], pieces[2::2])}


_VERDICT_PATTERNS = (
    re.compile(r"\[\[\s*(A|B|TIE)\s*\]\]", re.IGNORECASE),
    re.compile(r"verdict\s*[:=\-]?\s*\**\s*\(?(A|B|tie)\b", re.IGNORECASE),
    re.compile(r"\b(?:answer|response|assistant|option)\s+(A|B)\s+(?:is|was|wins)\s+(?:better|superior|preferred)",
               re.IGNORECASE),
    re.compile(r"\b(tie)\b", re.IGNORECASE),
)


def parse_verdict(text: str) -> str | None:
    """``"A"``, ``"B"``, ``"tie"`` or None from a judge reply, tolerant of junk around it. Taught in 04_evaluation."""
    for pattern in _VERDICT_PATTERNS:
        found = pattern.findall(text or "")
        if found:
            value = found[-1].upper()  # the last verdict wins: judges often restate the options first
            return "tie" if value == "TIE" else value
    return None


def judge_pairwise(
    judge: Callable[[str], str],
    tickets: Sequence[str],
    answers_1: Sequence[str],
    answers_2: Sequence[str],
    references: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Ask ``judge`` twice per example with the answers swapped; keep only verdicts that survive the swap.

    Returns wins/ties for system 1 and 2, ``agreement`` (share of examples whose two verdicts agree),
    ``first_position_rate`` (share of parsed verdicts naming whichever answer was shown first: 0.5 means no order
    bias), ``unparsed`` and the per-example ``records``. Taught in 04_evaluation.
    """
    if not (len(tickets) == len(answers_1) == len(answers_2)):
        raise EvaluationError("tickets, answers_1 and answers_2 must have the same length")
    refs = list(references) if references is not None else [None] * len(tickets)
    prompts = [judge_prompt(t, a, b, r) for t, x, y, r in zip(tickets, answers_1, answers_2, refs)
               for a, b in ((x, y), (y, x))]  # per ticket: system 1 shown first, then system 2 shown first
    many = getattr(judge, "many", None)  # a judge may answer a list of prompts at once (batched generation)
    replies = list(many(prompts)) if callable(many) else [judge(p) for p in prompts]
    records, first, parsed = [], 0, 0
    for i in range(len(tickets)):
        v12, v21 = parse_verdict(replies[2 * i]), parse_verdict(replies[2 * i + 1])
        as_1 = {"A": "1", "B": "2", "tie": "tie", None: None}[v12]  # system 1 was shown as A
        as_2 = {"A": "2", "B": "1", "tie": "tie", None: None}[v21]  # system 1 was shown as B
        for v in (v12, v21):
            if v in ("A", "B"):
                parsed += 1
                first += v == "A"
        final = as_1 if as_1 == as_2 and as_1 is not None else "tie"  # disagreement = order decided it: a tie
        records.append({"index": i, "order_12": v12, "order_21": v21, "agree": as_1 == as_2 and as_1 is not None,
                        "final": final})
    n = len(records)
    return {
        "n": n,
        "wins_1": sum(r["final"] == "1" for r in records),
        "wins_2": sum(r["final"] == "2" for r in records),
        "ties": sum(r["final"] == "tie" for r in records),
        "agreement": sum(r["agree"] for r in records) / n if n else 0.0,
        "first_position_rate": first / parsed if parsed else float("nan"),
        "unparsed": sum((r["order_12"] is None) + (r["order_21"] is None) for r in records),
        "records": records,
    }


class ReferenceFieldJudge:
    """A deterministic STAND-IN for an LLM judge: it compares each answer's fields with the reference answer.

    It is not a language model and cannot judge free text; it exists so cpu-tiny can exercise the judge pipeline
    (prompt, position swap, agreement, verdict parsing) offline. Use :func:`model_judge` with a real instruct model
    on a GPU profile. Taught in 04_evaluation.
    """

    name = "ReferenceFieldJudge (deterministic stand-in, not an LLM)"

    def __init__(self, schema: dict[str, Any] | None = None, verbose: bool = True) -> None:
        self.schema = schema
        if verbose:
            print(f"judge: {self.name} - compares JSON fields with the reference; swap in model_judge() on a GPU")

    def points(self, answer: str, reference: str) -> float:
        """Rubric points: schema validity + the four fields + summary token F1 (0..6)."""
        record = score_rows([answer], [reference], self.schema)[0]
        return record["json_valid"] + record["schema_valid"] + 4 * record["field_accuracy"] + record["summary_token_f1"]

    def __call__(self, prompt: str) -> str:
        sections = prompt_sections(prompt)
        if "Reference answer" not in sections:
            raise EvaluationError("ReferenceFieldJudge needs references: pass references= to judge_pairwise")
        a = self.points(sections["Answer A"], sections["Reference answer"])
        b = self.points(sections["Answer B"], sections["Reference answer"])
        verdict = "TIE" if abs(a - b) < 1e-9 else "A" if a > b else "B"
        return f"points A={a:.2f} B={b:.2f}\n[[{verdict}]]"


@dataclass
class ModelJudge:
    """A judge backed by a local chat model: greedy answers via :func:`generate`, batched in ``many``.

    ``without_adapter=True`` judges with a PEFT model's base weights (``model.disable_adapter()``), so the tuned
    adapter does not grade its own answers. Taught in 04_evaluation.
    """

    model: Any
    tokenizer: Any
    max_new_tokens: int = 256
    without_adapter: bool = False
    batch_size: int = 8

    def many(self, prompts: Sequence[str]) -> list[str]:
        """Replies to several prompts in batches."""
        import contextlib

        conversations = [[{"role": "user", "content": p}] for p in prompts]
        with self.model.disable_adapter() if self.without_adapter else contextlib.nullcontext():
            return generate(self.model, self.tokenizer, conversations, self.max_new_tokens, self.batch_size,
                            progress=False)

    def __call__(self, prompt: str) -> str:
        return self.many([prompt])[0]


def model_judge(model: Any, tokenizer: Any, max_new_tokens: int = 256, without_adapter: bool = False) -> ModelJudge:
    """A :class:`ModelJudge` for a loaded chat model. Taught in 04_evaluation."""
    return ModelJudge(model, tokenizer, max_new_tokens, without_adapter)


# ---------------------------------------------------------------------------------------------------- canaries


@dataclass(frozen=True)
class Canary:
    """One general-capability check run before and after fine-tuning. Taught in 04_evaluation.

    ``continuation``: greedy raw-text continuation of ``prompt`` must contain ``expected`` (``"a|b"``: either).
    ``preference``: the model must give ``prompt`` a higher total log-likelihood than ``worse``.
    ``instruction``: the greedy chat answer to ``prompt`` must contain ``expected`` (instruct models only).
    """

    name: str
    kind: str
    prompt: str
    expected: str = ""
    worse: str = ""
    max_new_tokens: int = 8


def _log_likelihood(model: Any, tokenizer: Any, text: str) -> float:
    """Total log-probability of ``text``'s tokens after the first (nats)."""
    import torch

    device = next(model.parameters()).device
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"].to(device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])
    return float(logp.sum())


def _continue_text(model: Any, tokenizer: Any, text: str, max_new_tokens: int) -> str:
    """Greedy raw-text continuation (no chat template: the base LM's own skill)."""
    import torch

    inputs = tokenizer(text, add_special_tokens=False, return_tensors="pt").to(next(model.parameters()).device)
    with torch.no_grad():
        out = model.generate(**inputs, **decoding_kwargs(model, tokenizer, max_new_tokens))
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def run_canaries(model: Any, tokenizer: Any, canaries: Sequence[Canary]) -> "pd.DataFrame":
    """Pass/fail of every canary with what the model did (output or log-likelihood margin). Taught in 04_evaluation."""
    import pandas as pd

    saved_cache, was_training = model.config.use_cache, model.training
    model.config.use_cache = True
    model.eval()
    rows = []
    try:
        for c in canaries:
            if c.kind == "preference":
                margin = _log_likelihood(model, tokenizer, c.prompt) - _log_likelihood(model, tokenizer, c.worse)
                rows.append({"name": c.name, "kind": c.kind, "passed": margin > 0,
                             "detail": f"margin {margin:+.2f} nats"})
            elif c.kind in ("continuation", "instruction"):
                if c.kind == "continuation":
                    out = _continue_text(model, tokenizer, c.prompt, c.max_new_tokens)
                else:
                    conv = [[{"role": "user", "content": c.prompt}]]
                    out = generate(model, tokenizer, conv, c.max_new_tokens, progress=False)[0]
                passed = any(alt.lower() in out.lower() for alt in c.expected.split("|"))
                rows.append({"name": c.name, "kind": c.kind, "passed": passed,
                             "detail": out.strip()[:80]})
            else:
                raise EvaluationError(
                    f"canary {c.name!r} has kind {c.kind!r}: use continuation, preference or instruction")
    finally:
        model.config.use_cache = saved_cache
        model.train(was_training)
    return pd.DataFrame(rows)


def canary_regressions(before: "pd.DataFrame", after: "pd.DataFrame") -> list[str]:
    """Names of canaries that passed before and fail after (forgetting). Taught in 04_evaluation."""
    was = dict(zip(before["name"], before["passed"]))
    now = dict(zip(after["name"], after["passed"]))
    return [name for name, ok in was.items() if ok and not now.get(name, False)]


# ---------------------------------------------------------------------------------------------------- human eval

RUBRIC_COLUMNS = (
    "A_valid_json (y/n)", "A_fields_correct (0-4)", "A_summary_faithful (1-5)",
    "B_valid_json (y/n)", "B_fields_correct (0-4)", "B_summary_faithful (1-5)",
    "preferred (A/B/tie)", "notes",
)


def human_eval_sheet(
    tickets: Sequence[str],
    answers_base: Sequence[str],
    answers_tuned: Sequence[str],
    out_dir: Path | str,
    seed: int = 0,
    limit: int | None = None,
) -> dict[str, Path]:
    """Blind A/B review sheet (CSV + HTML) with rubric columns and a separate hidden key. Taught in 04_evaluation.

    Rows are shuffled and each row's A/B order is random (seeded); ``key.csv`` maps every item back to the systems
    and must not be shown to reviewers.
    """
    if not (len(tickets) == len(answers_base) == len(answers_tuned)):
        raise EvaluationError("tickets, answers_base and answers_tuned must have the same length")
    rng = random.Random(seed)
    order = list(range(len(tickets)))
    rng.shuffle(order)
    order = order[:limit] if limit else order
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sheet, key = [], []
    for item, i in enumerate(order, start=1):
        base_first = rng.random() < 0.5
        a, b = (answers_base[i], answers_tuned[i]) if base_first else (answers_tuned[i], answers_base[i])
        sheet.append({"item": item, "ticket": tickets[i], "answer_A": a, "answer_B": b,
                      **dict.fromkeys(RUBRIC_COLUMNS, "")})
        key.append({"item": item, "example_index": i, "A": "base" if base_first else "tuned",
                    "B": "tuned" if base_first else "base"})
    paths = {"csv": out / "sheet.csv", "html": out / "sheet.html", "key": out / "key.csv"}
    for path, rows in ((paths["csv"], sheet), (paths["key"], key)):
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["item"])
            writer.writeheader()
            writer.writerows(rows)
    paths["html"].write_text(_sheet_html(sheet), encoding="utf-8")
    return paths


def _sheet_html(sheet: Sequence[dict[str, Any]]) -> str:
    """A printable side-by-side review page (every cell escaped)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ("item", "ticket", "answer A", "answer B", *RUBRIC_COLUMNS))
    body = []
    for row in sheet:
        cells = [str(row["item"]), row["ticket"], row["answer_A"], row["answer_B"]]
        tds = "".join(f"<td><pre>{html.escape(c)}</pre></td>" if i in (2, 3) else f"<td>{html.escape(c)}</td>"
                      for i, c in enumerate(cells))
        body.append(f"<tr>{tds}{'<td></td>' * len(RUBRIC_COLUMNS)}</tr>")
    style = ("body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #999;padding:4px;"
             "vertical-align:top}pre{white-space:pre-wrap;max-width:28em;margin:0}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Blind A/B review</title><style>{style}</style>"
            f"</head><body><h1>Blind A/B review</h1><p>Answers A and B come from two systems in a random order per "
            f"row. Fill in the rubric columns; do not open key.csv.</p><table><tr>{head}</tr>{''.join(body)}"
            f"</table></body></html>\n")


# ---------------------------------------------------------------------------------------------------- decision table


def extend_decision_table(path: Path | str, row: dict[str, Any]) -> "pd.DataFrame":
    """Add (or replace, by ``approach``) one row of the decision table CSV from 01_decide. Taught in 04_evaluation."""
    import pandas as pd

    if "approach" not in row:
        raise EvaluationError(f"decision-table row {row} has no 'approach': name it, e.g. approach='qlora'")
    path = Path(path)
    table = pd.read_csv(path) if path.is_file() and path.stat().st_size else pd.DataFrame(columns=["approach"])
    if "approach" not in table.columns:
        raise EvaluationError(f"{path}:1 has no 'approach' column: regenerate it by running 01_decide")
    table = table[table["approach"] != row["approach"]]
    table = pd.concat([table, pd.DataFrame([row])], ignore_index=True) if len(table) else pd.DataFrame([row])
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return table


def _shuffled(text: str, seed: int = 0) -> str:
    """The same words in a seeded random order (a fluent sentence's ungrammatical twin)."""
    words = text.rstrip(".").split()
    rng = random.Random(seed)
    while True:
        shuffled = words[:]
        rng.shuffle(shuffled)
        if shuffled != words or len(set(words)) < 2:
            return " ".join(shuffled) + "."


# Fluent sentences in the style of the tiny model's pretraining text (stdlib docstrings, support tickets): the model
# should find each likelier than the same words shuffled. They test language knowledge, not the JSON task.
FLUENCY_SENTENCES = (
    "Return the number of items in the list.",
    "Raise ValueError if the argument is negative.",
    "If the file does not exist, an exception is raised.",
    "This method returns a new string with the given prefix removed.",
    "The default value is None.",
    "My order has not arrived yet and the tracking number does not work.",
    "I would like to return the headphones I bought last week.",
    "Please let me know when the package will be delivered.",
)

# Raw-text continuations whose greedy completion (6 tokens) must contain ``expected``: set phrases of the tiny model's
# pretraining text that the shipped base model completes (checked in 04_evaluation before any adapter is applied).
CONTINUATIONS = (
    ("doc_file_exist", "If the file does not", "exist"),
    ("doc_new_copy", "Return a new", "copy"),
    ("doc_name_of", "Return the name of the", "object"),
    ("ticket_emergency", "Please treat this as an", "emergency"),
    ("ticket_arrive", "was supposed to arrive last", "week"),
    ("ticket_right_now", "I need an answer right", "now"),
    ("ticket_chance", "No rush, whenever you get a", "chance"),
    ("ticket_greeting", "Dear Nimbus", "support"),
)

INSTRUCTIONS = (
    ("capital", "What is the capital of France? Answer with one word.", "Paris"),
    ("arithmetic", "What is 12 times 3? Answer with the number only.", "36|thirty-six"),
    ("translate", "Translate 'thank you' into French. Answer with the translation only.", "merci"),
    ("python_keyword", "Which Python keyword defines a function? Answer with the keyword only.", "def"),
    ("antonym", "What is the opposite of 'hot'? Answer with one word.", "cold"),
    ("list_count", "How many items are in this list: apple, pear, plum? Answer with the number only.", "3|three"),
)


def default_canaries(cfg: Any) -> list[Canary]:
    """The forgetting suite: fluency preferences, plus the tiny model's continuations or GPU instructions. Taught in 04.

    The continuations are phrases the shipped tiny model completes; a hub instruct model is checked on short
    instructions instead (the tiny base model cannot follow any).
    """
    suite = [Canary(f"fluency_{i}", "preference", text, worse=_shuffled(text, seed=i))
             for i, text in enumerate(FLUENCY_SENTENCES)]
    if getattr(cfg, "name", cfg) == "cpu-tiny":
        return suite + [Canary(f"continue_{name}", "continuation", prompt, expected=expected, max_new_tokens=6)
                        for name, prompt, expected in CONTINUATIONS]
    return suite + [Canary(f"instruct_{name}", "instruction", prompt, expected=expected, max_new_tokens=16)
                    for name, prompt, expected in INSTRUCTIONS]
