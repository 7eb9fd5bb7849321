"""A BM25 build that never holds every chunk's tokens: it streams them from files.

    ingest's writing thread ─► TokenSpill: each new chunk's tokens appended to an anonymous temp
                               file beside the index (gone with the process, even on kill -9)
    rebuild ─► locate: where each store row's tokens are (tokens.jsonl, the spill); rows in
               neither are read back from the store, tokenised and spilled
            ─► tokens.jsonl rewritten in row order, the vocabulary and acronyms collected
            ─► the score matrix built out of core from token ids read back from that file
               (rag.bm25_matrix: two passes, column blocks on disk) and saved as bm25s saves it

One chunk's tokens are Python objects at a time; what stays is per row a few numpy bytes (where
its tokens are), the vocabulary, and one column block of the matrix. The files are the ones
bm25s makes from all tokens in memory, byte for byte: the vocabulary is its set of tokens,
filled in the same order, the rows are the same token ids, the scores bm25s's own arithmetic.
"""

from __future__ import annotations

import bisect
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np

from rag.bm25 import TOKENS, PackedIds, analyse, release_freed_memory
from rag.bm25_matrix import write_index


def token_line(cid: str, tokens: list[str], acronyms: dict[str, str]) -> bytes:
    """One row of tokens.jsonl (and of the spill)."""
    return (json.dumps({"id": cid, "t": tokens, "a": acronyms}) + "\n").encode()


def parse_line(line: bytes) -> tuple[str, list[str], dict[str, str]] | None:
    """A row's id, tokens and acronyms; None for a row that cannot be read or has wrong types
    (it is tokenised again from the store)."""
    try:
        row = json.loads(line)
        cid, tokens, acr = row["id"], row["t"], dict(row["a"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(cid, str) or not isinstance(tokens, list):
        return None
    if not all(isinstance(t, str) for t in [*tokens, *acr, *acr.values()]):
        return None
    return cid, tokens, acr


class TokenSpill:
    """Tokens of chunks an ingest has written, on disk rather than in memory: an anonymous
    temporary file in the index directory, so a killed process leaves nothing behind."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._file: IO[bytes] | None = None
        self._lock = threading.Lock()

    def add(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        lines = b"".join(
            token_line(cid, *analyse(text)) for cid, text in zip(ids, texts, strict=True)
        )
        with self._lock:
            if self._file is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                # Closed by the build that takes it (or with the process).
                self._file = tempfile.TemporaryFile(  # noqa: SIM115
                    dir=self.directory, prefix="tokens-spill-"
                )
            self._file.write(lines)

    def take(self) -> IO[bytes] | None:
        """The file so far (flushed), handed over to a build; the spill starts empty again."""
        with self._lock:
            handle, self._file = self._file, None
        if handle is not None:
            handle.flush()
        return handle


class Built(NamedTuple):
    rows: int  # chunks indexed; the index is saved in the target directory when there are any
    acronyms: dict[str, str]
    read_back: int  # chunks read back from the store to be tokenised


class _Rows:
    """Where each row's tokens are: a file number and the byte span of its line."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = ids
        self.source = np.full(len(ids), -1, dtype=np.int8)
        self.start = np.zeros(len(ids), dtype=np.int64)
        self.size = np.zeros(len(ids), dtype=np.int64)

    def scan(self, number: int, handle: IO[bytes]) -> None:
        """Note every readable row of `handle` whose id is in the store (a later one wins)."""
        handle.seek(0)
        pos = 0
        for line in handle:
            parsed = parse_line(line)
            row = None if parsed is None else self.find(parsed[0])
            if row is not None:
                self.source[row], self.start[row], self.size[row] = number, pos, len(line)
            pos += len(line)

    def find(self, cid: str) -> int | None:
        if isinstance(self.ids, PackedIds):
            return self.ids.find(cid)
        row = bisect.bisect_left(self.ids, cid)
        return row if row < len(self.ids) and self.ids[row] == cid else None


def build(
    directory: Path,
    ids: Sequence[str],
    spill: IO[bytes] | None,
    read_back: Callable[[list[str]], Iterator[tuple[str, str]]],
    target: Path,
) -> Built:
    """The BM25 index of `ids` (the store's, sorted), saved in `target` as bm25s saves one (a
    fresh directory; nothing is written there for no chunks); tokens from the cache and the
    spill, and `read_back(ids)` -> (id, text) for chunks in neither; tokens.jsonl becomes
    exactly `ids`'."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / TOKENS
    sources: list[IO[bytes]] = []
    with tempfile.TemporaryFile(dir=directory, prefix="tokens-readback-") as extra:
        if path.exists():
            sources.append(path.open("rb"))
        if spill is not None:
            sources.append(spill)
        sources.append(extra)
        rows = _Rows(ids)
        for number, handle in enumerate(sources[:-1]):
            rows.scan(number, handle)
        missing = [ids[int(r)] for r in np.flatnonzero(rows.source < 0)]
        for cid, text in read_back(missing):
            extra.write(token_line(cid, *analyse(text)))
        extra.flush()
        read = len(missing)
        del missing
        rows.scan(len(sources) - 1, extra)
        tmp = path.with_suffix(".tmp")
        try:
            with tmp.open("w+b") as out:
                unique, acronyms = _rewrite(rows, sources, out)
                del rows  # where the tokens were: the matrix reads them from `out`
                tmp.replace(path)
                # The vocabulary numbered as bm25s numbers it (its set of tokens, in order):
                # the set's order taken as a list and the set freed before the dict is made,
                # so the two hash tables are never held at once (the set: 4-8 MB at 100k words).
                order = list(unique)
                del unique
                vocab = dict(zip(order, range(len(order)), strict=True))
                del order
                _index(out, vocab, len(ids), target)
                del vocab
        finally:
            for handle in sources:
                handle.close()
    release_freed_memory()  # the build's, before the caller maps and loads the index
    return Built(len(ids), acronyms, read)


def _rewrite(
    rows: _Rows, sources: list[IO[bytes]], out: IO[bytes]
) -> tuple[set[str], dict[str, str]]:
    """Write every row's line in row order; collect the vocabulary (a set filled row by row, as
    bm25s fills its own) and the acronyms (later rows win, as before). Lines are read with
    pread, not a memory map, so the pages read do not count in this process's memory."""
    for handle in sources:
        handle.flush()
    fds = [h.fileno() for h in sources]
    unique: set[str] = set()
    acronyms: dict[str, str] = {}
    for row, cid in enumerate(rows.ids):
        src = int(rows.source[row])
        line = os.pread(fds[src], int(rows.size[row]), int(rows.start[row])) if src >= 0 else b""
        parsed = parse_line(line)
        if parsed is None or parsed[0] != cid:  # the store no longer has it to read back
            raise KeyError(f"no tokens for chunk {cid!r}")
        _, tokens, acr = parsed
        out.write(token_line(cid, tokens, acr))
        unique.update(tokens)
        acronyms.update(acr)
    out.flush()
    return unique, acronyms


def _index(handle: IO[bytes], vocab: dict[str, int], rows: int, target: Path) -> None:
    """The matrix of each row's token ids (`vocab`: token -> column), read from the rewritten
    tokens.jsonl on every pass the build makes; `vocab` is handed over (write_index adds the
    empty token to it)."""
    if not rows:
        return

    def token_ids() -> Iterator[list[int]]:
        handle.seek(0)
        for line in handle:
            yield [vocab[t] for t in json.loads(line)["t"]]

    write_index(target, token_ids, vocab, rows, own_vocab=True)
