"""bm25s's score matrix built out of core: memory bounded whatever the number of chunks.

bm25s builds its CSC matrix (data, indices, indptr) from every (chunk, term) entry at once in
numpy: ~40 bytes an entry at its peak, ~2 KiB a chunk. This makes the same files in passes:

    pass 1 over the token ids ─► each chunk's length, each term's document frequency
                                 (so the idf, and where each column starts: indptr)
    pass 2 ─► each chunk's scores, bm25s's own functions on the same numbers, buffered and
              written to a scratch file in column blocks of at most BLOCK entries (pwrite at
              each block's running offset; rows arrive in order, so each column's stay sorted)
    per block ─► sorted by column (stable: rows stay in order), appended to the .npy files

What is held is a block (BLOCK entries), a write buffer, and arrays of the vocabulary's size
(freed memory handed back to the OS between the passes and the write-out);
the scratch file is anonymous (gone with the process, even on kill -9) and is read and written
with pread/pwrite, not a memory map, so none of its pages count in this process's memory.
The files are byte for byte what `bm25s.BM25().index(...)` followed by `save` writes
(tests/test_bm25_build.py).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from rag.bm25 import import_bm25s, release_freed_memory

# Entries a block holds (12 bytes each on disk). Writing one out holds it, its sort order and
# one column of it at a time: ~4 MB at 2^17 (~18 MB at 2^19, the largest single allocation of a
# 100k-record ingest's rebuild, and after it glibc kept ~10 MB of the heap it had grown).
BLOCK = 1 << 17
_FLUSH = 1 << 17  # entries buffered in pass 2 before they go to the scratch file
_ENTRY = np.dtype([("col", "<i4"), ("row", "<i4"), ("score", "<f4")])
# bm25s.BM25.save's names for the three arrays (its defaults, which `load` reads).
DATA, INDICES, INDPTR = "data.csc.index.npy", "indices.csc.index.npy", "indptr.csc.index.npy"


def write_index(
    target: Path,
    token_ids: Callable[[], Iterable[list[int]]],
    vocab: dict[str, int],
    rows: int,
    *,
    own_vocab: bool = False,
) -> None:
    """Save to `target` the bm25s index (default parameters) of `rows` chunks whose token ids
    `token_ids()` yields in row order, each call a fresh pass; `vocab` is token -> column, as
    bm25s numbers it (the empty token is added, as bm25s adds it: to `vocab` itself when
    `own_vocab`, the caller handing it over, else to a copy)."""
    bm25s = import_bm25s()
    from bm25s import scoring

    index = bm25s.BM25()
    if index.method in index.methods_requiring_nonoccurrence or index.csc_backend != "numpy":
        raise NotImplementedError(f"bm25s method {index.method!r}: not built out of core")
    target.mkdir(parents=True, exist_ok=True)
    n_vocab = len(vocab)

    # Pass 1: lengths and document frequencies (bm25s: _calculate_doc_freqs, the mean length).
    df = np.zeros(n_vocab, dtype=np.int64)
    total, seen = 0, []
    for ids in token_ids():
        total += len(ids)
        seen.append(np.unique(np.asarray(ids, dtype=np.int64)))
        if len(seen) >= 4096:
            df += np.bincount(np.concatenate(seen), minlength=n_vocab)
            seen = []
    if seen:
        df += np.bincount(np.concatenate(seen), minlength=n_vocab)
    del seen
    avg_doc_len = np.float64(total / rows)  # what np.mean gives over the integer lengths
    idf = scoring._build_idf_array(
        doc_frequencies=_Frequencies(df),  # not a dict of every word: ~100 bytes a word
        n_docs=rows,
        compute_idf_fn=scoring._select_idf_scorer(index.idf_method),
        dtype=index.dtype,
    )
    indptr = np.zeros(n_vocab + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])

    with tempfile.TemporaryFile(dir=target, prefix="scratch-") as scratch:
        blocks = _Blocks(df, scratch)
        del df
        tfc = scoring._select_tfc_scorer(index.method)
        for row, ids in enumerate(token_ids()):  # pass 2: bm25s's per-chunk arithmetic
            voc, tf = scoring._get_counts_from_token_ids(ids, index.dtype, index.int_dtype)
            scores = idf[voc] * tfc(
                tf_array=tf, l_d=len(ids), l_avg=avg_doc_len, k1=index.k1, b=index.b,
                delta=index.delta,
            )  # fmt: skip
            blocks.add(row, voc, scores)
        blocks.flush()
        release_freed_memory()  # the passes' buffers, before the blocks are read back
        with open(target / DATA, "wb") as data, open(target / INDICES, "wb") as indices:
            nnz = int(indptr[-1])
            _header(data, np.dtype(index.dtype), nnz)
            _header(indices, np.dtype(index.int_dtype), nnz)
            blocks.write(data, indices, np.dtype(index.dtype), np.dtype(index.int_dtype))
    np.save(target / INDPTR, indptr)

    # bm25s writes its own vocabulary and parameters: given empty arrays under other names
    # (removed after), its `save` writes every other file as its in-memory build would.
    if not own_vocab:
        vocab = dict(vocab)
    if "" not in vocab:
        vocab[""] = max(vocab.values(), default=-1) + 1
    index.vocab_dict = vocab
    index.nonoccurrence_array = None
    empty: dict[str, Any] = {"data": np.zeros(0), "indices": np.zeros(0), "indptr": np.zeros(0)}
    index.scores = {**empty, "num_docs": rows}
    unused = [f".unused-{name}" for name in (DATA, INDICES, INDPTR)]
    index.save(str(target), data_name=unused[0], indices_name=unused[1], indptr_name=unused[2])
    for name in unused:
        (target / name).unlink()


class _Frequencies:
    """What bm25s's idf builder reads of a {column: document frequency} dict (its length and
    items, in column order, as Python ints), from the array: no dict of every word."""

    def __init__(self, df: np.ndarray) -> None:
        self.df = df

    def __len__(self) -> int:
        return len(self.df)

    def items(self) -> Iterator[tuple[int, int]]:
        for start in range(0, len(self.df), 1 << 16):
            yield from enumerate(self.df[start : start + (1 << 16)].tolist(), start)


def _header(handle: IO[bytes], dtype: np.dtype, length: int) -> None:
    """The .npy header np.save writes for a 1-D array of `length` `dtype` items."""
    info = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False}
    np.lib.format.write_array_header_1_0(handle, {**info, "shape": (length,)})


class _Blocks:
    """Entries grouped by column block in a scratch file: block k's region starts where the
    entries of its first column would start in the matrix, so the regions tile the file."""

    def __init__(self, df: np.ndarray, scratch: IO[bytes]) -> None:
        # Columns in order, a new block once the next column would take one past BLOCK entries
        # (a column of more than BLOCK entries is a block of its own).
        first, size = [0], 0
        for col, count in enumerate(df.tolist()):
            if size and size + count > BLOCK:
                first.append(col)
                size = 0
            size += count
        self.first = np.array([*first, len(df)], dtype=np.int64)
        self.block_of = np.repeat(np.arange(len(first), dtype=np.int32), np.diff(self.first))
        starts = np.zeros(len(df) + 1, dtype=np.int64)
        np.cumsum(df, out=starts[1:])
        self.starts = starts[self.first]  # entry offset of each block, and the end
        self.fill = self.starts[:-1].copy()  # entries written to each block so far
        self.fd = scratch.fileno()
        self.pending: list[tuple[int, np.ndarray, np.ndarray]] = []
        self.count = 0

    def add(self, row: int, voc: np.ndarray, scores: np.ndarray) -> None:
        self.pending.append((row, voc, scores))
        self.count += len(voc)
        if self.count >= _FLUSH:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        entries = np.empty(self.count, dtype=_ENTRY)
        entries["col"] = np.concatenate([voc for _, voc, _ in self.pending])
        lengths = [len(voc) for _, voc, _ in self.pending]
        entries["row"] = np.repeat([row for row, _, _ in self.pending], lengths)
        entries["score"] = np.concatenate([s for _, _, s in self.pending])
        self.pending, self.count = [], 0
        block = self.block_of[entries["col"]]
        order = np.argsort(block, kind="stable")  # rows stay in order within a block
        entries = entries[order]
        bounds = np.searchsorted(block[order], np.arange(len(self.fill) + 1))
        for k in np.flatnonzero(np.diff(bounds)):
            part = entries[bounds[k] : bounds[k + 1]]
            os.pwrite(self.fd, part.tobytes(), int(self.fill[k]) * _ENTRY.itemsize)
            self.fill[k] += len(part)

    def write(self, data: IO[bytes], indices: IO[bytes], dtype: np.dtype, itype: np.dtype) -> None:
        """Each block sorted by column, its scores and rows appended to the two files."""
        if not np.array_equal(self.fill, self.starts[1:]):
            raise RuntimeError("the score matrix's blocks were not filled as counted")
        for k in range(len(self.fill)):
            start, end = int(self.starts[k]), int(self.starts[k + 1])
            single = self.first[k + 1] - self.first[k] == 1  # already in row order
            step = BLOCK if single else max(end - start, 1)
            for lo in range(start, end, step):
                part = self._read(lo, min(end, lo + step))
                if not single:
                    part = part[np.argsort(part["col"], kind="stable")]
                # One contiguous copy of each field, written from its buffer.
                data.write(np.ascontiguousarray(part["score"], dtype=dtype).data)
                indices.write(np.ascontiguousarray(part["row"], dtype=itype).data)

    def _read(self, lo: int, hi: int) -> np.ndarray:
        """Entries lo..hi of the scratch file, read straight into an array (no bytes copy)."""
        part = np.empty(hi - lo, dtype=_ENTRY)
        view = memoryview(part.view(np.uint8))
        offset, done = lo * _ENTRY.itemsize, 0
        while done < len(view):
            got = os.preadv(self.fd, [view[done:]], offset + done)
            if not got:
                raise EOFError("the scratch file is shorter than its blocks")
            done += got
        return part
