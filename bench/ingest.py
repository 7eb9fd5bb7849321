"""`python -m bench ingest`: rag's ingest (torch and onnx) against the llama-index pipeline.

Every pipeline runs in a fresh interpreter into a fresh store, model loading and imports
included, on the same documents; rounds alternate the order so load on the shared machine
spreads evenly, and ratios are taken within a round. Rates are also given per CPU-second of the
process (user + system), which moves far less than wall time when other jobs share the cores.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.common import run_worker, save, synthetic_records, table, write_jsonl

PIPELINES = ("llama-index", "rag-torch", "rag-onnx")


def _run(
    pipeline: str, corpus: Path | None, texts: Path, workdir: Path, device: str = "auto"
) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"{pipeline}-", dir=workdir))
    args: dict[str, Any] = {"data_dir": str(data_dir), "corpus": str(corpus) if corpus else None}
    if pipeline == "llama-index":
        return run_worker("llama_ingest", args)
    backend = pipeline.removeprefix("rag-")
    return run_worker(
        "rag_ingest", {**args, "backend": backend, "texts": str(texts), "device": device}
    )


def measure(
    corpus_name: str, corpus: Path | None, rounds: int, workdir: Path, device: str = "auto"
) -> dict[str, Any]:
    # The chunk texts, for the bare encoder run before each ingest (made in a process of its own).
    texts = workdir / f"texts-{corpus.stem if corpus else 'bundled'}.json"
    run_worker(
        "chunk_texts",
        {
            "data_dir": str(workdir / "chunking"),
            "corpus": str(corpus) if corpus else None,
            "out": str(texts),
        },
    )
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in PIPELINES}
    for r in range(rounds):
        order = PIPELINES if r % 2 == 0 else tuple(reversed(PIPELINES))
        for pipeline in order:
            result = _run(pipeline, corpus, texts, workdir, device)
            result["round"] = r
            runs[pipeline].append(result)
            print(
                f"  {corpus_name} round {r + 1}/{rounds} {pipeline}: "
                f"{result['papers'] / result['seconds_total']:.2f} abstracts/s wall, "
                f"{result['chunks'] / result['seconds_total']:.1f} chunks/s, "
                f"{result['seconds_total']:.1f} s on {result.get('device', 'cpu')}",
                flush=True,
            )
    summary: dict[str, Any] = {}
    base = runs["llama-index"]
    for pipeline, results in runs.items():
        s: dict[str, Any] = {
            "papers": results[0]["papers"],
            "chunks": results[0]["chunks"],
            "model_tokens": results[0]["model_tokens"],
            "device": results[0].get("device", "cpu"),
        }
        s["abstracts_per_s"] = statistics.median(x["papers"] / x["seconds_total"] for x in results)
        s["chunks_per_s"] = statistics.median(x["chunks"] / x["seconds_total"] for x in results)
        s["abstracts_per_cpu_s"] = statistics.median(
            x["papers"] / x["cpu_seconds_total"] for x in results
        )
        s["seconds_total"] = statistics.median(x["seconds_total"] for x in results)
        s["ratio_vs_llama_wall"] = statistics.median(
            (x["papers"] / x["seconds_total"]) / (b["papers"] / b["seconds_total"])
            for x, b in zip(results, base, strict=True)
        )
        s["ratio_vs_llama_cpu"] = statistics.median(
            (x["papers"] / x["cpu_seconds_total"]) / (b["papers"] / b["cpu_seconds_total"])
            for x, b in zip(results, base, strict=True)
        )
        if "seconds_bare_encode" in results[0]:
            s["ingest_over_bare_wall"] = statistics.median(
                x["seconds_ingest"] / x["seconds_bare_encode"] for x in results
            )
            s["ingest_over_bare_cpu"] = statistics.median(
                x["cpu_seconds_ingest"] / x["cpu_seconds_bare_encode"] for x in results
            )
        summary[pipeline] = s
    return {"summary": summary, "runs": runs}


def main(rounds: int = 2, synthetic: int = 0, device: str = "auto") -> None:
    """`device` is RAG_EMBED_DEVICE for rag's pipelines (llama-index picks its own: CUDA when
    torch has it); `--device cuda` fails at once, saying why, where there is no GPU."""
    if device == "cuda":
        from rag.device import resolve_device
        from rag.errors import ConfigError

        try:
            for backend in ("onnx", "torch"):
                resolve_device("cuda", backend)
        except ConfigError as exc:
            raise SystemExit(f"bench ingest --device cuda: {exc}") from exc
    workdir = Path(tempfile.mkdtemp(prefix="rag-bench-ingest-"))
    # Build the ONNX model before timing anything (a one-time cost per machine, reported apart).
    first = run_worker("onnx_build", {})
    corpora: list[tuple[str, Path | None]] = [("bundled (277 abstracts)", None)]
    if synthetic:
        path = write_jsonl(synthetic_records(synthetic, seed=7), workdir / "synthetic.jsonl")
        corpora.append((f"synthetic ({synthetic} abstracts)", path))
    results: dict[str, Any] = {
        "onnx_build": first,
        "rounds": rounds,
        "device": device,
        "corpora": {},
    }
    for name, path in corpora:
        results["corpora"][name] = measure(name, path, rounds, workdir, device)
        rows = []
        for pipeline, s in results["corpora"][name]["summary"].items():
            rows.append(
                [
                    f"{pipeline} ({s['device']})",
                    s["papers"],
                    s["chunks"],
                    s["model_tokens"],
                    s["seconds_total"],
                    s["abstracts_per_s"],
                    s["chunks_per_s"],
                    s["ratio_vs_llama_wall"],
                    s["ratio_vs_llama_cpu"],
                    s.get("ingest_over_bare_wall", float("nan")),
                    s.get("ingest_over_bare_cpu", float("nan")),
                ]
            )
        table(
            f"ingest: {name}, median of {rounds} rounds, model load included",
            [
                "pipeline",
                "abstracts",
                "chunks",
                "model tokens",
                "wall s",
                "abstracts/s",
                "chunks/s",
                "× llama (wall)",
                "× llama (CPU)",
                "ingest/bare (wall)",
                "ingest/bare (CPU)",
            ],
            rows,
        )
    print(
        f"ONNX model build (once per machine): {first['seconds']:.1f} s, cached: {first['cached']}"
    )
    print(f"wrote {save('ingest', results)}")
