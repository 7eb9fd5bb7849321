"""One measured job per fresh interpreter: `python -m bench.worker JOB '{json args}'`.

Each job prints one JSON line (its figures) as the last line of stdout. Timing starts at the top
of this module, before any heavy import, so model loading and imports are counted on every side.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _targets(corpus: str | None) -> list[Path]:
    from rag.corpus import bundled_corpus_dir

    return [Path(corpus)] if corpus else [bundled_corpus_dir()]


def chunk_texts(args: dict[str, Any]) -> dict[str, Any]:
    """The chunk texts an ingest of the corpus makes, written to `args["out"]` (JSON). Made in
    an interpreter of its own, so the ingest job's bare encoder run before the ingest does not
    warm the ingest's tokenizers."""
    from rag import Assistant, Settings
    from rag.corpus import iter_corpus
    from rag.types import Paper

    settings = Settings(data_dir=Path(args["data_dir"]), embed_backend="onnx", _env_file=None)
    chunker = Assistant(settings).chunker  # the one `Assistant.ingest` uses
    papers = iter_corpus(_targets(args.get("corpus")), max_chars=settings.max_abstract_chars)
    texts = [c.text for p in papers if isinstance(p, Paper) for c in chunker.chunk(p)]
    Path(args["out"]).write_text(json.dumps(texts))
    return {"chunks": len(texts)}


def _bare(embedder: Any, texts: list[str]) -> tuple[float, float]:
    """The encoder alone on the chunk texts: (wall, CPU) seconds. It tokenises the texts itself,
    as the ingest does (in chunking)."""
    c, t = _cpu(), time.perf_counter()
    embedder.encode(list(texts))
    return time.perf_counter() - t, _cpu() - c


def rag_ingest(args: dict[str, Any]) -> dict[str, Any]:
    """`Assistant.ingest` into a fresh embedded store, bracketed by the bare encoder on the same
    chunks: once before (a separate, fresh encoder; texts from `args["texts"]`, made by
    `chunk_texts`) and once after (the ingest's own encoder). The baseline is their mean, so
    drift in the machine's load during the job falls on both sides."""
    from rag import Assistant, Settings

    settings = Settings(
        data_dir=Path(args["data_dir"]),
        embed_backend=args["backend"],
        embed_device=args.get("device", "auto"),
        llm="extractive",
        _env_file=None,
    )
    before: tuple[float, float] | None = None
    if args.get("texts"):
        from rag import embeddings

        texts_before = json.loads(Path(args["texts"]).read_text())
        before = _bare(Assistant(settings).embedder, texts_before)
        embeddings._CACHE.clear()  # the ingest loads its own encoder, cold, as in any first run
    assistant = Assistant(settings)
    t = time.perf_counter()
    embedder = assistant.embedder
    load = time.perf_counter() - t
    c, t = _cpu(), time.perf_counter()
    # The whole call: opening the store, reading, chunking, encoding, writing, and the BM25
    # index refresh after it (report.seconds covers the pipeline without the refresh).
    report = assistant.ingest(_targets(args.get("corpus")))
    seconds_ingest = time.perf_counter() - t
    cpu_ingest = _cpu() - c
    # The pipeline's own time (for the llama-index comparison) leaves out the run before.
    total = time.perf_counter() - T0 - (before[0] if before else 0.0)
    cpu_total = _cpu() - (before[1] if before else 0.0)
    texts = assistant.store.get(include=["documents"])["documents"]
    bare: dict[str, Any] = {}
    if args.get("bare", True):
        # Before the token count below, whose word pieces the encoder would reuse.
        after = _bare(embedder, texts)
        runs = [after] if before is None else [before, after]
        bare = {
            "seconds_bare_encode": statistics.mean(r[0] for r in runs),
            "cpu_seconds_bare_encode": statistics.mean(r[1] for r in runs),
            "seconds_bare_runs": [r[0] for r in runs],
        }
        if before is not None:
            bare["same_chunks"] = sorted(texts_before) == sorted(texts)
    tokens = sum(embedder.count_tokens(x) for x in texts)
    return {
        "pipeline": f"rag ({args['backend']})",
        "papers": report.added,
        "chunks": report.chunks_written,
        "model_tokens": tokens,
        "failed": len(report.failed),
        "seconds_total": total,
        "cpu_seconds_total": cpu_total,
        "seconds_model_load": load,
        "seconds_ingest": seconds_ingest,
        "seconds_ingest_pipeline": report.seconds,
        "cpu_seconds_ingest": cpu_ingest,
        "fingerprint": embedder.fingerprint,
        "device": getattr(embedder, "device", "cpu"),
        "batch_size": embedder.embed_batch_size,
        **bare,
    }


