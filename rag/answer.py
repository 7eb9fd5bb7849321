"""The extractive backend: the offline default and the fallback of every LLM backend.

It quotes the abstract sentences that answer the question, each with its [n]. No model call, no
network. The chat-model backends live in `rag.backends` (re-exported here for older imports).

    question, sources ─► question analysis (rag.question: answer type, names, measured thing)
                     ─► scope: the sources that name what the question names
                     ─► every candidate sentence ─► a few general features ─► P(sentence answers)
                         (a logistic regression fitted on the dev split: rag/data/answerable.json,
                          refit with `python -m eval.fit_answerable`)
                     ─► best P below the fitted threshold ─► the refusal
                     ─► otherwise the best sentences (at most 3, 2 per paper), cited

The features and why each is there are in `FEATURES`; each one's worth is measured by the ablation
that the refit script prints (docs/grounding.md has the table).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from rag.prompts import CANNOT_ANSWER, evidence_text
from rag.question import (
    QuestionInfo,
    analyse,
    names_found,
    names_named,
    new_names,
    phrases_named,
    quantities,
    question_names,
)
from rag.text import cite, idf_weights, number_values, split_sentences, terms
from rag.types import Source

__all__ = ["FEATURES", "ExtractiveBackend", "Model", "names_found", "question_names"]

log = logging.getLogger(__name__)

# name -> what it measures. Every value is in [0, 1] (or -1..1 for none), so the fitted weights
# are comparable and readable.
FEATURES: dict[str, str] = {
    "lexical": "idf-weighted share of the question's content words in the sentence",
    "coverage": "the same, counting the paper's title with the sentence",
    "focus": "idf-weighted share of the question's words not in the paper's title in the sentence",
    "cosine": "embedding similarity of the source's best chunk to the question (retrieval score)",
    "relative": "that similarity over the best source's (1 for the top source)",
    "margin": "retrieval margin: best source's similarity minus the second's (per question)",
    "number_offered": "the question expects a number and the sentence gives one",
    "number_missing": "the question expects a number and the sentence gives none",
    "measured": "the question expects a number and the sentence gives one beside a word naming "
    "what is measured or counted (any number, if the question does not say)",
    "entity_offered": "a which/what question's sentence names something the question does not",
    "names_source": "share of the names in the question that the source names (1 if none)",
    "names_sentence": "share of the names in the question that the sentence names (1 if none)",
    "phrases_source": "share of the question's multi-part names (a multi-word proper name, a "
    "hyphenated compound of capitalised parts) the source holds whole (1 if none)",
    "numbers_agree": "share of the question's own numbers that the source states (1 if none)",
    "person_missing": "the question asks for people (authors) and the source lists none",
    "first": "the abstract's first sentence (it states the paper's main point)",
}
MODEL_FILE = "answerable.json"


@dataclass(frozen=True)
class Model:
    """A logistic regression over `FEATURES`: P(sentence answers the question)."""

    features: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float
    answer_threshold: float  # refuse when no sentence reaches it
    keep_ratio: float  # further sentences need this share of the best sentence's probability

    def probability(self, values: dict[str, float]) -> float:
        z = self.bias + sum(w * values[f] for f, w in zip(self.features, self.weights, strict=True))
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    @classmethod
    def from_dict(cls, data: dict) -> Model:
        return cls(
            features=tuple(data["features"]),
            weights=tuple(float(w) for w in data["weights"]),
            bias=float(data["bias"]),
            answer_threshold=float(data["answer_threshold"]),
            keep_ratio=float(data["keep_ratio"]),
        )


@lru_cache(maxsize=1)
def bundled_model() -> Model:
    text = resources.files("rag").joinpath("data", MODEL_FILE).read_text(encoding="utf-8")
    return Model.from_dict(json.loads(text))


@dataclass
class Candidate:
    source: Source
    sentence: str
    features: dict[str, float]
    probability: float = 0.0


def candidates(question: str, sources: list[Source]) -> list[Candidate]:
    """Every evidence sentence of `sources` with its features (in source and text order)."""
    info = analyse(question)
    # Quote only what may be evidence: never a sentence that is an instruction to the model.
    per_source = [(src, split_sentences(evidence_text(src.text))) for src in sources]
    if not info.terms or not any(sents for _, sents in per_source):
        return []
    idf = idf_weights(
        [terms(s) for _, sents in per_source for s in sents] + [terms(s.title) for s in sources]
    )
    default = max(idf.values(), default=1.0)
    total = sum(idf.get(t, default) for t in info.terms)
    scores = sorted((s.score for s in sources), reverse=True)
    top = max(scores[0], 1e-6)
    margin = scores[0] - scores[1] if len(scores) > 1 else scores[0]
    out = []
    for src, sents in per_source:
        title_terms = set(terms(src.title))
        names_src = _share(info.names, names_named(info.names, src))
        phrases_src = phrases_named(info.phrases, src)
        src_numbers = number_values(f"{src.title} {src.text}")
        numbers_agree = len(info.numbers & src_numbers) / len(info.numbers) if info.numbers else 1.0
        for position, sent in enumerate(sents):
            sent_terms = set(terms(sent))
            has_number = bool(quantities(sent, info))
            wants_number = info.answer_type == "number"
            lexical = sum(idf.get(t, default) for t in info.terms & sent_terms) / total
            coverage = sum(idf.get(t, default) for t in info.terms & (sent_terms | title_terms))
            focus_terms = info.terms - title_terms
            focus = sum(idf.get(t, default) for t in focus_terms & sent_terms) / max(
                sum(idf.get(t, default) for t in focus_terms), 1e-9
            )
            f = {
                "lexical": lexical,
                "coverage": coverage / total,
                "focus": focus if focus_terms else 1.0,
                "cosine": src.score,
                "relative": src.score / top,
                "margin": margin,
                "number_offered": float(wants_number and has_number),
                "number_missing": float(wants_number and not has_number),
                "measured": float(
                    wants_number
                    and has_number
                    and (not info.measured or bool(info.measured & sent_terms))
                ),
                "entity_offered": float(_offers_entity(info, sent, sent_terms)),
                "names_source": names_src,
                "names_sentence": _share(info.names, names_named(info.names, _as_source(sent))),
                "numbers_agree": numbers_agree,
                "phrases_source": phrases_src,
                "person_missing": float(info.answer_type == "person" and not src.authors),
                "first": float(position == 0),
            }
            out.append(Candidate(src, sent, f))
    return out


def _share(names: frozenset[str], found: int) -> float:
    return found / len(names) if names else 1.0


def _as_source(sentence: str) -> Source:
    return Source(number=0, paper_id="", title="", snippet="", text=sentence, score=0.0)


def _offers_entity(info: QuestionInfo, sentence: str, sent_terms: set[str]) -> bool:
    """A which/what question: the sentence is about it and names something new (the answer)."""
    if info.answer_type != "entity" or not info.head or info.head not in sent_terms:
        return False
    return bool(info.terms & sent_terms - {info.head}) and bool(new_names(sentence, info.text))


def pick(ranked: list[Candidate], model: Model, is_list: bool, most: int = 3) -> list[Candidate]:
    """From candidates best first: none when the best is below the answer threshold; else the
    best, and those within `keep_ratio` of it (one per paper for list questions, else two)."""
    if not ranked or ranked[0].probability < model.answer_threshold:
        return []
    floor = max(ranked[0].probability * model.keep_ratio, 1e-9)
    limit = 1 if is_list else 2
    chosen: list[Candidate] = []
    per_source: dict[int, int] = {}
    for c in ranked:
        if len(chosen) >= most:
            break
        if c.probability < floor or per_source.get(c.source.number, 0) >= limit:
            continue
        chosen.append(c)
        per_source[c.source.number] = per_source.get(c.source.number, 0) + 1
    return chosen


def quote(chosen: list[Candidate]) -> str:
    """The chosen sentences verbatim, each followed by its source's [n]."""
    return " ".join(cite(c.sentence, [c.source.number]) for c in chosen)


