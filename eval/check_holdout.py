"""Validate the frozen held-out question split (`holdout.jsonl`) against the bundled corpus.

    python eval/check_holdout.py [HOLDOUT.jsonl] [--corpus DIR] [--dev-test QUESTIONS.jsonl]

Stdlib only. Reuses the corpus parser, schema keys and row checks of `eval/check_questions.py`
(`check_row`, here with the one split "holdout"), so titles, abstracts and rows are read exactly
the same way as for the dev/test set. Checks every row (schema, ids h001…, split "holdout", gold
titles, verbatim evidence, must_contain items, paraphrased flag, unanswerable rows; and the
holdout's own stricter rules: no duplicate evidence, empty notes on answerable rows, unanswerable
rows not paraphrased), checks that no question repeats or closely resembles one in
questions.jsonl, checks that terms an unanswerable note says "never appear" are really absent from
the corpus dumps, prints a summary and the file's sha256, and exits 1 on any problem.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_questions import DEFAULT_CORPUS, DEFAULT_QUESTIONS, KEYS, TYPES, check_row, parse_corpus

DEFAULT_HOLDOUT = Path(__file__).resolve().parent / "data" / "holdout.jsonl"
SPLIT = "holdout"
MINIMUMS = {
    "total": 72,
    "factoid": 40,
    "explain": 8,
    "multi": 6,
    "unanswerable": 12,
    "distinct_gold": 50,
}
MIN_PARAPHRASED = 0.5
# a holdout question whose word set overlaps a dev/test question this much is a near-copy
MAX_JACCARD = 0.6
NEVER = re.compile(r"((?:'[^']+'/?)+) never appears?")


def _words(text: str) -> set[str]:
    return {w for w in re.split(r"[^a-z0-9]+", text.lower()) if len(w) >= 3}


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("holdout", nargs="?", type=Path, default=DEFAULT_HOLDOUT)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--dev-test", type=Path, default=DEFAULT_QUESTIONS)
    args = ap.parse_args(argv)

    papers, problems = parse_corpus(args.corpus)
    raw_dumps = "\n".join(p.read_text(encoding="utf-8") for p in sorted(args.corpus.glob("*.txt")))

    devtest = []
    if args.dev_test.exists():
        for line in args.dev_test.read_text(encoding="utf-8").splitlines():
            if line.strip():
                devtest.append(json.loads(line))
    devtest_q = {r["question"].strip().lower(): r["id"] for r in devtest}
    devtest_words = [(r["id"], _words(r["question"])) for r in devtest]
    devtest_gold = {t for r in devtest for t in r["gold_titles"]}

    data = args.holdout.read_bytes()
    rows = []
    for n, line in enumerate(data.decode("utf-8").splitlines(), 1):
        if not line.strip():
            problems.append(f"line {n}: empty line")
            continue
        try:
            rows.append((n, json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append(f"line {n}: invalid JSON ({exc})")

    seen_q: set[str] = set()
    gold_used: Counter = Counter()
    for idx, (n, r) in enumerate(rows, 1):
        where = f"line {n} ({r.get('id', '?') if isinstance(r, dict) else '?'})"

        def bad(msg: str, where: str = where) -> None:
            problems.append(f"{where}: {msg}")

        if not isinstance(r, dict) or list(r.keys()) != KEYS:
            bad(f"keys {list(r.keys()) if isinstance(r, dict) else r!r} != {KEYS}")
            continue
        if r["id"] != f"h{idx:03d}":
            bad(f"id {r['id']!r} should be 'h{idx:03d}' (h001, h002, … in file order)")
        q = r["question"]
        if not isinstance(q, str) or not q.strip():
            bad("empty question")
            continue
        key = q.strip().lower()
        if key in seen_q:
            bad("duplicate question")
        seen_q.add(key)
        if key in devtest_q:
            bad(f"question copied from questions.jsonl ({devtest_q[key]})")
        qw = _words(q)
        for did, dw in devtest_words:
            if _jaccard(qw, dw) > MAX_JACCARD:
                bad(f"question too close to questions.jsonl {did} (word overlap > {MAX_JACCARD})")
        golds = check_row(r, papers, (SPLIT,), bad)
        if golds is None:
            continue
        gold_used.update(golds)
        # Stricter than questions.jsonl: the rules the holdout file was frozen with.
        if r["type"] == "unanswerable":
            if r["paraphrased"] is not False:
                bad("paraphrased must be false for unanswerable rows")
            # terms the note says never appear must really be absent from every dump
            for m in NEVER.finditer(r["note"]):
                for term in re.findall(r"'([^']+)'", m.group(1)):
                    if re.search(r"\b" + re.escape(term) + r"\b", raw_dumps, re.I):
                        bad(f"note says {term!r} never appears, but the corpus contains it")
            continue
        if r["note"] != "":
            bad("answerable rows need an empty note")
        if len(set(r["evidence"])) != len(r["evidence"]):
            bad("duplicate evidence sentence")

    valid = [r for _, r in rows if isinstance(r, dict) and list(r.keys()) == KEYS]
    by_type = Counter(r["type"] for r in valid)
    answerable = [r for r in valid if r["type"] != "unanswerable"]
    para = sum(1 for r in answerable if r["paraphrased"] is True)
    share = para / len(answerable) if answerable else 0.0
    shared_gold = sorted(set(gold_used) & devtest_gold)
    if len(valid) < MINIMUMS["total"]:
        problems.append(f"only {len(valid)} questions (< {MINIMUMS['total']})")
    for t in TYPES:
        if by_type[t] < MINIMUMS[t]:
            problems.append(f"only {by_type[t]} {t} questions (< {MINIMUMS[t]})")
    if len(gold_used) < MINIMUMS["distinct_gold"]:
        problems.append(
            f"only {len(gold_used)} distinct gold papers (< {MINIMUMS['distinct_gold']})"
        )
    if share < MIN_PARAPHRASED:
        problems.append(f"only {share:.0%} of answerable questions are paraphrased (< 50%)")

    print(f"corpus: {len(papers)} unique papers in {len(list(args.corpus.glob('*.txt')))} files")
    print(f"holdout: {args.holdout}")
    print(
        f"questions: {len(valid)}  distinct gold papers: {len(gold_used)}"
        f" ({len(shared_gold)} also gold in questions.jsonl)"
    )
    for t in TYPES:
        print(f"  {t:<14}{by_type[t]:>4}")
    print(f"paraphrased: {para}/{len(answerable)} answerable ({share:.0%})")
    print(f"sha256: {hashlib.sha256(data).hexdigest()}")
    if problems:
        print(f"\n{len(problems)} problem(s):")
        for p in problems:
            print("  -", p)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
