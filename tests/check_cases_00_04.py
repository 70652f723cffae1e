"""Cases for the checkers of notebooks 00-04 (run by tests/test_check.py): small fixtures, common mistakes."""

from __future__ import annotations

import functools
import json

from check_cases import Case


# ---------------------------------------------------------------------------------------------------------- 00
def _profile_answer(rule):
    from helpers.check.nb00 import MACHINES

    return {name: rule(capability, gib) for name, (capability, gib) in MACHINES.items()}


def _ignores_memory(capability, gib):
    from helpers import config

    return config.profile_for_gpu(capability, None if capability is None else 80.0)


@functools.lru_cache(maxsize=1)
def _tiny_4bit():
    from helpers import config, models

    return models.load_model(config.get_profile("cpu-tiny"), quantized=True)


def _linear4bit(model):
    import bitsandbytes as bnb

    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]


# ---------------------------------------------------------------------------------------------------------- 01
ZERO = {"prompt_tokens": 120.0, "completion_tokens": 40.0}
FEW = {"prompt_tokens": 520.0, "completion_tokens": 38.0}


@functools.lru_cache(maxsize=1)
def _bm25_and_questions():
    from helpers import rag
    from helpers.data import kb

    chunks = rag.chunk_sections(kb.load_sections(), max_words=80, overlap=20)
    return rag.BM25Retriever(chunks), kb.load_questions()


def _recall(retriever, questions, k):
    from helpers import rag

    ranked = retriever.search_many([q.question for q in questions], k)
    return rag.recall_at_k(ranked, [q.passage_ids for q in questions], k)


# ---------------------------------------------------------------------------------------------------------- 02
def _splits():
    from helpers.data import generate

    rows = generate.generate_tickets(n=150)
    return {"train": rows[:100], "validation": rows[100:120], "test": rows[120:]},


def _share_gap(splits, count=False):
    from helpers.data import balance_report

    train, test = balance_report(splits["train"]), balance_report(splits["test"])
    nt, ns = (1, 1) if count else (len(splits["train"]), len(splits["test"]))
    return max(abs(train.get(c, 0) / nt - test.get(c, 0) / ns) for c in set(train) | set(test))


def _copy_and_kept():
    from helpers import data
    from helpers.data import generate

    kept = generate.generate_tickets(n=40)
    return data.make_near_duplicates(kept, 1, seed=3)[0], kept


def _jaccard(copy, kept, k=5, lower=True):
    from helpers.data import ticket_text

    def grams(text):
        text = " ".join((text.lower() if lower else text).split())
        return {text[i:i + k] for i in range(max(1, len(text) - k + 1))}

    a, b = grams(ticket_text(copy)), grams(ticket_text(kept[copy["metadata"]["planted_from"]]))
    return len(a & b) / len(a | b)


# ---------------------------------------------------------------------------------------------------------- 03
@functools.lru_cache(maxsize=1)
def _tokenizer_and_row():
    from helpers import config, data, models

    return models.load_tokenizer(config.get_profile("cpu-tiny")), data.load_split("train")[1]


def _mask_count(tokenizer, row):
    out = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True)
    return int(sum(out["assistant_masks"]))


def _adapter(shape, r, names, layers=True):
    per_block = sum(r * sum(shape.linear_shapes()[n]) for n in names)
    return per_block * (shape.num_layers if layers else 1)


# ---------------------------------------------------------------------------------------------------------- 04
def _answer(category, product, order_id, priority, summary="Order issue"):
    return json.dumps({"summary": summary, "category": category, "product": product, "order_id": order_id,
                       "priority": priority})


REFS = [_answer("shipping", "PulseBuds", "ORD-100001", "high"), _answer("billing", None, None, "low"),
        _answer("account", None, None, "medium"), _answer("technical", "AeroDock", None, "medium"),
        _answer("returns", "PulseBuds", "ORD-200002", "low")]
BASE = ["not json", _answer("billing", None, None, "high"), _answer("account", None, None, "medium"),
        _answer("technical", "AeroDock", None, "high"), _answer("shipping", None, None, "low")]
TUNED = [_answer("shipping", "PulseBuds", None, "high"), _answer("billing", None, None, "low"),
         _answer("account", None, None, "medium"), "{broken", _answer("returns", "PulseBuds", None, "low")]


def _wtl(base, tuned, refs):
    from helpers import evaluate

    b = [r["field_accuracy"] for r in evaluate.score_rows(base, refs)]
    t = [r["field_accuracy"] for r in evaluate.score_rows(tuned, refs)]
    return (sum(y > x for x, y in zip(b, t)), sum(y == x for x, y in zip(b, t)), sum(y < x for x, y in zip(b, t)))


