"""What an LLM is shown: the few sentences of each source that bear on the question.

    question, sources ─► each source's evidence sentences (injected instructions removed)
                     ─► score = P(sentence answers the question) by the extractive backend's
                         fitted answerability model, when one is given (RAG_EXCERPT_RANK=
                         answerable); else cosine(question, sentence) + share of its words
                     ─► best sentences first, at most PER_SOURCE a source, within a token budget
                     ─► per source, its picked sentences in text order ─► Excerpt(number, title, …)

A small model on two CPU cores pays for every prompt token (≈ 50 tokens/s), and it reads a
focused excerpt better than a whole abstract: the sentence that answers is in front of it, not
buried. Source numbers stay those of the retrieved list, so citations map back unchanged.

Why the fitted model ranks: what the model is shown bounds what it can answer. On dev, the share
of must-contain items present in the excerpts at the default budget rises from 0.843 (cosine +
words) to 0.896 when sentences are ranked by the answerability model (test, in aggregate: 0.823 to
0.932); docs/grounding.md has the table and the command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rag.chunking import count_tiktoken
from rag.prompts import as_evidence
from rag.text import split_sentences, terms
from rag.types import Source

PER_SOURCE = 3


@dataclass(frozen=True)
class Excerpt:
    number: int
    title: str
    sentences: tuple[str, ...]


# (sentences of a source, one normalised vector per sentence)
SentenceVectors = Callable[[Source], tuple[list[str], np.ndarray]]


def lexical(question_terms: set[str], sentence: str) -> float:
    """Share of the question's content words (stemmed) that the sentence contains."""
    if not question_terms:
        return 0.0
    return len(question_terms & set(terms(sentence))) / len(question_terms)


def select(
    question: str,
    question_vector: np.ndarray,
    sources: list[Source],
    sentence_vectors: SentenceVectors,
    budget: int,
    per_source: int = PER_SOURCE,
    answers: Callable[[int, str], float | None] | None = None,
) -> list[Excerpt]:
    """The excerpts to show, in source order; a source none of whose sentences fit is left out.

    `answers(source number, sentence)` is P(the sentence answers the question) where known: it
    ranks first, and cosine + words only breaks its ties and ranks sentences it does not know."""
    q_terms = set(terms(question))
    scored: list[tuple[float, int, int, str]] = []  # (score, source index, position, sentence)
    evidence = [as_evidence(s) for s in sources]
    for si, src in enumerate(evidence):
        sentences, vectors = sentence_vectors(src)
        if not sentences:
            continue
        sims = vectors[: len(sentences)] @ question_vector
        for pos, sentence in enumerate(sentences):
            score = float(sims[pos]) + lexical(q_terms, sentence)
            p = answers(src.number, sentence) if answers else None
            if answers:
                score = (p if p is not None else 0.0) + 1e-3 * score
            scored.append((score, si, pos, sentence))
    scored.sort(key=lambda item: -item[0])
    picked: dict[int, list[tuple[int, str]]] = {}
    used = sum(count_tiktoken(f"[{s.number}] {s.title}:") for s in evidence)
    for _score, si, pos, sentence in scored:
        chosen = picked.setdefault(si, [])
        if len(chosen) >= per_source:
            continue
        cost = count_tiktoken(sentence) + 1
        if used + cost > budget:
            continue  # a shorter sentence further down may still fit
        chosen.append((pos, sentence))
        used += cost
    out = []
    for si, src in enumerate(evidence):
        if picked.get(si):
            sentences = tuple(s for _pos, s in sorted(picked[si]))
            out.append(Excerpt(src.number, src.title, sentences))
    return out


def source_sentences(source: Source) -> list[str]:
    return split_sentences(source.text) or ([source.text] if source.text.strip() else [])