# --------------------------------------------------------------------------------- extractive
class ExtractiveBackend:
    """Quote the sentences most likely to answer, cited; refuse when none is likely enough."""

    name = "extractive"

    def __init__(
        self,
        model: Model | None = None,
        max_sentences: int = 3,  # RAG_EXTRACTIVE_SENTENCES (Settings.extractive_sentences)
        scope: bool = True,
        people: bool = True,
    ) -> None:
        self.model = model or bundled_model()
        self.max_sentences = max_sentences
        self.scope = scope  # quote only sources that name what the question names
        self.people = people  # "who ..." questions: only sources that list people (authors)

    def rank(self, question: str, sources: list[Source]) -> list[tuple[float, float, Source, str]]:
        """(probability, question-term coverage, source, sentence), best first."""
        ranked = self.candidates(question, sources)
        return [(c.probability, c.features["coverage"], c.source, c.sentence) for c in ranked]

    def candidates(self, question: str, sources: list[Source]) -> list[Candidate]:
        """The candidate sentences with their probabilities, best first."""
        found = candidates(question, sources)
        for c in found:
            c.probability = self.model.probability(c.features)
        # Stable: equal probabilities keep text order (first sentences first).
        return sorted(found, key=lambda c: -c.probability)

    def scoped(self, question: str, sources: list[Source]) -> list[Source]:
        """The sources an answer may quote: those that name what the question names.

        A question about one named method must not be answered with another paper's figure. List
        and comparison questions may span papers; a question naming two things joined by "and"
        may be answered by the papers naming either. A question asking for people can only be
        answered by a source that lists them.
        """
        info = analyse(question)
        if self.people and info.answer_type == "person":
            sources = [src for src in sources if src.authors]  # abstracts name no authors
        if not self.scope or info.is_list or not info.names:
            return sources
        scoped = [src for src in sources if names_found(question, src)]
        if not scoped and re.search(r"\band\b", question):
            scoped = [src for src in sources if names_named(info.names, src)]
        return scoped

    def can_answer(self, question: str, sources: list[Source]) -> bool:
        """Whether the best candidate sentence of the scoped sources is likely enough to answer."""
        return bool(self.select(question, sources))

    def select(self, question: str, sources: list[Source]) -> list[Candidate]:
        """The sentences to quote (empty: refuse)."""
        scoped = self.scoped(question, sources)
        allowed = {src.number for src in scoped}
        # Ranked against all sources (term weights and the retrieval margin are the whole set's).
        ranked = [c for c in self.candidates(question, sources) if c.source.number in allowed]
        return pick(ranked, self.model, analyse(question).is_list, self.max_sentences)

    def compose(self, question: str, sources: list[Source]) -> str:
        chosen = self.select(question, sources)
        if not chosen:
            return CANNOT_ANSWER
        return quote(chosen)

    def generate(self, question: str, sources: list[Source]) -> str:
        return self.compose(question, sources)

    def stream(self, question: str, sources: list[Source]) -> Iterator[str]:
        text = self.compose(question, sources)
        yield from re.findall(r"\S+\s*", text)


def __getattr__(name: str) -> object:  # older imports: rag.answer.OpenAIBackend / LocalBackend
    if name == "OpenAIBackend":
        from rag.backends.openai_compat import OpenAIBackend

        return OpenAIBackend
    if name == "LocalBackend":
        from rag.backends.local import LocalBackend

        return LocalBackend
    raise AttributeError(name)
