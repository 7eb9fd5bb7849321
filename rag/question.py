"""Question analysis for the extractive backend: what kind of answer a question expects, and what
it names.

    question ─► answer type (number | person | entity | description)
             ─► names (acronyms, CamelCase, words with digits, capitalised words mid-sentence)
             ─► the measured thing of a numeric question, the head noun of a which/what question

Everything here is general English question grammar and generic measurement words. Nothing may be
added here because one question of the eval set needs it: the rules are shared by every question a
user may ask, and the eval's held-out splits exist to show whether they generalise.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

from rag.text import (
    AUXILIARIES,
    PRONOUNS,
    PROPER_NAME,
    QUESTION_WORDS,
    YEAR,
    entities,
    is_acronym_of,
    norm,
    number_values,
    numbers,
    terms,
)
from rag.types import Source

# Generic measurement nouns: a question asking "what <measure> ..." expects a number.
MEASURES = (
    "accuracy|precision|recall|f1|score|error|rate|ratio|percentage|fraction|proportion|share|"
    "speed-?up|latency|throughput|size|length|count|number|amount|cost|perplexity|bleu|auc|"
    "parameters|budget|range"
)
_NUMERIC_Q = re.compile(
    r"\b(?:how (?:many|much|long|large|big|fast|far|often|old)|by how|"
    r"(?:which|what) year|when (?:was|were|did)|"
    rf"(?:what|which)\s+(?:[\w\-]+\s+){{0,3}}?(?:{MEASURES})s?)\b",
    re.I,
)
_LIST_Q = re.compile(
    r"\b(?:which|what) (?:papers|works|studies|methods|models|approaches)\b"
    r"|\bpapers (?:that|which|on|about)\b|\bcompare\b|\bboth\b",
    re.I,
)
_YEAR_Q = re.compile(r"\b(?:which|what) year\b|\bwhen (?:was|were|did)\b|\bin what year\b", re.I)
_YEAR = YEAR  # the answer to a year question; to any other, not a quantity
# A reference or a year is not a quantity: "(Smith et al., 2019)", "in 2021".
_CITED = re.compile(rf"\([^()]*\bet al\.?[^()]*\)|\b{_YEAR}[a-z]?\b")
_YEAR_VALUE = re.compile(_YEAR)
_PERSON_Q = re.compile(r"\bwho\b|\bauthors?\b|\bwritten by\b", re.I)
_WHICH_Q = re.compile(r"^\s*(?:which|what)\s+([A-Za-z][\w\-]*)\b", re.I)
_MEASURED = re.compile(
    r"\bhow many\s+((?:[\w\-]+\s+){0,3}?)([\w\-]+)\s+"
    r"(?:does|do|did|is|are|was|were|can|has|have|had|will)\b",
    re.I,
)
# "what share of the tokens ..." -> tokens; "what top-1 accuracy ..." -> top-1
_SHARE_OF = re.compile(
    r"\b(?:percentage|fraction|proportion|share|number|amount|ratio)\s+of\s+(?:the\s+)?"
    r"((?:[\w\-]+\s+){0,2}?[\w\-]+?)(?=\s+(?:does|do|did|is|are|was|were|in|on|of|for|by|to|that)\b)",
    re.I,
)
_METRIC = re.compile(rf"\b(?:what|which)\s+((?:[\w\-]+\s+){{0,2}}?(?:{MEASURES})s?)\b", re.I)
# Question words, auxiliaries, pronouns and function words: never names, even when capitalised.
_NOT_NAMES = (
    QUESTION_WORDS
    | AUXILIARIES
    | PRONOUNS
    | frozenset(
        [
            "the",
            "a",
            "an",
            "and",
            "or",
            "of",
            "to",
            "in",
            "on",
            "for",
            "with",
            "from",
            "by",
            "as",
            "at",
            "there",
            "according",
            "paper",
            "papers",
            "corpus",
        ]
    )
)
# Verbs and vague nouns that can follow which/what without being the thing asked for.
_NOT_HEADS = AUXILIARIES | frozenset(["kind", "type", "sort", "one", "ones", "way"])
_PREPOSITIONS = frozenset(
    ["without", "with", "of", "in", "on", "for", "from", "by", "at", "into", "per"]
)
_GENERIC = frozenset(MEASURES.replace("-?", "-").split("|")) | {"speedup"}
_VAGUE = frozenset(["number", "amount", "count", "range", "value", "values", "many", "much"])


@dataclass(frozen=True)
class QuestionInfo:
    text: str
    answer_type: str  # "number" | "person" | "entity" | "description"
    is_list: bool  # may be answered from several papers (which papers ..., compare, both)
    names: frozenset[str]
    phrases: frozenset[str]  # multi-part names, flattened: "xy former" (`name_phrases`)
    numbers: frozenset[str]  # numeric values the question itself states
    measured: frozenset[str]  # stemmed: what a numeric question counts ("how many heads")
    head: str | None  # stemmed: what a which/what question asks for
    terms: frozenset[str]
    asks_year: bool  # "which year", "when was": a year is the answer, not a citation's date


@lru_cache(maxsize=1024)
def analyse(question: str) -> QuestionInfo:
    wants_number = bool(_NUMERIC_Q.search(question))
    head = answer_head(question)
    if _PERSON_Q.search(question):
        kind = "person"
    elif wants_number:
        kind = "number"
    elif head:
        kind = "entity"
    else:
        kind = "description"
    measured = measured_terms(question) or ({head} if head and wants_number else set())
    return QuestionInfo(
        text=question,
        answer_type=kind,
        is_list=bool(_LIST_Q.search(question)),
        names=frozenset(question_names(question)),
        phrases=frozenset(name_phrases(question)),
        numbers=frozenset(number_values(question)),
        measured=frozenset(measured),
        head=head,
        terms=frozenset(terms(question)),
        asks_year=bool(_YEAR_Q.search(question)),
    )


def quantities(sentence: str, info: QuestionInfo) -> set[str]:
    """The numbers a sentence offers as an answer: to a year question only years, to any other
    question no years and no references."""
    if info.asks_year:
        return {n for n in numbers(sentence) if _YEAR_VALUE.fullmatch(n)}
    return numbers(_CITED.sub(" ", sentence))


def question_names(question: str) -> set[str]:
    """Names in a question: acronyms, CamelCase, words with digits, capitalised words mid-sentence.

    Hyphenated compounds are checked by their name-like parts ("XYZ-based" -> "xyz").
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


