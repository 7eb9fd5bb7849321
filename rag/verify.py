"""Sentence-level citation verification and the decision to abstain.

Every answer, from any backend, goes through `Verifier.verify`:
  1. citation numbers that name no source are removed;
  2. the answer is split into sentences, each with the sources it cites;
  3. each (sentence, cited source) pair is judged: offline by default (rag.judge: numbers, names
     and links in the sentence must appear in the source, a verbatim quote is supported, and
     otherwise a small fitted model combines embedding similarity, word overlap, negation and
     opposites); an LLM judge can be switched on with RAG_VERIFY_JUDGE=llm;
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
from typing import Any

import numpy as np

from rag.embeddings import encode
from rag.judge import (
    Features,
    JudgeModel,
    Verdict,
    decide,
    load_model,
    missing_phrases,
    missing_words,
    norm,
    signals,
    veto,
)
from rag.prompts import as_evidence, foreign_links, is_refusal
from rag.text import (
    citations,
    entities,
    is_acronym_of,
    number_values,
    render,  # re-exported: rag.verify.render was its home before rag.text
    split_sentences,
    strip_citations,
    terms,
)
from rag.types import Sentence, Source

__all__ = ["Features", "Verdict", "Verifier", "render"]

log = logging.getLogger(__name__)

# A sentence cut off before what it was to say ("The authors of the study are [1].", "It is
# trained on [2].") ends in a word that needs one to follow: it states nothing to check.
_DANGLING = re.compile(
    r"\b(?:is|are|was|were|be|been|being|of|by|as|to|the|a|an|and|or|with|for|from|into|than|"
    r"on|in|at|include|includes|including|namely|such as|like)\W*$",
    re.I,
)


def is_fragment(claim: str) -> bool:
    """Too short to be checked ("10 [2].") or cut off before its object."""
    return len(claim.split()) < 3 or bool(_DANGLING.search(claim))


class Verifier:
    def __init__(
        self,
        embedder: Any,
        *,
        policy: str = "drop",
        model: JudgeModel | None = None,
        llm_judge: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.embedder = embedder
        self.policy = policy
        self.model = model or load_model()
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
        self,
        claim: str,
        source: Source,
        claim_vector: np.ndarray | None = None,
        *,
        shortcut: bool = True,
    ) -> Features:
        """Everything the offline judge looks at for one (claim, source) pair. A verbatim claim
        returns at once (no embedding) unless `shortcut` is off."""
        claim = strip_citations(claim)
        full = f"{source.title}. {source.text}"
        verbatim = bool(norm(claim)) and norm(claim) in norm(full)
        if verbatim and shortcut:
            return Features(verbatim=True, support=self._best_sentence(claim, source))
        claim_numbers = number_values(claim)
        source_lower = full.lower()
        claim_names = entities(claim)
        missing_names = sorted(
            e for e in claim_names if e not in source_lower and not is_acronym_of(e, full)
        )
        passages, vectors = self._passages(source)
        if claim_vector is None:
            claim_vector = encode(self.embedder, [claim])[0]
        values, best = signals(
            claim,
            full,
            passages,
            vectors @ claim_vector,
            n_numbers=len(claim_numbers),
            n_names=len(claim_names) - len(missing_names),
        )
        return Features(
            verbatim=verbatim,
            missing_numbers=sorted(claim_numbers - number_values(full)),
            missing_names=missing_names,
            missing_phrases=missing_phrases(claim, full),
            missing_words=missing_words(claim, full),
            foreign_links=foreign_links(claim, full),  # a link or markup the source lacks
            signals=values,
            support=passages[best],
        )

    def decide(self, f: Features) -> Verdict:
        """The offline verdict: grounding vetoes, then the fitted model (rag.judge)."""
        return decide(f, self.model)

    def judge(self, claim: str, source: Source, claim_vector: np.ndarray | None = None) -> Verdict:
        """Does `source` support `claim` (a sentence without citation markers)?"""
        if self.llm_judge is not None:
            f = self.features(claim, source, claim_vector)
            vetoed = veto(f)
            if vetoed is not None:
                return vetoed
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
            if is_fragment(claim):  # "10 [2]." says nothing a source can be checked against
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