def _records():
    import random

    rng = random.Random(0)
    base = [{"field_accuracy": rng.choice((0.0, 0.2, 0.4, 0.6))} for _ in range(100)]
    tuned = [{"field_accuracy": min(1.0, b["field_accuracy"] + rng.choice((0.0, 0.2, 0.4, 0.6)))} for b in base]
    return base, tuned


def _interval(base, tuned, n=25, seed=7):
    from helpers import evaluate

    extra = {"ref_category": "billing", "pred_category": "billing"}
    rows = evaluate.paired_bootstrap([{**b, **extra, "reference": str(i)} for i, b in enumerate(base[:n])],
                                     [{**t, **extra, "reference": str(i)} for i, t in enumerate(tuned[:n])],
                                     metrics=["field_accuracy"], n_boot=1000, seed=seed)
    return float(rows["ci_low"].iloc[0]), float(rows["ci_high"].iloc[0])


def _memory_shape():
    from helpers import memory

    return memory.PRESETS["llama-3-8b"], 16


CASES = {
    "00_1": Case(context=lambda: (),
                 solution=lambda: _profile_answer(__import__("helpers.config", fromlist=["x"]).profile_for_gpu),
                 wrong=[lambda: _profile_answer(_ignores_memory),
                        lambda: _profile_answer(lambda c, g: "cpu-tiny" if c is None else "t4" if c < (8, 0)
                                                else "h100"),
                        lambda: {"laptop, no GPU": "cpu-tiny"}]),
    "00_2": Case(context=lambda: (_tiny_4bit(),),
                 solution=lambda m: sum(x.in_features * x.out_features for x in _linear4bit(m)),
                 wrong=[lambda m: sum(x.weight.numel() for x in _linear4bit(m)),
                        lambda m: sum(p.numel() for p in m.parameters()),
                        lambda m: float(sum(x.in_features * x.out_features for x in _linear4bit(m)))]),
    "01_1": Case(context=lambda: (ZERO, FEW, 0.5),
                 solution=lambda z, f, p: 20 / ((f["prompt_tokens"] - z["prompt_tokens"]) * p / 1e6),
                 wrong=[lambda z, f, p: 20 / ((f["prompt_tokens"] - z["prompt_tokens"]) * p / 1e6) / 1000,
                        lambda z, f, p: 20 / (f["prompt_tokens"] * p / 1e6),
                        lambda z, f, p: 20 / ((f["prompt_tokens"] - z["prompt_tokens"]) * p)]),
    "01_2": Case(context=lambda: (*_bm25_and_questions(),),
                 solution=lambda r, q: _recall(r, q, 2),
                 wrong=[lambda r, q: _recall(r, q, 3), lambda r, q: _recall(r, q, 1),
                        lambda r, q: 100 * _recall(r, q, 2)]),
    "02_1": Case(context=_splits, solution=lambda s: _share_gap(s),
                 wrong=[lambda s: _share_gap(s, count=True), lambda s: 100 * _share_gap(s),
                        lambda s: _share_gap({"train": s["train"], "test": s["validation"]})]),
    "02_2": Case(context=_copy_and_kept, solution=lambda c, k: _jaccard(c, k),
                 wrong=[lambda c, k: _jaccard(c, k, k=3), lambda c, k: 1 - _jaccard(c, k),
                        lambda c, k: _jaccard(c, k, lower=False) + (1e-3 if _jaccard(c, k, lower=False)
                                                                     == _jaccard(c, k) else 0)]),
    "03_1": Case(context=_memory_shape,
                 solution=lambda s, r: _adapter(s, r, ("q_proj", "v_proj")),
                 wrong=[lambda s, r: _adapter(s, r, ("q_proj", "v_proj"), layers=False),
                        lambda s, r: _adapter(s, r, tuple(s.linear_shapes())),
                        lambda s, r: s.num_layers * sum(a * b for n, (a, b) in s.linear_shapes().items()
                                                        if n in ("q_proj", "v_proj"))]),
    "03_2": Case(context=lambda: (*_tokenizer_and_row(),),
                 solution=_mask_count,
                 wrong=[lambda t, row: len(t.apply_chat_template(row["messages"], tokenize=True)),
                        lambda t, row: len(t(row["messages"][-1]["content"], add_special_tokens=False)["input_ids"])]),
    "04_1": Case(context=lambda: (BASE, TUNED, REFS),
                 solution=lambda b, t, r: _wtl(b, t, r),
                 wrong=[lambda b, t, r: _wtl(b, t, r)[::-1], lambda b, t, r: list(_wtl(t, t, r)),
                        lambda b, t, r: (2, 2, 2)]),
    "04_2": Case(context=_records,
                 solution=lambda b, t: _interval(b, t),
                 wrong=[lambda b, t: _interval(b, t, n=100), lambda b, t: _interval(b, t)[::-1],
                        lambda b, t: _interval(t, b)]),
}
