"""Ingest: papers -> chunks -> vectors -> Chroma, idempotent, incremental and crash-safe.

Papers stream through in batches. For each batch the store is asked which papers it already holds
(every chunk carries its paper's content hash): unchanged papers are skipped without embedding,
new ones added, changed ones get their new chunks upserted *before* their stale chunks are deleted.
Chunk ids are deterministic, so a run killed at any moment is repaired by simply running it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.arxiv import category_keys
from rag.chunking import Chunker
from rag.corpus import iter_corpus, iter_files
from rag.embeddings import encode
from rag.errors import CorpusError, StoreError
from rag.store import Store, data_dir_error
from rag.types import Chunk, IngestFailure, IngestReport, Paper, PaperReplacement

log = logging.getLogger(__name__)

# (papers done, papers in all: estimated from the bytes read so far, exact at the end)
Progress = Callable[[int, int | None], None]
# Batches of chunk texts in, one (n, dim) array of vectors per batch out, in the same order.
EncodeStage = Callable[[Iterator[list[str]]], Iterator[Any]]
PAPER_BATCH = 256


def paper_hash(paper: Paper, chunking: str) -> str:
    key = "\x1f".join(
        [
            paper.title,
            paper.abstract,
            paper.published.isoformat() if paper.published else "",
            ";".join(paper.authors),
            str(paper.n_authors or ""),
            chunking,
        ]
        # arXiv fields only when present, so stores of records without them keep their hashes.
        + ([" ".join(paper.categories)] if paper.categories else [])
        + ([f"doi={paper.doi}"] if paper.doi else [])
        + ([f"updated={paper.updated.isoformat()}"] if paper.updated else [])
    )
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def chunk_metadata(paper: Paper, chunk: Chunk, phash: str, chunks: list[Chunk]) -> dict[str, Any]:
    """A chunk's Chroma metadata (the store adds its text). `first` is the id of its paper's first
    chunk (which alone carries the whole abstract), so retrieval fetches it by primary key instead
    of a metadata scan."""
    meta: dict[str, Any] = {
        "paper_id": paper.id,
        "position": chunk.position,
        "title": paper.title,
        "published": paper.published.isoformat() if paper.published else "",
        "year": paper.published.year if paper.published else 0,
        "authors": "; ".join(paper.authors)[:2000],
        "n_authors": paper.n_authors or len(paper.authors),
        "source": Path(paper.source).name,
        "line": paper.line,
        "paper_hash": phash,
        "n_chunks": len(chunks),
        "first": chunks[0].id,
    }
    if paper.categories:  # a list cannot be Chroma metadata: the text, plus a key per category
        meta["categories"] = " ".join(paper.categories)[:2000]
        meta.update(category_keys(paper.categories))
    if paper.doi:
        meta["doi"] = paper.doi
    if paper.updated:
        meta["updated"] = paper.updated.isoformat()
    if chunk.position == 0:
        meta["abstract"] = paper.abstract
    return meta


def _estimate(papers: int, read: int, size: int) -> int | None:
    """Papers in the whole input, extrapolated from those read so far and the bytes they took
    (what a progress bar's ETA needs, without a counting pass over the files)."""
    if not papers or not read or not size:
        return None
    return max(papers, round(papers * size / min(read, size)))


def _failure(error: CorpusError) -> IngestFailure:
    return IngestFailure(file=error.file or "?", line=error.line, reason=error.reason)


@contextlib.contextmanager
def ingest_lock(data_dir: Path) -> Iterator[None]:
    """One ingest per store at a time, across processes. A data dir that cannot hold the lock
    (a file, not creatable, read-only) is a `StoreError` saying so, not a traceback."""
    path = data_dir / "ingest.lock"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - closed by the `with` below
    except OSError as exc:
        raise StoreError(data_dir_error(data_dir, exc)) from exc
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise StoreError(
                f"another `rag ingest` is writing to {data_dir}; wait for it to finish, then retry"
            ) from exc
        # The pid is a note for people; a full disk is not fatal here.
        with contextlib.suppress(OSError):
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class _Rows:
    """Chunks to write, their ids, texts and metadata in step."""

    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    metas: list[dict[str, Any]] = field(default_factory=list)

    def add(self, chunk: Chunk, meta: dict[str, Any]) -> None:
        self.ids.append(chunk.id)
        self.texts.append(chunk.text)
        self.metas.append(meta)


@dataclass
class _Plan:
    papers: int
    new: _Rows = field(default_factory=_Rows)  # to embed and write
    # Stored chunks whose text is unchanged (same id) but whose metadata is not: new paper hash
    # after a chunking upgrade, or corrected authors/date. Their vectors stand.
    relabel: _Rows = field(default_factory=_Rows)
    stale: list[str] = field(default_factory=list)


_DONE = object()


class _Stage:
    """A bounded hand-off between two threads that gives up when the run is stopping."""

    def __init__(self, stop: threading.Event) -> None:
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=2)
        self.stop = stop

    def put(self, item: Any) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(queue.Full):
                self.queue.put(item, timeout=0.1)
                return

    def get(self) -> Any:
        while not self.stop.is_set():
            with contextlib.suppress(queue.Empty):
                return self.queue.get(timeout=0.1)
        return _DONE


