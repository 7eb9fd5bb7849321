"""The Chroma collection of abstract chunks: checked on open, written in batches, read by query.

    Store(settings, embed_fingerprint, dim, chunking)
        ─► open_client (rag.store.client) ─► get_or_create_collection ─► metadata check
    writes: upsert / relabel / delete / reset, in batches of Chroma's own maximum
    reads:  nearest (ids only) / query / hits / first_chunks / get / pages / counts
    every call ─► _call: a rebuilt collection reopened once; a failure a StoreError with the fix

The collection's metadata records the embedding model, its dimension and the chunking scheme; a
store built with other ones is refused with the fix, never silently mixed. Every chunk carries its
paper's metadata and a `paper_hash`, which is how ingest knows, without any side file, which
papers are new, changed or unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from rag.chunking import only_version_differs
from rag.errors import StoreError
from rag.settings import Settings
from rag.store.client import (
    embedded_path,
    failure_advice,
    failure_cause,
    forget_system,
    open_client,
)
from rag.store.rows import Hit, chroma_include, read_row, with_documents

log = logging.getLogger("rag.store")  # the name its records had before the split

SCHEMA = "1"
GET_PAGE = 10_000  # rows per page of an unbounded `Store.get`


class Store:
    """One Chroma collection of abstract chunks."""

    def __init__(
        self, settings: Settings, *, embed_fingerprint: str, dim: int, chunking: str
    ) -> None:
        self.settings = settings
        self.where = (
            f"Chroma server {settings.chroma_host}:{settings.chroma_port}"
            if settings.chroma_host
            else str(embedded_path(settings))
        )
        self.client = open_client(settings)
        expected = {
            "hnsw:space": "cosine",
            "rag:schema": SCHEMA,
            "rag:embed": embed_fingerprint,
            "rag:dim": dim,
            "rag:chunking": chunking,
        }
        try:
            self.collection = self.client.get_or_create_collection(
                settings.collection, metadata=expected, embedding_function=None
            )
        except Exception as exc:
            if failure_cause(exc) in ("full", "readonly"):
                raise StoreError(failure_advice(exc, self.where)) from exc
            raise StoreError(
                f"cannot open collection '{settings.collection}' in {self.where} ({exc}); check "
                "RAG_COLLECTION, or move the store away and run `rag ingest` to rebuild"
            ) from exc
        self.expected = expected
        # Set when the store was chunked by an older version of the same scheme: it is still
        # served, and the next ingest re-chunks each paper (re-embedding only changed text).
        self.outdated_chunking: str | None = None
        self._check(expected)
        try:
            self.max_batch = int(self.client.get_max_batch_size())
        except Exception:
            self.max_batch = 5000

    def _check(self, expected: dict[str, Any]) -> None:
        found = self.collection.metadata or {}
        for key, label, setting in (
            ("rag:embed", "embedding model", "RAG_EMBED_MODEL / RAG_EMBED_BACKEND"),
            ("rag:dim", "embedding dimension", "RAG_EMBED_MODEL"),
            ("rag:chunking", "chunking", "RAG_CHUNK_TOKENS / RAG_CHUNK_OVERLAP"),
            ("rag:schema", "store schema", "nothing"),
        ):
            if key in found and str(found[key]) != str(expected[key]):
                if key == "rag:chunking" and only_version_differs(
                    str(found[key]), str(expected[key])
                ):
                    self.outdated_chunking = str(found[key])
                    continue
                raise StoreError(
                    f"the collection '{self.settings.collection}' in {self.where} was built with "
                    f"{label} {found[key]!r} but the settings ask for {expected[key]!r}; run "
                    f"`rag ingest --rebuild` to rebuild it, or set {setting} back"
                )

    def reopen(self) -> None:
        """Open the collection afresh, as a new process would: another process has ingested
        (the embedded client would not see its vectors) or rebuilt it (the old one is gone)."""
        if not self.settings.chroma_host:
            forget_system(self.client)
        client = open_client(self.settings)
        try:
            collection = client.get_or_create_collection(
                self.settings.collection, metadata=self.expected, embedding_function=None
            )
        except Exception as exc:
            raise StoreError(failure_advice(exc, self.where)) from exc
        self.client, self.collection = client, collection
        self.outdated_chunking = None
        self._check(self.expected)
        log.info("store %s: reopened after a change by another process", self.where)

    # ----------------------------------------------------------------------------------- writes
    def upsert(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        documents: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
    ) -> None:
        self._write(self.collection.upsert, ids, documents, metadatas, vectors)

    def relabel(
        self, ids: Sequence[str], documents: Sequence[str], metadatas: Sequence[dict[str, Any]]
    ) -> None:
        """New metadata for stored chunks whose text (and so vector) is unchanged."""
        self._write(self.collection.update, ids, documents, metadatas)

    def _write(
        self,
        method: Any,
        ids: Sequence[str],
        documents: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
        vectors: np.ndarray | None = None,
    ) -> None:
        """In batches of Chroma's maximum, each chunk's text in its metadata."""
        for start in range(0, len(ids), self.max_batch):
            end = start + self.max_batch
            extra = {} if vectors is None else {"embeddings": vectors[start:end]}
            self._call(
                method,
                ids=list(ids[start:end]),
                metadatas=[
                    {**meta, "text": text}
                    for meta, text in zip(metadatas[start:end], documents[start:end], strict=True)
                ],
                **extra,
            )

    def adopt_chunking(self) -> None:
        """Record the current chunking scheme on a store chunked by an older version of it (the
        ingest that calls this re-chunks every paper it reads)."""
        if self.outdated_chunking is None:
            return
        meta = {k: v for k, v in (self.collection.metadata or {}).items() if k != "hnsw:space"}
        meta["rag:chunking"] = self.expected["rag:chunking"]
        # hnsw:space lives on in the collection's configuration; Chroma refuses it in modify.
        self._call(self.collection.modify, metadata=meta)
        log.info(
            "store %s: re-chunking from %s to %s",
            self.where,
            self.outdated_chunking,
            meta["rag:chunking"],
        )
        self.outdated_chunking = None

    def delete(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        for start in range(0, len(ids), self.max_batch):
            self._call(self.collection.delete, ids=ids[start : start + self.max_batch])

    def reset(self) -> None:
        """Drop and recreate the collection (for `rag ingest --rebuild`)."""
        self._call(self.client.delete_collection, self.settings.collection)
        self.outdated_chunking = None
        self.collection = self._call(
            self.client.get_or_create_collection,
            self.settings.collection,
            metadata=self.expected,
            embedding_function=None,
        )

    # ------------------------------------------------------------------------------------ reads
    def paper_state(self, paper_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """For each stored paper id: {chunk id: "paper_hash/n_chunks"} of its chunks."""
        state: dict[str, dict[str, str]] = {}
        step = 500
        for start in range(0, len(paper_ids), step):
            batch = list(paper_ids[start : start + step])
            got = self._call(
                self.collection.get, where={"paper_id": {"$in": batch}}, include=["metadatas"]
            )
            for cid, meta in zip(got["ids"], got["metadatas"] or [], strict=False):
                state.setdefault(str(meta["paper_id"]), {})[cid] = (
                    f"{meta.get('paper_hash', '')}/{meta.get('n_chunks', 0)}"
                )
        return state

    def nearest(
        self, vector: np.ndarray, n: int, where: dict[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        """(chunk id, cosine distance) of the `n` nearest chunks, ids only: the HNSW search
        without the SQLite read of documents and metadata (~2 ms vs ~8 ms for 40 at 100k)."""
        res = self._call(
            self.collection.query,
            query_embeddings=[np.asarray(vector, dtype=np.float32)],
            n_results=n,
            where=where or None,
            include=["distances"],
        )
        return list(zip(res["ids"][0], map(float, res["distances"][0]), strict=False))

    def query(self, vector: np.ndarray, n: int, where: dict[str, Any] | None = None) -> list[Hit]:
        """The `n` nearest chunks with their documents and metadata."""
        res = self._call(
            self.collection.query,
            query_embeddings=[np.asarray(vector, dtype=np.float32)],
            n_results=n,
            where=where or None,
            include=["documents", "metadatas", "distances"],
        )
        return [
            Hit(i, *read_row(d, m), float(dist))
            for i, d, m, dist in zip(
                res["ids"][0],
                res["documents"][0],
                res["metadatas"][0],
                res["distances"][0],
                strict=False,
            )
        ]

    def hits(self, scored: Sequence[tuple[str, float]]) -> list[Hit]:
        """`Hit`s for (chunk id, distance) pairs, in their order; ids no longer stored are dropped."""
        if not scored:
            return []
        got = self._call(
            self.collection.get, ids=[cid for cid, _ in scored], include=["documents", "metadatas"]
        )
        rows = {
            cid: read_row(doc, meta)
            for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=False)
        }
        return [Hit(cid, *rows[cid], d) for cid, d in scored if cid in rows]

    def first_chunks(self, hits: Sequence[Hit]) -> dict[str, dict[str, Any]]:
        """Metadata of the hits' papers' first chunks (they carry the whole abstract), by paper id.

        A hit that is a first chunk is its own; the others name theirs (`first`), read by primary
        key. Stores ingested before chunks named their first one fall back to a `paper_id $in`
        scan (~15 ms at 100k chunks).
        """
        out: dict[str, dict[str, Any]] = {}
        by_id: list[str] = []
        scan: list[str] = []
        for hit in hits:
            pid = str(hit.metadata.get("paper_id", hit.id))
            if hit.metadata.get("position") == 0:
                out[pid] = hit.metadata
            elif hit.metadata.get("first"):
                by_id.append(str(hit.metadata["first"]))
            else:
                scan.append(pid)
        if by_id:
            got = self._call(self.collection.get, ids=by_id, include=["metadatas"])
            for raw in got["metadatas"] or []:
                meta = read_row(None, raw)[1]
                out[str(meta["paper_id"])] = meta
        scan = [pid for pid in scan if pid not in out]
        if scan:
            got = self._call(
                self.collection.get,
                # `paper_id $in` alone, position filtered here: Chroma's `$and` of the two scans
                # the whole metadata table (126 ms vs ~25 ms per query at 100k chunks).
                where={"paper_id": {"$in": scan}},
                include=["metadatas"],
            )
            for raw in got["metadatas"] or []:
                if raw.get("position") == 0:
                    out[str(raw["paper_id"])] = read_row(None, raw)[1]
        return out

    def get(
        self,
        ids: Sequence[str] | None = None,
        where: dict[str, Any] | None = None,
        include: Sequence[str] = ("documents", "metadatas"),
        limit: int | None = None,
        offset: int | None = None,
    ) -> dict[str, Any]:
        if ids or limit is not None:
            got = self._call(
                self.collection.get,
                ids=list(ids) if ids else None,
                where=where,
                include=chroma_include(include),
                limit=limit,
                offset=offset,
            )
            return with_documents(got, include)
        merged: dict[str, Any] = {"ids": [], **{key: [] for key in include}}
        for page in self.pages(where, include, offset or 0):
            for key in ("ids", *include):
                value = page.get(key)  # embeddings come back as a numpy array: no `or []`
                merged[key].extend(value if value is not None else [])
        return merged

    def pages(
        self, where: dict[str, Any] | None = None, include: Sequence[str] = (), start: int = 0
    ) -> Iterator[dict[str, Any]]:
        """An unbounded read, page by page: one Chroma `get` of more than ~32k rows fails ("too
        many SQL variables") in its SQLite metadata segment, and a caller that streams keeps
        one page in memory, not the whole collection."""
        while True:
            page = self._call(
                self.collection.get,
                where=where,
                include=chroma_include(include),
                limit=GET_PAGE,
                offset=start,
            )
            yield with_documents(page, include)
            if len(page["ids"]) < GET_PAGE:
                return
            start += GET_PAGE

    def count(self) -> int:
        return int(self._call(self.collection.count))

    def paper_count(self) -> int:
        return len(self.get(where={"position": 0}, include=[])["ids"])

    def _call(self, fn: Any, *args: Any, retry: bool = True, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StoreError:
            raise
        except Exception as exc:
            if (
                retry
                and failure_cause(exc) == "gone"
                and getattr(fn, "__self__", None) is self.collection
            ):
                # Rebuilt by another process since this one opened it: open the new one, once.
                self.reopen()
                return self._call(
                    getattr(self.collection, fn.__name__), *args, retry=False, **kwargs
                )
            if self.settings.chroma_host and failure_cause(exc) in ("other", "damaged", "gone"):
                raise StoreError(
                    f"the Chroma server at {self.settings.chroma_host}:{self.settings.chroma_port} "
                    f"failed ({type(exc).__name__}: {exc}); check that `chroma run` is up, then retry"
                ) from exc
            raise StoreError(failure_advice(exc, self.where)) from exc
