"""Turn per-question eval records into a report; compare two runs.

    records ─► build_report ─► dict ─► report_files.write_report: report.json, report.md, plots
                                    └─► summary_table (the console)
    two run dirs ─► load_run ─► compare ─► compare_runs: a delta table

build_report(records, ...) -> dict    headline with bootstrap CIs, per-type table, hit@k, latency
compare_runs(a_dir, b_dir, console)   a delta table; '*' where the two 95% CIs do not overlap

The files a run writes are rag_eval.report_files (write_report).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from rag.errors import ConfigError

from . import metrics as M

# key, label, what it measures; the order is the order of every table.
METRICS: list[tuple[str, str, str]] = [
    ("hit@1", "hit@1", "a gold paper is the top retrieved paper"),
    ("hit@5", "hit@5", "a gold paper is in the top 5"),
    ("hit@10", "hit@10", "a gold paper is in the top 10"),
    ("mrr", "MRR", "mean reciprocal rank of the first gold paper (top 10)"),
    ("ndcg@10", "nDCG@10", "binary-relevance nDCG of the gold papers in the top 10"),
    (
        "all_gold@10",
        "all gold in top 10 (multi)",
        "every gold paper of a multi question in the top 10",
    ),
    ("must_contain", "must-contain recall", "share of the required facts found in the answer"),
    ("citation_validity", "citation validity", "answers whose every [n] names a shown source"),
    ("citation_recall", "citation recall", "answer sentences supported by the sources they cite"),
    ("citation_precision", "citation precision", "citations that are needed for their sentence"),
    ("faithfulness", "faithfulness", "answer sentences supported by any of the answer's sources"),
    (
        "unsourced",
        "number or name not in its sources",
        "answer sentences with a number or name-like word that no source they cite holds "
        "(a string check independent of the verifier; lower is better)",
    ),
    ("cites_gold", "answer cites gold", "answers citing at least one gold paper"),
    (
        "abstention_precision",
        "abstention precision",
        "abstentions that were on unanswerable questions",
    ),
    ("abstention_recall", "abstention recall", "unanswerable questions the app declined"),
    (
        "false_abstention",
        "false-abstention rate",
        "answerable questions the app declined (lower is better)",
    ),
    ("citation_recall_llm", "citation recall (LLM judge)", "citation recall judged by the LLM"),
    (
        "citation_precision_llm",
        "citation precision (LLM judge)",
        "citation precision judged by the LLM",
    ),
    ("faithfulness_llm", "faithfulness (LLM judge)", "faithfulness judged by the LLM"),
    (
        "judge_agreement",
        "judge agreement",
        "(sentence, source) pairs the offline and LLM judges agree on",
    ),
]
LABELS = {k: label for k, label, _ in METRICS}
LOWER_IS_BETTER = {"false_abstention", "unsourced"}
TYPE_COLUMNS = [
    "hit@1",
    "hit@5",
    "mrr",
    "must_contain",
    "citation_recall",
    "citation_precision",
    "faithfulness",
    "cites_gold",
    "abstained",
]
WORDING_COLUMNS = ["hit@1", "hit@5", "mrr", "must_contain", "cites_gold", "false_abstention"]
TYPES = ["factoid", "explain", "multi", "unanswerable"]
STAGES = ["retrieve", "answer", "verify", "total", "retrieve@10"]
WORST = 10


# ----------------------------------------------------------------------------------------- build
def _pairs(records: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    return [tuple(r["pairs"].get(key, (0.0, 0.0))) for r in records]  # type: ignore[misc]


def build_report(
    records: list[dict[str, Any]],
    *,
    settings: dict[str, Any],
    meta: dict[str, Any],
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    n = len(records)
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, n, size=(resamples, n)) if n else None
    present = {k for r in records for k in r["pairs"]}
    headline: dict[str, Any] = {}
    for key, label, _ in METRICS:
        if key not in present:
            continue
        pairs = _pairs(records, key)
        agg = M.aggregate(pairs)
        ci = M.bootstrap_ci(pairs, indices=indices) if agg["value"] is not None else None
        headline[key] = {
            "label": label,
            "value": _round(agg["value"]),
            "ci": [_round(ci[0]), _round(ci[1])] if ci else None,
            "n": agg["n"],
            "den": agg["den"],
            "lower_is_better": key in LOWER_IS_BETTER,
        }

    per_type: dict[str, Any] = {}
    for qtype in [*TYPES, "all"]:
        group = [r for r in records if qtype == "all" or r["type"] == qtype]
        if not group:
            continue
        per_type[qtype] = {"n": len(group)}
        for key in TYPE_COLUMNS:
            per_type[qtype][key] = _round(M.aggregate(_pairs(group, key))["value"])

    # Questions that avoid the gold title's distinctive words are the honest test of retrieval.
    wording: dict[str, Any] = {}
    for name, flag in (("paraphrased", True), ("title words", False)):
        group = [r for r in records if r["type"] != "unanswerable" and r["paraphrased"] is flag]
        if group:
            wording[name] = {"n": len(group)}
            for key in WORDING_COLUMNS:
                wording[name][key] = _round(M.aggregate(_pairs(group, key))["value"])

    per_split: dict[str, Any] = {}
    splits = sorted({r["split"] for r in records})
    if len(splits) > 1:
        for name in splits:
            group = [r for r in records if r["split"] == name]
            per_split[name] = {"n": len(group)}
            for key in headline:
                per_split[name][key] = _round(M.aggregate(_pairs(group, key))["value"])

    answerable = [r for r in records if r["type"] != "unanswerable"]
    hit_at_k = {
        str(k): _round(
            M.ratio(
                sum(1 for r in answerable if r["first_gold_rank"] and r["first_gold_rank"] <= k),
                len(answerable),
            )
        )
        for k in range(1, 11)
    }

    latency: dict[str, Any] = {}
    for stage in [*STAGES, *sorted({k for r in records for k in r["timings"]} - set(STAGES))]:
        values = [r["timings"][stage] for r in records if stage in r["timings"]]
        if values:
            latency[stage] = {
                "n": len(values),
                "p50": _round(M.percentile(values, 50)),
                "p95": _round(M.percentile(values, 95)),
                "mean": _round(float(np.mean(values))),
            }

    worst = sorted(records, key=lambda r: (r["score"], r["id"]))[:WORST]
    return {
        "version": 1,
        "meta": {**meta, "bootstrap": {"resamples": resamples, "seed": seed, "level": 0.95}},
        "settings": settings,
        "headline": headline,
        "per_type": per_type,
        "per_split": per_split,
        "by_wording": wording,
        "hit_at_k": hit_at_k,
        "latency": latency,
        "worst": [r["id"] for r in worst],
        "questions": records,
    }


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), digits)


# --------------------------------------------------------------------------------------- console
def fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def fmt_ci(ci: list[float | None] | None) -> str:
    return "–" if not ci else f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def summary_table(report: dict[str, Any]) -> Table:
    meta = report["meta"]
    table = Table(
        title=f"Grounding eval: {meta['questions']} questions ({meta['split']}), "
        f"backend {meta['backend']}"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% CI", justify="right")
    table.add_column("n", justify="right")
    for m in report["headline"].values():
        table.add_row(m["label"], fmt(m["value"]), fmt_ci(m["ci"]), str(m["n"]))
    return table


def load_run(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "report.json"
    if not path.is_file():
        raise ConfigError(
            f"{run_dir} is not an eval run (no report.json); pass a directory written by `rag eval`"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc.msg}); re-run `rag eval`") from None


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the delta table: metric, both values and CIs, B - A, and whether the CIs are apart."""
    rows = []
    for key, label, _ in METRICS:
        ma, mb = a["headline"].get(key), b["headline"].get(key)
        if ma is None and mb is None:
            continue
        va = ma["value"] if ma else None
        vb = mb["value"] if mb else None
        delta = round(vb - va, 4) if va is not None and vb is not None else None
        apart = M.overlap(ma and ma["ci"], mb and mb["ci"])
        better = None
        if delta:
            better = (delta < 0) if key in LOWER_IS_BETTER else (delta > 0)
        rows.append(
            {
                "metric": key,
                "label": label,
                "a": va,
                "b": vb,
                "a_ci": ma and ma["ci"],
                "b_ci": mb and mb["ci"],
                "delta": delta,
                "significant": apart is False,
                "better": better,
            }
        )
    return rows


