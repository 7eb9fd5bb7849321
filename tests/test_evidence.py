"""What a chat model is shown (rag.evidence.select): ranking, budget, per-source cap, order."""

from __future__ import annotations

import numpy as np
from conftest import make_source

from rag.answer import ExtractiveBackend
from rag.evidence import select
from rag.text import split_sentences
from rag.types import Source

SOURCES = [
    make_source(
        1,
        "Stabilising Attention Training",
        "Attention entropy collapse makes attention training unstable in vision and speech. "
        "We propose SigmaFix, a reparametrisation of all linear layers. "
        "SigmaFix keeps training stable across 12 vision and speech tasks.",
    ),
    make_source(
        2,
        "Hidden-Dimension Mixtures",
        "We propose a sparse conditional activation architecture for vision and speech. "
        "It surpasses vanilla Transformers in parameter efficiency on 10 tasks.",
    ),
]
QUESTION = "Across how many vision and speech tasks does SigmaFix keep training stable?"


def _vectors(similar: str):
    """Sentence vectors under which only sentences containing `similar` look like the question."""

    def sentence_vectors(source: Source) -> tuple[list[str], np.ndarray]:
        sents = split_sentences(source.text)
        return sents, np.array([[1.0 if similar in s else 0.0] for s in sents])

    return sentence_vectors


def _shown(excerpts) -> list[str]:
    return [s for e in excerpts for s in e.sentences]


def test_similarity_ranking_shows_the_most_similar_sentences_within_the_budget() -> None:
    shown = _shown(select(QUESTION, np.array([1.0]), SOURCES, _vectors("collapse"), budget=40))
    assert any("collapse" in s for s in shown)
    assert not any("12 vision" in s for s in shown)  # over budget once the similar one is in


def test_answerability_ranks_first_and_similarity_only_breaks_ties() -> None:
    # The similar-looking sentence does not answer; the one the fitted model scores highest does.
    probability = {
        (c.source.number, c.sentence): c.probability
        for c in ExtractiveBackend().candidates(QUESTION, SOURCES)
    }
    best = max(probability, key=probability.get)
    assert "12 vision and speech tasks" in best[1]
    excerpts = select(
        QUESTION,
        np.array([1.0]),
        SOURCES,
        _vectors("collapse"),
        budget=40,
        answers=lambda number, sentence: probability.get((number, sentence)),
    )
    shown = _shown(excerpts)
    assert shown[0] == best[1] and not any("collapse" in s for s in shown)
    assert [e.number for e in excerpts] == [1]  # source numbers are those of the retrieved list


def test_excerpts_keep_text_order_and_the_per_source_cap() -> None:
    excerpts = select(
        QUESTION, np.array([1.0]), SOURCES, _vectors("vision"), budget=1000, per_source=2
    )
    for e in excerpts:
        source = next(s for s in SOURCES if s.number == e.number)
        order = split_sentences(source.text)
        assert len(e.sentences) <= 2
        assert list(e.sentences) == sorted(e.sentences, key=order.index)
