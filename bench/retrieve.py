"""`python -m bench retrieve`: latency, memory, disk and HNSW recall at 1k / 10k / 100k / 1M chunks.

One store grows through the sizes (see bench/retrieve_jobs.py for how the synthetic chunks and
their vectors are made). At each size a fresh process opens it as `rag ask` would (embedded
Chroma), and again through a `chroma run` server on 127.0.0.1 serving the same directory, and
times, per query: the query embedding, the vector search (`Store.nearest`, 40 ids, as the
hybrid retriever asks), dense `Retriever.search`, `Assistant.retrieve` (the default retrieval)
and extractive `Assistant.ask`. Writes bench/results/retrieve.json and the latency plot.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    bundled_papers,
    du_mb,
    questions,
    rss_mb,
    run_worker,
    save,
    sentence_pool,
    summary_ms,
    table,
)
from tests.local_servers import start_chroma, stop_process

PLOT = ROOT / "docs" / "performance_latency.png"
STAGES = ("embed", "search", "dense", "retrieve", "ask")


def query_set(n: int, seed: int = 5) -> list[str]:
    """The dev questions, then question-like queries built from corpus sentences."""
    qs = [q for q, _ in questions()[0]]
    rng = random.Random(seed)
    pool = sentence_pool(bundled_papers())
    starts = ("What does", "How does", "Which work shows that", "Why does")
    while len(qs) < n:
        words = rng.choice(pool).rstrip(".").split()
        cut = words[: rng.randint(8, 16)]
        qs.append(f"{rng.choice(starts)} {' '.join(cut)}?")
    return qs[:n]


def measure_size(data_dir: Path, queries: list[str], server: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"bm25_index": run_worker("index", {"data_dir": str(data_dir)})}
    embedded = run_worker(
        "measure", {"data_dir": str(data_dir), "queries": queries, "recall": True}
    )
    out["embedded"] = embedded
    if server:
        proc, port = start_chroma(data_dir / "chroma", timeout=120)
        try:
            res = run_worker(
                "measure",
                {"data_dir": str(data_dir), "queries": queries, "host": "127.0.0.1", "port": port},
            )
            res["server_rss_mb"] = rss_mb(proc.pid)
            out["server"] = res
        finally:
            stop_process(proc, 20)
    out["disk_chroma_mb"] = du_mb(data_dir / "chroma")
    out["disk_bm25_mb"] = du_mb(data_dir / "bm25") if (data_dir / "bm25").exists() else 0.0
    return out


def plot(results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(int(s) for s in results["sizes"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, side in zip(axes, ("embedded", "server"), strict=True):
        for stage, label in (
            ("search", "vector search"),
            ("retrieve", "Assistant.retrieve"),
            ("ask", "Assistant.ask (extractive)"),
            ("embed", "query embedding"),
        ):
            xs, p50, p95 = [], [], []
            for size in sizes:
                entry = results["sizes"][str(size)].get(side)
                if not entry:
                    continue
                s = entry["summary"][stage]
                xs.append(entry["count"])
                p50.append(s["p50_ms"])
                p95.append(s["p95_ms"])
            if xs:
                line = ax.plot(xs, p50, marker="o", label=f"{label} p50")[0]
                ax.plot(xs, p95, marker="x", linestyle="--", color=line.get_color(), alpha=0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("chunks in the collection")
        ax.set_title(f"{side} Chroma (dashed: p95)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency per query (ms)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)


def main(
    sizes: list[int], n_queries: int, *, server: bool, workdir: str | None, phase: str = "all"
) -> None:
    """`phase`: "grow" builds the stores only, "measure" times stores grown earlier, "all" both.

    The store grows through the sizes; every size but the largest is copied to
    `<workdir>/store-<size>` on the way, so the sizes can be measured later, on a quiet machine,
    without regrowing (a 1M-chunk store takes the better part of an hour to insert here).
    """
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="rag-bench-retrieve-"))
    work.mkdir(parents=True, exist_ok=True)
    data_dir = work / "store"
    material = work / "material.npz"
    prep = run_worker("material", {"out": str(material), "data_dir": str(data_dir)})
    sizes = sorted(sizes)
    if phase in ("grow", "all"):
        grown_at = _grow_all(work, material, sizes)
        if phase == "grow":
            return
    else:
        grown_at = _load_json(work / "grown.json")
    queries = query_set(n_queries)
    results: dict[str, Any] = {
        "workdir": str(work),
        "material": prep,
        "queries": len(queries),
        "question_source": questions()[1],
        "sizes": {},
    }
    for size in sizes:
        grown = grown_at[str(size)]
        entry = measure_size(_store_dir(work, size, sizes), queries, server)
        entry["grow"] = grown
        for side in ("embedded", "server"):
            if side in entry:
                entry[side]["summary"] = {
                    stage: summary_ms(entry[side]["timings"][stage]) for stage in STAGES
                }
        results["sizes"][str(size)] = entry
        results["hnsw"] = grown["hnsw"]
        save("retrieve", results)
        _print(results)
    plot(results)
    print(f"plot: {PLOT}")
    print(f"wrote {save('retrieve', results)}")


def _store_dir(work: Path, size: int, sizes: list[int]) -> Path:
    return work / "store" if size == max(sizes) else work / f"store-{size}"


def _load_json(path: Path) -> dict[str, Any]:
    import json

    if not path.exists():
        raise SystemExit(f"{path} is missing: run with --phase grow (or all) first")
    return dict(json.loads(path.read_text()))


def _grow_all(work: Path, material: Path, sizes: list[int]) -> dict[str, Any]:
    import json
    import shutil

    data_dir = work / "store"
    log_path = work / "grown.json"
    grown_at: dict[str, Any] = json.loads(log_path.read_text()) if log_path.exists() else {}
    for size in sizes:
        snapshot = _store_dir(work, size, sizes)
        if str(size) in grown_at and snapshot.exists():
            continue
        grown = run_worker(
            "grow", {"material": str(material), "data_dir": str(data_dir), "size": size}
        )
        print(
            f"  {size:,} chunks: inserted {grown['written']:,} in {grown['seconds']:.0f} s "
            f"({grown['inserts_per_s']:.0f}/s)",
            flush=True,
        )
        if snapshot != data_dir:
            shutil.rmtree(snapshot, ignore_errors=True)
            shutil.copytree(data_dir, snapshot)
        grown_at[str(size)] = grown
        log_path.write_text(json.dumps(grown_at, indent=1))
    return grown_at


def _print(results: dict[str, Any]) -> None:
    rows = []
    for size, entry in results["sizes"].items():
        for side in ("embedded", "server"):
            if side not in entry:
                continue
            e = entry[side]
            s = e["summary"]
            rows.append(
                [
                    f"{int(size):,} {side}",
                    s["embed"]["p50_ms"],
                    s["search"]["p50_ms"],
                    s["search"]["p95_ms"],
                    s["dense"]["p50_ms"],
                    s["retrieve"]["p50_ms"],
                    s["retrieve"]["p95_ms"],
                    s["ask"]["p50_ms"],
                    s["ask"]["p95_ms"],
                    e.get("recall@10", float("nan")),
                    e.get("server_rss_mb", e["rss_above_model_mb"]),
                    entry["disk_chroma_mb"],
                ]
            )
    table(
        f"retrieval latency (ms), {results['queries']} queries per size",
        [
            "chunks / store",
            "embed p50",
            "search p50",
            "search p95",
            "dense p50",
            "retrieve p50",
            "retrieve p95",
            "ask p50",
            "ask p95",
            "recall@10",
            "RSS MB*",
            "disk MB",
        ],
        rows,
    )
    print("* embedded: client RSS above the loaded model; server: RSS of the chroma process")