def llama_ingest(args: dict[str, Any]) -> dict[str, Any]:
    """The reference pipeline: llama-index `VectorStoreIndex.from_documents` into a fresh Chroma.

    Same parsed papers, same MiniLM weights (`HuggingFaceEmbedding`, llama-index defaults), the
    abstract as document text and the title as metadata (llama-index prepends metadata to every
    chunk it embeds, as rag prefixes the title), `SentenceSplitter(256, 32)`.
    """
    import chromadb
    from llama_index.core import Document, Settings, StorageContext, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.chroma import ChromaVectorStore

    from rag.corpus import iter_corpus
    from rag.embed_base import bundled_model_path
    from rag.types import Paper

    Settings.llm = None
    t = time.perf_counter()
    embed = HuggingFaceEmbedding(model_name=str(bundled_model_path()), device="cpu")
    load = time.perf_counter() - t
    t = time.perf_counter()
    papers = [
        p
        for p in iter_corpus(_targets(args.get("corpus")), max_chars=20_000)
        if isinstance(p, Paper)
    ]
    docs = [Document(text=p.abstract, metadata={"title": p.title}, id_=p.id) for p in papers]
    client = chromadb.PersistentClient(
        path=str(Path(args["data_dir"]) / "chroma"),
        settings=chromadb.Settings(anonymized_telemetry=False),
    )
    collection = client.get_or_create_collection("papers", metadata={"hnsw:space": "cosine"})
    storage = StorageContext.from_defaults(
        vector_store=ChromaVectorStore(chroma_collection=collection)
    )
    VectorStoreIndex.from_documents(
        docs,
        storage_context=storage,
        embed_model=embed,
        transformations=[SentenceSplitter(chunk_size=256, chunk_overlap=32)],
    )
    ingest = time.perf_counter() - t
    total = time.perf_counter() - T0
    cpu_total = _cpu()
    tokenizer = embed._model.tokenizer
    got = collection.get(include=["documents", "metadatas"])
    tokens = 0
    for doc, meta in zip(got["documents"], got["metadatas"], strict=False):
        text = f"title: {meta.get('title', '')}\n\n{doc}"  # what llama-index embedded
        tokens += min(256, len(tokenizer(text, truncation=False)["input_ids"]))
    return {
        "pipeline": "llama-index",
        "papers": len(docs),
        "chunks": collection.count(),
        "model_tokens": tokens,
        "failed": 0,
        "seconds_total": total,
        "cpu_seconds_total": cpu_total,
        "seconds_model_load": load,
        "seconds_ingest": ingest,
        "embed_batch_size": embed.embed_batch_size,
    }


def onnx_build(args: dict[str, Any]) -> dict[str, Any]:
    """Build (or find) the cached ONNX model: the one-time cost before the first onnx ingest."""
    from rag.embed_base import resolve_model_path
    from rag.onnx_embed import ensure_model

    t = time.perf_counter()
    path = ensure_model(resolve_model_path(args.get("model", "all-MiniLM-L6-v2")))
    seconds = time.perf_counter() - t
    return {"path": str(path), "seconds": seconds, "cached": seconds < 5}


JOBS = {
    "chunk_texts": chunk_texts,
    "rag_ingest": rag_ingest,
    "llama_ingest": llama_ingest,
    "onnx_build": onnx_build,
}


def main() -> None:
    job, raw = sys.argv[1], sys.argv[2]
    if job not in JOBS:
        from bench import retrieve_jobs

        JOBS.update(retrieve_jobs.JOBS)
    result = JOBS[job](json.loads(raw))
    sys.stdout.write("\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
