"""The offline claim judge: general signals for one (claim, source) pair, hard grounding vetoes, and
the small fitted model that combines the signals.

Vetoes decide first, because they are about grounding, not about wording:
  - a claim that is a verbatim part of the source is supported;
  - a number, a name (acronym, CamelCase, word with a digit, multi-word proper name) or a
    link/markup in the claim that the source does not contain makes it unsupported.
Everything else is a logistic model over a few general signals (`SIGNALS`), fitted on the dev half
of eval/data/claims.jsonl by `python -m eval.fit_judge`, which writes rag/data/judge.json (the
coefficients, the feature scaling and the decision threshold chosen by cross-validation on dev).
At run time the model is a dot product: numpy only, no scikit-learn.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from rag.text import NEGATIONS, PROPER_NAME, STOPWORDS, norm, stem, terms

MODEL_PATH = Path(__file__).parent / "data" / "judge.json"

# The order of the model's inputs; the JSON names them, and a mismatch is an error.
SIGNALS = (
    "cos",  # embedding cosine to the best source sentence or pair of neighbouring sentences
    "overlap",  # share of the claim's content words in the best-matching passage
    "overlap_full",  # share of the claim's content words anywhere in the title + abstract
    "novel",  # log(1 + claim content words absent from the abstract)
    "bigrams",  # share of the claim's consecutive content-word pairs also consecutive in the source
    "numbers",  # log(1 + numbers in the claim), all found in the source (else vetoed)
    "names",  # log(1 + names in the claim), all found in the source (else vetoed)
    "negation",  # words negated in the claim but not in the source, or the reverse
    "opposites",  # claim words whose opposite, and not themselves, occurs in the source
)
# The direction each signal can only push the verdict, whatever a sample of labelled claims
# suggests: more support never counts against a claim, more unsupported wording never for it.
# `eval.fit_judge` fits the model within these signs (a constrained logistic regression), so a
# quirk of how the labelled claims were written cannot turn "copied word for word" into doubt.
SIGNS = {
    "cos": 1,
    "overlap": 1,
    "overlap_full": 1,
    "novel": -1,
    "bigrams": 1,
    "numbers": 1,
    "names": 1,
    "negation": -1,
    "opposites": -1,
}
VETOES = ("verbatim", "numbers", "names", "phrases", "words", "links")

# Opposite directions common in results prose; un-/in-/non-/dis-/a- opposites are found by form.
_OPPOSITE_PAIRS = [
    ("increase", "decrease"),
    ("higher", "lower"),
    ("high", "low"),
    ("more", "less"),
    ("more", "fewer"),
    ("better", "worse"),
    ("best", "worst"),
    ("faster", "slower"),
    ("fast", "slow"),
    ("larger", "smaller"),
    ("large", "small"),
    ("longer", "shorter"),
    ("improve", "degrade"),
    ("outperform", "underperform"),
    ("strong", "weak"),
    ("stronger", "weaker"),
    ("easier", "harder"),
    ("simple", "complex"),
    ("positive", "negative"),
    ("maximum", "minimum"),
    ("maximize", "minimize"),
    ("above", "below"),
    ("gain", "loss"),
    ("success", "failure"),
    ("include", "exclude"),
    ("before", "after"),
    ("dense", "sparse"),
]
OPPOSITES: dict[str, set[str]] = {}
for _a, _b in _OPPOSITE_PAIRS:
    OPPOSITES.setdefault(stem(_a), set()).add(stem(_b))
    OPPOSITES.setdefault(stem(_b), set()).add(stem(_a))
_PREFIXES = ("un", "in", "non", "dis", "a")  # negating prefixes: "efficient"/"inefficient"
_WORDS = re.compile(r"[a-z][a-z'\-]*")


def words(text: str) -> list[str]:
    return _WORDS.findall(text.lower())


def negated(text: str) -> set[str]:
    """Stems of the content words a negation applies to: 'does not compress X' -> {'compress'}."""
    ws = words(text)
    out = set()
    for i, word in enumerate(ws):
        if word in NEGATIONS:
            following = [
                w
                for w in ws[i + 1 : i + 4]
                if w not in STOPWORDS and w not in NEGATIONS and not w.endswith("ly")
            ]  # an adverb between the negation and the verb is skipped
            if following:
                out.add(stem(following[0].replace("-", "")))
    return out


def negation_mismatch(claim: str, passage: str, full: str) -> int:
    """Words the claim negates that the source does not, plus words the source negates that the
    claim asserts."""
    claim_neg, passage_neg = negated(claim), negated(passage)
    claim_stems = {stem(w.replace("-", "")) for w in words(claim)}
    return len(claim_neg - passage_neg - negated(full)) + len(
        (passage_neg & claim_stems) - claim_neg
    )


def opposites(claim: str, full: str) -> int:
    """Claim words (or word + next word) whose opposite, and not themselves, is in the source."""
    claim_words, source_words = set(words(claim)), set(words(full))
    source_stems = {stem(w) for w in source_words}
    hits: set[str] = set()
    for word in claim_words - source_words:
        s = stem(word)
        if s in source_stems:
            continue
        if OPPOSITES.get(s, set()) & source_stems:
            hits.add(s)
            continue
        for prefix in _PREFIXES:
            if (prefix + word) in source_words or (
                word.startswith(prefix)
                and len(word) > len(prefix) + 3
                and word[len(prefix) :] in source_words
            ):
                hits.add(s)
                break
    source_bigrams = set(itertools.pairwise(stem(w) for w in words(full)))
    for a, b in set(itertools.pairwise(stem(w) for w in words(claim))) - source_bigrams:
        if any((o, b) in source_bigrams for o in OPPOSITES.get(a, ())):
            hits.add(a)
    return len(hits)


# A capitalised word inside a sentence (not its first word): a name the claim commits to.
_CAPITALISED = re.compile(r"(?<![.!?:]\s)(?<!^)(?<![\-/])\b([A-Z][a-z]{2,})\b(?![\-/])")


def missing_phrases(claim: str, full: str) -> list[str]:
    """Multi-word proper names in the claim ('Long Range Graph Benchmark') absent from the source."""
    source = norm(full)
    return sorted(m.group(1) for m in PROPER_NAME.finditer(claim) if norm(m.group(1)) not in source)


def missing_words(claim: str, full: str) -> list[str]:
    """Capitalised words inside the claim ('the Hamster paper') that the source never uses, in
    any case: a name the source does not mention cannot be supported by it."""
    source = set(norm(full).split())
    return sorted(
        {w for m in _CAPITALISED.finditer(claim) if (w := m.group(1)).lower() not in source}
    )


def signals(
    claim: str, full: str, passages: list[str], sims: np.ndarray, n_numbers: int, n_names: int
) -> tuple[dict[str, float], int]:
    """The model's inputs, and the index of the passage that agrees with the claim both ways."""
    claim_terms = terms(claim)
    claim_set = set(claim_terms)
    overlaps = np.array(
        [len(claim_set & set(terms(p))) / len(claim_set) if claim_set else 0.0 for p in passages]
    )
    best = int(np.argmax(sims + overlaps))
    full_terms = terms(full)
    full_set = set(full_terms)
    claim_pairs = set(itertools.pairwise(claim_terms))
    full_pairs = set(itertools.pairwise(full_terms))
    values = {
        "cos": float(sims.max()),
        "overlap": float(overlaps.max()),
        "overlap_full": len(claim_set & full_set) / len(claim_set) if claim_set else 0.0,
        "novel": math.log1p(len(claim_set - full_set)),
        "bigrams": len(claim_pairs & full_pairs) / len(claim_pairs) if claim_pairs else 0.0,
        "numbers": math.log1p(n_numbers),
        "names": math.log1p(n_names),
        "negation": float(negation_mismatch(claim, passages[best], full)),
        "opposites": float(opposites(claim, full)),
    }
    return values, best


