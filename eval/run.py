"""`rag eval`: run the question set through the app and write a report people can read at a glance.

    questions.jsonl ─► for each question:  assistant.retrieve(q, top_k=10)  -> retrieval metrics
                                          assistant.ask(q)                 -> answer, timings
                                          offline (and LLM) citation judge -> citation metrics
                   ─► report.json, report.md, *.png in the output directory (eval/runs/<UTC time>/)

The app runs exactly as configured (`Settings`, so `--set key=value` works); an empty store is
filled with the bundled corpus first. `--compare A --compare B` only reads two finished runs.
"""

from __future__ import annotations

import datetime as dt
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from rag.errors import ConfigError
from rag.settings import Settings
from rag.text import citations

from . import metrics as M
from .dataset import DEFAULT_DATASET, Question, gold_ids, load_questions, select
from .judges import RecordingJudge, agreement, llm_judge, offline_judge
from .report import build_report, compare_runs, summary_table
from .report_files import write_report

RUNS_DIR = Path(__file__).resolve().parent / "runs"
RETRIEVE_K = 10


def main(
    *,
    settings: Settings,
    dataset: Path | None = None,
    limit: int | None = None,
    split: str | None = None,
    out: Path | None = None,
    compare: list[Path] | None = None,
    console: Console | None = None,
    resamples: int = 1000,
    seed: int = 0,
) -> Path | None:
    """Run the eval (or compare two runs); returns the output directory of a run."""
    console = console or Console()
    if compare:
        if len(compare) != 2:
            raise ConfigError(
                f"--compare needs exactly two run directories (got {len(compare)}): "
                "rag eval --compare A --compare B"
            )
        compare_runs(compare[0], compare[1], console)
        return None

    from rag.assistant import Assistant

    path = Path(dataset) if dataset else DEFAULT_DATASET
    questions = select(load_questions(path), split, limit)
    assistant = Assistant(settings)
    if assistant.is_empty():
        _ingest_bundled(assistant, console)
    gold = gold_ids(questions, store_paper_ids(assistant), file=str(path))

    judges = [offline_judge(assistant)]
    if settings.resolved_llm in ("openai", "local"):  # the LLM as an independent judge
        judges.append(llm_judge(assistant))

    started = time.perf_counter()
    records: list[dict[str, Any]] = []
    with Progress(
        TextColumn("[bold]eval[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("", total=len(questions))
        for q in questions:
            progress.update(task, description=q.id)
            records.append(evaluate_question(assistant, q, gold[q.id], judges))
            progress.advance(task)
    seconds = time.perf_counter() - started

    out_dir = Path(out) if out else RUNS_DIR / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    meta = {
        "command": command_line(path, limit, split, out),
        "dataset": _shown(path),
        "split": (split or "all").lower(),
        "limit": limit,
        "questions": len(questions),
        "started_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 2),
        "backend": settings.resolved_llm,
        "judges": [j.name for j in judges],
        "llm_judge_failures": sum(j.failures for j in judges if j.name == "llm"),
        "store": assistant.info(),
    }
    report = build_report(
        records, settings=public_settings(settings), meta=meta, resamples=resamples, seed=seed
    )
    write_report(out_dir, report)
    console.print(summary_table(report))
    console.print(f"report: {out_dir / 'report.md'}")
    return out_dir


def evaluate_question(
    assistant: Any, q: Question, gold: list[str], judges: list[RecordingJudge]
) -> dict[str, Any]:
    """Retrieve, answer and judge one question; the record holds everything the report needs."""
    gold_set = set(gold)
    t = time.perf_counter()
    retrieved = assistant.retrieve(q.question, top_k=RETRIEVE_K)
    retrieve_seconds = time.perf_counter() - t
    ranked = [s.paper_id for s in retrieved]
    answer = _ask_streaming(assistant, q.question)

    pairs: dict[str, tuple[float, float]] = {}
    answerable = q.answerable
    if answerable:
        pairs["hit@1"] = (M.hit_at_k(ranked, gold, 1), 1)
        pairs["hit@5"] = (M.hit_at_k(ranked, gold, 5), 1)
        pairs["hit@10"] = (M.hit_at_k(ranked, gold, 10), 1)
        pairs["mrr"] = (M.reciprocal_rank(ranked, gold), 1)
        pairs["ndcg@10"] = (M.ndcg_at_k(ranked, gold, 10), 1)
        if q.type == "multi":
            pairs["all_gold@10"] = (M.all_gold_at_k(ranked, gold, 10), 1)
        found = [M.contains(answer.text, m) for m in q.must_contain] if not answer.abstained else []
        recall = M.must_contain_recall(answer.text, q.must_contain) if not answer.abstained else 0.0
        if q.must_contain:
            pairs["must_contain"] = (recall or 0.0, 1)
        cited = set(citations(answer.text))
        cites_gold = any(s.paper_id in gold_set and s.number in cited for s in answer.sources)
        pairs["cites_gold"] = (float(cites_gold and not answer.abstained), 1)
    else:
        found = []
    abstained = answer.abstained
    pairs["abstention_precision"] = (float(abstained and not answerable), float(abstained))
    pairs["abstention_recall"] = (float(abstained and not answerable), float(not answerable))
    pairs["false_abstention"] = (float(abstained and answerable), float(answerable))
    pairs["abstained"] = (float(abstained), 1.0)

    sentences: list[dict[str, Any]] = []
    if not abstained:
        valid = M.citations_valid(answer.text, [s.number for s in answer.sources])
        pairs["citation_validity"] = (float(valid), 1)
        for judge in judges:
            judge.reset()
            scores = M.judge_citations(answer.text, answer.sources, judge)
            suffix = "" if judge.name == "offline" else f"_{judge.name}"
            pairs[f"citation_recall{suffix}"] = (scores.supported, scores.n_sentences)
            pairs[f"citation_precision{suffix}"] = (scores.precise, scores.n_citations)
            pairs[f"faithfulness{suffix}"] = (scores.faithful, scores.n_sentences)
            for i, s in enumerate(scores.sentences):
                if judge.name == "offline":
                    sentences.append(
                        {
                            "text": s.text,
                            "citations": s.citations,
                            "supported": s.supported,
                            "precise": s.precise,
                            "faithful": s.faithful,
                        }
                    )
                else:
                    sentences[i][f"supported_{judge.name}"] = s.supported
                    sentences[i][f"precise_{judge.name}"] = s.precise
        if len(judges) > 1:
            pairs["judge_agreement"] = agreement(judges[0], judges[1])
        # The offline judge (always the first) recorded every claim with its citations.
        by_number = {s.number: s for s in answer.sources}
        flagged = 0
        for row in sentences:
            cited = [by_number[n] for n in row["citations"] if n in by_number]
            if missing := M.unsourced(row["text"], cited):
                row["unsourced"] = missing
                flagged += 1
        pairs["unsourced"] = (float(flagged), float(len(sentences)))

    values = {k: M.ratio(*v) for k, v in pairs.items()}
    return {
        "id": q.id,
        "question": q.question,
        "type": q.type,
        "split": q.split,
        "paraphrased": q.paraphrased,
        "gold_titles": q.gold_titles,
        "gold_ids": gold,
        "must_contain": q.must_contain,
        "must_contain_found": found,
        "retrieved": [
            {
                "rank": rank,
                "paper_id": s.paper_id,
                "title": s.title,
                "score": round(s.score, 4),
                "gold": s.paper_id in gold_set,
            }
            for rank, s in enumerate(retrieved, 1)
        ],
        "first_gold_rank": M.first_gold_rank(ranked, gold) if answerable else None,
        "answer": {
            "text": answer.text,
            "abstained": abstained,
            "backend": answer.backend,
            "notice": answer.notice,
            "sources": [
                {
                    "number": s.number,
                    "paper_id": s.paper_id,
                    "title": s.title,
                    "score": round(s.score, 4),
                    "gold": s.paper_id in gold_set,
                }
                for s in answer.sources
            ],
        },
        "sentences": sentences,
        "timings": {
            **{k: round(v, 4) for k, v in answer.timings.items()},
            "retrieve@10": round(retrieve_seconds, 4),
        },
        "pairs": {k: [float(v[0]), float(v[1])] for k, v in pairs.items()},
        "metrics": values,
        "score": question_score(answerable, abstained, values),
    }


def _ask_streaming(assistant: Any, question: str) -> Any:
    """The answer as a user gets it, streamed; `first_text` = seconds to the first verified text."""
    from rag.types import Answer

    started = time.perf_counter()
    first = None
    answer = None
    for item in assistant.ask_stream(question):
        if isinstance(item, Answer):
            answer = item
        elif first is None and item.strip():
            first = time.perf_counter() - started
    assert answer is not None
    if first is not None:
        answer.timings["first_text"] = first
    return answer


def question_score(answerable: bool, abstained: bool, values: dict[str, float | None]) -> float:
    """One number per question for "worst questions": 1 = retrieved, quoted and cited right."""
    if not answerable:
        return 1.0 if abstained else 0.0
    parts = [values.get("mrr"), values.get("must_contain"), values.get("citation_recall")]
    parts = [0.0 if p is None else p for p in parts]
    if values.get("must_contain") is None:
        parts.pop(1)
    return round(sum(parts) / len(parts), 4)


def store_paper_ids(assistant: Any) -> set[str]:
    got = assistant.store.get(where={"position": 0}, include=["metadatas"])
    return {str(m["paper_id"]) for m in got["metadatas"] or []}


def _ingest_bundled(assistant: Any, console: Console) -> None:
    console.print("The store is empty: ingesting the bundled corpus first.")
    with Progress(
        TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), console=console
    ) as progress:
        task = progress.add_task("", total=None)

        def tick(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        report = assistant.ingest(progress=tick)
    if report.failed:
        console.print(f"[yellow]{len(report.failed)} records failed to ingest[/yellow]")


def _shown(path: Path) -> str:
    """A path relative to the working directory when it is inside it (reports move between machines)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


_SECRETS = ("openai_api_key", "api_key")


def public_settings(settings: Settings) -> dict[str, Any]:
    """The settings of the run as JSON, with secrets replaced by whether they were set."""
    data = settings.model_dump(mode="json")
    for key in _SECRETS:
        data[key] = "<set>" if getattr(settings, key) is not None else None
    url = data.get("llm_base_url")
    if isinstance(url, str) and "@" in url.split("//", 1)[-1].split("/", 1)[0]:
        scheme, rest = url.split("//", 1) if "//" in url else ("", url)
        data["llm_base_url"] = f"{scheme}//<credentials>@{rest.split('@', 1)[1]}"
    data["resolved_llm"] = settings.resolved_llm
    return data


def command_line(dataset: Path, limit: int | None, split: str | None, out: Path | None) -> str:
    """The command that produced the run (as typed when run through `rag`), secrets redacted."""
    argv = sys.argv
    if argv and Path(argv[0]).name == "rag":
        args = [
            a.split("=", 1)[0] + "=<secret>" if "=" in a and "key" in a.split("=")[0].lower() else a
            for a in argv[1:]
        ]
        return shlex.join(["rag", *args])
    parts = ["rag", "eval"]
    if dataset != DEFAULT_DATASET:
        parts += ["--dataset", str(dataset)]
    if split:
        parts += ["--split", split]
    if limit is not None:
        parts += ["--limit", str(limit)]
    if out is not None:
        parts += ["--out", str(out)]
    return shlex.join(parts)
