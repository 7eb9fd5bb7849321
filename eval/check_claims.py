#!/usr/bin/env python3
"""Validate eval/data/claims.jsonl, the labelled (claim, cited abstract) set for the citation verifier.

Standalone (stdlib only, no project imports). Usage:
    python eval/check_claims.py [--claims PATH] [--corpus DIR]

The corpus is parsed the simple way: every line longer than 200 characters is an
abstract; its title is the nearest preceding short line that is not page noise
("new", "Subscribe", "Daily Papers", dates, "• 6 authors", "·", ...), with a
leading "Subscribe" glued to the title stripped. Exits 1 if any problem is found.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CLAIMS = os.path.join(HERE, "data", "claims.jsonl")
DEFAULT_CORPUS = os.path.join(HERE, "..", "rag", "data", "corpus")

TRUE_KINDS = {"verbatim", "paraphrase", "summary"}
FALSE_KINDS = {
    "number_changed",
    "entity_swapped",
    "negated",
    "wrong_paper_same_topic",
    "wrong_source",
    "unsupported_detail",
}
# minimum rows per kind required by the spec
MIN_PER_KIND = {
    "verbatim": 20,
    "paraphrase": 35,
    "summary": 15,
    "number_changed": 20,
    "entity_swapped": 20,
    "negated": 20,
    "wrong_paper_same_topic": 20,
    "wrong_source": 15,
    "unsupported_detail": 15,
}
MIN_ROWS, MIN_PAPERS, MIN_TRUE, MIN_FALSE = 200, 70, 90, 110
KEYS = {
    "id": str,
    "claim": str,
    "source_title": str,
    "label": bool,
    "kind": str,
    "split": str,
    "note": str,
}

NOISE = {
    "new",
    "subscribe",
    "daily papers",
    "get trending papers in your email inbox!",
    "byak and the research community",
    "·",
}
DATE_RE = re.compile(r"^[A-Z][a-z]{2} \d{1,2}(, \d{4})?( \d+)?$")  # "Apr 29", "Aug 30, 2024 2"
AUTHORS_RE = re.compile(r"^[•\s]*\d+\s+authors?$")


def is_noise(line: str) -> bool:
    s = line.strip()
    return (not s) or s.lower() in NOISE or bool(DATE_RE.match(s)) or bool(AUTHORS_RE.match(s))


def load_corpus(corpus_dir: str) -> dict[str, str]:
    """title -> abstract (first occurrence wins; duplicates across dumps are expected)."""
    papers: dict[str, str] = {}
    files = sorted(glob.glob(os.path.join(corpus_dir, "*.txt")))
    if not files:
        raise SystemExit(f"no corpus files in {corpus_dir}")
    for path in files:
        title = None
        with open(path, encoding="utf-8") as fh:
            for raw in fh:
                line = raw.rstrip("\n")
                if len(line) > 200:
                    if title is not None and title not in papers:
                        papers[title] = line
                elif not is_noise(line):
                    s = line.strip()
                    if s.startswith("Subscribe") and len(s) > len("Subscribe"):
                        s = s[len("Subscribe") :].strip()
                    title = s
    return papers


def norm(text: str) -> str:
    """Whitespace-collapsed, case-folded, trailing period removed (claims are written as sentences)."""
    return re.sub(r"\s+", " ", text).strip().lower().rstrip(".").strip()


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--claims", default=DEFAULT_CLAIMS)
    ap.add_argument("--corpus", default=DEFAULT_CORPUS)
    args = ap.parse_args()

    papers = load_corpus(args.corpus)
    norm_abs = {t: norm(a) for t, a in papers.items()}
    problems: list[str] = []
    rows = []
    with open(args.claims, encoding="utf-8") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                rows.append((n, json.loads(raw)))
            except json.JSONDecodeError as e:
                problems.append(f"line {n}: invalid JSON ({e})")

    seen_ids: set[str] = set()
    seen_pairs: set[tuple[str, str]] = set()
    for n, r in rows:
        where = f"line {n} ({r.get('id', '?')})"
        if not isinstance(r, dict):
            problems.append(f"{where}: not an object")
            continue
        if set(r) != set(KEYS):
            problems.append(f"{where}: keys {sorted(r)} != {sorted(KEYS)}")
        for k, typ in KEYS.items():
            if k in r and not isinstance(r[k], typ):
                problems.append(f"{where}: {k} should be {typ.__name__}")
        if any(not isinstance(r.get(k), typ) for k, typ in KEYS.items()):
            continue
        if not re.fullmatch(r"c\d{3,}", r["id"]):
            problems.append(f"{where}: bad id format")
        if r["id"] in seen_ids:
            problems.append(f"{where}: duplicate id")
        seen_ids.add(r["id"])
        pair = (norm(r["claim"]), r["source_title"])
        if pair in seen_pairs:
            problems.append(f"{where}: duplicate (claim, source_title) pair")
        seen_pairs.add(pair)
        if not r["claim"].strip():
            problems.append(f"{where}: empty claim")
        if "[" in r["claim"] and re.search(r"\[\d+\]", r["claim"]):
            problems.append(f"{where}: claim contains a [n] citation marker")
        kind = r["kind"]
        if kind not in TRUE_KINDS | FALSE_KINDS:
            problems.append(f"{where}: unknown kind {kind!r}")
            continue
        if r["label"] != (kind in TRUE_KINDS):
            problems.append(f"{where}: label {r['label']} inconsistent with kind {kind}")
        if r["split"] not in ("dev", "test"):
            problems.append(f"{where}: split must be dev/test")
        if not r["label"] and not r["note"].strip():
            problems.append(f"{where}: negative without a note")
        title = r["source_title"]
        if title not in papers:
            problems.append(f"{where}: source_title not in corpus: {title!r}")
            continue
        c = norm(r["claim"])
        if kind == "verbatim" and c not in norm_abs[title]:
            problems.append(f"{where}: verbatim claim not found in source abstract")
        if kind == "wrong_source":
            if c in norm_abs[title]:
                problems.append(f"{where}: wrong_source claim appears in its own cited abstract")
            if not any(c in a for t, a in norm_abs.items() if t != title):
                problems.append(
                    f"{where}: wrong_source claim not found verbatim in any other abstract"
                )

    # ---- counts ----
    good = [r for _, r in rows if isinstance(r, dict) and r.get("kind") in TRUE_KINDS | FALSE_KINDS]
    by_kind = collections.Counter(r["kind"] for r in good)
    by_label = collections.Counter(bool(r["label"]) for r in good)
    by_split = collections.Counter(r["split"] for r in good)
    ks = collections.Counter((r["kind"], r["split"]) for r in good)
    ls = collections.Counter((bool(r["label"]), r["split"]) for r in good)
    titles = {r["source_title"] for r in good}

    if len(good) < MIN_ROWS:
        problems.append(f"only {len(good)} rows (< {MIN_ROWS})")
    if len(titles) < MIN_PAPERS:
        problems.append(f"only {len(titles)} distinct source papers (< {MIN_PAPERS})")
    if by_label[True] < MIN_TRUE:
        problems.append(f"only {by_label[True]} true rows (< {MIN_TRUE})")
    if by_label[False] < MIN_FALSE:
        problems.append(f"only {by_label[False]} false rows (< {MIN_FALSE})")
    for kind, m in MIN_PER_KIND.items():
        if by_kind[kind] < m:
            problems.append(f"kind {kind}: {by_kind[kind]} rows (< {m})")
        d, t = ks[(kind, "dev")], ks[(kind, "test")]
        if abs(d - t) > 1:
            problems.append(f"kind {kind}: dev/test not alternating ({d} dev vs {t} test)")

    # ---- summary ----
    print(f"corpus: {len(papers)} papers parsed from {args.corpus}")
    print(f"claims: {len(good)} rows, {len(titles)} distinct source papers")
    print(
        f"labels: true={by_label[True]} false={by_label[False]}   splits: dev={by_split['dev']} test={by_split['test']}"
    )
    print(
        f"  true  dev/test: {ls[(True, 'dev')]}/{ls[(True, 'test')]}   false dev/test: {ls[(False, 'dev')]}/{ls[(False, 'test')]}"
    )
    print(f"{'kind':<24}{'label':>6}{'total':>7}{'dev':>6}{'test':>6}")
    for kind in sorted(TRUE_KINDS) + sorted(FALSE_KINDS):
        print(
            f"{kind:<24}{kind in TRUE_KINDS!s:>6}{by_kind[kind]:>7}{ks[(kind, 'dev')]:>6}{ks[(kind, 'test')]:>6}"
        )
    if problems:
        print(f"\n{len(problems)} problem(s):")
        for p in problems:
            print("  -", p)
        return 1
    print("\nOK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
