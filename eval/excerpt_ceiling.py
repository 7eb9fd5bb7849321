"""What a chat model is shown bounds what it can answer: must-contain items in its excerpts.

    python -m eval.excerpt_ceiling --split dev [--budgets 280,360,500] [--ranks answerable,similarity]

    questions of a split (answerable, with must_contain) ─► the pipeline's retrieval
        ─► the whole sources' text                         ─► must-contain recall (the ceiling)
        ─► the excerpts at each budget and ranking (rag.evidence, as the model would see them)
                                                           ─► must-contain recall

No model is called: this measures the evidence selection alone, in about a minute. The figures
are aggregates; for the test split, read only these (its failures are not for reading).
"""

from __future__ import annotations

import argparse
import statistics

from rich.console import Console
from rich.table import Table

from .dataset import load_questions, select
from .metrics import must_contain_recall


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m eval.excerpt_ceiling", description=__doc__)
    parser.add_argument("--split", default="dev")
    parser.add_argument("--budgets", default="280,360,500", help="excerpt token budgets")
    parser.add_argument("--ranks", default="answerable,similarity", help="RAG_EXCERPT_RANK values")
    args = parser.parse_args(argv)
    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    ranks = [r.strip() for r in args.ranks.split(",") if r.strip()]

    from rag.assistant import Assistant
    from rag.settings import Settings

    from .run import _ingest_bundled

    console = Console()
    base = Settings(llm="extractive")
    assistants = {r: Assistant(base.with_overrides(excerpt_rank=r)) for r in ranks}
    first = next(iter(assistants.values()))
    if first.is_empty():
        _ingest_bundled(first, console)
    questions = [q for q in select(load_questions(), args.split) if q.answerable and q.must_contain]
    whole: list[float] = []
    shown: dict[tuple[str, int], list[float]] = {(r, b): [] for r in ranks for b in budgets}
    for q in questions:
        sources = first.retriever.search(q.question, base.top_k, None)
        text = " ".join(f"{s.title}. {s.text}" for s in sources)
        whole.append(must_contain_recall(text, q.must_contain) or 0.0)
        for rank, assistant in assistants.items():
            for budget in budgets:
                excerpts = assistant.excerpts(q.question, sources, budget)
                seen = " ".join(f"{e.title}. " + " ".join(e.sentences) for e in excerpts)
                shown[rank, budget].append(must_contain_recall(seen, q.must_contain) or 0.0)
    table = Table(title=f"must-contain items in what the model is shown, {args.split}")
    table.add_column("ranking")
    for b in budgets:
        table.add_column(f"{b} tokens", justify="right")
    for rank in ranks:
        table.add_row(rank, *(f"{statistics.fmean(shown[rank, b]):.3f}" for b in budgets))
    console.print(table)
    console.print(
        f"{len(questions)} questions; the whole sources hold {statistics.fmean(whole):.3f}"
    )


if __name__ == "__main__":
    main()
