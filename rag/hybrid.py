"""Hybrid retrieval: BM25 over chunk text fused with dense search (weighted score fusion).

Dense MiniLM misses exact terms (model and dataset names, numbers); BM25 catches them. The BM25
index (bm25s) lives beside the store in RAG_DATA_DIR/bm25/<collection>/ with each chunk's tokens
cached, so after an ingest only new chunks are tokenised and the index is re-assembled from the
cache; it is never rebuilt per question. Queries get acronym expansion learnt from the corpus
("ViT" <-> "vision transformer", from "Vision Transformer (ViT)" in abstracts) and cheap typo
tolerance (unknown query words mapped to the closest vocabulary word).
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from rag.retrieve import Filters, Retriever
from rag.settings import Settings
from rag.store import Hit, Store
from rag.text import terms
from rag.types import Source

log = logging.getLogger(__name__)

_ACRONYM = re.compile(r"((?:[\w\-]+\s+){1,7}?[\w\-]+)\s*\(([A-Z][A-Za-z0-9\-+]{1,12})\)")


def tokenize(text: str) -> list[str]:
    tokens = terms(text)
    parts = [p for t in tokens if "-" in t for p in t.split("-") if len(p) > 1]
    return tokens + parts


def find_acronyms(text: str) -> dict[str, str]:
    """'Vision Transformer (ViT)' -> {'vit': 'Vision Transformer'} when the letters agree."""
    found: dict[str, str] = {}
    for long_form, short in _ACRONYM.findall(text):
        words = long_form.split()
        letters = re.sub(r"[^A-Za-z]", "", short).lower()
        caps = re.sub(r"[^A-Z]", "", short).lower()
        for n in {len(letters), len(caps)}:
            if 2 <= n <= len(words):
                tail = words[-n:]
                if "".join(w[0] for w in tail).lower() in (letters, caps):
                    found[short.lower()] = " ".join(tail)
                    break
    return found


class HybridRetriever(Retriever):
    def __init__(self, store: Store, embedder: Any, settings: Settings) -> None:
        super().__init__(store, embedder)
        self.dir = settings.data_dir / "bm25" / settings.collection
        self.alpha = settings.hybrid_alpha
        self._lock = threading.Lock()
        self._bm25: Any = None
        self._ids: list[str] = []
        self._vocab: set[str] = set()
        self._acronyms: dict[str, str] = {}
        self._state: tuple[int, str] | None = None

    # ----------------------------------------------------------------------------- the index
    def _store_state(self) -> tuple[int, str]:
        got = self.store.get(include=[])
        ids = sorted(got["ids"])
        import hashlib

        return len(ids), hashlib.sha1("\n".join(ids).encode()).hexdigest()

    def refresh(self) -> None:
        """Bring the BM25 index in line with the store (after an ingest); cheap when unchanged."""
        with self._lock:
            state = self._store_state()
            if self._bm25 is not None and state == self._state:
                return
            if self._bm25 is None and self._load(state):
                return
            self._rebuild(state)

    def _load(self, state: tuple[int, str]) -> bool:
        manifest = self.dir / "manifest.json"
        if not manifest.exists():
            return False
        try:
            meta = json.loads(manifest.read_text())
            if tuple(meta["state"]) != state:
                return False
            import bm25s

            self._bm25 = bm25s.BM25.load(str(self.dir / "index"))
            self._ids = meta["ids"]
            self._vocab = set(meta["vocab"])
            self._acronyms = meta["acronyms"]
            self._state = state
            return True
        except Exception as exc:
            log.warning("BM25 index at %s unreadable (%s); rebuilding", self.dir, exc)
            return False

    def _rebuild(self, state: tuple[int, str]) -> None:
        import bm25s

        cache_path = self.dir / "tokens.jsonl"
        cache: dict[str, list[str]] = {}
        if cache_path.exists():
            for line in cache_path.read_text().splitlines():
                try:
                    row = json.loads(line)
                    cache[row["id"]] = row["t"]
                except (json.JSONDecodeError, KeyError):
                    continue
        got = self.store.get(include=[])
        ids = sorted(got["ids"])
        missing = [i for i in ids if i not in cache]
        acronyms: dict[str, str] = {}
        for start in range(0, len(missing), 2000):
            batch = missing[start : start + 2000]
            docs = self.store.get(ids=batch, include=["documents"])
            for cid, doc in zip(docs["ids"], docs["documents"], strict=False):
                cache[cid] = tokenize(doc or "")
        tokens = [cache[i] for i in ids]
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(".tmp")
        with tmp.open("w") as handle:
            for cid in ids:
                handle.write(json.dumps({"id": cid, "t": cache[cid]}) + "\n")
        tmp.replace(cache_path)
        bm25 = bm25s.BM25()
        if ids:
            bm25.index(tokens, show_progress=False)
        # Acronyms are learnt from the stored text (first chunks carry whole abstracts).
        firsts = self.store.get(where={"position": 0}, include=["metadatas"])
        for meta in firsts["metadatas"] or []:
            acronyms.update(find_acronyms(str(meta.get("abstract", ""))))
            acronyms.update(find_acronyms(str(meta.get("title", ""))))
        self._bm25, self._ids, self._state = bm25, ids, state
        self._vocab = {t for doc in tokens for t in doc}
        self._acronyms = acronyms
        if ids:
            bm25.save(str(self.dir / "index"))
        (self.dir / "manifest.json").write_text(
            json.dumps(
                {
                    "state": list(state),
                    "ids": ids,
                    "vocab": sorted(self._vocab),
                    "acronyms": acronyms,
                }
            )
        )
        log.info("BM25 index: %d chunks (%d newly tokenised)", len(ids), len(missing))

    # ------------------------------------------------------------------------------ queries
    def expand(self, question: str) -> str:
        """Add the other form of acronyms / spelled-out names found in the question."""
        extra = []
        lower = question.lower()
        for short, long_form in self._acronyms.items():
            if re.search(rf"\b{re.escape(short)}\b", lower) and long_form.lower() not in lower:
                extra.append(long_form)
            elif long_form.lower() in lower and not re.search(rf"\b{re.escape(short)}\b", lower):
                extra.append(short)
        return question if not extra else f"{question} ({'; '.join(extra[:4])})"

    def _query_tokens(self, question: str) -> list[str]:
        tokens = []
        for token in tokenize(question):
            if token in self._vocab or len(token) < 5 or token.isdigit():
                tokens.append(token)
                continue
            close = difflib.get_close_matches(token, self._vocab, n=1, cutoff=0.85)
            tokens.append(close[0] if close else token)
        return tokens

    def bm25_scores(self, question: str, n: int) -> dict[str, float]:
        """Chunk id -> BM25 score of the top `n` chunks with any query term."""
        if self._bm25 is None or not self._ids:
            return {}
        tokens = [t for t in self._query_tokens(question) if t in self._vocab]
        if not tokens:
            return {}
        docs, scores = self._bm25.retrieve([tokens], k=min(n, len(self._ids)), show_progress=False)
        return {
            self._ids[int(i)]: float(s) for i, s in zip(docs[0], scores[0], strict=False) if s > 0
        }

    def search(
        self,
        question: str,
        top_k: int = 5,
        filters: Filters | None = None,
        *,
        per_paper: bool = True,
    ) -> list[Source]:
        if self._bm25 is None:
            self.refresh()
        expanded = self.expand(question)
        fetch = max(40, top_k * 8)
        qvec = self.embed_query(expanded)
        where = filters.where() if filters else None
        dense = self.store.query(qvec, fetch, where)
        if filters and filters.author:
            dense = [
                h
                for h in dense
                if filters.author.lower() in str(h.metadata.get("authors", "")).lower()
            ]
        sparse = self.bm25_scores(expanded, fetch)
        by_id = {h.id: h for h in dense}
        extra = [cid for cid in sparse if cid not in by_id]
        if extra:
            got = self.store.get(ids=extra, include=["documents", "metadatas", "embeddings"])
            for cid, doc, meta, vec in zip(
                got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=False
            ):
                if filters and not _matches(meta, filters):
                    continue
                cos = float(np.dot(np.asarray(vec, dtype=np.float32), qvec))
                by_id[cid] = Hit(cid, doc or "", meta or {}, 1.0 - cos)
        # Convex fusion of cosine and max-normalised BM25: a rare exact term ("7.988x", a model
        # name) lifts its chunk even when the dense ranking puts a topical neighbour first.
        top_bm25 = max(sparse.values(), default=0.0) or 1.0
        fused = {
            cid: self.alpha * (1.0 - hit.distance)
            + (1.0 - self.alpha) * sparse.get(cid, 0.0) / top_bm25
            for cid, hit in by_id.items()
        }
        ranked = sorted(fused, key=lambda c: fused[c], reverse=True)
        return self.to_sources([by_id[c] for c in ranked], top_k, per_paper=per_paper)


def _matches(meta: dict[str, Any], filters: Filters) -> bool:
    year = int(meta.get("year") or 0)
    if filters.year_from is not None and year < filters.year_from:
        return False
    if filters.year_to is not None and (year == 0 or year > filters.year_to):
        return False
    return not (
        filters.author and filters.author.lower() not in str(meta.get("authors", "")).lower()
    )


def index_dir(settings: Settings) -> Path:
    return settings.data_dir / "bm25" / settings.collection
