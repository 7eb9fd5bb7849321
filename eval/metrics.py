"""Grounding-eval metrics: pure functions over ranked ids, answer text and a citation judge.

Every aggregate is a ratio of sums over questions, `sum(num) / sum(den)`: a per-question score
contributes (score, 1), a pooled count such as "supported sentences" contributes
(supported, sentences), and a question a metric does not apply to contributes (0, 0). That one form
makes aggregation, per-type tables and the bootstrap identical for every metric, and an empty
denominator is reported as `None` (null in JSON), never NaN.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from rag.prompts import is_refusal
from rag.text import citations, split_sentences, strip_citations
from rag.types import Source

Judge = Callable[[str, Source], bool]


# ------------------------------------------------------------------------------------ retrieval
def first_gold_rank(ranked: Sequence[str], gold: Iterable[str]) -> int | None:
    """1-based rank of the first gold id in `ranked` (None when no gold id was retrieved)."""
    gold = set(gold)
    for rank, pid in enumerate(ranked, 1):
        if pid in gold:
            return rank
    return None


def hit_at_k(ranked: Sequence[str], gold: Iterable[str], k: int) -> float:
    rank = first_gold_rank(ranked, gold)
    return 1.0 if rank is not None and rank <= k else 0.0


def reciprocal_rank(ranked: Sequence[str], gold: Iterable[str]) -> float:
    rank = first_gold_rank(ranked, gold)
    return 1.0 / rank if rank else 0.0


def ndcg_at_k(ranked: Sequence[str], gold: Iterable[str], k: int = 10) -> float:
    """Binary-relevance nDCG@k; a paper retrieved twice earns its gain once."""
    gold = set(gold)
    if not gold:
        return 0.0
    seen: set[str] = set()
    dcg = 0.0
    for rank, pid in enumerate(ranked[:k], 1):
        if pid in gold and pid not in seen:
            seen.add(pid)
            dcg += 1.0 / math.log2(rank + 1)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(gold), k) + 1))
    return dcg / ideal


def all_gold_at_k(ranked: Sequence[str], gold: Iterable[str], k: int = 10) -> float:
    gold = set(gold)
    return 1.0 if gold and gold <= set(ranked[:k]) else 0.0


# -------------------------------------------------------------------------------------- answers
def contains(text: str, item: str) -> bool:
    """Case-insensitive substring test; "a|b" matches either alternative."""
    low = text.lower()
    return any(alt.strip().lower() in low for alt in item.split("|") if alt.strip())


def must_contain_recall(text: str, items: Sequence[str]) -> float | None:
    if not items:
        return None
    return sum(contains(text, item) for item in items) / len(items)


def citations_valid(text: str, numbers: Iterable[int]) -> bool:
    """Every [n] in the text names one of the source numbers."""
    known = set(numbers)
    return all(n in known for n in citations(text))


def answer_sentences(text: str) -> list[tuple[str, list[int]]]:
    """(claim without markers, cited numbers) for each sentence of an answer."""
    out = []
    for sentence in split_sentences(text):
        claim = strip_citations(sentence)
        if not claim or is_refusal(claim) or not any(ch.isalnum() for ch in claim):
            continue
        out.append((claim, citations(sentence)))
    return out


# A string check that shares no code with rag's verifier, so it can measure what the verifier
# let through: digits, and words that look like names (a capital after the first letter, or
# letters mixed with digits: "ImageNet", "GPT-4", "MMLU", "XL/2").
_DIGITS = re.compile(r"\d+(?:[.,]\d+)*")
_NAME_LIKE = re.compile(r"^(?=.*[A-Za-z])(?:.+[A-Z].*|.*[A-Za-z].*\d.*|.*\d.*[A-Za-z].*)$")


def unsourced(claim: str, cited: Sequence[Source]) -> list[str]:
    """The numbers and name-like words of `claim` that no cited source's title or text holds
    (case-insensitive substring; thousands separators ignored). Strict: "1K" is not "1,000", and
    a name spelled differently counts as missing, so this bounds the real count from above."""
    haystack = " ".join(f"{s.title} {s.text}" for s in cited).lower()
    plain = haystack.replace(",", "")
    missing = [n for n in _DIGITS.findall(claim) if n.replace(",", "") not in plain]
    for word in claim.split():
        word = word.strip(".,;:!?()[]\"'“”‘’")
        word = re.sub(r"['’]s$", "", word)  # "CLIP's" is CLIP
        name_like = len(word) > 1 and _NAME_LIKE.match(word) and not _DIGITS.fullmatch(word)
        if name_like and word.lower() not in haystack:
            missing.append(word)
    return missing


def merged(sources: Sequence[Source]) -> Source:
    """Several sources as one passage, for judging a sentence against their concatenation (ALCE)."""
    if len(sources) == 1:
        return sources[0]
    return Source(
        number=0,
        paper_id="+".join(s.paper_id for s in sources),
        title="; ".join(s.title for s in sources),
        snippet="",
        text=" ".join(s.text for s in sources),
        score=0.0,
    )


@dataclass
class SentenceJudgement:
    text: str
    citations: list[int]
    supported: bool  # by its citations (alone or jointly)
    faithful: bool  # by any of the answer's sources
    precise: list[int] = field(default_factory=list)  # citations that are needed


@dataclass
class CitationScores:
    sentences: list[SentenceJudgement]

    @property
    def n_sentences(self) -> int:
        return len(self.sentences)

    @property
    def supported(self) -> int:
        return sum(s.supported for s in self.sentences)

    @property
    def faithful(self) -> int:
        return sum(s.faithful for s in self.sentences)

    @property
    def n_citations(self) -> int:
        return sum(len(s.citations) for s in self.sentences)

    @property
    def precise(self) -> int:
        return sum(len(s.precise) for s in self.sentences)


def judge_citations(text: str, sources: Sequence[Source], judge: Judge) -> CitationScores:
    """ALCE-style citation recall and precision, and faithfulness, of one answer.

    recall: a sentence counts when the sources it cites support it (one alone, or together);
    precision: a citation counts when its sentence is supported and the citation is needed, i.e.
    it supports the sentence alone or removing it leaves the sentence unsupported;
    faithfulness: a sentence counts when any of the answer's sources supports it.
    """
    by_number = {s.number: s for s in sources}
    out = []

    def backed(claim: str, group: list[Source]) -> bool:
        if not group:
            return False
        if any(judge(claim, s) for s in group):
            return True
        return len(group) > 1 and judge(claim, merged(group))

    for claim, cited in answer_sentences(text):
        group = [by_number[n] for n in cited if n in by_number]
        supported = backed(claim, group)
        precise: list[int] = []
        if supported:
            for n in cited:
                if n not in by_number:
                    continue  # a citation to no source is never needed
                rest = [s for s in group if s.number != n]
                if len(group) == 1 or judge(claim, by_number[n]) or not backed(claim, rest):
                    precise.append(n)
        faithful = supported or any(judge(claim, s) for s in sources if s.number not in cited)
        out.append(SentenceJudgement(claim, cited, supported, faithful, precise))
    return CitationScores(out)


# ---------------------------------------------------------------------------------- aggregation
def ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def aggregate(pairs: Sequence[tuple[float, float]]) -> dict[str, float | int | None]:
    """{value, n (questions that count), den} from per-question (num, den) pairs."""
    num = float(sum(p[0] for p in pairs))
    den = float(sum(p[1] for p in pairs))
    return {"value": ratio(num, den), "n": sum(1 for p in pairs if p[1]), "den": den}


def bootstrap_ci(
    pairs: Sequence[tuple[float, float]],
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    indices: np.ndarray | None = None,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of sum(num)/sum(den), resampling questions with replacement.

    Resamples whose denominator is zero are skipped; no usable resample -> None.
    `indices` (resamples x questions) lets several metrics share the same resamples.
    """
    if not pairs:
        return None
    arr = np.asarray(pairs, dtype=float).reshape(-1, 2)
    if arr[:, 1].sum() == 0:
        return None
    if indices is None:
        rng = np.random.default_rng(seed)
        indices = rng.integers(0, len(arr), size=(resamples, len(arr)))
    num = arr[indices, 0].sum(axis=1)
    den = arr[indices, 1].sum(axis=1)
    ok = den > 0
    if not ok.any():
        return None
    values = num[ok] / den[ok]
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else None


def overlap(a: Sequence[float] | None, b: Sequence[float] | None) -> bool | None:
    """Do two intervals overlap? None when either is missing."""
    if not a or not b:
        return None
    return not (a[1] < b[0] or b[1] < a[0])
