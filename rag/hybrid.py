"""Hybrid retrieval: BM25 over chunk text fused with dense search (weighted score fusion).

    question ─► acronym expansion ─► BM25 top n (another core; typos mapped to known words)
                                  ─► query vector ─► HNSW nearest n (Chroma)
             ─► alpha * cosine + (1 - alpha) * BM25 / best BM25 ─► top k, one chunk per paper

Dense MiniLM misses exact terms (model and dataset names, numbers); BM25 catches them. The BM25
index (rag.bm25: bm25s) lives beside the store in RAG_DATA_DIR/bm25/<collection>/ with each
chunk's tokens cached, so after an ingest only new chunks are tokenised and the index is
re-assembled from the cache; it is never rebuilt per question. Queries get acronym expansion
learnt from the corpus ("ViT" <-> "vision transformer", from "Vision Transformer (ViT)" in
abstracts) and cheap typo tolerance (unknown query words mapped to the closest vocabulary word).
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import shutil
import threading
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from rag.bm25 import (
    IDS,
    LEGACY_IDS,
    MANIFEST,
    OFFSETS,
    IdColumn,
    PackedIds,
    as_text,
    find_acronyms,
    ids_state,
    import_bm25s,
    index_dir,
    load_ids,
    load_index,
    open_index,
    publish_index,
    release_freed_memory,
    save_ids,
    tokenize,
)
from rag.bm25_build import TokenSpill, build
from rag.retrieve import Filters, Retriever, pick
from rag.settings import Settings
from rag.store import Hit, Store
from rag.types import Source

# Names kept importable from here, where they lived before rag.bm25 took the index.
_bm25s, _save_ids = import_bm25s, save_ids
__all__ = [
    "HNSW_SLACK",
    "IDS",
    "LEGACY_IDS",
    "OFFSETS",
    "HybridRetriever",
    "IdColumn",
    "find_acronyms",
    "index_dir",
    "load_ids",
    "tokenize",
]

log = logging.getLogger(__name__)

# How far HNSW may miss: a chunk outside the approximate nearest `fetch` can score a little above
# the weakest one returned (recall@10 is 0.965 at 100k chunks, docs/performance.md).
HNSW_SLACK = 0.02
# Chunks read back from the store per request when the BM25 index needs their tokens (below).
READ_BACK_BATCH = 256


class HybridRetriever(Retriever):
    def __init__(self, store: Store, embedder: Any, settings: Settings) -> None:
        super().__init__(store, embedder)
        self.dir = index_dir(settings)
        self.alpha = settings.hybrid_alpha
        self._lock = threading.Lock()
        self._bm25: Any = None
        # Chunk ids by BM25 row: a memory-mapped array of UTF-8 ids beside the index, so a query
        # reads the few rows it returns (a list of Python strings was ~8 MB per 100k chunks).
        self._ids: Sequence[Any] = []
        self._vocab: Collection[str] = ()  # bm25s's own vocabulary (token -> column)
        self._shelves: dict[tuple[str, int], list[str]] | None = None  # vocab by (first, len)
        self._acronyms: dict[str, str] = {}
        self._state: tuple[int, str] | None = None
        self._stale = False  # the store changed elsewhere: refresh before the next search
        self._pool: ThreadPoolExecutor | None = None
        # Tokens of chunks an ingest has written, made in its writing thread (`prepare`), kept
        # on disk until the rebuild streams them (rag.bm25_build).
        self._spill = TokenSpill(self.dir)
        self.read_back = 0

    # ----------------------------------------------------------------------------- the index
    def refresh(self) -> None:
        """Bring the BM25 index in line with the store (after an ingest); cheap when unchanged.
        An index on disk is used only if it checks out against the store (`_load`); one that
        does not is rebuilt, so an ingest repairs it even when no paper changed."""
        with self._lock:
            self._stale = False
            # What an ingest's threads freed goes back to the OS first (glibc keeps it in their
            # arenas, where this thread's allocations cannot reuse it).
            release_freed_memory()
            # One listing of the store's ids serves both the state check and a rebuild, packed
            # page by page (~30 bytes an id; a list of them was ~80, held through the rebuild).
            ids = PackedIds.sorted_from(page["ids"] for page in self.store.pages(include=()))
            state = ids_state(ids)
            unchanged = self._bm25 is not None and state == self._state
            # Another process may have written the index for this state already: load it.
            if not unchanged and not self._load(state, ids):
                self._rebuild(state, ids)
            del ids
            release_freed_memory()

    def invalidate(self) -> None:
        """The store changed elsewhere (rag.store.generation): refresh before the next search."""
        self._stale = True

    def prepare(self, ids: list[str], texts: list[str]) -> None:
        """Tokenise chunks an ingest has just written. It runs in the ingest's writing thread,
        which waits on the encoder most of the time, so the refresh after the ingest neither
        reads the new chunks back nor tokenises them."""
        import_bm25s()  # imported here, off the refresh's path

        self._spill.add(ids, texts)

    def _load(self, state: tuple[int, str], store_ids: Sequence[str]) -> bool:
        """Use the index on disk if it is the one for `state` and checks out (`load_index`).
        Anything else is logged and rebuilt (it broke every ask before)."""
        if not (self.dir / MANIFEST).exists():
            return False
        try:
            loaded = load_index(self.dir, state, store_ids)
        except Exception as exc:
            log.warning(
                "BM25 index at %s does not match the store (%s); rebuilding it", self.dir, exc
            )
            return False
        if loaded is None:  # the index of another state
            return False
        self._bm25, self._ids, self._vocab = loaded.bm25, loaded.ids, loaded.bm25.vocab_dict
        self._shelves = None
        self._acronyms = loaded.acronyms
        self._state = state
        return True

    def _rebuild(self, state: tuple[int, str], ids: Sequence[str]) -> None:
        """Build the index of `ids` streaming every chunk's tokens from disk (rag.bm25_build):
        the ingest's own spill, the token cache, and the store for chunks in neither."""

        def read_back(missing: list[str]) -> Iterator[tuple[str, str]]:
            # Small batches, each one's freed memory handed back: a batch's reply (every row's
            # metadata, the text among it, as JSON and as Python objects) is transient, but
            # batches of 2,000 left the process +47 MiB after 10k chunks read back and
            # +150 MiB after 103k (a resume after a kill -9 at 50% of 100k records); batches of
            # 256 with a trim after each: +3 MiB at 10k (docs/performance.md).
            for start in range(0, len(missing), READ_BACK_BATCH):
                docs = self.store.get(
                    ids=missing[start : start + READ_BACK_BATCH], include=["documents"]
                )
                yield from zip(docs["ids"], [d or "" for d in docs["documents"]], strict=False)
                del docs
                release_freed_memory()

        # Each build goes to a directory of its own: other processes may have the previous one
        # memory-mapped. It is served from the memory-mapped files, as a fresh process would.
        name = f"index-{state[1][:12]}"
        shutil.rmtree(self.dir / name, ignore_errors=True)
        spill = self._spill.take()
        try:
            built = build(self.dir, ids, spill, read_back, self.dir / name)
        finally:
            if spill is not None:
                spill.close()
        acronyms = built.acronyms
        self.read_back = built.read_back  # chunks read from the store to tokenise
        self._bm25, self._ids, self._state, self._vocab = None, ids, state, ()
        self._shelves = None
        self._acronyms = acronyms
        if ids:
            self._bm25, self._ids = open_index(self.dir, name, ids)
            self._vocab = self._bm25.vocab_dict
        publish_index(self.dir, state, name, acronyms)
        log.info("BM25 index: %d chunks (%d read back)", len(ids), built.read_back)

    # ------------------------------------------------------------------------------ queries
    def expand(self, question: str) -> str:
        """Add the other form of acronyms / spelled-out names found in the question."""
        extra = []
        lower = question.lower()
        for short, long_form in self._acronyms.items():
            # A substring test first: the regex runs only for the few acronyms that can match.
            has_short = short in lower and bool(re.search(rf"\b{re.escape(short)}\b", lower))
            has_long = long_form.lower() in lower
            if has_short and not has_long:
                extra.append(long_form)
            elif has_long and not has_short:
                extra.append(short)
        return question if not extra else f"{question} ({'; '.join(extra[:4])})"

    def _query_tokens(self, question: str) -> list[str]:
        tokens = []
        for token in tokenize(question):
            if token in self._vocab or len(token) < 5 or token.isdigit():
                tokens.append(token)
                continue
            tokens.append(self._close_word(token) or token)
        return tokens

    def _close_word(self, token: str) -> str | None:
        """The vocabulary word closest to an unknown query word (a typo), among words with its
        first letter and within two of its length: difflib over a whole large vocabulary costs
        tens of ms per word, and a first-letter typo is rare."""
        if self._shelves is None:
            shelves: dict[tuple[str, int], list[str]] = {}
            for word in self._vocab:
                shelves.setdefault((word[:1], len(word)), []).append(word)
            self._shelves = shelves
        near = [
            w
            for length in range(len(token) - 2, len(token) + 3)
            for w in self._shelves.get((token[:1], length), ())
        ]
        close = difflib.get_close_matches(token, near, n=1, cutoff=0.85)
        return close[0] if close else None

    def _scorer(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max(2, len(os.sched_getaffinity(0))), thread_name_prefix="rag-bm25"
                )
            return self._pool

    def bm25_scores(self, question: str, n: int) -> dict[str, float]:
        """Chunk id -> BM25 score of the top `n` chunks with any query term."""
        bm25, ids = self._bm25, self._ids  # one build throughout, should a refresh swap them
        if bm25 is None or not len(ids):
            return {}
        tokens = [t for t in self._query_tokens(question) if t in bm25.vocab_dict]
        if not tokens:
            return {}
        scores = bm25.get_scores(tokens)
        rows = np.flatnonzero(scores)  # only chunks with a query term (a partition of all of
        if len(rows) > n:  # them costs ~5 ms at 100k chunks, of these well under 1 ms)
            rows = rows[np.argpartition(-scores[rows], n - 1)[:n]]
        return {as_text(ids[int(i)]): float(scores[i]) for i in rows}

    def search(
        self,
        question: str,
        top_k: int = 5,
        filters: Filters | None = None,
        *,
        per_paper: bool = True,
    ) -> list[Source]:
        if self._bm25 is None or self._stale:
            self.refresh()
        expanded = self.expand(question)
        fetch = max(40, top_k * 8)
        # BM25 scoring (numpy over the mapped index) runs on another core while this thread
        # embeds the query (ONNX Runtime) and searches HNSW (Chroma): both release the GIL.
        sparse_job = self._scorer().submit(self.bm25_scores, expanded, fetch)
        qvec = self.embed_query(expanded)
        known: dict[str, Hit] = {}  # chunks whose text and metadata have been read
        if filters and filters.author:  # authors are matched on metadata, so read it for all
            full = self.store.query(qvec, fetch, filters.where())
            n_dense = len(full)
            known = {h.id: h for h in full if filters.matches(h.metadata)}
            cosine = {cid: 1.0 - h.distance for cid, h in known.items()}
        else:
            scored = self.store.nearest(qvec, fetch, filters.where() if filters else None)
            n_dense = len(scored)
            cosine = {cid: 1.0 - d for cid, d in scored}
        sparse = sparse_job.result()
        # Convex fusion of cosine and max-normalised BM25: a rare exact term ("7.988x", a model
        # name) lifts its chunk even when the dense ranking puts a topical neighbour first.
        top_bm25 = max(sparse.values(), default=0.0) or 1.0
        fused = {
            cid: self.alpha * cos + (1.0 - self.alpha) * sparse.get(cid, 0.0) / top_bm25
            for cid, cos in cosine.items()
        }
        # BM25-only chunks need their vectors for the cosine. They were not among the `fetch`
        # nearest, so their cosine is at most about the weakest dense hit's: read only those that
        # could still reach the top_k with it.
        extra = [cid for cid in sparse if cid not in cosine]
        if extra:
            ceiling = min(cosine.values()) + HNSW_SLACK if n_dense >= fetch and cosine else 1.0
            floor = _kth_score(fused, top_k, per_paper=per_paper)
            extra = [
                cid
                for cid in extra
                if self.alpha * ceiling + (1.0 - self.alpha) * sparse[cid] / top_bm25 >= floor
            ]
        if extra:  # vectors only (~1 ms for 40 at 100k chunks); metadata when a filter needs it
            include = ["embeddings", "documents", "metadatas"] if filters else ["embeddings"]
            got = self.store.get(ids=extra, include=include)
            for row, (cid, vec) in enumerate(zip(got["ids"], got["embeddings"], strict=False)):
                cos = float(np.dot(np.asarray(vec, dtype=np.float32), qvec))
                if filters:
                    meta = got["metadatas"][row] or {}
                    if not filters.matches(meta):
                        continue
                    known[cid] = Hit(cid, got["documents"][row] or "", meta, 1.0 - cos)
                cosine[cid] = cos
                fused[cid] = self.alpha * cos + (1.0 - self.alpha) * sparse[cid] / top_bm25
        ranked = sorted(fused, key=lambda c: fused[c], reverse=True)
        chosen = pick(ranked, top_k, per_paper=per_paper)
        unread = [(cid, 1.0 - cosine[cid]) for cid in chosen if cid not in known]
        known.update((h.id, h) for h in self.store.hits(unread))
        return self.to_sources([known[c] for c in chosen if c in known], top_k, per_paper=per_paper)


def _kth_score(fused: dict[str, float], k: int, *, per_paper: bool) -> float:
    """The fused score a chunk must reach to enter the top k (of distinct papers if per_paper)."""
    ranked = pick(sorted(fused, key=lambda c: fused[c], reverse=True), k, per_paper=per_paper)
    return fused[ranked[-1]] if len(ranked) == k else float("-inf")