@dataclass(frozen=True)
class Features:
    """Everything the offline judge looks at for one (claim, source) pair."""

    verbatim: bool = False
    missing_numbers: list[str] = field(default_factory=list)
    missing_names: list[str] = field(default_factory=list)
    missing_phrases: list[str] = field(default_factory=list)
    missing_words: list[str] = field(default_factory=list)
    foreign_links: list[str] = field(default_factory=list)
    signals: dict[str, float] = field(default_factory=dict)
    support: str | None = None

    @property
    def cos(self) -> float:
        return self.signals.get("cos", 1.0 if self.verbatim else 0.0)


@dataclass(frozen=True)
class Verdict:
    supported: bool
    support: str | None
    score: float
    reason: str = ""


@dataclass(frozen=True)
class JudgeModel:
    """A logistic model: P(supported) = sigmoid(coef . (x - mean) / scale + intercept)."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    threshold: float
    meta: dict[str, object] = field(default_factory=dict, compare=False)

    def probability(self, values: dict[str, float]) -> float:
        x = np.array([values[name] for name in self.features], dtype=float)
        z = float(np.dot(self.coef, (x - np.array(self.mean)) / np.array(self.scale)))
        return 1.0 / (1.0 + math.exp(-(z + self.intercept)))

    def to_json(self) -> str:
        data = {k: getattr(self, k) for k in ("features", "mean", "scale", "coef", "intercept")}
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}
        return json.dumps({**data, "threshold": self.threshold, "meta": self.meta}, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> JudgeModel:
        data = json.loads(text)
        model = cls(
            features=tuple(data["features"]),
            mean=tuple(data["mean"]),
            scale=tuple(data["scale"]),
            coef=tuple(data["coef"]),
            intercept=float(data["intercept"]),
            threshold=float(data["threshold"]),
            meta=data.get("meta", {}),
        )
        unknown = set(model.features) - set(SIGNALS)
        if unknown or not len(model.mean) == len(model.scale) == len(model.coef) == len(
            model.features
        ):
            raise ValueError(
                f"judge model names unknown signals {sorted(unknown)} or has mismatched lengths; "
                "refit it with `python -m eval.fit_judge`"
            )
        return model


@lru_cache(maxsize=4)
def load_model(path: Path = MODEL_PATH) -> JudgeModel:
    return JudgeModel.from_json(path.read_text())


def veto(f: Features, vetoes: tuple[str, ...] = VETOES) -> Verdict | None:
    """The verdict of a grounding veto, or None when none applies."""
    if f.verbatim and "verbatim" in vetoes:
        return Verdict(True, f.support, 1.0, "verbatim")
    if f.missing_numbers and "numbers" in vetoes:
        return Verdict(False, None, 0.0, f"numbers not in source: {f.missing_numbers}")
    names = (
        (f.missing_names if "names" in vetoes else [])
        + (f.missing_phrases if "phrases" in vetoes else [])
        + (f.missing_words if "words" in vetoes else [])
    )
    if names:
        return Verdict(False, None, 0.0, f"names not in source: {names}")
    if f.foreign_links and "links" in vetoes:
        return Verdict(False, None, 0.0, f"links or markup not in source: {f.foreign_links}")
    return None


def decide(f: Features, model: JudgeModel, vetoes: tuple[str, ...] = VETOES) -> Verdict:
    """Vetoes first, then the fitted model."""
    vetoed = veto(f, vetoes)
    if vetoed is not None:
        return vetoed
    p = model.probability(f.signals)
    ok = p >= model.threshold
    return Verdict(ok, f.support if ok else None, p, f"p={p:.2f} (threshold {model.threshold:.2f})")
