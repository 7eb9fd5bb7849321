"""The store generation: a stamp file every ingest replaces, so running servers see it.

    ingest / --rebuild ─► bump_generation ─► RAG_DATA_DIR/store.generation (atomic replace)
    every request ─► generation() (one `stat`) ─► changed? reopen the store, refresh BM25

A small file in RAG_DATA_DIR that every ingest (and `--rebuild`) replaces when it has written: a
running server compares its stat with the one it saw (one `stat` per request) and, when it
differs, reopens the collection and refreshes BM25. Without it an ingest from another process was
invisible (Chroma's embedded client caches the HNSW index in memory) and a rebuild left the server
holding a deleted collection (503 until restart).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from rag.settings import Settings

log = logging.getLogger("rag.store")  # the name its records had before the split

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
