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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.chunking import Chunker
from rag.corpus import iter_corpus
from rag.embeddings import encode
from rag.errors import CorpusError, StoreError
from rag.store import Store
from rag.types import Chunk, IngestFailure, IngestReport, Paper

log = logging.getLogger(__name__)

Progress = Callable[[int, int | None], None]
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
    )
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def chunk_metadata(paper: Paper, chunk: Chunk, phash: str, chunks: list[Chunk]) -> dict[str, Any]:
    """A chunk's Chroma metadata. `first` is the id of its paper's first chunk (which alone carries
    the whole abstract), so retrieval fetches it by primary key instead of a metadata scan."""
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
        "body": chunk.body,
    }
    if chunk.position == 0:
        meta["abstract"] = paper.abstract
    return meta


@contextlib.contextmanager
def ingest_lock(data_dir: Path) -> Iterator[None]:
    """One ingest per store at a time, across processes."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "ingest.lock"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise StoreError(
                f"another `rag ingest` is writing to {data_dir}; wait for it to finish, then retry"
            ) from exc
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class _Plan:
    papers: int
    ids: list[str]
    texts: list[str]
    metas: list[dict[str, Any]]
    stale: list[str]


class Ingestor:
    def __init__(
        self, store: Store, embedder: Any, chunker: Chunker, chunking: str, max_chars: int
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.chunker = chunker
        self.chunking = chunking
        self.max_chars = max_chars

    def run(self, paths: Iterable[Path], progress: Progress | None = None) -> IngestReport:
        started = time.perf_counter()
        report = IngestReport()
        # Reading, hashing and chunking (Python) run in a thread one batch ahead of encoding and
        # writing (native code that releases the GIL), so ingest takes about as long as the
        # encoder alone. Batches start small so the encoder starts early.
        plans: queue.Queue[_Plan | BaseException | None] = queue.Queue(maxsize=2)
        stop = threading.Event()

        def put(item: _Plan | BaseException | None) -> None:
            while not stop.is_set():
                with contextlib.suppress(queue.Full):
                    plans.put(item, timeout=0.1)
                    return

        def produce() -> None:
            try:
                batch: list[Paper] = []
                size = min(16, PAPER_BATCH)
                for item in iter_corpus(paths, max_chars=self.max_chars):
                    if stop.is_set():
                        return
                    if item is None:
                        report.duplicates += 1
                    elif isinstance(item, CorpusError):
                        report.failed.append(
                            IngestFailure(file=item.file or "?", line=item.line, reason=item.reason)
                        )
                    else:
                        batch.append(item)
                        if len(batch) >= size:
                            put(self._plan(batch, report))
                            batch, size = [], min(PAPER_BATCH, size * 2)
                if batch:
                    put(self._plan(batch, report))
            except BaseException as exc:
                put(exc)
            else:
                put(None)

        worker = threading.Thread(target=produce, name="rag-ingest-chunking", daemon=True)
        worker.start()
        done = 0
        try:
            while (plan := plans.get()) is not None:
                if isinstance(plan, BaseException):
                    raise plan
                self._commit(plan, report)
                done += plan.papers
                if progress:
                    progress(done, None)
        finally:
            stop.set()
            worker.join()
        if progress:
            progress(done, done)
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

    def _plan(self, papers: list[Paper], report: IngestReport) -> _Plan:
        """What to write for a batch of papers: which are new, changed or unchanged, and chunks."""
        state = self.store.paper_state([p.id for p in papers])
        ids: list[str] = []
        texts: list[str] = []
        metas: list[dict[str, Any]] = []
        stale: list[str] = []
        for paper in papers:
            phash = paper_hash(paper, self.chunking)
            stored = state.get(paper.id, {})
            if stored and set(stored.values()) == {f"{phash}/{len(stored)}"}:
                report.skipped += 1  # every chunk of this exact version is there
                continue
            chunks = self.chunker.chunk(paper)
            wanted = {c.id for c in chunks}
            for chunk in chunks:
                if stored.get(chunk.id) == f"{phash}/{len(chunks)}":
                    continue  # written by an earlier, interrupted run
                ids.append(chunk.id)
                texts.append(chunk.text)
                metas.append(chunk_metadata(paper, chunk, phash, chunks))
            stale.extend(cid for cid in stored if cid not in wanted)
            if stored:
                report.updated += 1
            else:
                report.added += 1
        return _Plan(len(papers), ids, texts, metas, stale)

    def _commit(self, plan: _Plan, report: IngestReport) -> None:
        """Embed and write one batch: new chunks first, stale ones deleted after (crash-safe)."""
        if plan.ids:
            vectors = encode(self.embedder, plan.texts)
            self.store.upsert(plan.ids, vectors, plan.texts, plan.metas)
            report.chunks_written += len(plan.ids)
        if plan.stale:
            self.store.delete(plan.stale)
