"""Token-aware chunking: a paper becomes chunks that fit the embedding model.

Chunks are split by llama-index's `SentenceSplitter` counting tiktoken (cl100k) tokens, at the
sentence breaks rag uses everywhere (`rag.text.sentence_pieces`), each chunk prefixed with the
paper title so it embeds with its context. Then every chunk is measured with the embedder's own
tokenizer and split again if it would pass the model's limit (all-MiniLM-L6-v2 reads 256 word
pieces and silently drops the rest). Chunk ids are deterministic: paper id, position and a
hash of the text, so re-ingesting unchanged text changes nothing.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from typing import Any

from rag.errors import CorpusError
from rag.types import Chunk, Paper

TokenCounter = Callable[[str], int]


def _use_bundled_tiktoken() -> None:
    """tiktoken downloads its BPE files on first use; point it at the copy llama-index ships."""
    if "TIKTOKEN_CACHE_DIR" not in os.environ:
        os.environ["TIKTOKEN_CACHE_DIR"] = str(
            resources.files("llama_index.core") / "_static" / "tiktoken_cache"
        )


@lru_cache(maxsize=1)
def tiktoken_encoding():
    _use_bundled_tiktoken()
    import tiktoken

    return tiktoken.get_encoding("cl100k_base")


def count_tiktoken(text: str) -> int:
    return len(tiktoken_encoding().encode(text, disallowed_special=()))


def truncate_tokens(text: str, max_tokens: int) -> str:
    enc = tiktoken_encoding()
    ids = enc.encode(text, disallowed_special=())
    return text if len(ids) <= max_tokens else enc.decode(ids[:max_tokens])


def chunk_text(title: str, body: str) -> str:
    return f"{title}\n{body}"


def chunk_id(paper_id: str, position: int, text: str) -> str:
    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    return f"{paper_id}#{position}:{digest}"


def paper_of(chunk_id: str) -> str:
    """The paper id inside a chunk id (`<paper id>#<position>:<digest>`), read without Chroma."""
    return chunk_id.rpartition("#")[0] or chunk_id


def fingerprint(chunk_tokens: int, chunk_overlap: int) -> str:
    """Identifies the chunking scheme; stored with every chunk's paper hash, so a change of scheme
    re-chunks each paper on its next ingest (v2: rag's sentence breaks instead of punkt's)."""
    return f"tiktoken-cl100k-sentence:v2:{chunk_tokens}:{chunk_overlap}"


def only_version_differs(stored: str, wanted: str) -> bool:
    """True when two chunking fingerprints differ only in the scheme's version, not in settings:
    such a store stays readable and its next ingest re-chunks it (see `Store`)."""
    a, b = stored.split(":"), wanted.split(":")
    return len(a) == len(b) == 4 and a[0] == b[0] and a[2:] == b[2:] and a[1] != b[1]


@lru_cache(maxsize=64)
def _splitter(size: int, overlap: int) -> Any:
    from llama_index.core.node_parser import SentenceSplitter

    from rag.text import sentence_pieces

    enc = tiktoken_encoding()
    return SentenceSplitter(
        chunk_size=size,
        chunk_overlap=overlap,
        tokenizer=lambda t: enc.encode(t, disallowed_special=()),
        chunking_tokenizer_fn=sentence_pieces,
    )


class Chunker:
    """Splits papers into chunks no larger than `max_model_tokens` word pieces."""

    def __init__(
        self,
        chunk_tokens: int = 180,
        chunk_overlap: int = 24,
        *,
        count_model_tokens: TokenCounter | None = None,
        max_model_tokens: int = 256,
    ) -> None:
        self.chunk_tokens = chunk_tokens
        self.chunk_overlap = chunk_overlap
        self.count_model_tokens = count_model_tokens
        self.max_model_tokens = max_model_tokens

    def _split(self, body: str, size: int) -> list[str]:
        splitter = _splitter(size, min(self.chunk_overlap, size // 4))
        return [c for c in splitter.split_text(body) if c.strip()]

    def _shorter(self, body: str) -> list[str]:
        """`body` as two or more non-empty pieces, each strictly shorter than it, in order;
        [] when it is one character (it cannot be split)."""
        body = body.strip()
        # Word pieces run longer than tiktoken tokens on some text (numbers, rare words).
        tokens = count_tiktoken(body)
        smaller = max(16, int(tokens * 0.7))
        parts = self._split(body, smaller) if smaller < tokens else []
        if len(parts) > 1 and all(0 < len(p.strip()) < len(body) for p in parts):
            return parts
        words = body.split()
        if len(words) > 1:
            half = len(words) // 2
            return [" ".join(words[:half]), " ".join(words[half:])]
        if len(body) > 1:  # one enormous "word": cut by characters
            return [body[: len(body) // 2], body[len(body) // 2 :]]
        return []

    def chunk_title(self, paper: Paper) -> str:
        """The title as every chunk carries it: at most 48 tiktoken tokens (a runaway title must
        not crowd out the text) and, measured with the model's own tokenizer, at most a third of
        its limit (a title of 260 dots is ~17 tiktoken tokens but ~260 word pieces). A longer
        title is cut at a word boundary; the stored title stays whole."""
        title = truncate_tokens(paper.title, 48)
        limit = self.max_model_tokens // 3
        if self._fits(chunk_text(title, ""), limit):
            return title
        lo, hi = 0, len(title)  # the longest prefix that fits: a binary search, O(log n) counts
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._fits(chunk_text(title[:mid], ""), limit):
                lo = mid
            else:
                hi = mid - 1
        cut = title[:lo]
        if " " in cut.strip() and not title[lo : lo + 1].isspace():
            cut = cut[: cut.rstrip().rfind(" ")]  # do not end on half a word
        cut = cut.strip()
        if not cut:
            raise self._error(paper, "not even the title's first character fits")
        return cut

    def _error(self, paper: Paper, why: str) -> CorpusError:
        return CorpusError(
            f"'{paper.title[:60]}' cannot be cut into chunks of at most {self.max_model_tokens} "
            f"word pieces for the embedding model ({why}); check the record's text",
            file=paper.source or None,
            line=paper.line or None,
        )

    def _fits(self, text: str, limit: int | None = None) -> bool:
        if self.count_model_tokens is None:
            return True
        return self.count_model_tokens(text) <= (limit or self.max_model_tokens)

    def chunk(self, paper: Paper) -> list[Chunk]:
        """The paper's chunks, each within the model's limit. Finishes for any input: a title
        too long for the model is cut (`chunk_title`), and a piece of abstract that does not fit
        is split into strictly shorter pieces until it does; a piece that cannot be split
        further (one character) and still does not fit is a `CorpusError` for the record.

        Bounded: every piece put back on the queue is non-empty and strictly shorter than the
        piece it replaces, so lengths strictly decrease along every split (each piece is split
        at most len(abstract) times); `max_steps` bounds the whole loop regardless."""
        title = self.chunk_title(paper)
        budget = max(48, self.chunk_tokens - count_tiktoken(title) - 1)
        bodies: list[str] = []
        queue = deque(self._split(paper.abstract, budget))
        max_steps = 4 * len(paper.abstract) + 64
        for _step in range(max_steps):
            if not queue:
                break
            body = queue.popleft()
            if self._fits(chunk_text(title, body)):
                bodies.append(body)
                continue
            parts = self._shorter(body)
            if not parts:
                raise self._error(paper, f"the text {body[:20]!r} alone is over the limit")
            queue.extendleft(reversed(parts))
        else:
            if queue:  # unreachable by the argument above; a guard, not a path
                raise self._error(paper, f"it did not fit after {max_steps:,} splits")
        return [
            Chunk(
                id=chunk_id(paper.id, i, chunk_text(title, body)),
                paper_id=paper.id,
                position=i,
                text=chunk_text(title, body),
                body=body,
            )
            for i, body in enumerate(bodies)
        ]
