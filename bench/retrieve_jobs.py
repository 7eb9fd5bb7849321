"""Worker jobs of `python -m bench retrieve` (each runs in its own interpreter).

    material  embed the bundled chunks and every corpus sentence once (ONNX int8) -> base.npz
    grow      add synthetic chunks to a store until it holds N; append their vectors to vectors.f32
    index     build the BM25 index of a grown store (timed, peak RSS), so `measure` sees steady state
    measure   open the store (embedded or a `chroma run` server) like `rag ask` does and time
              query embedding, vector search, Assistant.retrieve and Assistant.ask; memory; recall

Synthetic chunks (see `synthetic_chunk`): paper k has 3 chunks; each chunk is the title plus 3-4
corpus sentences drawn at random (seeded by k), so the text reads like the corpus. Its vector is
the normalised mean of the real ONNX vectors of those sentences, plus Gaussian noise of norm 0.3
(relative to the unit mean vector), normalised again: cosine ~0.96 to the noiseless mean. So a
chunk's vector matches its text, the space is clustered like real data, and no two are equal.
The 644 real chunks of the bundled corpus are always in the store, with their real vectors.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np

DIM = 384
NOISE = 0.3
CHUNKS_PER_PAPER = 3


def _settings(data_dir: str, host: str | None = None, port: int | None = None, **extra: Any) -> Any:
    from rag import Settings

    values: dict[str, Any] = {
        "data_dir": Path(data_dir),
        "embed_backend": "onnx",
        "llm": "extractive",
        "_env_file": None,
        **extra,
    }
    if host:
        values.update(chroma_host=host, chroma_port=port)
    return Settings(**values)


# ------------------------------------------------------------------------------------ material
def material(args: dict[str, Any]) -> dict[str, Any]:
    """Real chunks of the bundled corpus and every corpus sentence, embedded once."""
    from bench.common import bundled_papers, sentence_pool
    from rag import Assistant
    from rag.ingest import chunk_metadata, paper_hash
    from rag.onnx_embed import OnnxEmbedding

    out = Path(args["out"])
    if out.exists():
        return {"cached": True}
    emb = OnnxEmbedding()
    assistant = Assistant(_settings(args["data_dir"]), embedder=emb)
    chunking, chunker = assistant.chunking, assistant.chunker
    papers = bundled_papers()
    ids, texts, metas = [], [], []
    for paper in papers:
        chunks = chunker.chunk(paper)
        phash = paper_hash(paper, chunking)
        for chunk in chunks:
            ids.append(chunk.id)
            texts.append(chunk.text)
            metas.append(chunk_metadata(paper, chunk, phash, chunks))
    pool = sentence_pool(papers)
    titles = [p.title for p in papers]
    t = time.perf_counter()
    chunk_vecs = emb.encode(texts)
    sent_vecs = emb.encode(pool)
    np.savez(
        out,
        ids=np.array(ids, dtype=object),
        texts=np.array(texts, dtype=object),
        metas=np.array([_json(m) for m in metas], dtype=object),
        chunk_vecs=chunk_vecs,
        sentences=np.array(pool, dtype=object),
        sent_vecs=sent_vecs,
        titles=np.array(titles, dtype=object),
    )
    return {
        "cached": False,
        "chunks": len(ids),
        "sentences": len(pool),
        "seconds": time.perf_counter() - t,
    }


def _json(meta: dict[str, Any]) -> str:
    import json

    return json.dumps(meta)


def _load_material(path: str) -> dict[str, Any]:
    import json

    data = np.load(path, allow_pickle=True)
    return {
        "ids": list(data["ids"]),
        "texts": list(data["texts"]),
        "metas": [json.loads(m) for m in data["metas"]],
        "chunk_vecs": data["chunk_vecs"],
        "sentences": list(data["sentences"]),
        "sent_vecs": data["sent_vecs"],
        "titles": [t.split() for t in data["titles"]],
    }


def synthetic_paper(
    k: int, mat: dict[str, Any]
) -> list[tuple[str, str, dict[str, Any], np.ndarray]]:
    """Paper k's chunks: (id, text, metadata, vector). Deterministic in k."""
    rng = np.random.default_rng(1_000_003 + k)
    titles, pool, svecs = mat["titles"], mat["sentences"], mat["sent_vecs"]
    a, b = titles[rng.integers(len(titles))], titles[rng.integers(len(titles))]
    title = " ".join(a[: max(1, len(a) // 2)] + b[len(b) // 2 :]) + f" ({k})"
    picks = [rng.choice(len(pool), size=int(rng.integers(3, 5)), replace=False) for _ in range(3)]
    bodies = [" ".join(pool[i] for i in pick) for pick in picks]
    abstract = " ".join(bodies)
    year = int(rng.integers(2017, 2026))
    published = dt.date(year, int(rng.integers(1, 13)), int(rng.integers(1, 29))).isoformat()
    authors = "; ".join(
        f"Author {int(x)}" for x in rng.integers(1, 20_000, size=int(rng.integers(1, 7)))
    )
    pid = f"syn.{k:07d}"
    phash = hashlib.sha1(f"{pid}{abstract}".encode()).hexdigest()[:16]
    texts = [f"{title}\n{body}" for body in bodies]
    ids = [
        f"{pid}#{pos}:{hashlib.sha1(t.encode()).hexdigest()[:12]}" for pos, t in enumerate(texts)
    ]
    out = []
    for pos, (pick, text, cid) in enumerate(zip(picks, texts, ids, strict=True)):
        mean = svecs[pick].mean(axis=0)
        mean /= np.linalg.norm(mean)
        noise = rng.standard_normal(DIM).astype(np.float32)
        vec = mean + NOISE * noise / np.linalg.norm(noise)
        vec /= np.linalg.norm(vec)
        meta: dict[str, Any] = {
            "paper_id": pid,
            "position": pos,
            "title": title,
            "published": published,
            "year": year,
            "authors": authors,
            "n_authors": authors.count(";") + 1,
            "source": "synthetic.jsonl",
            "line": k + 1,
            "paper_hash": phash,
            "n_chunks": CHUNKS_PER_PAPER,
            "first": ids[0],
        }
        if pos == 0:
            meta["abstract"] = abstract
        out.append((cid, text, meta, vec.astype(np.float32)))
    return out


def _store(settings: Any) -> Any:
    from rag.chunking import fingerprint
    from rag.onnx_embed import RECIPE
    from rag.settings import BUNDLED_MODEL
    from rag.store import Store

    return Store(
        settings,
        embed_fingerprint=f"{BUNDLED_MODEL}:{DIM}:onnx-{RECIPE['int8']}",
        dim=DIM,
        chunking=fingerprint(settings.chunk_tokens, settings.chunk_overlap),
    )


# ---------------------------------------------------------------------------------------- grow
def grow(args: dict[str, Any]) -> dict[str, Any]:
    """Bring the store to `size` chunks (real chunks first), batches of Chroma's maximum."""
    mat = _load_material(args["material"])
    store = _store(_settings(args["data_dir"]))
    vec_file = Path(args["data_dir"]) / "vectors.f32"
    have = store.count()
    target = int(args["size"])
    started = time.perf_counter()
    written = 0
    if have == 0:
        store.upsert(mat["ids"], mat["chunk_vecs"], mat["texts"], mat["metas"])
        with open(vec_file, "wb") as handle:
            handle.write(np.ascontiguousarray(mat["chunk_vecs"], dtype=np.float32).tobytes())
        (Path(args["data_dir"]) / "ids.txt").write_text("".join(f"{i}\n" for i in mat["ids"]))
        have = len(mat["ids"])
        written += have
    k, skip = divmod(have - len(mat["ids"]), CHUNKS_PER_PAPER)  # resume mid-paper if need be
    batch = store.max_batch
    pending: list[tuple[str, str, dict[str, Any], np.ndarray]] = []
    while have < target:
        while len(pending) < batch and have + len(pending) < target:
            pending.extend(synthetic_paper(k, mat)[skip:])
            k, skip = k + 1, 0
        take = min(batch, target - have)
        rows, pending = pending[:take], pending[take:]
        vecs = np.stack([r[3] for r in rows])
        store.upsert([r[0] for r in rows], vecs, [r[1] for r in rows], [r[2] for r in rows])
        with open(vec_file, "ab") as handle:
            handle.write(vecs.tobytes())
        with open(Path(args["data_dir"]) / "ids.txt", "a") as handle:
            handle.write("".join(f"{r[0]}\n" for r in rows))
        have += len(rows)
        written += len(rows)
    seconds = time.perf_counter() - started
    return {
        "count": store.count(),
        "written": written,
        "seconds": seconds,
        "inserts_per_s": written / seconds if seconds else 0.0,
        "max_batch": batch,
        "hnsw": _hnsw(store),
    }


def _hnsw(store: Any) -> dict[str, Any]:
    config = store.collection.configuration
    hnsw = dict(config.get("hnsw") or {}) if isinstance(config, dict) else {}
    return hnsw or dict(store.collection.metadata or {})


# --------------------------------------------------------------------------------------- index
def index(args: dict[str, Any]) -> dict[str, Any]:
    """Open the store as `rag ask` does and build its BM25 index (what the first open after a
    write from outside `rag ingest` pays), timed, with the process's peak RSS above the model."""
    import resource

    from rag import Assistant

    assistant = Assistant(_settings(args["data_dir"]))
    assistant.embedder.encode(["warm up the encoder"])
    rss_model = _rss()
    retriever = assistant.retriever
    manifest = Path(args["data_dir"]) / "bm25" / assistant.settings.collection / "manifest.json"
    rebuilt = not manifest.exists()
    t = time.perf_counter()
    if hasattr(retriever, "refresh"):
        retriever.refresh()
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    return {
        "rebuilt": rebuilt,
        "seconds": seconds,
        "peak_rss_above_model_mb": peak - rss_model,
        "rss_after_above_model_mb": _rss() - rss_model,
    }


# ------------------------------------------------------------------------------------- measure
def _rss() -> float:
    from bench.common import rss_mb

    return rss_mb()


def measure(args: dict[str, Any]) -> dict[str, Any]:
    """Latency of each stage over the same queries, after a few warm-up queries."""
    from rag import Assistant
    from rag.embeddings import encode

    started = time.perf_counter()
    settings = _settings(args["data_dir"], args.get("host"), args.get("port"))
    assistant = Assistant(settings)
    emb = assistant.embedder
    emb.encode(["warm up the encoder"])
    rss_model = _rss()
    t = time.perf_counter()
    store = assistant.store
    count = store.count()
    queries: list[str] = args["queries"]
    t = time.perf_counter()
    store.nearest(encode(emb, [queries[0]])[0], 40)
    cold_search = time.perf_counter() - t
    t = time.perf_counter()
    retriever = assistant.retriever
    if hasattr(retriever, "refresh"):
        retriever.refresh()
    index_open = time.perf_counter() - t
    from rag.retrieve import Retriever

    dense = Retriever(store, emb)
    for q in queries[:5]:  # warm-up: caches, allocator, HNSW pages
        assistant.ask(q)
    timings: dict[str, list[float]] = {
        k: [] for k in ("embed", "search", "dense", "retrieve", "ask")
    }
    abstained = 0
    for q in queries:
        t = time.perf_counter()
        vec = encode(emb, [q])[0]
        timings["embed"].append(time.perf_counter() - t)
        t = time.perf_counter()
        store.nearest(vec, 40)  # the HNSW search as retrieval asks for it (ids and distances)
        timings["search"].append(time.perf_counter() - t)
        t = time.perf_counter()
        dense.search(q, settings.top_k)
        timings["dense"].append(time.perf_counter() - t)
        t = time.perf_counter()
        assistant.retrieve(q)
        timings["retrieve"].append(time.perf_counter() - t)
        t = time.perf_counter()
        answer = assistant.ask(q)
        timings["ask"].append(time.perf_counter() - t)
        abstained += answer.abstained
    rss_after = _rss()
    out: dict[str, Any] = {
        "count": count,
        "retrieval": settings.retrieval,
        "seconds_open_to_first_search": cold_search,
        "seconds_index_open": index_open,
        "rss_model_mb": rss_model,
        "rss_mb": rss_after,
        "rss_above_model_mb": rss_after - rss_model,
        "abstained": abstained,
        "timings": timings,
        "seconds": time.perf_counter() - started,
    }
    if args.get("recall"):
        out["recall@10"] = _recall(store, emb, queries, Path(args["data_dir"]))
    return out


def _recall(store: Any, emb: Any, queries: list[str], data_dir: Path) -> float:
    """HNSW top-10 (as Chroma returns it) against the exact top-10 by brute force (numpy)."""
    from rag.embeddings import encode

    vectors = np.fromfile(data_dir / "vectors.f32", dtype=np.float32).reshape(-1, DIM)
    ids = (data_dir / "ids.txt").read_text().split("\n")[: vectors.shape[0]]
    hits = 0
    qv = encode(emb, queries)
    for q in qv:
        rows = np.argpartition(-(vectors @ q), 10)[:10]
        exact = {ids[int(i)] for i in rows}
        res = store.collection.query(query_embeddings=[q], n_results=10, include=[])
        hits += len(exact & set(res["ids"][0]))
    return hits / (10 * len(qv))


JOBS = {"material": material, "grow": grow, "index": index, "measure": measure}
