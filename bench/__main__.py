"""`python -m bench NAME [options]`: benchmarks that print a table and write bench/results/NAME.json.

    python -m bench fidelity                 # ONNX int8 / fp32 vs torch: cosine, speed, hit@1/MRR
    python -m bench ingest [--rounds 2] [--synthetic 1000] [--device auto|cpu|cuda]
    python -m bench retrieve [--sizes 1000,10000,100000,1000000] [--phase grow|measure|all]
    python -m bench startup
    python -m bench snapshot [--sizes 2000,10000] [--stores embedded,server]   # arXiv snapshot shape
    python -m bench llm [--splits dev,test,holdout] [--limit N] [--cache F]   # rag eval through the local LLM
    python -m bench llm_replay [--split dev] [--cache F]   # the same on recorded replies only, no model
    python -m bench llm_latency --old REV [--split dev] [--every 4]   # LLM latency, REV vs this tree

Never part of the test run. See docs/performance.md for the figures and how to read them.
"""

from __future__ import annotations

import argparse
import logging


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="name", required=True)
    sub.add_parser("fidelity", help="ONNX vs torch vectors and retrieval quality")
    ingest = sub.add_parser("ingest", help="ingest throughput vs llama-index")
    ingest.add_argument("--rounds", type=int, default=2)
    ingest.add_argument("--synthetic", type=int, default=0, help="also N recombined abstracts")
    ingest.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="RAG_EMBED_DEVICE for rag's pipelines (cuda: the GPU figure in docs/performance.md)",
    )
    retrieve = sub.add_parser("retrieve", help="latency, memory, recall at 1k..1M chunks")
    retrieve.add_argument("--sizes", default="1000,10000,100000")
    retrieve.add_argument("--queries", type=int, default=100)
    retrieve.add_argument("--no-server", action="store_true", help="skip the `chroma run` side")
    retrieve.add_argument("--workdir", default=None, help="keep / reuse stores here")
    retrieve.add_argument(
        "--phase", choices=("all", "grow", "measure"), default="all", help="grow stores, time them"
    )
    sub.add_parser("startup", help="`rag --help` and first `rag ask` wall time")
    snapshot = sub.add_parser("snapshot", help="N arXiv-snapshot records: rate, peak RSS, resume")
    snapshot.add_argument("--sizes", default="2000,10000", help="record counts, comma-separated")
    snapshot.add_argument("--read-sizes", default="", help="also read (no encoding) these counts")
    snapshot.add_argument("--kill-at", type=float, default=0.5, help="kill -9 at this fraction")
    snapshot.add_argument("--seed", type=int, default=20)
    snapshot.add_argument("--results", default="snapshot", help="write bench/results/RESULTS.json")
    snapshot.add_argument(
        "--stores", default="embedded", help="embedded, server (a `chroma run`), or both"
    )
    snapshot.add_argument(
        "--no-full", action="store_true", help="only the kill and resume, no uninterrupted ingest"
    )
    snapshot.add_argument(
        "--embedder",
        choices=["model", "hash"],
        default="model",
        help="hash: a cheap deterministic 384-dim stand-in for the model (memory at large N)",
    )
    llm = sub.add_parser("llm", help="rag eval through the local LLM behind llama_cpp.server")
    llm.add_argument(
        "--splits", default="dev,test,holdout", help="comma-separated ('' = none: only --claims)"
    )
    llm.add_argument("--limit", type=int, default=None, help="first N questions of each split")
    llm.add_argument("--data-dir", default=None, help="store to use (default .rag)")
    llm.add_argument(
        "--claims", default="test", help="labelled-claims split for the judge check ('' = skip)"
    )
    llm.add_argument(
        "--sample",
        type=int,
        default=None,
        help="every k-th question of each split, about N in all (keeps the answerable mix)",
    )
    llm.add_argument(
        "--cache",
        default=None,
        help="JSON-lines file of the model's replies: replay those seen before, record new ones "
        "(quality figures only; timings of a replayed run are null)",
    )
    llm.add_argument(
        "--results", default="llm", help="name of the results file under bench/results/ (no .json)"
    )
    replay = sub.add_parser("llm_replay", help="the LLM path on recorded replies only (no model)")
    replay.add_argument("--split", default="dev")
    replay.add_argument(
        "--cache", default=None, help="default bench/results/llm-cache/replies.jsonl.gz"
    )
    replay.add_argument("--data-dir", default=None, help="store to use (default .rag)")
    replay.add_argument("--limit", type=int, default=None)
    latency = sub.add_parser("llm_latency", help="LLM-path latency: a baseline commit vs this tree")
    latency.add_argument("--old", required=True, help="the baseline commit (a git worktree of it)")
    latency.add_argument("--split", default="dev")
    latency.add_argument("--every", type=int, default=4, help="every k-th question of the split")
    latency.add_argument("--chunks", type=int, default=4, help="alternations of the two sides")
    latency.add_argument("--data-dir", default=None, help="store to use (default .rag)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.name == "fidelity":
        from bench import fidelity

        fidelity.main()
    elif args.name == "ingest":
        from bench import ingest

        ingest.main(args.rounds, args.synthetic, args.device)
    elif args.name == "retrieve":
        from bench import retrieve

        retrieve.main(
            [int(s) for s in args.sizes.split(",")],
            args.queries,
            server=not args.no_server,
            workdir=args.workdir,
            phase=args.phase,
        )
    elif args.name == "snapshot":
        from bench import snapshot as snapshot_bench

        snapshot_bench.main(
            [int(s) for s in args.sizes.split(",") if s],
            args.kill_at,
            args.seed,
            [int(s) for s in args.read_sizes.split(",") if s],
            args.results,
            [k for k in args.stores.split(",") if k],
            not args.no_full,
            args.embedder,
        )
    elif args.name == "llm":
        from bench import llm as llm_bench

        llm_bench.main(
            [s for s in args.splits.split(",") if s],
            args.limit,
            args.data_dir,
            args.claims or None,
            args.cache,
            args.sample,
            args.results,
        )
    elif args.name == "llm_latency":
        from bench import llm_latency

        llm_latency.main(args.old, args.split, args.every, args.chunks, args.data_dir)
    elif args.name == "llm_replay":
        from bench import llm_replay

        llm_replay.main(args.split, args.cache, args.data_dir, args.limit)
    else:
        from bench import startup

        startup.main()


if __name__ == "__main__":
    main()
