"""`python -m bench llm_replay`: the LLM path on recorded model replies only, in minutes, no model.

    questions of a split ─► rag's pipeline with RAG_LLM=openai ─► a replay-only proxy
                         (bench/llm_cache.py: the replies `bench llm --cache` recorded; no server
                          behind it, so a request never recorded fails and its question is skipped)
                         ─► must-contain, answerable refused, unanswerable refused
                         ─► bench/results/llm-replay-<split>.json

Everything after the model (verification, salvage, the stand-in, abstention) is measured on the
same replies, so a change there is compared against a baseline without the model's noise: run it
at two commits (a `git worktree` of the older one) and compare. Only replies recorded for the
exact same request are used: a change to the prompt or the excerpts makes those questions
skipped, never answered from a stale reply. No judge runs here (the LLM judge needs the model:
that is `bench llm`); the figures are the eval's own answer checks, not the verifier's.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bench.common import ROOT, machine, save

CACHE = ROOT / "bench" / "results" / "llm-cache" / "replies.jsonl.gz"


def main(split: str, cache: str | None, data_dir: str | None, limit: int | None) -> None:
    from bench.llm_cache import ReplyCache, start_proxy
    from eval.dataset import load_questions, select
    from eval.metrics import must_contain_recall
    from rag.assistant import Assistant
    from rag.settings import Settings
    from rag.types import Answer

    logging.getLogger("rag").setLevel(logging.ERROR)  # each skipped question logs a failed call
    replies = ReplyCache(Path(cache) if cache else CACHE)
    proxy, base = start_proxy("http://127.0.0.1:9", replies)  # nothing listens: a miss fails
    settings = Settings(
        llm="openai",
        llm_base_url=base,
        llm_model="local",
        llm_timeout=5,
        data_dir=data_dir or str(ROOT / ".rag"),
        _env_file=None,
    )
    assistant = Assistant(settings)
    found: list[float] = []
    answerable_refused: list[bool] = []
    unanswerable_refused: list[bool] = []
    skipped = 0
    try:
        for q in select(load_questions(), split, limit):
            misses = replies.misses
            answer: Any = None
            for item in assistant.ask_stream(q.question):
                if isinstance(item, Answer):
                    answer = item
            if replies.misses > misses:
                skipped += 1  # its reply was never recorded for this exact request
                continue
            if not q.answerable:
                unanswerable_refused.append(answer.abstained)
                continue
            answerable_refused.append(answer.abstained)
            if q.must_contain:
                recall = must_contain_recall(answer.text, q.must_contain)
                found.append(0.0 if answer.abstained else recall or 0.0)
    finally:
        proxy.shutdown()

    def mean(xs: list[Any]) -> float | None:
        return round(sum(xs) / len(xs), 4) if xs else None

    figures = {
        "split": split,
        "questions": len(answerable_refused) + len(unanswerable_refused),
        "skipped_no_recorded_reply": skipped,
        "answerable": len(answerable_refused),
        "unanswerable": len(unanswerable_refused),
        "must_contain": mean(found),
        "answerable_refused": mean(answerable_refused),
        "unanswerable_refused": mean(unanswerable_refused),
    }
    path = save(
        f"llm-replay-{split}", {"machine": machine(), "cache": str(replies.path), **figures}
    )
    for name, value in figures.items():
        print(f"{name:28} {value}")
    print("wrote", path)
