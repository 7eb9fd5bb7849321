"""`python -m bench llm`: the grounding eval through a real local LLM behind a real server.

    bundled GGUF (Qwen2.5-Coder-1.5B-Instruct Q4_K_M, sha256-checked)
      ─► python -m llama_cpp.server on 127.0.0.1:<free port> (n_ctx 8192, every core)
      ─► rag eval with RAG_LLM=openai against it, per split (dev, test, the frozen holdout)
      ─► bench/results/llm.json (+ each run's report under bench/results/llm-runs/<split>/)

Figures per split: must-contain recall, answerable refused, unanswerable refused, citation
faithfulness by two judges (the offline verifier, which also filtered the answers, and the
same LLM asked as an entailment judge, which did not), and p50/p95 of the time to the first
verified text and to the whole answer. Never part of the test run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import machine, pct, save, table
from tests.local_servers import free_port, stop_process

ROOT = Path(__file__).resolve().parents[1]
HOLDOUT = ROOT / "eval" / "data" / "holdout.jsonl"
RUNS = ROOT / "bench" / "results" / "llm-runs"


def start_server(model: Path, threads: int, timeout: float = 300.0) -> tuple[Any, str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--model_alias",
            "local",
            "--n_ctx",
            "8192",
            "--n_threads",
            str(threads),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/models", timeout=2) as resp:
                if resp.status == 200:
                    return proc, base
        except OSError:
            time.sleep(1)
    stop_process(proc, 10)
    raise RuntimeError(f"llama_cpp.server did not start within {timeout:.0f} s")


def sampled(dataset: Path, split: str, n: int) -> Path:
    """Every k-th question of the split (k = ceil(rows / n)): a sample that keeps the split's mix
    of answerable and unanswerable questions, unlike its first n rows."""
    rows = [
        line
        for line in dataset.read_text(encoding="utf-8").splitlines()
        if line.strip() and json.loads(line).get("split") == split
    ]
    step = max(1, -(-len(rows) // n))
    out = RUNS / f"{split}-sample{n}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(line + "\n" for line in rows[::step]), encoding="utf-8")
    return out


def figures(report: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    m = report["metrics"] if "metrics" in report else report["headline"]

    def metric(name: str) -> float | None:
        value = m.get(name)
        return value.get("value") if isinstance(value, dict) else value

    first = [r["timings"].get("first_text") for r in records if not r["answer"]["abstained"]]
    first = [x for x in first if x is not None]
    total = [r["timings"]["total"] for r in records]
    return {
        "questions": len(records),
        "must_contain": metric("must_contain"),
        "answerable_refused": metric("false_abstention"),
        "unanswerable_refused": metric("abstention_recall"),
        "faithfulness_offline_verifier": metric("faithfulness"),
        "faithfulness_llm_judge": metric("faithfulness_llm"),
        "citation_precision_llm_judge": metric("citation_precision_llm"),
        "judge_agreement": metric("judge_agreement"),
        # sentences with a number or name-like word no cited source holds (a string check)
        "unsourced_sentences": metric("unsourced"),
        "first_text_p50_s": round(pct(first, 50), 2) if first else None,
        "first_text_p95_s": round(pct(first, 95), 2) if first else None,
        "answer_p50_s": round(pct(total, 50), 2),
        "answer_p95_s": round(pct(total, 95), 2),
    }


def judge_claims(base: str, split: str) -> dict[str, Any]:
    """The LLM entailment judge against the hand-labelled (claim, source) pairs: how far its
    verdicts can be trusted as the independent faithfulness figure."""
    from rag.backends.openai_compat import OpenAIBackend
    from rag.corpus import normalize_title
    from rag.settings import Settings
    from rag_eval.claims_eval import load_claims, sources_by_title
    from rag_eval.judges import llm_judge

    backend = OpenAIBackend(
        Settings(
            llm="openai", llm_base_url=base, llm_model="local", llm_timeout=600, _env_file=None
        )
    )
    judge = llm_judge(type("Host", (), {"llm": backend})())
    sources = sources_by_title()
    rows = [r for r in load_claims() if split == "all" or r["split"] == split]
    tp = fp = fn = tn = 0
    for row in rows:
        verdict = judge(row["claim"], sources[normalize_title(row["source_title"])])
        tp += verdict and row["label"]
        fp += verdict and not row["label"]
        fn += (not verdict) and row["label"]
        tn += (not verdict) and not row["label"]
    n = len(rows)
    return {
        "split": split,
        "claims": n,
        "agreement": round((tp + tn) / n, 3) if n else None,
        "precision": round(tp / (tp + fp), 3) if tp + fp else None,
        "recall": round(tp / (tp + fn), 3) if tp + fn else None,
        "failed_calls": judge.failures,
    }


def main(
    splits: list[str],
    limit: int | None,
    data_dir: str | None,
    claims: str | None = "test",
    cache: str | None = None,
    sample: int | None = None,
    results_name: str = "llm",
) -> None:
    from rag.backends.model_file import bundled_gguf
    from rag.settings import Settings
    from rag_eval.run import main as run_eval

    model = bundled_gguf()
    threads = max(1, len(os.sched_getaffinity(0)))
    proc, base = start_server(model, threads)
    results: dict[str, Any] = {"machine": machine(), "model": model.name, "server": base}
    replies = proxy = None
    if cache:
        from bench.llm_cache import ReplyCache, start_proxy

        replies = ReplyCache(Path(cache))
        proxy, base = start_proxy(base, replies)
        results["reply_cache"] = cache
    try:
        settings = Settings(
            llm="openai",
            llm_base_url=base,
            llm_model="local",
            llm_timeout=600,
            data_dir=data_dir or str(ROOT / ".rag"),
            _env_file=None,
        )
        for split in splits:
            dataset = HOLDOUT if split == "holdout" else None
            if sample:
                from rag_eval.dataset import DEFAULT_DATASET

                dataset = sampled(dataset or DEFAULT_DATASET, split, sample)
            out = RUNS / split
            t = time.perf_counter()
            hits_before = replies.hits if replies else 0
            run_eval(settings=settings, dataset=dataset, split=split, limit=limit, out=out)
            report = json.loads((out / "report.json").read_text())
            records = report.get("questions") or report.get("records") or []
            results[split] = figures(report, records)
            results[split]["seconds"] = round(time.perf_counter() - t, 1)
            if replies and replies.hits > hits_before:
                # replayed replies arrive at once: this run's timings measure nothing
                results[split]["replayed_replies"] = replies.hits - hits_before
                for name in list(results[split]):
                    if name.endswith("_s") or name == "seconds":
                        results[split][name] = None
            save(results_name, results)  # what is done so far survives an interrupted run
        if claims:
            results["llm_judge_on_labelled_claims"] = judge_claims(base, claims)
    finally:
        if proxy:
            proxy.shutdown()
        stop_process(proc, 10)
    path = save(results_name, results)
    rows = [
        [
            split,
            f["questions"],
            f["must_contain"],
            f["answerable_refused"],
            f["unanswerable_refused"],
            f["faithfulness_llm_judge"],
            f["first_text_p50_s"],
            f["answer_p50_s"],
            f["answer_p95_s"],
        ]
        for split, f in results.items()
        if isinstance(f, dict) and "questions" in f
    ]
    table(
        "rag eval through the local LLM (RAG_LLM=openai, llama_cpp.server on 127.0.0.1)",
        [
            "split",
            "n",
            "must-contain",
            "answerable refused",
            "unanswerable refused",
            "faithful (LLM judge)",
            "first text p50 s",
            "answer p50 s",
            "p95 s",
        ],
        rows,
    )
    if "llm_judge_on_labelled_claims" in results:
        print("LLM judge on the labelled claims:", results["llm_judge_on_labelled_claims"])
    print(f"wrote {path}")
