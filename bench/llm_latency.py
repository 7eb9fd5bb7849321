"""`python -m bench llm_latency --old REV`: the LLM path's latency at two commits, in one run.

    a `git worktree` of REV (the baseline) and this working tree (the change)
      ─► one llama_cpp.server with the bundled model on 127.0.0.1 (shared: same machine, same load)
      ─► every k-th question of a split, in chunks, the baseline's chunk then the change's
         (each chunk in its own child process that imports that tree's `rag`), so a slow spell
         on the machine falls on both sides alike
      ─► p50 / p95 of the whole answer and of the first verified text, per side, and the median
         of the paired differences ─► bench/results/llm-latency.json

The model's speed is the machine's: a figure from one session is only comparable with the other
side of the same run. Never part of the test run.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import ROOT, machine, pct, save, table
from bench.llm import start_server
from tests.local_servers import stop_process

# Run inside a child with PYTHONPATH=<tree>: time each question through that tree's Assistant.
CHILD = """
import json, logging, sys, time
logging.getLogger("rag").setLevel(logging.ERROR)
from rag.assistant import Assistant
from rag.settings import Settings
from rag.types import Answer
sys.path.insert(0, sys.argv[2])
from eval.dataset import load_questions, select
base, tree, split, start, stop, every, data_dir = sys.argv[1:8]
a = Assistant(Settings(llm="openai", llm_base_url=base, llm_model="local", llm_timeout=600,
                       openai_api_key="local", data_dir=data_dir, _env_file=None))
questions = select(load_questions(), split, None)[int(start):int(stop):int(every)]
for q in questions:
    t = time.perf_counter()
    first = None
    for item in a.ask_stream(q.question):
        if first is None and isinstance(item, str):
            first = time.perf_counter() - t
        if isinstance(item, Answer):
            answer = item
    print(json.dumps({"id": q.id, "total": time.perf_counter() - t, "first": first,
                      "backend": answer.backend, "abstained": answer.abstained}), flush=True)
"""


def _side(
    base: str, tree: Path, split: str, span: tuple[int, int], every: int, data_dir: str
) -> list[dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            base,
            str(tree),
            split,
            *map(str, span),
            str(every),
            data_dir,
        ],
        env=env,
        cwd=tempfile.gettempdir(),  # not the repository root: `rag` must come from `tree`
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    total = [r["total"] for r in rows]
    first = [r["first"] for r in rows if r["first"] is not None]
    return {
        "questions": len(rows),
        "answer_p50_s": round(pct(total, 50), 2),
        "answer_p95_s": round(pct(total, 95), 2),
        "first_text_p50_s": round(pct(first, 50), 2) if first else None,
        "abstained": sum(r["abstained"] for r in rows),
        "extractive_stand_in": sum(r["backend"] == "extractive" for r in rows),
    }


def main(old: str, split: str, every: int, chunks: int, data_dir: str | None) -> None:
    from rag.backends.model_file import bundled_gguf
    from rag_eval.dataset import load_questions, select

    n = len(select(load_questions(), split, None))
    bounds = [round(i * n / chunks) for i in range(chunks + 1)]
    store = data_dir or str(ROOT / ".rag")
    workdir = Path(tempfile.mkdtemp(prefix="rag-llm-latency-"))
    baseline = workdir / "baseline"
    subprocess.run(["git", "worktree", "add", "--detach", str(baseline), old], cwd=ROOT, check=True)
    threads = max(1, len(os.sched_getaffinity(0)))
    proc, base = start_server(bundled_gguf(), threads)
    sides: dict[str, list[dict[str, Any]]] = {"baseline": [], "change": []}
    try:
        for lo, hi in itertools.pairwise(bounds):
            sides["baseline"] += _side(base, baseline, split, (lo, hi), every, store)
            sides["change"] += _side(base, ROOT, split, (lo, hi), every, store)
    finally:
        stop_process(proc, 10)
        subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=ROOT)
    by_id = {r["id"]: r for r in sides["baseline"]}
    paired = [r["total"] - by_id[r["id"]]["total"] for r in sides["change"] if r["id"] in by_id]
    results: dict[str, Any] = {
        "baseline_commit": old,
        "split": split,
        "every": every,
        "baseline": _figures(sides["baseline"]),
        "change": _figures(sides["change"]),
        "paired_difference_median_s": round(statistics.median(paired), 2) if paired else None,
        "rows": sides,
    }
    path = save("llm-latency", results)
    table(
        f"LLM path latency, {split} every {every}th question, one server, chunks interleaved",
        ["side", "n", "answer p50 s", "p95 s", "first text p50 s"],
        [
            [name, f["questions"], f["answer_p50_s"], f["answer_p95_s"], f["first_text_p50_s"]]
            for name, f in ((k, results[k]) for k in ("baseline", "change"))
        ],
    )
    print(
        f"median paired difference (change - baseline): {results['paired_difference_median_s']} s"
    )
    print(f"machine: {machine()['cpu']}; wrote {path}")
