"""Measure the citation verifier on the labelled (claim, source) set: eval/data/claims.jsonl.

    python -m eval.claims_eval [--split dev|test|all] [--grid] [--json OUT]

Precision and recall of "supported" with the offline judge (rag.verify.Verifier.judge), per split
and per kind of hard negative. `--grid` searches the thresholds on the dev split only (the test
split is reported, never tuned on).
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from rag.corpus import bundled_corpus_dir, load_corpus, normalize_title
from rag.types import Source
from rag.verify import Thresholds, Verifier

DATA = Path(__file__).parent / "data" / "claims.jsonl"


def load_claims(path: Path = DATA) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def sources_by_title() -> dict[str, Source]:
    papers = load_corpus([bundled_corpus_dir()]).papers
    return {
        normalize_title(p.title): Source(
            number=1,
            paper_id=p.id,
            title=p.title,
            snippet=p.abstract[:200],
            text=p.abstract,
            score=1.0,
        )
        for p in papers
    }


def score(verdicts: list[tuple[bool, bool]]) -> dict[str, float | int]:
    tp = sum(1 for pred, gold in verdicts if pred and gold)
    fp = sum(1 for pred, gold in verdicts if pred and not gold)
    fn = sum(1 for pred, gold in verdicts if not pred and gold)
    return {
        "n": len(verdicts),
        "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
        "recall": round(tp / (tp + fn), 4) if tp + fn else 1.0,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def features(
    verifier: Verifier, rows: list[dict[str, Any]], sources: dict[str, Source]
) -> list[Any]:
    """The judge's inputs for every row, computed once (thresholds are applied afterwards)."""
    return [
        verifier.features(r["claim"], sources[normalize_title(r["source_title"])]) for r in rows
    ]


def evaluate(verifier: Verifier, rows: list[dict[str, Any]], feats: list[Any]) -> dict[str, Any]:
    verdicts: list[tuple[bool, bool]] = []
    by_kind: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    errors = []
    for row, feat in zip(rows, feats, strict=True):
        verdict = verifier.decide(feat)
        pair = (verdict.supported, bool(row["label"]))
        verdicts.append(pair)
        by_kind[row["kind"]].append(pair)
        if pair[0] != pair[1]:
            errors.append(
                {
                    "id": row["id"],
                    "kind": row["kind"],
                    "label": row["label"],
                    "claim": row["claim"],
                    "reason": verdict.reason,
                }
            )
    kinds = {}
    for kind, pairs in sorted(by_kind.items()):
        correct = sum(1 for p, g in pairs if p == g)
        kinds[kind] = {"n": len(pairs), "accuracy": round(correct / len(pairs), 4)}
    return {"overall": score(verdicts), "kinds": kinds, "errors": errors}


def grid(verifier: Verifier, rows: list[dict[str, Any]], feats: list[Any]) -> Thresholds:
    """Best thresholds on dev: highest recall with precision >= 0.95 (else highest precision)."""
    best: tuple[tuple[float, float], Thresholds] | None = None
    for cos, overlap, overlap_alone, cos_alone, numeric in itertools.product(
        (0.55, 0.6, 0.65, 0.7, 0.75, 0.8),
        (0.4, 0.5, 0.6, 0.7),
        (0.75, 0.8, 0.85, 0.9, 1.01),
        (0.8, 0.85, 0.9, 0.95, 1.01),
        (0.5, 0.6, 0.7, 1.01),
    ):
        verifier.t = Thresholds(cos, overlap, overlap_alone, cos_alone, numeric)
        result = evaluate(verifier, rows, feats)["overall"]
        key = (1.0, result["recall"]) if result["precision"] >= 0.95 else (0.0, result["precision"])
        if best is None or key > best[0]:
            best = (key, verifier.t)
    assert best is not None
    return best[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", default="all", choices=["dev", "test", "all"])
    parser.add_argument("--grid", action="store_true", help="search thresholds on dev")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    from rag.embeddings import get_embedder
    from rag.settings import Settings

    verifier = Verifier(get_embedder(Settings()))  # the configured encoder, as answers use
    keep = {args.split, "dev"} if args.grid else {args.split}
    rows = [r for r in load_claims() if args.split == "all" or r["split"] in keep]
    sources = sources_by_title()
    feats = features(verifier, rows, sources)
    if args.grid:
        dev = [i for i, r in enumerate(rows) if r["split"] == "dev"]
        verifier.t = grid(verifier, [rows[i] for i in dev], [feats[i] for i in dev])
        print("best thresholds on dev:", verifier.t)
    results = {}
    for split in ("dev", "test", "all") if args.split == "all" else (args.split,):
        idx = [i for i, r in enumerate(rows) if split == "all" or r["split"] == split]
        results[split] = evaluate(verifier, [rows[i] for i in idx], [feats[i] for i in idx])
        print(split, results[split]["overall"], json.dumps(results[split]["kinds"]))
    print("label counts:", Counter((r["split"], r["label"]) for r in rows))
    if args.json:
        args.json.write_text(
            json.dumps({"thresholds": vars(replace(verifier.t)), **results}, indent=2)
        )


if __name__ == "__main__":
    main()