class Ingestor:
    def __init__(
        self,
        store: Store | Callable[[], Store],
        embedder: Any,
        chunker: Chunker,
        chunking: str,
        max_chars: int,
        *,
        on_chunks: Callable[[list[str], list[str]], None] | None = None,
        fresh: bool = False,
        max_id_chars: int = 256,
        encode_stage: EncodeStage | None = None,
    ) -> None:
        # A store still to be opened (`fresh`): opening it (~0.7 s, mostly importing chromadb)
        # then happens in the writing thread while the first batches are encoded.
        self._store = store
        self._store_lock = threading.Lock()
        # True when the store does not exist yet, so no paper can be in it: nothing to look up.
        self.fresh = fresh
        self.embedder = embedder
        self.chunker = chunker
        self.chunking = chunking
        self.max_chars = max_chars
        self.max_id_chars = max_id_chars
        # Told (ids, texts) of each batch's new chunks in the writing thread once they are
        # written: the BM25 index tokenises them there, while the encoder works on later batches.
        self.on_chunks = on_chunks
        # Each batch's new chunk texts in, their vectors out, in order: this process's encoder,
        # or another place to encode them (rag.ray_ingest: a Ray cluster).
        self.encode_stage = encode_stage or self._encode_here

    @property
    def store(self) -> Store:
        with self._store_lock:
            if not isinstance(self._store, Store):
                self._store = self._store()
            return self._store

    def run(self, paths: Iterable[Path], progress: Progress | None = None) -> IngestReport:
        """Three stages, one thread each, a batch apart: reading, hashing and chunking (Python);
        encoding (ONNX Runtime, every core, GIL released); writing to Chroma (Rust). The encoder
        is the slowest, so the others hide behind it and ingest takes about as long as encoding
        alone. Batches start small so the encoder starts early."""
        started = time.perf_counter()
        report = IngestReport()
        paths = list(paths)
        size = sum(p.stat().st_size for p in iter_files(paths) if isinstance(p, Path))
        read = [0, 0]  # bytes the reader has consumed, papers it has read in them
        stop = threading.Event()
        plans, writes = _Stage(stop), _Stage(stop)
        failures: list[BaseException] = []
        written = 0  # papers whose chunks are in the store

        handed = threading.Event()  # the first batch is with the encoder (or there is none)

        def hand_on(batch: list[Paper]) -> None:
            plans.put(self._plan(batch, report))
            handed.set()

        def produce() -> None:
            try:
                batch: list[Paper] = []
                batch_size = min(4, PAPER_BATCH)
                for item in iter_corpus(
                    paths,
                    max_chars=self.max_chars,
                    max_id_chars=self.max_id_chars,
                    on_read=lambda n: read.__setitem__(0, read[0] + n),
                ):
                    if stop.is_set():
                        return
                    if item is None:
                        report.duplicates += 1
                    elif isinstance(item, CorpusError):
                        report.failed.append(_failure(item))
                    else:
                        read[1] += 1
                        batch.append(item)
                        if len(batch) >= batch_size:
                            hand_on(batch)
                            batch, batch_size = [], min(PAPER_BATCH, batch_size * 2)
                if batch:
                    hand_on(batch)
                plans.put(_DONE)
            except BaseException as exc:
                failures.append(exc)
                stop.set()
            finally:
                handed.set()

        def write() -> None:
            nonlocal written
            try:
                # Opening a new store (mostly importing chromadb: ~0.5 s of Python, holding the
                # GIL) waits until the first batch is chunked, so it does not delay the encoder's
                # start.
                handed.wait()
                self.store.adopt_chunking()
                while (item := writes.get()) is not _DONE:
                    plan = item[0]
                    self._write(*item, report)
                    written += plan.papers
                    if self.on_chunks and plan.new.ids:
                        self.on_chunks(plan.new.ids, plan.new.texts)
            except BaseException as exc:
                failures.append(exc)
                stop.set()

        threads = [
            threading.Thread(target=produce, name="rag-ingest-chunking", daemon=True),
            threading.Thread(target=write, name="rag-ingest-writing", daemon=True),
        ]
        for thread in threads:
            thread.start()
        pending: deque[_Plan] = deque()  # planned batches, in the order their texts went out

        def texts() -> Iterator[list[str]]:
            while (plan := plans.get()) is not _DONE:
                pending.append(plan)
                yield plan.new.texts

        try:
            for vectors in self.encode_stage(texts()):
                plan = pending.popleft()
                writes.put((plan, vectors if plan.new.ids else None))
                if progress:
                    progress(written, _estimate(read[1], read[0], size))
            writes.put(_DONE)
            threads[1].join()  # every batch written (or the writer failed)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        if failures:
            raise failures[0]
        if progress:
            progress(written, written)
        report.seconds = time.perf_counter() - started
        log.info(
            "ingest: %d added, %d updated, %d skipped, %d duplicates, %d failed in %.1fs",
            report.added,
            report.updated,
            report.skipped,
            report.duplicates,
            len(report.failed),
            report.seconds,
        )
        return report

    def _encode_here(self, batches: Iterable[list[str]]) -> Iterator[Any]:
        for texts in batches:
            yield encode(self.embedder, texts) if texts else None

    def _plan(self, papers: list[Paper], report: IngestReport) -> _Plan:
        """What to write for a batch of papers: which are new, changed or unchanged, and chunks."""
        state = {} if self.fresh else self.store.paper_state([p.id for p in papers])
        plan = _Plan(len(papers))
        changed: list[tuple[Paper, dict[str, str]]] = []
        for paper in papers:
            phash = paper_hash(paper, self.chunking)
            stored = state.get(paper.id, {})
            if stored and set(stored.values()) == {f"{phash}/{len(stored)}"}:
                report.skipped += 1  # every chunk of this exact version is there
                continue
            try:
                chunks = self.chunker.chunk(paper)
            except CorpusError as exc:  # this record cannot be chunked: it alone fails
                report.failed.append(_failure(exc))
                continue
            except Exception as exc:  # a bug, but one record's, not the whole ingest's
                log.exception("chunking %s:%s failed", paper.source, paper.line)
                report.failed.append(
                    IngestFailure(
                        file=paper.source or "?",
                        line=paper.line or None,
                        reason=f"cannot be chunked ({type(exc).__name__}); check the record's "
                        "text, and report this as a bug",
                    )
                )
                continue
            wanted = {c.id for c in chunks}
            for chunk in chunks:
                have = stored.get(chunk.id)
                if have == f"{phash}/{len(chunks)}":
                    continue  # written by an earlier, interrupted run
                # A stored id means the same paper, position and text, so the same vector.
                rows = plan.new if have is None else plan.relabel
                rows.add(chunk, chunk_metadata(paper, chunk, phash, chunks))
            plan.stale.extend(cid for cid in stored if cid not in wanted)
            if stored:
                report.updated += 1
                changed.append((paper, stored))
            else:
                report.added += 1
        if changed:
            report.replaced.extend(self._replacements(changed))
        return plan

    def _replacements(self, changed: list[tuple[Paper, dict[str, str]]]) -> list[PaperReplacement]:
        """The updated papers whose title or abstract differs from the stored version (a
        changed date or author list, or a new chunking, is an update but not a replacement)."""
        firsts = {}
        for paper, stored in changed:
            first = next((c for c in stored if c.rpartition("#")[2].startswith("0:")), None)
            if first is not None:
                firsts[first] = paper
        got = self.store.get(ids=list(firsts), include=["metadatas"]) if firsts else {"ids": []}
        out = []
        for cid, meta in zip(got["ids"], got.get("metadatas") or [], strict=False):
            paper, meta = firsts[cid], meta or {}
            old_title, old_abstract = str(meta.get("title", "")), meta.get("abstract")
            if old_title != paper.title or (
                old_abstract is not None and old_abstract != paper.abstract
            ):
                out.append(
                    PaperReplacement(
                        paper_id=paper.id,
                        old_title=old_title,
                        new_title=paper.title,
                        file=paper.source,
                        line=paper.line or None,
                    )
                )
        return out

    def _write(self, plan: _Plan, vectors: Any, report: IngestReport) -> None:
        """Write one batch: new and relabelled chunks first, stale ones deleted after (a run
        killed in between leaves both versions, and the next run finishes the job)."""
        if plan.new.ids:
            self.store.upsert(plan.new.ids, vectors, plan.new.texts, plan.new.metas)
            report.chunks_written += len(plan.new.ids)
        if plan.relabel.ids:
            self.store.relabel(plan.relabel.ids, plan.relabel.texts, plan.relabel.metas)
            report.chunks_relabelled += len(plan.relabel.ids)
        if plan.stale:
            self.store.delete(plan.stale)