# Besides a multi-word proper name (`PROPER_NAME`: "Long Range Arena", a quoted title), a compound
# whose every part is capitalised or a number ("XY-Former", "ABC-300M"): names that only count
# when found whole.
_COMPOUND = re.compile(r"(?<![\w\-])([A-Za-z0-9]+(?:-[A-Za-z0-9]+)+)(?![\w\-])")


def name_phrases(question: str) -> set[str]:
    """Multi-part names in a question, flattened ("xy former"): matched whole, never by parts."""
    found = {norm(m.group(1)) for m in PROPER_NAME.finditer(question)}
    for m in _COMPOUND.finditer(question):
        parts = m.group(1).split("-")
        if all(p[0].isupper() or p[0].isdigit() for p in parts) and not parts[0].isdigit():
            found.add(norm(m.group(1)))
    return found


def phrases_named(phrases: frozenset[str], source: Source) -> float:
    """Share of the question's multi-part names found whole in the source (1 if it has none)."""
    if not phrases:
        return 1.0
    haystack = f" {norm(f'{source.title} {source.text}')} "
    return sum(f" {p} " in haystack for p in phrases) / len(phrases)


def measured_terms(question: str) -> set[str]:
    """What a numeric question counts or measures, any of which the answer should name:
    'how many hidden layers does' -> {layer}, 'what fraction of the weights is' -> {weight},
    'what BLEU score' -> {bleu} (a generic measure only when nothing more specific is said)."""
    if match := _MEASURED.search(question):
        phrase = (match.group(1) + match.group(2)).split()
        cut = next((i for i, w in enumerate(phrase) if w.lower() in _PREPOSITIONS), len(phrase))
        words = phrase[: max(cut, 1)][-1:]
    elif match := _SHARE_OF.search(question):
        words = match.group(1).split()[-1:]
    elif match := _METRIC.search(question):
        words = match.group(1).split()
    else:
        return set()
    # Words that say "a number" without saying of what are no evidence of the thing measured.
    words = [w for w in words if w.lower() not in _VAGUE | _NOT_NAMES]
    specific = [w for w in words if w.lower().rstrip("s") not in _GENERIC]
    return {t for w in specific or words for t in terms(w)}


def answer_head(question: str) -> str | None:
    """The thing a which/what question asks for: 'Which optimisers are ...' -> optimis(er)."""
    match = _WHICH_Q.match(question)
    if not match or match.group(1).lower() in _NOT_HEADS | _GENERIC:
        return None
    found = terms(match.group(1))
    return found[0] if found else None


def new_names(sentence: str, question: str) -> set[str]:
    """Names in a sentence that the question does not already mention."""
    sentence = re.sub(r"\([^)]*\)", " ", sentence)  # a parenthesised spelling-out adds no name
    words = re.findall(r"[A-Za-z][\w\-]*", sentence)
    names = {w.lower() for i, w in enumerate(words) if i > 0 and w[0].isupper()}
    return (names | entities(sentence)) - {w.lower() for w in re.findall(r"[\w\-]+", question)}


def name_in(name: str, lower: str, original: str) -> bool:
    """`name` as a whole word of the text (plural or not), or as the initials of its words."""
    singular = name[:-1] if name.endswith("s") and len(name) > 3 else name
    word = rf"(?<![a-z0-9]){re.escape(singular)}(?:s|es)?(?![a-z0-9])"
    return bool(re.search(word, lower)) or is_acronym_of(singular, original)


def names_named(names: set[str] | frozenset[str], source: Source) -> int:
    """How many of `names` the source's title or abstract names."""
    haystack = f"{source.title} {source.text}"
    lower = haystack.lower()
    return sum(name_in(n, lower, haystack) for n in names)


def names_found(question: str, source: Source) -> bool:
    """The question names something (a model, dataset, paper) and this source names (nearly) all.

    Lexical evidence that a low cosine misses: a short question naming a method scores low against
    the abstract that introduces it, yet that abstract is the one to answer from.
    """
    names = analyse(question).names
    # Long paraphrases name many things; one of four or more may be worded differently.
    return bool(names) and names_named(names, source) >= math.ceil(0.75 * len(names))
