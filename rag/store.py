"""The Chroma vector store: embedded (PersistentClient under RAG_DATA_DIR) or a `chroma run` server.

The collection's metadata records the embedding model, its dimension and the chunking scheme; a
store built with other ones is refused with the fix, never silently mixed. Writes go in batches of
Chroma's own maximum. Every chunk carries its paper's metadata and a `paper_hash`, which is how
ingest knows, without any side file, which papers are new, changed or unchanged.

A chunk's text is kept in its metadata (`text`), not in Chroma's document field: embedded Chroma
indexes every document for full-text search, which rag never uses (BM25 is its own), and that
index was half the cost of a write (1.50 vs 0.74 ms per chunk, GIL held throughout) and 36% of
the disk. Readers still get it as `Hit.document` / `documents`, and stores written with
documents read the same way.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.chunking import only_version_differs
from rag.errors import StoreError
from rag.settings import Settings

log = logging.getLogger(__name__)

SCHEMA = "1"
GET_PAGE = 10_000  # rows per page of an unbounded `Store.get`


def _row(document: str | None, metadata: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """A chunk's text and metadata as rag reads them, from either way of storing the text."""
    meta = dict(metadata or {})
    text = str(meta.pop("text", None) or document or "")
    if "body" not in meta:  # text is "<title>\n<body>" (rag.chunking.chunk_text)
        meta["body"] = text.partition("\n")[2] or text
    return text, meta


def _with_documents(got: dict[str, Any], include: Sequence[str]) -> dict[str, Any]:
    """Fill `documents` of a Chroma result read with metadatas, and drop metadatas if unasked
    (a result read without documents is returned as it is)."""
    if "documents" not in include:
        return got
    metas = got.get("metadatas") or [None] * len(got["ids"])
    docs = got.get("documents") or [None] * len(got["ids"])
    rows = [_row(d, m) for d, m in zip(docs, metas, strict=True)]
    got["documents"] = [text for text, _ in rows]
    got["metadatas"] = [meta for _, meta in rows] if "metadatas" in include else None
    return got


def _reading(include: Sequence[str]) -> list[str]:
    """What to ask Chroma for: the text lives in the metadata."""
    wanted = [key for key in include if key != "documents"]
    if "documents" in include and "metadatas" not in wanted:
        wanted.append("metadatas")
    return [*wanted, "documents"] if "documents" in include else wanted


@dataclass(frozen=True)
class Hit:
    id: str
    document: str
    metadata: dict[str, Any]
    distance: float


def embedded_path(settings: Settings) -> Path:
    """The embedded Chroma directory under RAG_DATA_DIR."""
    return settings.data_dir / "chroma"


def embedded_store_exists(settings: Settings) -> bool:
    """Whether an embedded store has been created (False means no paper can be stored yet)."""
    return (embedded_path(settings) / "chroma.sqlite3").exists()


# ------------------------------------------------------------------------ the store generation
# A small file in RAG_DATA_DIR that every ingest (and `--rebuild`) replaces when it has written:
# a running server compares its stat with the one it saw (one `stat` per request) and, when it
# differs, reopens the collection and refreshes BM25. Without it an ingest from another process
# was invisible (Chroma's embedded client caches the HNSW index in memory) and a rebuild left the
# server holding a deleted collection (503 until restart).
GENERATION = "store.generation"


def generation_path(settings: Settings) -> Path:
    return settings.data_dir / GENERATION


def generation(settings: Settings) -> tuple[int, ...] | None:
    """The stamp as `stat` sees it (None before the first ingest): cheap enough for every request."""
    try:
        st = os.stat(generation_path(settings))
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


def bump_generation(settings: Settings) -> None:
    """Replace the stamp atomically (readers see the old file or the new one)."""
    path = generation_path(settings)
    try:
        count = int(path.read_text().split()[0]) + 1
    except (OSError, ValueError, IndexError):
        count = 1
    tmp = path.with_name(f".{GENERATION}.{os.getpid()}.tmp")
    try:
        tmp.write_text(f"{count} {time.time_ns()} {os.getpid()}\n")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        log.warning(
            "could not write %s (%s); running servers see this ingest after a restart", path, exc
        )


def _forget_system(client: Any) -> None:
    """Make the next embedded client for this path a new one: Chroma shares one client "system"
    per path in a process, and that system's HNSW index never sees other processes' writes.
    (Clients already handed out keep theirs.)"""
    try:
        from chromadb.api.shared_system_client import SharedSystemClient

        SharedSystemClient._identifier_to_system.pop(getattr(client, "_identifier", None), None)
    except (ImportError, AttributeError, TypeError):  # another chromadb: reopen what it gives
        pass


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError in an exception's chain, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _cause(exc: BaseException) -> str:
    """What kind of failure: "full", "readonly", "argument", "gone", "damaged" or "other"."""
    text = f"{type(exc).__name__}: {exc}".lower()
    os_error = _os_error(exc)
    code = os_error.errno if os_error else None
    if code == errno.ENOSPC or any(
        w in text for w in ("no space left", "disk is full", "database or disk is full", "quota")
    ):
        return "full"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS) or any(
        w in text for w in ("readonly database", "read-only file system", "permission denied")
    ):
        return "readonly"
    if "does not exist" in text and "collection" in text:
        return "gone"
    if any(
        w in text
        for w in ("malformed", "not a database", "corrupt", "no such table", "hnsw", "segment")
    ):
        return "damaged"
    if isinstance(exc, OverflowError | TypeError | ValueError):
        return "argument"
    return "other"


