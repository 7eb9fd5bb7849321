"""The extractive backend: the offline default and the fallback of every LLM backend.

It picks the abstract sentences that answer the question and quotes them, each with its [n]. No
model, no network. The chat-model backends live in `rag.backends` (re-exported here for older
imports).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator

from rag.prompts import CANNOT_ANSWER, evidence_text
from rag.text import (
    entities,
    idf_weights,
    is_acronym_of,
    numbers,
    split_sentences,
    terms,
)
from rag.types import Source

log = logging.getLogger(__name__)

_NUMERIC_Q = re.compile(
    r"\b(how (many|much|long|large|big|fast|far)|what (range|percentage|number|size|fraction|accuracy)|"
    r"by how|which (range|lengths?)|what .*(rate|score|speed-?up|ratio)|(which|what) year|"
    r"when was|what .* (achieve|reach|obtain|attain)s?)\b",
    re.I,
)
_LIST_Q = re.compile(
    r"\b(which|what) (papers|works|studies|methods|models)\b|\bpapers (that|which|on|about)\b|\bcompare\b|\bboth\b",
    re.I,
)


_WHICH_Q = re.compile(r"^\s*(?:which|what)\s+([A-Za-z][\w\-]*)\b", re.I)
_NOT_HEADS = frozenset(
    [
        "is",
        "are",
        "was",
        "were",
        "does",
        "do",
        "did",
        "can",
        "could",
        "has",
        "have",
        "had",
        "will",
        "would",
        "should",
        "kind",
        "type",
        "sort",
        "one",
        "ones",
        "way",
    ]
)
_AUTHOR_Q = re.compile(
    r"\bwho (?:are|were|wrote|is|was)\b|\bauthors? of\b|\bwritten by whom\b", re.I
)
_NOT_NAMES = frozenset(
    [
        "what",
        "which",
        "how",
        "who",
        "when",
        "where",
        "why",
        "does",
        "do",
        "did",
        "is",
        "are",
        "was",
        "were",
        "the",
        "in",
        "on",
        "for",
        "according",
        "can",
        "could",
        "should",
        "would",
        "will",
        "a",
        "an",
        "and",
        "or",
        "of",
        "to",
        "with",
        "from",
        "by",
        "as",
        "at",
        "this",
        "that",
        "these",
        "those",
        "it",
        "its",
        "their",
        "there",
        "english",
        "chinese",
        "german",
        "french",
        "paper",
        "papers",
        "corpus",
    ]
)


def question_names(question: str) -> set[str]:
    """Names in a question: acronyms, CamelCase, words with digits, capitalised words mid-sentence.

    Hyphenated compounds are checked by their name-like parts ("VTN-based" -> "vtn").
    """
    names: set[str] = set()
    words = re.findall(r"[A-Za-z0-9][\w\-]*", question)
    for i, word in enumerate(words):
        for part in word.split("-"):
            if len(part) < 2 or part[0].isdigit() or part.lower() in _NOT_NAMES:
                continue
            if entities(part) or (i > 0 and part[0].isupper() and len(part) > 2):
                names.add(part.lower())
    return names


_MEASURED = re.compile(
    r"\bhow many\s+((?:[\w\-]+\s+){0,3}?)([\w\-]+)\s+(?:does|do|did|is|are|was|were|can|has|have|had|will)\b"
    r"|\bwhat\s+(?:[\w\-]+\s+){0,3}?(accuracy|score|f1|bleu|mae|dice|perplexity|auc|error|latency|"
    r"throughput|size|percentage|fraction|rate)\b",
    re.I,
)


_PREPOSITIONS = frozenset(
    ["without", "with", "of", "in", "on", "for", "from", "by", "at", "into", "per"]
)


_GENERIC_MEASURES = frozenset(["percentage", "fraction", "rate", "size", "error", "score"])


def measured_terms(question: str) -> set[str]:
    """The thing a numeric question counts or measures: 'how many attention heads does' -> {head}."""
    match = _MEASURED.search(question)
    if not match:
        return set()
    if match.group(3):
        word = match.group(3)
    else:
        phrase = (match.group(1) + match.group(2)).split()
        cut = next((i for i, w in enumerate(phrase) if w.lower() in _PREPOSITIONS), len(phrase))
        word = phrase[: max(cut, 1)][-1]
    if word.lower() in _GENERIC_MEASURES:
        return set()  # too generic to demand literally
    return set(terms(word))


def name_in(name: str, lower: str, original: str) -> bool:
    singular = name[:-1] if name.endswith("s") and len(name) > 3 else name
    return name in lower or singular in lower or is_acronym_of(singular, original)


def answer_head(question: str) -> str | None:
    """The thing a which/what question asks for: 'Which cryptocurrencies are ...' -> cryptocurrency."""
    match = _WHICH_Q.match(question)
    if not match or match.group(1).lower() in _NOT_HEADS | _GENERIC_MEASURES:
        return None
    found = terms(match.group(1))
    return found[0] if found else None


def new_names(sentence: str, question: str) -> set[str]:
    """Names in a sentence that the question does not already mention (Bitcoin, Ethereum, ...)."""
    sentence = re.sub(r"\([^)]*\)", " ", sentence)  # "BiLSTM (Bidirectional ...)" spells out
    words = re.findall(r"[A-Za-z][\w\-]*", sentence)
    names = {w.lower() for i, w in enumerate(words) if i > 0 and w[0].isupper()}
    return (names | entities(sentence)) - {w.lower() for w in re.findall(r"[\w\-]+", question)}


def names_found(question: str, source: Source) -> bool:
    """The question names something (a model, dataset, paper) and this source names all of it.

    Lexical evidence that a low cosine misses: "Which model does Uni-SMART compare against?"
    scores 0.27 against the Uni-SMART abstract, yet that abstract is the one to answer from.
    """
    names = question_names(question)
    # Long paraphrases name many things; one of four or more may be worded differently.
    return bool(names) and names_named(names, source) >= math.ceil(0.75 * len(names))


def names_named(names: set[str], source: Source) -> int:
    """How many of `names` the source's title or abstract names."""
    haystack = f"{source.title} {source.text}"
    lower = haystack.lower()
    return sum(name_in(n, lower, haystack) for n in names)


