"""The ask pipeline (rag.pipeline) over fakes: what the user is shown is verified text only.

A fake retriever hands out fixed sources and a fake backend plays a model (whole replies or a
stream of pieces, or a failure); the Verifier is the real one over the offline hash embedder.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import HashEmbedding, make_source

from rag import CANNOT_ANSWER, Answer, Settings
from rag.answer import ExtractiveBackend
from rag.backends.base import lexical_selector
from rag.errors import LLMError
from rag.pipeline import Pipeline
from rag.types import Source
from rag.verify import Verifier

SOURCES = [
    make_source(
        1,
        "Stabilising Attention Training",
        "Attention entropy collapse makes training unstable. As a remedy, we propose SigmaFix, "
        "a reparametrisation of all linear layers with spectral normalisation. SigmaFix keeps "
        "training stable across 12 vision and speech tasks.",
    ),
    make_source(
        2,
        "Hidden-Dimension Mixtures for Transformers",
        "We propose a sparse conditional activation architecture. Evaluations across 10 NLP "
        "tasks show that it surpasses vanilla Transformers in parameter efficiency.",
    ),
]


class FakeRetriever:
    def __init__(self, sources: list[Source]) -> None:
        self.sources = sources

    def search(self, question: str, top_k: int, filters: Any = None) -> list[Source]:
        return self.sources[:top_k]


class FakeBackend:
    name = "fake"

    def __init__(self, reply: str, fail_after: int | None = None) -> None:
        self.reply = reply
        self.fail_after = fail_after

    def generate(self, question: str, sources: list[Source]) -> str:
        if self.fail_after is not None:
            raise LLMError("the fake model failed")
        return self.reply

    def stream(self, question: str, sources: list[Source]) -> Iterator[str]:
        for i, piece in enumerate(re.findall(r"\S+\s*", self.reply)):
            if self.fail_after is not None and i >= self.fail_after:
                raise LLMError(
                    "the stream from the fake model ended before the answer was complete"
                )
            yield piece


def _pipeline(backend: Any, sources: list[Source] = SOURCES, **settings: Any) -> Pipeline:
    # The model's own sentences are under test here: no extractive answer stands in for a
    # rejected one unless a test asks for it.
    settings.setdefault("unverified_answer", "refuse")
    settings.setdefault("answer_gate", "retrieval")  # the default; the other has its own tests
    config = Settings(min_score=0.0, _env_file=None, **settings)
    return Pipeline(
        settings=config,
        retriever=FakeRetriever(sources),
        backend=backend,
        fallback=ExtractiveBackend(),
        verifier=Verifier(HashEmbedding(model_name="hash-test"), policy=config.unsupported),
        parse_filters=lambda question: None,
        excerpts=lexical_selector,
    )


def _run(pipeline: Pipeline, question: str, stream: bool = True) -> tuple[list[str], Answer]:
    items = list(pipeline.run(question, stream=stream))
    answer = items[-1]
    assert isinstance(answer, Answer) and all(isinstance(i, str) for i in items[:-1])
    return [i for i in items if isinstance(i, str)], answer


def test_a_stream_shows_only_verified_sentences_and_ends_with_the_same_text() -> None:
    reply = (
        "SigmaFix keeps training stable across 12 vision and speech tasks [1]. "
        "It was designed by 40 astronauts on the Moon [1]. "
        "Evaluations across 10 NLP tasks show that it surpasses vanilla Transformers [2]."
    )
    pieces, answer = _run(_pipeline(FakeBackend(reply)), "What is SigmaFix?")
    shown = "".join(pieces)
    assert "astronauts" not in shown and "40" not in shown  # never shown, not even for a moment
    assert "speech tasks [1]" in shown and "10 NLP tasks" in shown
    assert shown.strip() == answer.text and not answer.abstained
    assert [s.citations for s in answer.sentences] == [[1], [2]]
    _, whole = _run(_pipeline(FakeBackend(reply)), "What is SigmaFix?", stream=False)
    assert whole.text == answer.text  # ask() and ask_stream() agree


def test_a_short_answer_stands_when_a_picked_sentence_says_it_word_for_word() -> None:
    question = "What remedy reparametrises linear layers with spectral normalisation?"
    _, answer = _run(_pipeline(FakeBackend("[1] SigmaFix")), question)
    assert answer.text == "SigmaFix [1]." and not answer.abstained
    assert "SigmaFix" in (answer.sentences[0].support or "")
    # A short reply no shown sentence of its cited source contains is not an answer.
    _, answer = _run(_pipeline(FakeBackend("[1] GammaFix")), question)
    assert answer.abstained and answer.text == CANNOT_ANSWER
    _, answer = _run(_pipeline(FakeBackend("[2] SigmaFix")), question)  # cited to the wrong one
    assert answer.abstained


def test_a_sentence_mixing_a_supported_and_an_invented_clause_keeps_only_the_first() -> None:
    reply = (
        "We propose a sparse conditional activation architecture, and it gains 60% over "
        "adding an extra layer [2]."
    )
    _, answer = _run(_pipeline(FakeBackend(reply)), "What architecture is proposed?")
    assert "sparse conditional activation" in answer.text and "60" not in answer.text
    assert all(s.supported and s.citations == [2] for s in answer.sentences)


def test_a_clause_that_leans_on_a_dropped_clause_is_dropped_with_it() -> None:
    reply = (
        "SigmaFix routes tokens to 4x4 visual words, and it keeps training stable across 12 "
        "vision and speech tasks [1]."
    )
    _, answer = _run(_pipeline(FakeBackend(reply)), "What does SigmaFix do with visual words?")
    assert answer.abstained  # "it keeps ... stable" would vouch for the invented first clause


def test_a_participle_clause_after_a_dropped_clause_is_dropped_with_it() -> None:
    reply = (
        "SigmaFix was designed by 40 astronauts on the Moon, keeping training stable across 12 "
        "vision and speech tasks [1]."
    )
    _, answer = _run(_pipeline(FakeBackend(reply)), "Who designed SigmaFix?")
    assert answer.abstained  # "keeping training stable ..." alone is a fragment, not an answer


def test_a_verb_clause_without_its_own_subject_is_dropped_with_the_clause_before() -> None:
    reply = (
        "SigmaFix was designed by 40 astronauts on the Moon, and keeps training stable across 12 "
        "vision and speech tasks [1]."
    )
    _, answer = _run(_pipeline(FakeBackend(reply)), "Who designed SigmaFix?")
    assert answer.abstained  # "keeps training stable ..." has lost its subject


def test_a_clause_with_its_own_subject_stands_after_a_dropped_clause() -> None:
    reply = (
        "SigmaFix was designed by 40 astronauts on the Moon, and the evaluations across 10 NLP "
        "tasks show that it surpasses vanilla Transformers in parameter efficiency [2]."
    )
    _, answer = _run(_pipeline(FakeBackend(reply)), "How was the architecture evaluated?")
    assert "10 NLP tasks" in answer.text and "astronauts" not in answer.text


def test_a_reply_of_citation_marks_and_glue_words_is_no_answer() -> None:
    # "[1] and [2]" loses its marks and leaves "and", a word every source contains.
    _, answer = _run(_pipeline(FakeBackend("[1] and [2]")), "Which papers train stably?")
    assert answer.abstained and answer.text == CANNOT_ANSWER


def test_a_stream_cut_midway_falls_back_to_the_verified_extractive_answer() -> None:
    reply = "SigmaFix keeps training stable across 12 vision and speech tasks [1]. More text"
    pieces, answer = _run(_pipeline(FakeBackend(reply, fail_after=12)), "What is SigmaFix?")
    assert answer.backend == "extractive"
    assert answer.notice and "ended before the answer was complete" in answer.notice
    assert "\n\n" in pieces  # what was shown before the cut is set apart from the fallback
    assert not answer.abstained and "[1]" in answer.text


@pytest.mark.parametrize("policy", ["drop", "flag"])
def test_nothing_supported_is_the_refusal(policy: str) -> None:
    reply = "The benchmark was built by 40 astronauts on the Moon [1]."
    pieces, answer = _run(_pipeline(FakeBackend(reply), unsupported=policy), "Who built it?")
    assert answer.abstained and answer.text == CANNOT_ANSWER
    if policy == "drop":
        assert pieces == [] and answer.sentences == []
    else:  # flagged sentences are kept visibly, marked unsupported
        assert answer.sentences and not any(s.supported for s in answer.sentences)


def test_a_wholly_rejected_answer_gives_way_to_the_sources_own_sentences() -> None:
    reply = "SigmaFix was designed by 40 astronauts on the Moon [1]."
    question = "What does SigmaFix keep stable across vision and speech tasks?"
    pieces, answer = _run(_pipeline(FakeBackend(reply), unverified_answer="extractive"), question)
    assert not answer.abstained and answer.backend == "extractive"
    assert "astronauts" not in answer.text and "40" not in "".join(pieces)
    assert answer.notice and "could not be checked" in answer.notice
    assert all(s.supported and s.citations == [1] for s in answer.sentences)
    assert "".join(pieces).strip() == answer.text  # the stream shows the same verified text
    _, refused = _run(_pipeline(FakeBackend(reply), unverified_answer="refuse"), question)
    assert refused.abstained and refused.text == CANNOT_ANSWER


def test_the_stand_in_answer_still_abstains_when_the_sources_do_not_answer() -> None:
    reply = "The benchmark was built by 40 astronauts on the Moon [1]."
    question = "Which telescope photographed the first exoplanet?"
    pieces, answer = _run(_pipeline(FakeBackend(reply), unverified_answer="extractive"), question)
    assert answer.abstained and answer.text == CANNOT_ANSWER and pieces == []


def test_weak_retrieval_abstains_before_the_model_is_asked() -> None:
    class Exploding(FakeBackend):
        def stream(self, question: str, sources: list[Source]) -> Iterator[str]:
            raise AssertionError("the model must not be called")

    weak = [make_source(1, "Baking Bread", "We bake bread.", score=0.05)]
    pipeline = _pipeline(Exploding(""), sources=weak)
    pipeline.settings = Settings(min_score=0.3, _env_file=None)
    pieces, answer = _run(pipeline, "How do transformers scale?")
    assert answer.abstained and pieces == []


class Recording(FakeBackend):
    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.asked: list[str] = []

    def stream(self, question: str, sources: list[Source]) -> Iterator[str]:
        self.asked.append(question)
        yield from super().stream(question, sources)


def test_the_answerability_gate_abstains_before_the_model_when_no_sentence_answers() -> None:
    # Close sources (score 0.8 passes the retrieval gate) that say nothing about the question:
    # the fitted answerability model finds no sentence likely to answer, so the model is never
    # asked and cannot invent an answer.
    model = Recording("The telescope was built by 40 astronomers [1].")
    question = "Which telescope photographed the first exoplanet?"
    pieces, answer = _run(_pipeline(model, answer_gate="answerable"), question)
    assert answer.abstained and answer.text == CANNOT_ANSWER and pieces == []
    assert model.asked == []
    # The retrieval-only gate asks the model; the verifier then drops the invented sentence.
    model = Recording("The telescope was built by 40 astronomers [1].")
    _, answer = _run(_pipeline(model, answer_gate="retrieval"), question)
    assert model.asked == [question] and answer.abstained


def test_the_answerability_gate_lets_an_answerable_question_reach_the_model() -> None:
    model = Recording("SigmaFix keeps training stable across 12 vision and speech tasks [1].")
    question = "Across how many vision and speech tasks does SigmaFix keep training stable?"
    pieces, answer = _run(_pipeline(model, answer_gate="answerable"), question)
    assert model.asked == [question]
    assert not answer.abstained and answer.backend == "fake" and "12" in answer.text
    assert "".join(pieces).strip() == answer.text


def test_a_sentence_that_only_repeats_the_question_is_not_an_answer() -> None:
    question = "Across how many vision and speech tasks does SigmaFix keep training stable?"
    echo = "SigmaFix keeps training stable across vision and speech tasks [1]."
    pieces, answer = _run(_pipeline(FakeBackend(echo)), question)
    assert answer.abstained and pieces == []  # supported by the source, but it answers nothing
    both = echo + " SigmaFix keeps training stable across 12 vision and speech tasks [1]."
    pieces, answer = _run(_pipeline(FakeBackend(both)), question)
    assert answer.text == "SigmaFix keeps training stable across 12 vision and speech tasks [1]."
    # The stand-in quotes the source, whose sentence gives the number the question asks for.
    _, answer = _run(_pipeline(FakeBackend(echo), unverified_answer="extractive"), question)
    assert not answer.abstained and answer.backend == "extractive" and "12" in answer.text


def test_a_list_question_names_each_paper_it_lists_once() -> None:
    reply = (
        "We propose a sparse conditional activation architecture [2]. "
        "Evaluations across 10 NLP tasks show that it surpasses vanilla Transformers [2]. "
        "Attention entropy collapse makes training unstable [1]."
    )
    question = "Which papers propose new architectures?"
    pieces, answer = _run(_pipeline(FakeBackend(reply)), question)
    first, second, third = answer.sentences
    assert first.text.startswith("Hidden-Dimension Mixtures for Transformers: We propose")
    assert second.text.startswith("Evaluations across")  # the paper is named once
    assert third.text.startswith("Stabilising Attention Training: Attention entropy")
    assert all(s.supported for s in answer.sentences)  # the title is the source's own text
    assert "".join(pieces).strip() == answer.text  # what was streamed is what is kept
    # Off by setting, and never for a question about one thing.
    _, plain = _run(_pipeline(FakeBackend(reply), name_papers=False), question)
    assert plain.sentences[0].text.startswith("We propose")
    _, one = _run(_pipeline(FakeBackend(reply)), "What architecture is proposed?")
    assert not any(s.text.startswith("Hidden-Dimension") for s in one.sentences)


def test_a_listed_sentence_that_already_names_its_paper_is_left_as_it_is() -> None:
    sources = [
        make_source(
            1,
            "SigmaFix: Stable Attention Training",
            "SigmaFix keeps training stable across 12 vision and speech tasks.",
        ),
        make_source(
            2,
            "Do Hidden-Dimension Mixtures Help Transformers?",
            "We propose a sparse conditional activation architecture.",
        ),
    ]
    reply = (
        "SigmaFix keeps training stable across 12 vision and speech tasks [1]. "
        "We propose a sparse conditional activation architecture [2]."
    )
    pieces, answer = _run(_pipeline(FakeBackend(reply), sources), "Which papers compare models?")
    assert answer.sentences[0].text.startswith("SigmaFix keeps")  # named by its short name
    assert answer.sentences[1].text.startswith("Do Hidden-Dimension Mixtures Help Transformers?: ")
    assert "".join(pieces).strip() == answer.text
    assert answer.text.count("[2]") == 1 and not answer.abstained
