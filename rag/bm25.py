"""The BM25 index behind hybrid retrieval: its words, and its files beside the store.

    chunk text ─► tokenize (+ hyphen parts), find_acronyms ("Vision Transformer (ViT)")
    RAG_DATA_DIR/bm25/<collection>/
        tokens.jsonl     every chunk's tokens and acronyms, in row order: only new chunks are
                         tokenised again, and a build streams them (rag.bm25_build)
        index-<sha>/     a bm25s build (memory-mapped by readers) + ids.bin, ids.offsets.npy
        manifest.json    {state, index, acronyms}: which build serves which store state
    load: the manifest's build, checked against the store's ids (anything off raises: rebuild)

Each build goes to a directory of its own and the manifest names it last, so readers in other
processes keep a consistent build while a new one is written (`rag.hybrid` decides when).
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import hashlib
import heapq
import itertools
import json
import logging
import re
import shutil
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from sys import intern
from typing import Any, NamedTuple

import numpy as np

from rag.settings import Settings
from rag.text import terms

# Beside the bm25s files, the chunk id of each BM25 row: the UTF-8 ids back to back, and where
# each starts. Disk and memory are the ids' own length (an array of fixed-width rows, as before,
# padded every row to the longest id: one 1 MB id made a 647 MB file).
IDS = "ids.bin"
OFFSETS = "ids.offsets.npy"  # int32 (int64 past 2 GB of ids), one more than there are ids
LEGACY_IDS = "ids.npy"  # the fixed-width array of earlier versions, converted on first load
MANIFEST = "manifest.json"
TOKENS = "tokens.jsonl"
# "(ViT)" and, read backwards from it, the up-to-eight words before it. Matching forwards with one
# pattern ("words (ACR)") backtracked at every word of every chunk: ~1 ms per chunk, most of a
# BM25 rebuild at 100k chunks; this finds the parentheses first (~6 µs per chunk, same results).
_PAREN = re.compile(r"\(([A-Z][A-Za-z0-9\-+]{1,12})\)")
_WORDS_BEFORE = re.compile(r"\s*([\w\-]+(?:\s+[\w\-]+){0,7})")
_INDEX_NAME = re.compile(r"index(-[0-9a-f]{1,40})?")  # a directory of this one, nothing else

Tokens = tuple[list[str], dict[str, str]]  # a chunk's tokens and the acronyms its text defines


def index_dir(settings: Settings) -> Path:
    return settings.data_dir / "bm25" / settings.collection


def import_bm25s() -> Any:
    """bm25s, its logger quieted, without scipy.

    bm25s sets its logger to DEBUG on import, and with any handler configured (`rag serve`)
    "Building index from tokens" reached the user's console. And it imports scipy.sparse, when
    installed, only to offer a matrix backend rag does not use (its default, `csc_backend=
    "numpy"`, needs numpy alone): kept out, that is ~10 MB less in every process and ~0.1 s
    less in the first query or ingest. If scipy is already loaded, nothing changes."""
    if "bm25s" not in sys.modules and "scipy.sparse" not in sys.modules:
        sys.modules["scipy.sparse"] = None  # type: ignore[assignment]  # ImportError for bm25s
        try:
            import bm25s
        finally:
            del sys.modules["scipy.sparse"]  # anyone else may import it as usual
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


def release_freed_memory() -> None:
    """Hand memory freed by the process back to the OS (glibc keeps it otherwise). Opening a
    store and listing its ids for the index check leave ~10-20 MB free but held at 100k chunks.
    A no-op without glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


# ------------------------------------------------------------------------------------ words
def tokenize(text: str) -> list[str]:
    tokens = terms(text, cache=False)  # a corpus's words would fill the stem cache
    parts = [p for t in tokens if "-" in t for p in t.split("-") if len(p) > 1]
    return tokens + parts


