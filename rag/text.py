"""Small text utilities shared by answering and verification: sentences, citations, terms, numbers."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag.types import Sentence

CITATION = re.compile(r"\s*\[(\d+(?:\s*[,;]\s*\d+)*)\]")
# A year as papers and questions write one ("2017"): the date filters read from a question
# (rag.query) and the answer to a year question (rag.question).
YEAR = r"(?:19|20)\d\d"
_ABBREV = {
    "e.g",
    "i.e",
    "et al",
    "al",
    "vs",
    "fig",
    "figs",
    "eq",
    "eqs",
    "etc",
    "approx",
    "no",
    "cf",
    "resp",
    "sec",
    "ref",
    "refs",
    "dr",
    "mr",
    "ms",
    "prof",
    "inc",
    "ltd",
    "u.s",
    "st",
    "viz",
}
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9\-']*|\d+(?:[.,]\d+)*")
# A number, with its unit or scale word. Digits inside a name are not a value: "Llama2", and a
# number after a word and a hyphen ("CIFAR-10", "GPT-3", "top-5") is part of what is named; such
# names are matched as names (`entities`), so a "10%" is never found in "CIFAR-10".
_NUMBER = re.compile(
    r"(?<![A-Za-z\d])(?<![A-Za-z][A-Za-z]-)(\d+(?:[.,]\d+)*)(\s?(?:%|x|×|k|K|M|B|billion|million))?"
)
# Interrogative words: what a question opens with, never a name or a content word.
QUESTION_WORDS = frozenset(["what", "which", "who", "whom", "whose", "when", "where", "why", "how"])
# Auxiliary verbs that open or carry a question ("does it", "how many layers has it").
AUXILIARIES = frozenset(
    [
        "is",
        "are",
        "was",
        "were",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "can",
        "could",
        "should",
        "would",
        "will",
    ]
)
# Pronouns that point back at something named before ("does it", "their results", "this paper"):
# they refer to a name, they never are one.
PRONOUNS = frozenset(
    ["it", "its", "it's", "they", "them", "their", "this", "that", "these", "those"]
)
STOPWORDS = frozenset(
    [
        *QUESTION_WORDS,
        *AUXILIARIES,
        *PRONOUNS,
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "then",
        "than",
        "of",
        "for",
        "to",
        "in",
        "on",
        "at",
        "by",
        "with",
        "from",
        "into",
        "onto",
        "over",
        "under",
        "about",
        "as",
        "be",
        "been",
        "being",
        "doing",
        "having",
        "may",
        "might",
        "must",
        "shall",
        "there",
        "here",
        "we",
        "our",
        "you",
        "your",
        "he",
        "she",
        "his",
        "her",
        "i",
        "me",
        "my",
        "whether",
        "not",
        "no",
        "nor",
        "so",
        "such",
        "very",
        "more",
        "most",
        "less",
        "least",
        "also",
        "only",
        "just",
        "both",
        "each",
        "either",
        "neither",
        "any",
        "all",
        "some",
        "many",
        "much",
        "few",
        "other",
        "another",
        "same",
        "own",
        "via",
        "per",
        "between",
        "among",
        "within",
        "without",
        "across",
        "after",
        "before",
        "during",
        "up",
        "down",
        "out",
        "off",
        "again",
        "further",
        "once",
        "paper",
        "papers",
        "work",
        "study",
        "approach",
        "method",
        "propose",
        "proposed",
        "present",
        "presents",
        "show",
        "shows",
        "use",
        "used",
        "using",
        "based",
        "new",
        "novel",
        "tell",
        "give",
        "list",
        "name",
        "corpus",
        "abstract",
        "according",
        "say",
        "says",
        "said",
    ]
)
NEGATIONS = frozenset(
    [
        "not",
        "no",
        "never",
        "cannot",
        "can't",
        "without",
        "fails",
        "fail",
        "neither",
        "nor",
        "none",
        "lacks",
        "unable",
    ]
)


def _boundaries(text: str) -> Iterator[re.Match[str]]:
    """Sentence breaks in `text`: ". Next", not after an abbreviation ("e.g.") or an initial."""
    start = 0
    for match in _BOUNDARY.finditer(text):
        candidate = text[start : match.start()].rstrip()
        last_word = re.findall(r"([A-Za-z][A-Za-z.]*)\.$", candidate)
        if last_word and last_word[0].lower().rstrip(".") in _ABBREV:
            continue
        if re.search(r"\b[A-Z]\.$", candidate):  # initials: "J. Smith"
            continue
        yield match
        start = match.end()


def sentence_pieces(text: str) -> list[str]:
    """`text` cut at sentence breaks, losing nothing: the pieces join back to `text` exactly.

    This is the sentence tokenizer chunking hands llama-index's `SentenceSplitter`, so chunks and
    quoted evidence break at the same places (its default, an untrained punkt, breaks after
    "e.g." and "vs." and costs ~2 s of nltk and scipy imports)."""
    starts = [0, *(m.end() for m in _boundaries(text))]
    ends = [*starts[1:], len(text)]
    return [text[a:b] for a, b in zip(starts, ends, strict=True) if a < b]


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences, keeping abbreviations and trailing [n] citations attached."""
    text = " ".join(text.split())
    if not text:
        return []
    pieces: list[str] = []
    start = 0
    for match in _boundaries(text):
        pieces.append(text[start : match.start()].rstrip())
        start = match.end()
    pieces.append(text[start:].strip())
    merged: list[str] = []
    for piece in pieces:
        lead = re.match(r"^((?:\[\d+(?:\s*[,;]\s*\d+)*\]\s*)+)(.*)$", piece)
        if lead and merged:  # "… tokens. [1] Next" -> the [1] belongs to the previous sentence
            merged[-1] = merged[-1] + " " + lead.group(1).strip()
            piece = lead.group(2)
        if piece:
            merged.append(piece)
    return [p for p in merged if p.strip()]