def _advice(exc: BaseException, where: str) -> str:
    """A store failure's message, with the fix for its cause (moving the store away is advice for
    a damaged store only: a full disk or a bad argument leaves it fine)."""
    what = f"{type(exc).__name__}: {exc}"
    cause = _cause(exc)
    if cause == "full":
        return (
            f"the disk holding {where} is full ({what}); free some space, then retry (the store "
            "is fine: an ingest cut short is completed by running it again)"
        )
    if cause == "readonly":
        return (
            f"cannot write to {where} ({what}); make it writable (permissions, a read-only "
            "mount), or set RAG_DATA_DIR to a writable directory"
        )
    if cause == "argument":
        return (
            f"the Chroma store at {where} refused the request ({what}); the store is fine: check "
            "the values given (RAG_TOP_K / --top-k is 1-50)"
        )
    if cause == "other":
        return (
            f"the Chroma store at {where} failed ({what}); retry, and only if it keeps failing "
            "(a damaged store), move it away and run `rag ingest` to rebuild"
        )
    return (
        f"the Chroma store at {where} failed ({what}); if it is corrupt, move it away and run "
        "`rag ingest` to rebuild"
    )


def _client(settings: Settings) -> Any:
    import chromadb

    chroma_settings = chromadb.Settings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_host:
        try:
            client = chromadb.HttpClient(
                host=settings.chroma_host, port=settings.chroma_port, settings=chroma_settings
            )
            client.heartbeat()
        except Exception as exc:
            raise StoreError(
                f"cannot reach the Chroma server at {settings.chroma_host}:{settings.chroma_port} "
                f"({type(exc).__name__}); start it with `chroma run --host {settings.chroma_host} "
                f"--port {settings.chroma_port} --path DIR`, or unset RAG_CHROMA_HOST to use the "
                "embedded store"
            ) from exc
        return client
    path = embedded_path(settings)
    database = path / "chroma.sqlite3"
    if (
        database.is_file()
        and database.stat().st_size == 0
        and any(p.is_dir() for p in path.iterdir())
    ):
        # SQLite would quietly start a new, empty database here and the corpus would vanish.
        raise StoreError(
            f"the Chroma store at {path} is damaged: chroma.sqlite3 is empty but index files are "
            "there; restore it from a backup, or move the directory away and run `rag ingest` to rebuild"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(data_dir_error(settings.data_dir, exc)) from exc
    try:
        return chromadb.PersistentClient(path=str(path), settings=chroma_settings)
    except Exception as exc:
        if _cause(exc) in ("full", "readonly"):
            raise StoreError(_advice(exc, str(path))) from exc
        raise StoreError(
            f"cannot open the Chroma store at {path} ({exc}); if another program holds it, close "
            "that program; if it is corrupt, move the directory away and run `rag ingest` to rebuild"
        ) from exc


def data_dir_error(where: Path, exc: OSError) -> str:
    """Why RAG_DATA_DIR (or a directory in it) cannot be used, and the fix."""
    if exc.errno in (errno.ENOTDIR, errno.EEXIST) or (where.exists() and not where.is_dir()):
        blocker = next((p for p in (where, *where.parents) if p.exists()), where)
        return (
            f"RAG_DATA_DIR={where} cannot be used: {blocker} is a file, not a directory; set "
            "RAG_DATA_DIR to a directory (it is created if missing) or move the file away"
        )
    if exc.errno == errno.ENOSPC:
        return f"the disk holding RAG_DATA_DIR={where} is full ({exc.strerror}); free some space"
    return (
        f"RAG_DATA_DIR={where} cannot be written ({exc.strerror or exc}); make it writable or "
        "set RAG_DATA_DIR to a directory you can write"
    )


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
        self.client = _client(settings)
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
            if _cause(exc) in ("full", "readonly"):
                raise StoreError(_advice(exc, self.where)) from exc
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
            _forget_system(self.client)
        client = _client(self.settings)
        try:
            collection = client.get_or_create_collection(
                self.settings.collection, metadata=self.expected, embedding_function=None
            )
        except Exception as exc:
            raise StoreError(_advice(exc, self.where)) from exc
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
            Hit(i, *_row(d, m), float(dist))
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
            cid: _row(doc, meta)
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
                meta = _row(None, raw)[1]
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
                    out[str(raw["paper_id"])] = _row(None, raw)[1]
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
                include=_reading(include),
                limit=limit,
                offset=offset,
            )
            return _with_documents(got, include)
        merged: dict[str, Any] = {"ids": [], **{key: [] for key in include}}
        for page in self.pages(where, include, offset or 0):
            for key in ("ids", *include):
                merged[key].extend(page.get(key) or [])
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
                include=_reading(include),
                limit=GET_PAGE,
                offset=start,
            )
            yield _with_documents(page, include)
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
            if retry and _cause(exc) == "gone" and getattr(fn, "__self__", None) is self.collection:
                # Rebuilt by another process since this one opened it: open the new one, once.
                self.reopen()
                return self._call(
                    getattr(self.collection, fn.__name__), *args, retry=False, **kwargs
                )
            if self.settings.chroma_host and _cause(exc) in ("other", "damaged", "gone"):
                raise StoreError(
                    f"the Chroma server at {self.settings.chroma_host}:{self.settings.chroma_port} "
                    f"failed ({type(exc).__name__}: {exc}); check that `chroma run` is up, then retry"
                ) from exc
            raise StoreError(_advice(exc, self.where)) from exc