def find_acronyms(text: str) -> dict[str, str]:
    """'Vision Transformer (ViT)' -> {'vit': 'Vision Transformer'} when the letters agree."""
    found: dict[str, str] = {}
    for paren in _PAREN.finditer(text):
        span = 256
        while True:  # widen the window until it holds the whole run of words
            lo = max(0, paren.start() - span)
            run = _WORDS_BEFORE.match(text[lo : paren.start()][::-1])
            if run is None or lo == 0 or run.end() < paren.start() - lo:
                break
            span *= 4
        if run is None:
            continue
        words = run.group(1)[::-1].split()
        short = paren.group(1)
        letters = re.sub(r"[^A-Za-z]", "", short).lower()
        caps = re.sub(r"[^A-Z]", "", short).lower()
        for n in {len(letters), len(caps)}:
            if 2 <= n <= len(words):
                tail = words[-n:]
                if "".join(w[0] for w in tail).lower() in (letters, caps):
                    found[short.lower()] = " ".join(tail)
                    break
    return found


def analyse(text: str) -> Tokens:
    """A chunk's tokens (interned: one string object per distinct word) and its acronyms."""
    return [intern(t) for t in tokenize(text)], find_acronyms(text)


# -------------------------------------------------------------------------------- the ids
class IdColumn(Sequence[str]):
    """The chunk ids of an index's rows, memory-mapped: a query reads the few rows it returns."""

    def __init__(self, index: Path) -> None:
        self._offsets = np.load(index / OFFSETS, mmap_mode="r")
        size = (index / IDS).stat().st_size
        # np.memmap refuses an empty file (an index of no chunks has no id bytes).
        self._blob = (
            np.memmap(index / IDS, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
        )
        offsets = self._offsets
        if (
            offsets.ndim != 1
            or len(offsets) < 1
            or int(offsets[0]) != 0
            or int(offsets[-1]) != size
            or (len(offsets) > 1 and bool(np.any(np.diff(offsets) < 0)))
        ):
            raise ValueError(f"id offsets at {index} do not match {IDS}")

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def all(self) -> list[str]:
        """Every id, in row order (one read of the file, not one per row)."""
        blob = bytes(self._blob)
        bounds = self._offsets.tolist()
        return [blob[a:b].decode() for a, b in itertools.pairwise(bounds)]

    def __getitem__(self, row: int) -> str:  # type: ignore[override]  # rows only, no slices
        if not -len(self) <= row < len(self):
            raise IndexError(row)
        row %= len(self)
        start, end = int(self._offsets[row]), int(self._offsets[row + 1])
        return bytes(self._blob[start:end]).decode()


class PackedIds(Sequence[str]):
    """Sorted chunk ids packed in memory: their UTF-8 bytes back to back and where each ends,
    ~30 bytes an id where a list of Python strings takes ~80 (the list of a store's ids was
    most of what an ingest's BM25 rebuild held in proportion to the chunks). Built a slice at a
    time from an iterable of ids, which may be consumed as it goes."""

    def __init__(self, ids: Iterable[str]) -> None:
        self._blob = bytearray()  # grown in place: no second copy of every id
        ends: list[np.ndarray] = []
        for part in _slices(ids):
            encoded = [i.encode() for i in part]
            ends.append(len(self._blob) + np.cumsum([len(e) for e in encoded], dtype=np.int64))
            self._blob += b"".join(encoded)
            del encoded
        self._offsets = np.concatenate([np.zeros(1, dtype=np.int64), *ends])

    @classmethod
    def sorted_from(cls, pages: Iterable[Sequence[str]]) -> PackedIds:
        """The ids of every page, sorted: each page sorted and packed, then the runs merged,
        so the ids are never all Python strings at once (a store's listing comes in pages)."""
        runs = [cls(sorted(page)) for page in pages]
        return cls(heapq.merge(*runs))

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def raw(self, row: int) -> bytes:
        """Row `row`'s id, UTF-8 (sorted ids compare the same as their UTF-8 bytes)."""
        return self._blob[int(self._offsets[row]) : int(self._offsets[row + 1])]

    def __getitem__(self, row: int) -> str:  # type: ignore[override]  # rows only, no slices
        if not -len(self) <= row < len(self):
            raise IndexError(row)
        return self.raw(row % len(self)).decode()

    def __iter__(self) -> Iterator[str]:
        blob = self._blob
        for part in range(0, len(self), 8192):
            bounds = self._offsets[part : part + 8193].tolist()
            for a, b in itertools.pairwise(bounds):
                yield blob[a:b].decode()

    def find(self, cid: str) -> int | None:
        """The row of `cid`, or None."""
        key = cid.encode()
        row = bisect.bisect_left(range(len(self)), key, key=self.raw)
        return row if row < len(self) and self.raw(row) == key else None


def load_ids(index: Path) -> IdColumn:
    return IdColumn(index)


def save_ids(index: Path, ids: Iterable[str]) -> None:
    """The chunk id of each BM25 row: UTF-8 back to back, and the offset of each (memory-mapped
    by readers). The offsets go last: a reader that finds them finds the ids they index.
    Written a slice at a time: no second copy of every id, encoded."""
    ends: list[np.ndarray] = []
    end = 0
    tmp = index / (IDS + ".tmp")
    with tmp.open("wb") as handle:
        for part in _slices(ids):
            encoded = [i.encode() for i in part]
            handle.write(b"".join(encoded))
            ends.append(end + np.cumsum(np.array([len(e) for e in encoded], dtype=np.int64)))
            end = int(ends[-1][-1])
    small = end < 2**31  # 4 bytes an offset will do
    offsets = np.concatenate([np.zeros(1, dtype=np.int64), *ends])
    offsets = offsets.astype(np.int32 if small else np.int64)
    tmp.replace(index / IDS)
    tmp = index / (OFFSETS + ".tmp")
    with tmp.open("wb") as handle:
        np.save(handle, offsets)
    tmp.replace(index / OFFSETS)


def _slices(ids: Iterable[str], size: int = 8192) -> Iterator[list[str]]:
    it = iter(ids)
    while part := list(itertools.islice(it, size)):
        yield part


def ids_state(ids: Iterable[str]) -> tuple[int, str]:
    """A store state: how many chunk ids, and the sha1 of them sorted, one a line (hashed a
    slice at a time, not joined into one string)."""
    digest, count = hashlib.sha1(), 0
    for part in _slices(ids):
        digest.update(("\n" if count else "").encode() + "\n".join(part).encode())
        count += len(part)
    return count, digest.hexdigest()


def as_text(cid: str | bytes) -> str:
    return cid.decode() if isinstance(cid, bytes) else cid


# ------------------------------------------------------------------------------ load, check
class Loaded(NamedTuple):
    bm25: Any
    ids: IdColumn
    acronyms: dict[str, str]


def load_index(directory: Path, state: tuple[int, str], store_ids: Sequence[str]) -> Loaded | None:
    """The build the manifest in `directory` names, if it is the one for `state` (None if it is
    another state's). It must check out: the manifest's fields of the right types, the index's
    rows, the ids beside it and the store's ids all the same; anything else raises. Ids as
    earlier versions kept them (in the manifest, or a fixed-width array) are converted once."""
    manifest = directory / MANIFEST
    meta = json.loads(manifest.read_text())
    if not isinstance(meta, dict):
        raise ValueError(f"the manifest is a {type(meta).__name__}, not an object")
    if not _state_of(meta.get("state")):
        raise ValueError(f"manifest state {str(meta.get('state'))[:80]!r} is malformed")
    if tuple(meta["state"]) != state:
        return None
    name = meta.get("index", "index")
    if not isinstance(name, str) or not _INDEX_NAME.fullmatch(name):
        raise ValueError(f"manifest names index {str(name)[:80]!r}")
    acronyms = meta.get("acronyms")
    if not isinstance(acronyms, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in acronyms.items()
    ):
        raise ValueError("manifest acronyms are not a map of words to words")

    # Memory-mapped: the score matrix is read from the page cache on demand, not copied into the
    # process (~110 MB at 100k chunks).
    path = directory / name
    bm25 = load_bm25(path)
    if "ids" in meta:  # listed in the manifest before: moved beside the index, once
        save_ids(path, meta.pop("ids"))
        meta.pop("vocab", None)
        _write_json(manifest, meta)
    elif not (path / OFFSETS).exists() and (path / LEGACY_IDS).exists():
        # A fixed-width array, as written before: converted once, without a rebuild.
        save_ids(path, [as_text(i) for i in np.load(path / LEGACY_IDS)])
        (path / LEGACY_IDS).unlink(missing_ok=True)
    ids = load_ids(path)
    if len(ids) != state[0]:
        raise ValueError(f"{len(ids)} ids beside the index, {state[0]} chunks in the store")
    _check_matrix(bm25, len(ids))
    if sorted(ids.all()) != list(store_ids):
        raise ValueError("the ids beside the index are not the store's chunk ids")
    return Loaded(bm25, ids, acronyms)


def _state_of(value: object) -> bool:
    """A manifest state: [number of chunks, sha1 of their ids]."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], int)
        and not isinstance(value[0], bool)
        and isinstance(value[1], str)
    )


def _check_matrix(bm25: Any, rows: int) -> None:
    """The loaded score matrix has `rows` documents and is well formed (a query would index past
    the ids, or past the matrix, otherwise)."""
    scores = bm25.scores
    data, indices, indptr = scores["data"], scores["indices"], scores["indptr"]
    if int(scores.get("num_docs", -1)) != rows:
        raise ValueError(f"the index has {scores.get('num_docs')} rows, the ids {rows}")
    if indptr.ndim != 1 or len(indptr) < 1 or int(indptr[0]) != 0:
        raise ValueError("the index's column pointers are malformed")
    if int(indptr[-1]) != len(indices) or len(indices) != len(data):
        raise ValueError("the index's arrays disagree in length")
    if len(indptr) > 1 and bool(np.any(np.diff(indptr) < 0)):
        raise ValueError("the index's column pointers go backwards")
    if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= rows):
        raise ValueError("the index points at rows it does not have")
    vocab = bm25.vocab_dict
    if not isinstance(vocab, dict) or any(
        not isinstance(col, int) or not 0 <= col < len(indptr) for col in vocab.values()
    ):
        raise ValueError("the index's vocabulary points outside the matrix")


# ------------------------------------------------------------------------------------ build
def open_index(directory: Path, name: str, ids: Sequence[str]) -> tuple[Any, IdColumn]:
    """Write the ids beside the build saved in `directory/name` (rag.bm25_build) and return
    both memory-mapped, as a fresh process would serve them."""
    save_ids(directory / name, ids)
    return load_bm25(directory / name), load_ids(directory / name)


def load_bm25(path: Path) -> Any:
    """The bm25s build saved in `path`, its score matrix memory-mapped. bm25s's `load` also
    makes a set of every column number (`unique_token_ids_set`, read only by its `retrieve`
    given token ids, which rag never calls): ~8 MB at 100k words, most of what loading added
    to an ingest's peak after the rebuild. Here the vocabulary is read as bm25s reads it and
    the set is a `range` when the columns are 0..n-1, each once (every build's are)."""
    bm25s = import_bm25s()
    from bm25s.utils import json_functions

    bm25 = bm25s.BM25.load(str(path), mmap=True, load_vocab=False)
    with open(path / "vocab.index.json", encoding="utf-8") as handle:
        vocab: dict[str, int] = json_functions.loads(handle.read())
    bm25.vocab_dict = vocab
    cols = np.fromiter(vocab.values(), dtype=np.int64, count=len(vocab))
    dense = not len(cols) or (
        int(cols.min()) >= 0 and int(cols.max()) < len(cols) and int(np.bincount(cols).max()) == 1
    )
    bm25.unique_token_ids_set = range(len(cols)) if dense else set(cols.tolist())
    return bm25


def publish_index(
    directory: Path, state: tuple[int, str], name: str, acronyms: dict[str, str]
) -> None:
    """Name the build `name` in the manifest, then unlink the others (their readers keep the
    inodes; rewriting a mapped file in place would crash them with SIGBUS)."""
    _write_json(directory / MANIFEST, {"state": list(state), "index": name, "acronyms": acronyms})
    for old in directory.glob("index*"):
        if old.name != name and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically: readers in other processes see the old file or the new one, never half."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
