"""How a chunk is kept in Chroma, and read back either way it was written.

    write: text ─► metadata["text"] (Chroma's document field stays empty)
    read:  metadata["text"] or the document (stores written before) ─► (text, metadata + body)

A chunk's text is kept in its metadata, not in Chroma's document field: embedded Chroma indexes
every document for full-text search, which rag never uses (BM25 is its own), and that index was
half the cost of a write (1.50 vs 0.74 ms per chunk, GIL held throughout) and 36% of the disk.
Readers still get it as `Hit.document` / `documents`, and stores written with documents read the
same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Hit:
    id: str
    document: str
    metadata: dict[str, Any]
    distance: float


def read_row(document: str | None, metadata: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """A chunk's text and metadata as rag reads them, from either way of storing the text."""
    meta = dict(metadata or {})
    text = str(meta.pop("text", None) or document or "")
    if "body" not in meta:  # text is "<title>\n<body>" (rag.chunking.chunk_text)
        meta["body"] = text.partition("\n")[2] or text
    return text, meta


def with_documents(got: dict[str, Any], include: Sequence[str]) -> dict[str, Any]:
    """Fill `documents` of a Chroma result read with metadatas, and drop metadatas if unasked
    (a result read without documents is returned as it is)."""
    if "documents" not in include:
        return got
    metas = got.get("metadatas") or [None] * len(got["ids"])
    docs = got.get("documents") or [None] * len(got["ids"])
    rows = [read_row(d, m) for d, m in zip(docs, metas, strict=True)]
    got["documents"] = [text for text, _ in rows]
    got["metadatas"] = [meta for _, meta in rows] if "metadatas" in include else None
    return got


def chroma_include(include: Sequence[str]) -> list[str]:
    """What to ask Chroma for: the text lives in the metadata."""
    wanted = [key for key in include if key != "documents"]
    if "documents" in include and "metadatas" not in wanted:
        wanted.append("metadatas")
    return [*wanted, "documents"] if "documents" in include else wanted
