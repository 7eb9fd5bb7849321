"""The citation verifier on the labelled claim set (eval/data/claims.jsonl), with the real MiniLM.

Floors under the figures measured (docs/verification.md). The judge's model is fitted on the dev
half (python -m eval.fit_judge) and it decides at p >= 0.5 (no tuned threshold), so dev is held near
its in-sample figure (0.900 / 0.900) and test, never fitted on, to the figure it reached when held
out (0.811 / 0.878): held-out precision is the open gap (target 0.95). A change
that makes the judge worse fails here; one that makes it better should raise the floors.
"""

from __future__ import annotations

from typing import Any

import pytest

from rag.embeddings import SentenceEmbedding
from rag.verify import Verifier
from rag_eval.claims_eval import evaluate, features, load_claims, sources_by_title

FLOORS = {  # split: (precision, recall) of "supported"
    "dev": (0.88, 0.88),
    "test": (0.79, 0.86),
}
ALWAYS_CAUGHT = ("number_changed", "wrong_source", "wrong_paper_same_topic")


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    verifier = Verifier(SentenceEmbedding())
    rows = load_claims()
    sources = sources_by_title()
    feats = features(verifier, rows, sources)
    out = {}
    for split in FLOORS:
        idx = [i for i, r in enumerate(rows) if r["split"] == split]
        out[split] = evaluate(verifier, [rows[i] for i in idx], [feats[i] for i in idx])
    return out


@pytest.mark.parametrize("split", sorted(FLOORS))
def test_precision_and_recall_floors(results: dict[str, Any], split: str) -> None:
    overall = results[split]["overall"]
    precision, recall = FLOORS[split]
    assert overall["n"] >= 120
    assert overall["precision"] >= precision, results[split]["errors"]
    assert overall["recall"] >= recall, results[split]["errors"]


@pytest.mark.parametrize("split", sorted(FLOORS))
def test_changed_numbers_and_wrong_papers_are_always_caught(
    results: dict[str, Any], split: str
) -> None:
    kinds = results[split]["kinds"]
    for kind in ALWAYS_CAUGHT:
        # At p >= 0.5 one changed number written as a word and one same-topic paper pass on each
        # split (0.92-0.93): the vetoes catch digits and names, the model the rest, not all.
        assert kinds[kind]["n"] >= 8 and kinds[kind]["accuracy"] >= 0.9, (kind, kinds[kind])
