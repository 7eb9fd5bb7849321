"""Measure the citation verifier on the labelled (claim, source) set: eval/data/claims.jsonl.

    python -m eval.claims_eval [--split dev|test|all] [--json OUT]

Precision and recall of "supported" with the offline judge as shipped (rag.verify.Verifier: the
grounding vetoes and the model in rag/data/judge.json), per split and per kind of hard negative.
The model is fitted on the dev split by `python -m eval.fit_judge` (which also prints the dev
cross-validated figures); the test split is reported, never tuned on.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from rag.corpus import bundled_corpus_dir, load_corpus, normalize_title
from rag.types import Source
from rag.verify import Verifier

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
    """The judge's inputs for every row, computed once (the decision is applied afterwards)."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", default="all", choices=["dev", "test", "all"])
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    from rag.embeddings import get_embedder
    from rag.settings import Settings

    verifier = Verifier(get_embedder(Settings()))  # the configured encoder, as answers use
    rows = [r for r in load_claims() if args.split in ("all", r["split"])]
    sources = sources_by_title()
    feats = features(verifier, rows, sources)
    results = {}
    for split in ("dev", "test", "all") if args.split == "all" else (args.split,):
        idx = [i for i, r in enumerate(rows) if split == "all" or r["split"] == split]
        results[split] = evaluate(verifier, [rows[i] for i in idx], [feats[i] for i in idx])
        print(split, results[split]["overall"], json.dumps(results[split]["kinds"]))
    print("label counts:", Counter((r["split"], r["label"]) for r in rows))
    if args.json:
        args.json.write_text(json.dumps({"model": verifier.model.meta, **results}, indent=2))


if __name__ == "__main__":
    main()
