"""Retrieval: question -> numbered `Source`s, at most one per paper by default.

Dense search embeds the question with the same model as the chunks and asks Chroma for several
times `top_k` chunk ids (the HNSW search alone), keeps each paper's best chunk (the paper id is
part of the chunk id), then reads only the chosen chunks and their papers' first chunks (which
carry the whole abstract) by primary key. Optional filters (year range, author, arXiv categories)
are applied inside Chroma where it can (years, categories: a boolean key per category) and after
it where it cannot (author substrings).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from pydantic import BaseModel, Field

from rag.arxiv import KEY_PREFIX, paper_url
from rag.chunking import paper_of
from rag.embeddings import encode
from rag.store import Hit, Store
from rag.types import Source

log = logging.getLogger(__name__)


class Filters(BaseModel):
    """Metadata filters for retrieval. Papers without a date never match a year filter."""

    year_from: int | None = None
    year_to: int | None = None
    author: str | None = None
    categories: list[str] = Field(
        default_factory=list, description="arXiv codes; a paper in any of them matches."
    )

    def is_empty(self) -> bool:
        return (
            self.year_from is None
            and self.year_to is None
            and not self.author
            and not self.categories
        )

    def where(self) -> dict[str, Any] | None:
        parts: list[dict[str, Any]] = []
        if self.year_from is not None:
            parts.append({"year": {"$gte": self.year_from}})
        if self.year_to is not None:
            parts.append({"year": {"$lte": self.year_to}})
        if self.year_from is None and self.year_to is not None:
            parts.append({"year": {"$gt": 0}})
        if self.categories:  # one boolean key per category (rag.arxiv.category_keys)
            cats = [{KEY_PREFIX + c: True} for c in self.categories]
            parts.append(cats[0] if len(cats) == 1 else {"$or": cats})
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else {"$and": parts}

    def describe(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.year_from is not None or self.year_to is not None:
            out["years"] = f"{self.year_from or '…'}–{self.year_to or '…'}"
        if self.author:
            out["author"] = self.author
        if self.categories:
            out["categories"] = ", ".join(self.categories)
        return out

    def matches(self, meta: dict[str, Any]) -> bool:
        """The filter applied to one chunk's metadata (where Chroma's `where` was not used)."""
        year = int(meta.get("year") or 0)
        if self.year_from is not None and year < self.year_from:
            return False
        if self.year_to is not None and (year == 0 or year > self.year_to):
            return False
        if self.categories and not any(meta.get(KEY_PREFIX + c) for c in self.categories):
            return False
        return not (self.author and self.author.lower() not in str(meta.get("authors", "")).lower())


class Retriever:
    def __init__(self, store: Store, embedder: Any) -> None:
        self.store = store
        self.embedder = embedder

    def embed_query(self, question: str) -> Any:
        return encode(self.embedder, [question])[0]

    def dense_hits(self, question: str, n: int, filters: Filters | None = None) -> list[Hit]:
        where = filters.where() if filters else None
        hits = self.store.query(self.embed_query(question), n, where)
        if filters and filters.author:
            needle = filters.author.lower()
            hits = [h for h in hits if needle in str(h.metadata.get("authors", "")).lower()]
        return hits

    def search(
        self,
        question: str,
        top_k: int = 5,
        filters: Filters | None = None,
        *,
        per_paper: bool = True,
    ) -> list[Source]:
        if filters and filters.author:  # authors are matched on metadata, so read it for all
            hits = self.dense_hits(question, max(20, top_k * 8), filters)
            return self.to_sources(hits, top_k, per_paper=per_paper)
        where = filters.where() if filters else None
        scored = self.store.nearest(self.embed_query(question), max(20, top_k * 4), where)
        distance = dict(scored)
        chosen = pick(list(distance), top_k, per_paper=per_paper)
        hits = self.store.hits([(cid, distance[cid]) for cid in chosen])
        return self.to_sources(hits, top_k, per_paper=per_paper)

    def to_sources(self, hits: list[Hit], top_k: int, *, per_paper: bool = True) -> list[Source]:
        """Rank-ordered hits -> numbered sources with the full abstract attached."""
        chosen: list[Hit] = []
        seen: set[str] = set()
        for hit in hits:
            pid = str(hit.metadata.get("paper_id", hit.id))
            if per_paper and pid in seen:
                continue
            seen.add(pid)
            chosen.append(hit)
            if len(chosen) == top_k:
                break
        firsts = self.store.first_chunks(chosen) if chosen else {}
        sources = []
        for number, hit in enumerate(chosen, start=1):
            meta = hit.metadata
            pid = str(meta.get("paper_id", hit.id))
            first = firsts.get(pid, {})
            published = meta.get("published") or ""
            sources.append(
                Source(
                    number=number,
                    paper_id=pid,
                    title=str(meta.get("title", "")),
                    published=dt.date.fromisoformat(published) if published else None,
                    authors=[a for a in str(meta.get("authors", "")).split("; ") if a],
                    categories=str(meta.get("categories") or "").split(),
                    doi=str(meta.get("doi")) if meta.get("doi") else None,
                    url=paper_url(pid, str(meta.get("doi") or "")),
                    snippet=str(meta.get("body") or hit.document),
                    text=str(first.get("abstract") or meta.get("body") or hit.document),
                    score=round(max(0.0, 1.0 - hit.distance), 4),
                )
            )
        return sources


def pick(ranked: list[str], top_k: int, *, per_paper: bool = True) -> list[str]:
    """The first `top_k` chunk ids of a ranking, at most one per paper when `per_paper`."""
    if not per_paper:
        return ranked[:top_k]
    chosen: list[str] = []
    seen: set[str] = set()
    for cid in ranked:
        pid = paper_of(cid)
        if pid not in seen:
            seen.add(pid)
            chosen.append(cid)
            if len(chosen) == top_k:
                break
    return chosen