def compare_runs(a_dir: Path, b_dir: Path, console: Console) -> list[dict[str, Any]]:
    a, b = load_run(a_dir), load_run(b_dir)
    rows = compare(a, b)
    table = Table(title=f"B - A   (A = {a_dir}, B = {b_dir})")
    for col in ("metric", "A", "A 95% CI", "B", "B 95% CI", "B - A"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    table.add_column("CIs apart", justify="center")
    for row in rows:
        delta = "–" if row["delta"] is None else f"{row['delta']:+.3f}"
        if row["better"] is not None:
            delta = f"[{'green' if row['better'] else 'red'}]{delta}[/]"
        table.add_row(
            row["label"],
            fmt(row["a"]),
            fmt_ci(row["a_ci"]),
            fmt(row["b"]),
            fmt_ci(row["b_ci"]),
            delta,
            "*" if row["significant"] else "",
        )
    console.print(table)
    for side, name, run in (("A", a_dir, a), ("B", b_dir, b)):
        meta = run["meta"]
        console.print(f"{side}: {name}: {meta['questions']} questions, `{meta['command']}`")
    qa = [q["id"] for q in a.get("questions", [])]
    qb = [q["id"] for q in b.get("questions", [])]
    if qa != qb:
        console.print(
            "[yellow]The two runs used different questions; deltas mix the change with the "
            "question set.[/yellow]"
        )
    console.print("* = the two 95% intervals do not overlap (a difference larger than the noise).")
    return rows
