"""The extractive backend and its question analysis, on made-up abstracts (no store, no model).

These check behaviour that any reasonable answer model must keep: quote a cited sentence that
holds the asked-for number, refuse a question whose named subject no source names, refuse to
name people from abstracts that list none, and keep the public names other modules import. They
do not pin the fitted weights: those are refit with `python -m eval.fit_answerable`.
"""

from __future__ import annotations

import json
from importlib import resources

import pytest

from rag.answer import FEATURES, ExtractiveBackend, bundled_model, candidates, names_found
from rag.answer import question_names as question_names_reexported
from rag.prompts import CANNOT_ANSWER
from rag.question import (
    analyse,
    measured_terms,
    name_in,
    name_phrases,
    phrases_named,
    quantities,
    question_names,
)
from rag.types import Source

ZEPHYRNET = (
    "We present ZephyrNet, a convolutional network for weather radar nowcasting. "
    "ZephyrNet stacks 14 residual blocks and is trained on 3.2 million radar frames. "
    "It reduces the mean squared error by 18% over optical-flow baselines on the RainBench data. "
    "Code and weights are released."
)
QUILLBOT = (
    "QuillMT is a translation system for low-resource languages. "
    "It distils a large teacher into a small student. "
    "The student keeps most of the teacher's quality while running on a phone."
)


def source(number: int, title: str, text: str, score: float, authors: list[str] | None = None):
    return Source(
        number=number,
        paper_id=f"p{number}",
        title=title,
        snippet=text[:80],
        text=text,
        score=score,
        authors=authors or [],
    )


@pytest.fixture
def sources() -> list[Source]:
    return [
        source(1, "ZephyrNet: Residual Networks for Radar Nowcasting", ZEPHYRNET, 0.62),
        source(2, "QuillMT: Small Students for Low-Resource Translation", QUILLBOT, 0.31),
    ]


def test_public_names_keep_working() -> None:
    backend = ExtractiveBackend()
    assert backend.name == "extractive"
    for method in ("generate", "stream", "compose", "rank", "scoped", "can_answer"):
        assert callable(getattr(backend, method))
    assert question_names_reexported is question_names


def test_bundled_model_is_data_with_known_features() -> None:
    text = resources.files("rag").joinpath("data", "answerable.json").read_text()
    data = json.loads(text)
    model = bundled_model()
    assert set(model.features) <= set(FEATURES)
    assert len(model.weights) == len(model.features) == len(data["features"])
    assert 0.0 < model.answer_threshold < 1.0 and 0.0 < model.keep_ratio <= 1.01


def test_numeric_question_is_answered_with_the_sentence_that_gives_the_number(sources) -> None:
    question = "How many residual blocks does ZephyrNet stack?"
    text = ExtractiveBackend().compose(question, sources)
    assert "14 residual blocks" in text and "[1]" in text
    assert "[2]" not in text  # the other paper neither names ZephyrNet nor answers


def test_stream_yields_the_composed_answer(sources) -> None:
    question = "How many radar frames is ZephyrNet trained on?"
    backend = ExtractiveBackend()
    assert "".join(backend.stream(question, sources)) == backend.generate(question, sources)


def test_rank_is_best_first_with_probabilities(sources) -> None:
    ranked = ExtractiveBackend().rank("How many radar frames is ZephyrNet trained on?", sources)
    probabilities = [p for p, _cov, _src, _sent in ranked]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    assert "3.2 million" in ranked[0][3]


def test_question_about_something_no_source_names_is_refused(sources) -> None:
    question = "How many residual blocks does HurricaneFormer stack?"
    assert ExtractiveBackend().compose(question, sources) == CANNOT_ANSWER


def test_people_are_not_named_from_abstracts_that_list_none(sources) -> None:
    question = "Who wrote the ZephyrNet paper?"
    assert ExtractiveBackend().compose(question, sources) == CANNOT_ANSWER
    assert not ExtractiveBackend().can_answer(question, sources)


def test_answer_type_features() -> None:
    src = [source(1, "ZephyrNet", ZEPHYRNET, 0.6)]
    found = {c.sentence: c.features for c in candidates("How many residual blocks?", src)}
    blocks = next(f for s, f in found.items() if "14 residual" in s)
    first = next(f for s, f in found.items() if s.startswith("We present"))
    assert blocks["measured"] == 1.0 and blocks["number_missing"] == 0.0
    assert first["number_missing"] == 1.0 and first["first"] == 1.0


def test_a_year_question_is_answered_only_by_a_year() -> None:
    year_q = analyse("When was the Quillfern benchmark released?")
    other_q = analyse("How many tasks does the Quillfern benchmark have?")
    sentence = "Quillfern, released in 2021 (Smith et al., 2019), has 12 tasks and 3.5k items."
    assert quantities(sentence, year_q) == {"2021", "2019"}
    assert quantities("Quillfern has 12 tasks and 3.5k items.", year_q) == set()
    assert quantities(sentence, other_q) == {"12", "3.5k"}


def test_question_analysis() -> None:
    assert analyse("How many layers does the encoder have?").answer_type == "number"
    assert analyse("What BLEU score does it reach?").answer_type == "number"
    assert analyse("Who are the authors of the survey?").answer_type == "person"
    assert analyse("Which optimisers does the paper compare?").answer_type == "entity"
    assert analyse("How does the method avoid overfitting?").answer_type == "description"
    assert analyse("Which papers study radar nowcasting?").is_list
    assert measured_terms("How many hidden layers does the encoder have?") == {"layer"}
    assert measured_terms("What fraction of the weights is pruned?") == {"weight"}
    assert measured_terms("What BLEU score does it reach?") == {"bleu"}
    names = question_names("Does ZephyrNet beat the RainBench baselines?")
    assert names == {"zephyrnet", "rainbench"}


def test_names_are_matched_as_words_not_substrings() -> None:
    assert name_in("net", "the net is small", "the net is small")
    assert not name_in("net", "zephyrnet is small", "ZephyrNet is small")
    assert name_in("blocks", "one block", "one block")  # plural or singular
    assert name_in("rn", "residual networks", "Residual Networks")  # initials


def test_names_found_needs_the_names_of_the_question(sources) -> None:
    assert names_found("What does ZephyrNet predict?", sources[0])
    assert not names_found("What does ZephyrNet predict?", sources[1])
    assert not names_found("what does it predict?", sources[0])  # names nothing


def test_multi_part_names_count_only_when_found_whole(sources) -> None:
    """'Zephyr-Quill' is named whole or not at all: a source naming Zephyr and Quill apart
    does not name it; a quoted multi-word title is one name too."""
    assert name_phrases("What does the Zephyr-Quill model add to RainBench-2?") == {
        "zephyr quill",
        "rainbench 2",
    }
    assert name_phrases("How deep is the net in 'Radar Frames Are All You Need'?") == {
        "radar frames are all you need"
    }
    assert name_phrases("What does a 3-layer net or a top-5 score mean?") == set()
    apart = source(3, "Zephyr and Quill", "Zephyr helps. Quill helps too.", 0.5)
    whole = source(4, "Zephyr-Quill", "The Zephyr Quill model adds radar.", 0.5)
    phrases = analyse("What does the Zephyr-Quill model add?").phrases
    assert phrases_named(phrases, apart) == 0.0
    assert phrases_named(phrases, whole) == 1.0
    assert phrases_named(frozenset(), apart) == 1.0  # a question without one: no evidence
