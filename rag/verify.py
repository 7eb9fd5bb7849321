"""Sentence-level citation verification and the decision to abstain.

Every answer, from any backend, goes through `Verifier.verify`:
  1. citation numbers that name no source are removed;
  2. the answer is split into sentences, each with the sources it cites;
  3. each (sentence, cited source) pair is judged: offline by default, numbers and names in the
     sentence must appear in the source, and the sentence must match one of the source's sentences
     (or two neighbouring ones) by embedding similarity and by content-word overlap; an LLM judge
     can be switched on with RAG_VERIFY_JUDGE=llm;
  4. an unsupported sentence is re-attributed to another retrieved source that supports it, else
     dropped (RAG_UNSUPPORTED=drop) or kept and flagged (flag). Nothing supported left -> abstain.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rag.embeddings import encode
from rag.prompts import CANNOT_ANSWER, as_evidence, foreign_links, is_refusal
from rag.text import (
    NEGATIONS,
    STOPWORDS,
    citations,
    entities,
    is_acronym_of,
    number_values,
    split_sentences,
    stem,
    strip_citations,
    terms,
)
from rag.types import Sentence, Source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Thresholds:
    """Calibrated on the dev half of eval/data/claims.jsonl (see docs/verification.md)."""

    cosine: float = 0.72  # embedding similarity to the best source sentence (or pair)
    overlap: float = 0.60  # share of the claim's content words found in that passage
    overlap_alone: float = 0.85  # enough on its own, without the embedding vote
    cosine_alone: float = 0.90
    overlap_numeric: float = 0.60  # content-word overlap enough when the claim's numbers all match


@dataclass(frozen=True)
class Features:
    verbatim: bool = False
    missing_numbers: list[str] = field(default_factory=list)
    missing_names: list[str] = field(default_factory=list)
    contradiction: list[str] = field(default_factory=list)
    cos: float = 0.0
    overlap: float = 0.0
    support: str | None = None
    numbers_matched: int = 0


@dataclass(frozen=True)
class Verdict:
    supported: bool
    support: str | None
    score: float
    reason: str = ""


_PAIRS = [
    ("outperform", "underperform"),
    ("outperforms", "underperforms"),
    ("improves", "degrades"),
    ("improve", "degrade"),
    ("increase", "decrease"),
    ("increases", "decreases"),
    ("faster", "slower"),
    ("higher", "lower"),
    ("high", "low"),
    ("better", "worse"),
    ("more", "fewer"),
    ("larger", "smaller"),
    ("requires", "without"),
    ("require", "without"),
    ("supervised", "unsupervised"),
    ("efficient", "inefficient"),
    ("scalable", "unscalable"),
    ("reduces", "increases"),
    ("reduce", "increase"),
    ("simple", "complex"),
    ("strong", "weak"),
    ("best", "worst"),
    ("success", "failure"),
    ("successful", "unsuccessful"),
    ("linear", "quadratic"),
]
ANTONYMS: dict[str, set[str]] = {}
for _a, _b in _PAIRS:
    ANTONYMS.setdefault(_a, set()).add(_b)
    ANTONYMS.setdefault(_b, set()).add(_a)


def _negated(text: str) -> set[str]:
    """Stems of the content words a negation applies to: 'does not compress X' -> {'compress'}."""
    words = re.findall(r"[a-z][a-z'\-]*", text.lower())
    out = set()
    for i, word in enumerate(words):
        if word in NEGATIONS:
            following = [
                w
                for w in words[i + 1 : i + 4]
                if w not in STOPWORDS and w not in NEGATIONS and not w.endswith("ly")
            ]  # "does not necessarily perform" negates "perform"
            if following:
                out.add(stem(following[0].replace("-", "")))
    return out


def _inflections(word: str) -> set[str]:
    """'reduce' -> reduce, reduces, reduced; 'increases' -> increase too."""
    base = word[:-2] if word.endswith("es") else word[:-1] if word.endswith("s") else word
    base = base[:-1] if base.endswith("e") else base
    return {word, base + "e", base + "es", base + "ed", base + "s", base}


def _bigrams(text: str) -> set[tuple[str, str]]:
    words = re.findall(r"[a-z][a-z'\-]*", text.lower())
    return set(itertools.pairwise(words))


def _opposite_pairs(claim: str, source: str) -> list[str]:
    """'high token probabilities' where the source says 'low token probabilities'."""
    source_pairs = _bigrams(source)
    found = []
    for word, following in _bigrams(claim) - source_pairs:
        if any((opposite, following) in source_pairs for opposite in ANTONYMS.get(word, ())):
            found.append(f"{word} {following}")
    return sorted(found)


def _opposites(claim_words: set[str], source_words: set[str]) -> list[str]:
    """Claim words whose opposite, and not themselves, is in the source: antonyms and a-/un-/in-."""
    found = []
    for word in claim_words - source_words:
        if {v for a in ANTONYMS.get(word, set()) for v in _inflections(a)} & source_words:
            found.append(word)
            continue
        for prefix in ("a", "un", "in", "non", "dis"):
            if (prefix + word) in source_words or (
                word.startswith(prefix)
                and len(word) > len(prefix) + 3
                and word[len(prefix) :] in source_words
            ):
                found.append(word)
                break
    return sorted(found)


_PROPER = re.compile(r"(?<![.!?]\s)(?<!^)\b((?:[A-Z][a-z]+[ \-]){1,5}[A-Z][a-z]+)\b")


def missing_phrases(claim: str, full: str) -> list[str]:
    """Multi-word proper names in the claim ('Long Range Graph Benchmark') absent from the source."""
    source = _norm(full)
    return sorted(m.group(1) for m in _PROPER.finditer(claim) if _norm(m.group(1)) not in source)


_DIRECTED = re.compile(
    r"\b(outperform\w*|surpass\w*|exceed\w*|beat\w*|replac\w*|substitut\w*)\b", re.I
)


def _sides(sentence: str) -> list[tuple[str, set[str], set[str]]]:
    """(verb stem, terms before, terms after) around each directed verb ('A outperforms B')."""
    out = []
    for m in _DIRECTED.finditer(sentence):
        before = set(terms(" ".join(sentence[: m.start()].split()[-4:])))
        after = set(terms(sentence[m.end() :]))
        out.append((m.group(1).lower()[:6], before, after))
    return out


_REPLACE = (
    # "replaces A with B" -> (A, B)
    re.compile(
        r"\breplac\w*\s+(?:the\s+|a\s+|an\s+)?([\w\-]+(?:\s[\w\-]+)?)\s+(?:with|by)\s+"
        r"(?:the\s+|a\s+|an\s+)?([\w\-]+(?:\s[\w\-]+)?)",
        re.I,
    ),
    # "A is replaced by B" -> (A, B)
    re.compile(
        r"([\w\-]+\s[\w\-]+)\s+(?:is|are|was|were|gets|get)\s+replaced\s+(?:by|with)\s+"
        r"(?:the\s+|a\s+|an\s+)?([\w\-]+(?:\s[\w\-]+)?)",
        re.I,
    ),
)


def _replacements(sentence: str) -> list[tuple[set[str], set[str]]]:
    """(what is replaced, what replaces it), each as the terms the other side lacks."""
    out = []
    for pattern in _REPLACE:
        for m in pattern.finditer(sentence):
            old, new = set(terms(m.group(1))), set(terms(m.group(2)))
            if old - new and new - old:
                out.append((old - new, new - old))
    return out


def _content(words: set[str]) -> set[str]:
    return {w for w in words if not w.endswith("ly")}  # "substantially" is no participant


def swapped_roles(claim: str, source_text: str) -> list[str]:
    """The source says 'B outperforms A' (or 'replace B with A') where the claim says the reverse."""
    found = []
    claim_sides = _sides(claim)
    claim_swaps = _replacements(claim)
    if not claim_sides and not claim_swaps:
        return found
    for sent in split_sentences(source_text):
        for verb, s_before, s_after in _sides(sent):
            for c_verb, before, after in claim_sides:
                if c_verb != verb or verb.startswith("replac"):
                    continue
                # the claim's object is the source's subject, its subject the source's object
                b, a, sb, sa = map(_content, (before, after, s_before, s_after))
                if a & sb and b & sa and not b & sb:
                    found.append(f"{c_verb}: roles swapped")
        for s_old, s_new in _replacements(sent):
            for c_old, c_new in claim_swaps:
                if c_old & s_new and c_new & s_old and not (c_old & s_old):
                    found.append("replace: roles swapped")
    return sorted(set(found))


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


class Verifier:
    def __init__(
        self,
        embedder: Any,
        *,
        policy: str = "drop",
        thresholds: Thresholds | None = None,
        llm_judge: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.embedder = embedder
        self.policy = policy
        self.t = thresholds or Thresholds()
        self.llm_judge = llm_judge
        self._cache: OrderedDict[str, tuple[list[str], np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------------- one pair
    def _passages(self, source: Source) -> tuple[list[str], np.ndarray]:
        """Source sentences and neighbouring pairs, embedded once per abstract."""
        key = source.paper_id + str(hash(source.text))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        sents = split_sentences(source.text) or [source.text]
        passages = [*sents, *(f"{a} {b}" for a, b in itertools.pairwise(sents))]
        passages.append(f"{source.title}. {sents[0]}")
        vectors = encode(self.embedder, passages)
        with self._lock:
            self._cache[key] = (passages, vectors)
            while len(self._cache) > 512:
                self._cache.popitem(last=False)
        return passages, vectors

    def sentence_vectors(self, source: Source) -> tuple[list[str], np.ndarray]:
        """The source's sentences and their vectors (shared with verification's cache)."""
        passages, vectors = self._passages(source)
        n = len(split_sentences(source.text) or [source.text])
        return passages[:n], vectors[:n]

    def features(
        self, claim: str, source: Source, claim_vector: np.ndarray | None = None
    ) -> Features:
        """Everything the offline judge looks at for one (claim, source) pair."""
        claim = strip_citations(claim)
        full = f"{source.title}. {source.text}"
        if _norm(claim) and _norm(claim) in _norm(full):
            return Features(
                verbatim=True, support=self._best_sentence(claim, source), cos=1.0, overlap=1.0
            )
        missing_numbers = sorted(number_values(claim) - number_values(full))
        source_lower = full.lower()
        missing_names = sorted(
            e for e in entities(claim) if e not in source_lower and not is_acronym_of(e, full)
        ) + foreign_links(claim, full)  # a link or markup the source does not carry
        missing_names += missing_phrases(claim, full)
        passages, vectors = self._passages(source)
        if claim_vector is None:
            claim_vector = encode(self.embedder, [claim])[0]
        sims = vectors @ claim_vector
        claim_terms = set(terms(claim))
        overlaps = np.array(
            [
                len(claim_terms & set(terms(p))) / len(claim_terms) if claim_terms else 0.0
                for p in passages
            ]
        )
        best = int(np.argmax(sims + overlaps))  # the passage that agrees both ways
        overlap = max(
            float(overlaps.max()),
            len(claim_terms & set(terms(full))) / len(claim_terms) if claim_terms else 0.0,
        )
        claim_words = set(re.findall(r"[a-z']+", claim.lower()))
        source_words = set(re.findall(r"[a-z']+", source_lower))
        claim_negated = _negated(claim)
        passage_negated = _negated(passages[best])
        claim_stems = {
            stem(w.replace("-", "")) for w in re.findall(r"[a-z][a-z'\-]*", claim.lower())
        }
        contradiction = (
            sorted(claim_negated - passage_negated - _negated(full))
            # the source negates what the claim asserts: "should not be treated equally"
            + sorted((passage_negated & claim_stems) - claim_negated)
            + _opposites(claim_words, source_words)
            + swapped_roles(claim, source.text)
            + _opposite_pairs(claim, full)
        )
        return Features(
            missing_numbers=missing_numbers,
            missing_names=missing_names,
            contradiction=contradiction,
            cos=float(sims.max()),
            overlap=overlap,
            support=passages[best],
            numbers_matched=len(number_values(claim)),
        )

    def decide(self, f: Features) -> Verdict:
        if f.verbatim:
            return Verdict(True, f.support, 1.0, "verbatim")
        if f.missing_numbers:
            return Verdict(False, None, 0.0, f"numbers not in source: {f.missing_numbers}")
        if f.missing_names:
            return Verdict(False, None, 0.0, f"names not in source: {f.missing_names}")
        if f.contradiction:
            return Verdict(False, None, f.cos, f"contradicts the source: {f.contradiction}")
        ok = (
            (f.cos >= self.t.cosine and f.overlap >= self.t.overlap)
            or f.overlap >= self.t.overlap_alone
            or f.cos >= self.t.cosine_alone
            or (f.numbers_matched > 0 and f.overlap >= self.t.overlap_numeric)
        )
        return Verdict(
            ok, f.support if ok else None, f.cos, f"cos={f.cos:.2f} overlap={f.overlap:.2f}"
        )

    def judge(self, claim: str, source: Source, claim_vector: np.ndarray | None = None) -> Verdict:
        """Does `source` support `claim` (a sentence without citation markers)?"""
        if self.llm_judge is not None:
            f = self.features(claim, source, claim_vector)
            if f.verbatim or f.missing_numbers or f.missing_names:
                return self.decide(f)
            ok = self.llm_judge(strip_citations(claim), f"{source.title}. {source.text}")
            return Verdict(ok, f.support if ok else None, float(ok), "llm")
        return self.decide(self.features(claim, source, claim_vector))

    def _best_sentence(self, claim: str, source: Source) -> str:
        target = set(terms(claim))
        sents = split_sentences(source.text) or [source.text]
        return max(sents, key=lambda s: len(target & set(terms(s))))

    # ---------------------------------------------------------------------------- an answer
    def verify(self, text: str, sources: list[Source]) -> tuple[str, list[Sentence]]:
        """Return the cleaned answer text and its judged sentences. Empty text = abstain."""
        sources = [as_evidence(s) for s in sources]  # injected instructions support nothing
        by_number = {s.number: s for s in sources}
        if is_refusal(text) or not text.strip():
            return "", []
        raw = split_sentences(text)
        claims = [strip_citations(s) for s in raw]
        # Claims are embedded lazily, one by one: quoted (extractive) sentences never need it.
        vectors = None
        kept: list[Sentence] = []
        for i, (sentence, claim) in enumerate(zip(raw, claims, strict=True)):
            if not claim or is_refusal(claim) or not re.search(r"[A-Za-z0-9]", claim):
                continue
            cited = [n for n in citations(sentence) if n in by_number]
            if len(claim.split()) < 3:  # "10 [2]." says nothing a source can be checked against
                if self.policy == "flag":
                    kept.append(Sentence(text=claim, citations=cited, supported=False))
                continue
            vec = vectors[i] if vectors is not None else None
            good: list[int] = []
            support, support_source, score = None, None, 0.0
            for n in cited:
                verdict = self.judge(claim, by_number[n], vec)
                if verdict.supported:
                    good.append(n)
                    if support is None:
                        support, support_source, score = verdict.support, n, verdict.score
            if not good:  # re-attribute to another retrieved source that supports it
                for source in sources:
                    if source.number in cited:
                        continue
                    verdict = self.judge(claim, source, vec)
                    if verdict.supported:
                        good = [source.number]
                        support, support_source, score = (
                            verdict.support,
                            source.number,
                            verdict.score,
                        )
                        break
            if good:
                kept.append(
                    Sentence(
                        text=claim,
                        citations=good,
                        supported=True,
                        support=support,
                        support_source=support_source,
                        score=score,
                    )
                )
            elif self.policy == "flag":
                kept.append(Sentence(text=claim, citations=cited, supported=False))
        if not any(s.supported for s in kept):
            return "", kept if self.policy == "flag" else []
        return render(kept), kept


def render(sentences: list[Sentence]) -> str:
    """Sentences back to text, each followed by its [n] markers."""
    parts = []
    for s in sentences:
        body = s.text.rstrip()
        end = body[-1] if body and body[-1] in ".!?" else "."
        body = body[:-1] if body and body[-1] in ".!?" else body
        marks = "".join(f"[{n}]" for n in s.citations)
        parts.append(f"{body} {marks}{end}" if marks else f"{body}{end}")
    return " ".join(parts)


def refusal_text() -> str:
    return CANNOT_ANSWER