# --------------------------------------------------------------------------------- extractive
class ExtractiveBackend:
    """Quote the best-matching abstract sentences, cited. Abstains when nothing matches well."""

    name = "extractive"

    def __init__(
        self,
        min_overlap: float = 0.12,
        max_sentences: int = 3,
        min_focus: float = 0.2,
        min_focus_named: float = 0.15,
        min_extra_score: float = 0.30,
    ) -> None:
        self.min_overlap = min_overlap  # share of the question's terms the best sentence must cover
        self.max_sentences = max_sentences
        self.min_focus = min_focus  # numeric questions: share of non-title terms beside the number
        self.min_focus_named = min_focus_named  # the same, when the question names the paper
        self.min_extra_score = min_extra_score  # cosine a second paper needs to be quoted too

    def rank(self, question: str, sources: list[Source]) -> list[tuple[float, float, Source, str]]:
        """(score, question-term coverage, source, sentence), best first."""
        q_terms = set(terms(question))
        # Quote only what may be evidence: never a sentence that is an instruction to the model.
        candidates = [
            (src, sent) for src in sources for sent in split_sentences(evidence_text(src.text))
        ]
        if not candidates or not q_terms:
            return []
        idf = idf_weights([terms(s) for _, s in candidates] + [terms(src.title) for src in sources])
        default = max(idf.values(), default=1.0)
        total = sum(idf.get(t, default) for t in q_terms)
        wants_number = bool(_NUMERIC_Q.search(question))
        top_score = max(src.score for src in sources)
        ranked = []
        firsts: dict[int, str] = {}
        head = answer_head(question)
        for position, (src, sent) in enumerate(candidates):
            sent_terms = set(terms(sent))
            s_terms = sent_terms | set(terms(src.title))
            coverage = sum(idf.get(t, default) for t in q_terms & s_terms) / total
            sent_only = sum(idf.get(t, default) for t in q_terms & sent_terms) / total
            score = 0.45 * sent_only + 0.25 * coverage + 0.3 * (src.score / max(top_score, 1e-6))
            if wants_number and numbers(sent):
                score += 0.15
            if (
                head
                and not wants_number
                and head in sent_terms
                and q_terms & sent_terms - {head}  # about the question, not just its noun
                and new_names(sent, question)
            ):
                score += 0.25  # "which cryptocurrencies": the sentence that names them
            if src.number not in firsts:  # once per source, not per sentence (was quadratic)
                firsts[src.number] = split_sentences(evidence_text(src.text))[0]
            if position == 0 or sent is firsts[src.number]:
                score += 0.02  # first sentences state the paper's main point
            ranked.append((score, coverage, src, sent))
        ranked.sort(key=lambda r: r[0], reverse=True)
        return ranked

    def can_answer(
        self, question: str, sources: list[Source], ranked: list[tuple[float, float, Source, str]]
    ) -> bool:
        """Cheap checks that the sources hold what the question asks for, not just its topic."""
        if _AUTHOR_Q.search(question) and not any(src.authors for src in sources[:3]):
            return False  # the corpus has no author names for these papers
        haystack = " ".join(f"{src.title} {src.text}" for src in sources[:3])
        lower = haystack.lower()
        if _LIST_Q.search(question):  # other questions were scoped to the sources naming them
            for name in question_names(question):
                if not name_in(name, lower, haystack):
                    return False  # a model, dataset or paper the question names is not there
        if _NUMERIC_Q.search(question):
            # no sentence gives a number about what was asked -> cannot answer
            return self.numeric_evidence(question, sources, ranked) is not None
        return True

    def numeric_evidence(
        self, question: str, sources: list[Source], ranked: list[tuple[float, float, Source, str]]
    ) -> tuple[Source, str] | None:
        """The best sentence that gives a number about what a numeric question asks."""
        named = bool(question_names(question))  # sources already scoped to those names
        focus_sources = {src.number for src in sources[:3]}
        head = answer_head(question)
        measured = measured_terms(question) or ({head} if head else set())
        for _score, _cov, src, sent in ranked:
            if src.number not in focus_sources or not numbers(sent):
                continue
            sent_terms = set(terms(sent))
            focus = set(terms(question)) - set(terms(src.title))
            share = len(focus & sent_terms) / len(focus) if focus else 1.0
            if measured and not measured & sent_terms and share < 0.5:
                continue  # a number, but not of the thing asked about ("how many heads")
            if share >= (self.min_focus_named if named else self.min_focus):
                return src, sent
        return None

    def scoped(self, question: str, sources: list[Source]) -> list[Source]:
        """The sources an answer may quote: those that name everything the question names.

        "How many GPUs were used to train Meta-Transformer?" must not be answered with another
        paper's GPU count. List and comparison questions may span papers, so they keep them all.
        """
        if _LIST_Q.search(question) or not question_names(question):
            return sources
        scoped = [src for src in sources if names_found(question, src)]
        if not scoped and re.search(r"\band\b", question):  # "PoolFormer and T2T-ViT": two papers
            names = question_names(question)
            scoped = [src for src in sources if names_named(names, src)]
        return scoped

    def compose(self, question: str, sources: list[Source]) -> str:
        scoped = self.scoped(question, sources)
        if not scoped:
            return CANNOT_ANSWER  # no single source names what the question is about
        allowed = {src.number for src in scoped}
        # Ranked against all sources (term weights and scores stay those of the whole set).
        ranked = [r for r in self.rank(question, sources) if r[2].number in allowed]
        sources = scoped
        if not ranked or ranked[0][1] < self.min_overlap:
            return CANNOT_ANSWER
        if not self.can_answer(question, sources, ranked):
            return CANNOT_ANSWER
        best = ranked[0][0]
        list_question = bool(_LIST_Q.search(question))
        chosen: list[tuple[Source, str]] = []
        per_source: dict[int, int] = {}
        for score, coverage, src, sent in ranked:
            if len(chosen) >= self.max_sentences:
                break
            limit = 1 if list_question else 2
            if per_source.get(src.number, 0) >= limit:
                continue
            if chosen and (
                score < best * (0.75 if list_question else 0.65)
                or coverage < self.min_overlap
                # a further sentence from another paper needs that paper to be close on its own
                or (src.number != chosen[0][0].number and src.score < self.min_extra_score)
            ):
                continue
            chosen.append((src, sent))
            per_source[src.number] = per_source.get(src.number, 0) + 1
        if _NUMERIC_Q.search(question) and not any(numbers(sent) for _, sent in chosen):
            # A numeric question answered without a number: lead with the sentence that has it.
            evidence = self.numeric_evidence(question, sources, ranked)
            if evidence is not None:
                chosen = [evidence, *chosen][: self.max_sentences]
        parts = []
        for src, sent in chosen:
            body = sent.rstrip()
            end = body[-1] if body[-1] in ".!?" else "."
            body = body[:-1] if body[-1] in ".!?" else body
            parts.append(f"{body} [{src.number}]{end}")
        return " ".join(parts)

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