def citations(sentence: str) -> list[int]:
    found: list[int] = []
    for group in CITATION.findall(sentence):
        for num in re.split(r"\s*[,;]\s*", group):
            if num.isdigit() and int(num) not in found:
                found.append(int(num))
    return found


def strip_citations(sentence: str) -> str:
    return " ".join(CITATION.sub("", sentence).split())


def cite(sentence: str, numbers: Iterable[int]) -> str:
    """A sentence with its [n] markers before the final stop ("… 16K tokens [1][2]."); a sentence
    without one gets a full stop. The one sentence renderer: the extractive answer, the verifier's
    text, the stream and the UI all write a cited sentence with it."""
    body = sentence.rstrip()
    end = body[-1] if body and body[-1] in ".!?" else "."
    body = body[:-1] if body and body[-1] in ".!?" else body
    marks = "".join(f"[{n}]" for n in numbers)
    return f"{body} {marks}{end}" if marks else f"{body}{end}"


def render(sentences: Iterable[Sentence]) -> str:
    """Sentences back to text, each followed by its [n] markers."""
    return " ".join(cite(s.text, s.citations) for s in sentences)


@lru_cache(maxsize=65536)  # pure, and called for every word of every candidate sentence
def stem(word: str) -> str:
    """A light, consistent stemmer: 'sequences' and 'sequence' meet, 'studies' and 'study' meet."""
    word = word.lower()
    if len(word) <= 4:
        return word
    for suffix, repl in (
        ("ations", ""),
        ("ation", ""),
        ("ions", ""),
        ("ion", ""),
        ("ies", "y"),
        ("ied", "y"),
        ("sses", "ss"),
    ):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + repl
    if (word.endswith("es") and word[-3] in "sxz") or word.endswith(("ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            word = word[: -len(suffix)]
            break
    return word.rstrip("e") if len(word) > 4 else word


def terms(text: str, *, cache: bool = True) -> list[str]:
    """Stemmed content words. `cache=False` leaves the stem cache alone (BM25 over a whole
    corpus: every distinct word of it would fill the cache, up to ~14 MiB)."""
    stemmer = stem if cache else stem.__wrapped__
    return [stemmer(w) for w in _WORD.findall(text) if w.lower() not in STOPWORDS and len(w) > 1]


def numbers(text: str) -> set[str]:
    """Normalised numbers with their unit: '16K' -> '16k', '1,000' -> '1000', '7.988x'."""
    out = set()
    for value, unit in _NUMBER.findall(text):
        value = value.rstrip(".,").replace(",", "")
        unit = (unit or "").strip().lower().replace("×", "x")
        out.add(value + unit)
    return out


_SCALE = {"k": 1e3, "m": 1e6, "million": 1e6, "b": 1e9, "billion": 1e9}


def number_values(text: str) -> set[str]:
    """Numeric values, scale words applied: '1K' and '1,000' both give '1000'."""
    out = set()
    for value, unit in _NUMBER.findall(text):
        value = value.rstrip(".,").replace(",", "")
        try:
            number = float(value) * _SCALE.get((unit or "").strip().lower(), 1.0)
        except ValueError:
            continue
        out.add(f"{number:g}")
    return out


# A multi-word proper name inside a sentence (not at its start): "Long Range Arena".
PROPER_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b((?:[A-Z][a-z]+[ \-]){1,5}[A-Z][a-z]+)\b")


def norm(text: str) -> str:
    """Lower-case words and numbers joined by single spaces: "Long-Range  Arena" -> "long range
    arena" (names compared whatever their hyphens, case and spacing)."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def entities(text: str) -> set[str]:
    """Names a claim must not change: acronyms, CamelCase, words with digits (GPT-4, CIFAR-10)."""
    found = set()
    for _i, token in enumerate(re.findall(r"[A-Za-z][A-Za-z0-9\-+.]*[A-Za-z0-9+]|[A-Z]", text)):
        core = token.strip(".-")
        if len(core) < 2:
            continue
        has_digit = any(c.isdigit() for c in core)
        inner_caps = any(c.isupper() for c in core[1:])
        if has_digit or inner_caps:
            found.add(core.lower())
    return found


def is_acronym_of(name: str, text: str) -> bool:
    """'lra' for 'Long Range Arena': initials of consecutive words in the source."""
    if not name.isalpha() or not 2 <= len(name) <= 8:
        return False
    words = re.findall(r"[A-Za-z][\w]*", text)
    n = len(name)
    return any(
        "".join(w[0] for w in words[i : i + n]).lower() == name for i in range(len(words) - n + 1)
    )


def idf_weights(documents: Iterable[list[str]]) -> dict[str, float]:
    docs = list(documents)
    df: Counter[str] = Counter()
    for doc in docs:
        df.update(set(doc))
    n = max(1, len(docs))
    return {t: math.log(1 + n / c) for t, c in df.items()}
