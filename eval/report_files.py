"""The files of an eval run: report.json, report.md and three plots, from `build_report`'s dict.

    report ─► report.json (as built) ─► report.md (markdown: tables, worst questions)
           ─► metrics.png (headline with CIs), hit_at_k.png, latency.png (plot)

`rag eval` (rag_eval.run) writes them once the report is built (rag_eval.report).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .report import (
    LABELS,
    LOWER_IS_BETTER,
    TYPE_COLUMNS,
    WORDING_COLUMNS,
    fmt,
    fmt_ci,
)


def write_report(out_dir: Path, report: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(
        json.dumps(report, indent=1, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8"
    )
    (out_dir / "report.md").write_text(markdown(report), encoding="utf-8")
    plot(out_dir, report)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def markdown(report: dict[str, Any]) -> str:
    meta, settings = report["meta"], report["settings"]
    store = meta.get("store", {})
    lines = [
        f"# Grounding eval: {meta['questions']} questions ({meta['split']} split)",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Backend **{settings.get('resolved_llm')}**, retrieval **{settings.get('retrieval')}**, "
        f"top_k {settings.get('top_k')}, min_score {settings.get('min_score')}, embeddings "
        f"{store.get('embedding_model', settings.get('embed_model'))}, "
        f"{store.get('papers', '?')} papers in the store. Judges: {', '.join(meta['judges'])}. "
        f"Run {meta['started_utc']}, {meta['seconds']} s. Dataset `{meta['dataset']}`.",
        "",
        "## Headline",
        "",
        f"95% bootstrap intervals ({meta['bootstrap']['resamples']} resamples over questions, "
        f"seed {meta['bootstrap']['seed']}); n = questions the metric applies to.",
        "",
        "| metric | value | 95% CI | n |",
        "|---|---:|---:|---:|",
    ]
    for m in report["headline"].values():
        lines.append(f"| {m['label']} | {fmt(m['value'])} | {fmt_ci(m['ci'])} | {m['n']} |")
    lines += ["", "## By question type", ""]
    header = ["type", "n", *(LABELS.get(k, k) for k in TYPE_COLUMNS)]
    lines += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for qtype, row in report["per_type"].items():
        cells = [qtype, str(row["n"]), *(fmt(row[k]) for k in TYPE_COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "`abstained` = share of questions answered with the refusal; `–` = does not apply.",
        "",
    ]
    if report.get("by_wording"):
        header = ["answerable questions", "n", *(LABELS.get(k, k) for k in WORDING_COLUMNS)]
        lines += ["## By wording", ""]
        lines += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
        for name, row in report["by_wording"].items():
            cells = [name, str(row["n"]), *(fmt(row[k]) for k in WORDING_COLUMNS)]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [
            "",
            "`paraphrased` questions avoid the distinctive words of the gold title; `title words` "
            "questions may use them.",
            "",
        ]
    if report.get("per_split"):
        splits = list(report["per_split"])
        lines += [
            "## By split",
            "",
            "| metric | "
            + " | ".join(f"{s} (n={report['per_split'][s]['n']})" for s in splits)
            + " |",
            "|---|" + "---:|" * len(splits),
        ]
        for key, m in report["headline"].items():
            values = " | ".join(fmt(report["per_split"][s].get(key)) for s in splits)
            lines.append(f"| {m['label']} | {values} |")
        lines.append("")
    lines += [
        "## Retrieval: hit@k (answerable questions, top 10)",
        "",
        "| k | " + " | ".join(report["hit_at_k"]) + " |",
        "|---|" + "---:|" * len(report["hit_at_k"]),
        "| hit@k | " + " | ".join(fmt(v) for v in report["hit_at_k"].values()) + " |",
        "",
        "## Latency (seconds per question)",
        "",
        "| stage | n | p50 | p95 | mean |",
        "|---|---:|---:|---:|---:|",
    ]
    for stage, row in report["latency"].items():
        lines.append(
            f"| {stage} | {row['n']} | {fmt(row['p50'])} | {fmt(row['p95'])} | {fmt(row['mean'])} |"
        )
    lines += [
        "",
        "Stages come from `Answer.timings` of `assistant.ask`; `retrieve@10` is the eval's own "
        "`assistant.retrieve(q, top_k=10)` call. An abstention before answering has no answer/"
        "verify stage.",
        "",
        f"## The {len(report['worst'])} worst questions",
        "",
        "Score per question: answerable = mean of reciprocal rank, must-contain recall and "
        "citation recall (abstained = 0); unanswerable = 1 if declined, else 0.",
        "",
    ]
    by_id = {r["id"]: r for r in report["questions"]}
    for qid in report["worst"]:
        lines += _worst_block(by_id[qid])
    lines += [
        "## Plots",
        "",
        "![headline metrics](metrics.png)",
        "",
        "![hit@k](hit_at_k.png)",
        "",
        "![latency](latency.png)",
        "",
    ]
    return "\n".join(lines)


def _worst_block(r: dict[str, Any]) -> list[str]:
    a = r["answer"]
    lines = [f"### {r['id']} ({r['type']}, score {r['score']:.2f}): {_cell(r['question'])}", ""]
    if r["gold_titles"]:
        rank = r["first_gold_rank"]
        lines.append(
            f"- gold: {'; '.join(r['gold_titles'])} (first gold rank in top 10: {rank or 'none'})"
        )
    if r["must_contain"]:
        marks = [
            f"`{m}` {'yes' if ok else 'no'}"
            for m, ok in zip(
                r["must_contain"], r["must_contain_found"] or [False] * 99, strict=False
            )
        ]
        lines.append(f"- must contain: {', '.join(marks)}")
    lines.append(f"- answer{' (abstained)' if a['abstained'] else ''}: {_cell(a['text'])}")
    if a.get("notice"):
        lines.append(f"- notice: {_cell(a['notice'])}")
    for s in r.get("sentences", []):
        if not s["supported"]:
            lines.append(f"  - unsupported by its citations {s['citations']}: {_cell(s['text'])}")
    for s in a["sources"]:
        gold = " **gold**" if s["gold"] else ""
        lines.append(f"  {s['number']}. {_cell(s['title'])} (score {s['score']:.3f}){gold}")
    lines.append("")
    return lines


def plot(out_dir: Path, report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    head = {k: m for k, m in report["headline"].items() if m["value"] is not None}
    keys = list(head)[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.38 * max(len(keys), 1) + 1.2))
    values = [head[k]["value"] for k in keys]
    lo = [head[k]["value"] - (head[k]["ci"] or [head[k]["value"]] * 2)[0] for k in keys]
    hi = [(head[k]["ci"] or [head[k]["value"]] * 2)[1] - head[k]["value"] for k in keys]
    colors = ["#c0504d" if k in LOWER_IS_BETTER else "#4f81bd" for k in keys]
    ax.barh(range(len(keys)), values, xerr=[lo, hi], color=colors, capsize=3)
    for i, v in enumerate(values):
        ax.text(0.01, i, f"{v:.2f}", va="center", color="white", fontsize=8, fontweight="bold")
    ax.set_yticks(range(len(keys)), [head[k]["label"] for k in keys])
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("value with 95% bootstrap CI (red: lower is better)")
    ax.set_title(f"Grounding eval, {report['meta']['questions']} questions")
    fig.tight_layout()
    fig.savefig(out_dir / "metrics.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ks = [int(k) for k in report["hit_at_k"]]
    ax.plot(ks, [v or 0.0 for v in report["hit_at_k"].values()], marker="o")
    ax.set_xticks(ks)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("k")
    ax.set_ylabel("hit@k")
    ax.set_title("A gold paper in the top k (answerable questions)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "hit_at_k.png", dpi=110)
    plt.close(fig)

    stages = list(report["latency"])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(len(stages))
    ax.bar(x - 0.2, [report["latency"][s]["p50"] * 1000 for s in stages], 0.4, label="p50")
    ax.bar(x + 0.2, [report["latency"][s]["p95"] * 1000 for s in stages], 0.4, label="p95")
    ax.set_xticks(x, stages)
    ax.set_ylabel("milliseconds")
    ax.set_title("Latency per stage")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "latency.png", dpi=110)
    plt.close(fig)
