"""Validate the grounding-eval question set against the bundled corpus.

    python eval/check_questions.py [QUESTIONS.jsonl] [--corpus DIR]

Standalone (stdlib only, no project imports). Parses the Daily-Papers text dumps the simple way:
every line longer than 200 characters is an abstract, and the closest preceding short line that is
not page noise is its title (a leading "Subscribe" glued to the title is stripped). Then checks every
row of the question set and prints a summary; exits 1 on any problem.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_QUESTIONS = Path(__file__).resolve().parent / "data" / "questions.jsonl"
DEFAULT_CORPUS = ROOT / "rag" / "data" / "corpus"

KEYS = [
    "id",
    "question",
    "type",
    "gold_titles",
    "must_contain",
    "evidence",
    "split",
    "paraphrased",
    "note",
]
TYPES = ("factoid", "explain", "multi", "unanswerable")
SPLITS = ("dev", "test")
MINIMUMS = {
    "total": 120,
    "factoid": 60,
    "explain": 18,
    "multi": 12,
    "unanswerable": 20,
    "distinct_gold": 80,
}
REQUIRED = {
    "question": "What range of sequence lengths does the Long Range Arena benchmark cover?",
    "gold_titles": ["Long Range Arena: A Benchmark for Efficient Transformers"],
    "must_contain": ["1K", "16K"],
}
MAX_MUST_WORDS = 5

NOISE = {
    "new",
    "subscribe",
    "daily papers",
    "byak and the research community",
    "·",
    "get trending papers in your email inbox!",
    "get trending papers in your email inbox once a day!",
}
# a bare date: "Apr 29", "Feb 26, 2021 1" (with upvotes), "Mar 20 2"
DATE = re.compile(r"^[A-Z][a-z]{2} \d{1,2}(, \d{4})?( \d+)?$")
AUTHORS = re.compile(r"^•\s*\d+ authors?$")

# Words that do not make a question "reuse the title" (stop words and very generic ML words).
_STOP_WORDS = """a an the of for in on to with and or by from as at is are be was were its it this that these
those what which who whom how why when where does do did can could should would will into via using use used
towards toward not no all you your own we our us than more most about between over under up down out one two
three first second new novel"""
_GENERIC_WORDS = """transformer transformers model models language languages network networks neural deep
learning modeling modelling learn learned based approach approaches method methods framework frameworks study
studies attention architecture architectures image images vision visual training train trained layer layers
large data dataset datasets task tasks performance efficient efficiency effective novel vit vits llm llms gpt
system systems analysis technique techniques pre pretrained toward need needed what"""
STOP = frozenset(_STOP_WORDS.split())
GENERIC = frozenset(_GENERIC_WORDS.split())


def parse_corpus(corpus_dir: Path) -> tuple[dict[str, str], list[str]]:
    """Return (title -> abstract, problems); first occurrence wins, differing duplicates are reported."""
    papers: dict[str, str] = {}
    problems = []
    for path in sorted(corpus_dir.glob("*.txt")):
        title = None
        for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = raw.strip()
            if not line:
                continue
            if len(line) > 200:
                if title is None:
                    problems.append(f"{path.name}:{lineno}: abstract without a title")
                    continue
                if title in papers and papers[title] != line:
                    problems.append(
                        f"{path.name}:{lineno}: duplicate title with different abstract: {title!r}"
                    )
                papers.setdefault(title, line)
                title = None
                continue
            if line.lower() in NOISE or DATE.match(line) or AUTHORS.match(line):
                continue
            if line.startswith("Subscribe") and len(line) > len("Subscribe"):
                line = line[len("Subscribe") :].strip()
            title = line
    return papers, problems


def _norm(tok: str) -> str:
    for suf in ("ations", "ation", "ings", "ing", "edly", "ed", "ies", "es", "s", "ly", "e"):
        if tok.endswith(suf) and len(tok) - len(suf) >= 3:
            return tok[: -len(suf)]
    return tok


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", text.lower()) if len(t) >= 3 and not t.isdigit()]


def title_overlap(question: str, titles: list[str]) -> list[str]:
    """Distinctive title words that the question reuses (crude stem match)."""
    qtok = [_norm(t) for t in _tokens(question) if t not in STOP]
    hits = []
    for title in titles:
        for tt in _tokens(title):
            if tt in STOP or tt in GENERIC or tt.rstrip("s") in GENERIC:
                continue
            n = _norm(tt)
            for q in qtok:
                k = min(len(q), len(n), 6)
                if (k >= 4 and q[:k] == n[:k]) or (k == 3 and q == n):
                    hits.append(tt)
                    break
    return sorted(set(hits))


def check_row(
    r: dict[str, Any], papers: dict[str, str], splits: Collection[str], bad: Callable[[str], None]
) -> list[str] | None:
    """The checks every question file shares, for one row that has exactly the KEYS.

    Field types, a split in `splits`, empty unanswerable rows, gold titles in the corpus, the
    must_contain items and evidence sentences in the gold abstracts, and the paraphrased flag
    against the title words the question reuses. Each problem goes to `bad`. Returns the gold
    titles the row counts towards the distinct-gold minimum (none for an unanswerable row or one
    with a gold title missing from the corpus), or None when the type, note or lists are malformed
    and its content was not checked.
    """
    if r["type"] not in TYPES:
        bad(f"bad type {r['type']!r}")
    if r["split"] not in splits:
        bad(f"split must be {' or '.join(map(repr, splits))}, is {r['split']!r}")
    if not isinstance(r["paraphrased"], bool):
        bad("paraphrased must be a bool")
    if not isinstance(r["note"], str):
        bad("note must be a string")
    if r["type"] not in TYPES or not isinstance(r["note"], str):
        return None
    for key in ("gold_titles", "must_contain", "evidence"):
        if not isinstance(r[key], list) or not all(
            isinstance(x, str) and x.strip() for x in r[key]
        ):
            bad(f"{key} must be a list of non-empty strings")
            return None
    golds, must, evid = r["gold_titles"], r["must_contain"], r["evidence"]
    if r["type"] == "unanswerable":
        if golds or must or evid:
            bad("unanswerable rows need empty gold_titles, must_contain and evidence")
        if not r["note"].strip():
            bad("unanswerable rows need a note saying why")
        return []
    if len(set(golds)) != len(golds):
        bad("duplicate gold title")
    missing = [t for t in golds if t not in papers]
    if missing:
        bad(f"gold title(s) not in corpus: {missing}")
        return []
    if r["type"] in ("factoid", "explain"):
        if len(golds) != 1:
            bad(f"{r['type']} needs exactly one gold paper")
        if not 1 <= len(must) <= 3:
            bad(f"{r['type']} needs 1-3 must_contain items, has {len(must)}")
    else:
        if len(golds) < 2:
            bad("multi needs two or more gold papers")
        if len(must) < len(golds):
            bad("multi needs at least one must_contain item per gold paper")
    if not evid:
        bad("answerable rows need evidence")
    lower = {t: papers[t].lower() for t in golds}
    joined = " ".join(lower[t] for t in golds)
    for item in must:
        alts = [a.strip() for a in item.split("|")]
        if any(not a or len(a.split()) > MAX_MUST_WORDS for a in alts):
            bad(f"must_contain item {item!r}: empty or longer than {MAX_MUST_WORDS} words")
        if not any(a.lower() in joined for a in alts):
            bad(f"must_contain {item!r} not found in the gold abstract(s)")
        elif not any(a.lower() in e.lower() for a in alts for e in evid):
            bad(f"must_contain {item!r} not found in any evidence sentence")
    for e in evid:
        if not any(e in papers[t] for t in golds):
            bad(f"evidence not verbatim in a gold abstract: {e[:80]!r}")
    for t in golds:
        if not any(e in papers[t] for e in evid):
            bad(f"no evidence sentence from gold paper {t!r}")
        if not any(a.strip().lower() in lower[t] for item in must for a in item.split("|")):
            bad(f"no must_contain item found in gold paper {t!r}")
    reused = title_overlap(r["question"], golds) if isinstance(r["question"], str) else []
    if r["paraphrased"] and reused:
        bad(f"paraphrased=true but the question reuses title words {reused}")
    if not r["paraphrased"] and not reused:
        bad("paraphrased=false but no distinctive title word found in the question")
    return golds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("questions", nargs="?", type=Path, default=DEFAULT_QUESTIONS)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = ap.parse_args(argv)

    papers, problems = parse_corpus(args.corpus)
    rows = []
    for n, line in enumerate(args.questions.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append((n, json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append(f"line {n}: invalid JSON ({exc})")

    seen_ids, seen_q = set(), set()
    gold_used: Counter = Counter()
    for n, r in rows:
        where = f"line {n} ({r.get('id', '?')})"

        def bad(msg: str, where: str = where) -> None:
            problems.append(f"{where}: {msg}")

        if list(r.keys()) != KEYS:
            bad(f"keys {list(r.keys())} != {KEYS}")
            continue
        if not (isinstance(r["id"], str) and re.fullmatch(r"q\d{3,}", r["id"])):
            bad(f"bad id {r['id']!r}")
        if r["id"] in seen_ids:
            bad("duplicate id")
        seen_ids.add(r["id"])
        if not isinstance(r["question"], str) or not r["question"].strip():
            bad("empty question")
        elif r["question"].strip().lower() in seen_q:
            bad("duplicate question")
        seen_q.add(str(r["question"]).strip().lower())
        if golds := check_row(r, papers, SPLITS, bad):
            gold_used.update(golds)

    # the required row
    if not any(
        r.get("question") == REQUIRED["question"]
        and r.get("gold_titles") == REQUIRED["gold_titles"]
        and r.get("must_contain") == REQUIRED["must_contain"]
        for _, r in rows
    ):
        problems.append("required Long Range Arena question missing or altered")

    # counts
    valid = [r for _, r in rows if isinstance(r, dict) and list(r.keys()) == KEYS]
    by_type = Counter(r["type"] for r in valid)
    by_type_split = Counter((r["type"], r["split"]) for r in valid)
    answerable = [r for r in valid if r["type"] != "unanswerable"]
    para = sum(1 for r in answerable if r["paraphrased"] is True)
    share = para / len(answerable) if answerable else 0.0
    if len(valid) < MINIMUMS["total"]:
        problems.append(f"only {len(valid)} questions (< {MINIMUMS['total']})")
    for t in TYPES:
        if by_type[t] < MINIMUMS[t]:
            problems.append(f"only {by_type[t]} {t} questions (< {MINIMUMS[t]})")
        if abs(by_type_split[(t, "dev")] - by_type_split[(t, "test")]) > 1:
            problems.append(
                f"{t}: dev/test not balanced ({by_type_split[(t, 'dev')]}/{by_type_split[(t, 'test')]})"
            )
    if len(gold_used) < MINIMUMS["distinct_gold"]:
        problems.append(
            f"only {len(gold_used)} distinct gold papers (< {MINIMUMS['distinct_gold']})"
        )
    if share < 0.5:
        problems.append(f"only {share:.0%} of answerable questions are paraphrased (< 50%)")

    print(f"corpus: {len(papers)} unique papers in {len(list(args.corpus.glob('*.txt')))} files")
    print(f"questions: {len(valid)}  distinct gold papers: {len(gold_used)}")
    print(f"{'type':<14}{'dev':>5}{'test':>6}{'all':>6}")
    for t in TYPES:
        d, s = by_type_split[(t, "dev")], by_type_split[(t, "test")]
        print(f"{t:<14}{d:>5}{s:>6}{d + s:>6}")
    d, s = (
        sum(by_type_split[(t, "dev")] for t in TYPES),
        sum(by_type_split[(t, "test")] for t in TYPES),
    )
    print(f"{'all':<14}{d:>5}{s:>6}{d + s:>6}")
    print(f"paraphrased: {para}/{len(answerable)} answerable ({share:.0%})")
    if problems:
        print(f"\n{len(problems)} problem(s):")
        for p in problems:
            print("  -", p)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
