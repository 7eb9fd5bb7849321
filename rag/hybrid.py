"""Hybrid retrieval: BM25 over chunk text fused with dense search (weighted score fusion).

Dense MiniLM misses exact terms (model and dataset names, numbers); BM25 catches them. The BM25
index (bm25s) lives beside the store in RAG_DATA_DIR/bm25/<collection>/ with each chunk's tokens
cached, so after an ingest only new chunks are tokenised and the index is re-assembled from the
cache; it is never rebuilt per question. Queries get acronym expansion learnt from the corpus
("ViT" <-> "vision transformer", from "Vision Transformer (ViT)" in abstracts) and cheap typo
tolerance (unknown query words mapped to the closest vocabulary word).
"""

from __future__ import annotations

import contextlib
import ctypes
import difflib
import itertools
import json
import logging
import os
import re
import shutil
import sys
import threading
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from sys import intern
from typing import Any

import numpy as np

from rag.retrieve import Filters, Retriever, pick
from rag.settings import Settings
from rag.store import Hit, Store
from rag.text import terms
from rag.types import Source

log = logging.getLogger(__name__)

# How far HNSW may miss: a chunk outside the approximate nearest `fetch` can score a little above
# the weakest one returned (recall@10 is 0.965 at 100k chunks, docs/performance.md).
HNSW_SLACK = 0.02
# Beside the bm25s files, the chunk id of each BM25 row: the UTF-8 ids back to back, and where
# each starts. Disk and memory are the ids' own length (an array of fixed-width rows, as before,
# padded every row to the longest id: one 1 MB id made a 647 MB file).
IDS = "ids.bin"
OFFSETS = "ids.offsets.npy"  # int32 (int64 past 2 GB of ids), one more than there are ids
LEGACY_IDS = "ids.npy"  # the fixed-width array of earlier versions, converted on first load
# "(ViT)" and, read backwards from it, the up-to-eight words before it. Matching forwards with one
# pattern ("words (ACR)") backtracked at every word of every chunk: ~1 ms per chunk, most of a
# BM25 rebuild at 100k chunks; this finds the parentheses first (~6 µs per chunk, same results).
_PAREN = re.compile(r"\(([A-Z][A-Za-z0-9\-+]{1,12})\)")
_WORDS_BEFORE = re.compile(r"\s*([\w\-]+(?:\s+[\w\-]+){0,7})")


def _bm25s() -> Any:
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


def _release_freed_memory() -> None:
    """Hand memory freed by the process back to the OS (glibc keeps it otherwise). Opening a
    store and listing its ids for the index check leave ~10-20 MB free but held at 100k chunks.
    A no-op without glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def tokenize(text: str) -> list[str]:
    tokens = terms(text)
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


class HybridRetriever(Retriever):
    def __init__(self, store: Store, embedder: Any, settings: Settings) -> None:
        super().__init__(store, embedder)
        self.dir = settings.data_dir / "bm25" / settings.collection
        self.alpha = settings.hybrid_alpha
        self._lock = threading.Lock()
        self._bm25: Any = None
        # Chunk ids by BM25 row: a memory-mapped array of UTF-8 ids beside the index, so a query
        # reads the few rows it returns (a list of Python strings was ~8 MB per 100k chunks).
        self._ids: Sequence[Any] = []
        self._vocab: Collection[str] = ()  # bm25s's own vocabulary (token -> column)
        self._shelves: dict[tuple[str, int], list[str]] | None = None  # vocab by (first, len)
        self._acronyms: dict[str, str] = {}
        self._state: tuple[int, str] | None = None
        self._stale = False  # the store changed elsewhere: refresh before the next search
        self._pool: ThreadPoolExecutor | None = None
        # Tokens of chunks an ingest has written, made in its writing thread (`prepare`).
        self._prepared: dict[str, tuple[list[str], dict[str, str]]] = {}
        self.read_back = 0

    # ----------------------------------------------------------------------------- the index
    def refresh(self) -> None:
        """Bring the BM25 index in line with the store (after an ingest); cheap when unchanged.
        An index on disk is used only if it checks out against the store (`_load`); one that
        does not is rebuilt, so an ingest repairs it even when no paper changed."""
        import hashlib

        with self._lock:
            self._stale = False
            # One listing of the store's ids serves both the state check and a rebuild.
            ids = sorted(self.store.get(include=[])["ids"])
            state = (len(ids), hashlib.sha1("\n".join(ids).encode()).hexdigest())
            unchanged = self._bm25 is not None and state == self._state
            # Another process may have written the index for this state already: load it.
            if not unchanged and not self._load(state, ids):
                self._rebuild(state, ids)
            del ids
            _release_freed_memory()

    def invalidate(self) -> None:
        """The store changed elsewhere (rag.store.generation): refresh before the next search."""
        self._stale = True

    def prepare(self, ids: list[str], texts: list[str]) -> None:
        """Tokenise chunks an ingest has just written. It runs in the ingest's writing thread,
        which waits on the encoder most of the time, so the refresh after the ingest neither
        reads the new chunks back nor tokenises them."""
        _bm25s()  # imported here, off the refresh's path

        self._prepared.update(
            (cid, ([intern(t) for t in tokenize(text)], find_acronyms(text)))
            for cid, text in zip(ids, texts, strict=True)
        )

    def _load(self, state: tuple[int, str], store_ids: Sequence[str]) -> bool:
        """Use the index on disk if it is the one for `state` and checks out: the manifest's
        fields of the right types, the index's rows, the ids beside it and the store's ids all
        the same. Anything else is logged and rebuilt (it broke every ask before)."""
        manifest = self.dir / "manifest.json"
        if not manifest.exists():
            return False
        try:
            meta = json.loads(manifest.read_text())
            if not isinstance(meta, dict):
                raise ValueError(f"the manifest is a {type(meta).__name__}, not an object")
            if not _state_of(meta.get("state")):
                raise ValueError(f"manifest state {str(meta.get('state'))[:80]!r} is malformed")
            if tuple(meta["state"]) != state:
                return False
            name = meta.get("index", "index")
            if not isinstance(name, str) or not _INDEX_NAME.fullmatch(name):
                raise ValueError(f"manifest names index {str(name)[:80]!r}")
            acronyms = meta.get("acronyms")
            if not isinstance(acronyms, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in acronyms.items()
            ):
                raise ValueError("manifest acronyms are not a map of words to words")
            bm25s = _bm25s()

            # Memory-mapped: the score matrix is read from the page cache on demand, not copied
            # into the process (~110 MB at 100k chunks).
            path = self.dir / name
            bm25 = bm25s.BM25.load(str(path), mmap=True)
            if "ids" in meta:  # listed in the manifest before: moved beside the index, once
                _save_ids(path, meta.pop("ids"))
                meta.pop("vocab", None)
                _write_json(manifest, meta)
            elif not (path / OFFSETS).exists() and (path / LEGACY_IDS).exists():
                # A fixed-width array, as written before: converted once, without a rebuild.
                _save_ids(path, [_text(i) for i in np.load(path / LEGACY_IDS)])
                (path / LEGACY_IDS).unlink(missing_ok=True)
            ids = load_ids(path)
            if len(ids) != state[0]:
                raise ValueError(f"{len(ids)} ids beside the index, {state[0]} chunks in the store")
            _check_matrix(bm25, len(ids))
            if sorted(ids.all()) != list(store_ids):
                raise ValueError("the ids beside the index are not the store's chunk ids")
        except Exception as exc:
            log.warning(
                "BM25 index at %s does not match the store (%s); rebuilding it", self.dir, exc
            )
            return False
        self._bm25, self._ids, self._vocab = bm25, ids, bm25.vocab_dict
        self._shelves = None
        self._acronyms = acronyms
        self._state = state
        return True

    def _rebuild(self, state: tuple[int, str], ids: list[str]) -> None:
        bm25s = _bm25s()

        cache_path = self.dir / "tokens.jsonl"
        # Per chunk: its tokens, interned (one string object per distinct word, not one per
        # occurrence: ~10M strings at 100k chunks, the bulk of a rebuild's memory), and the
        # acronyms its text defines (a definition sits inside one sentence, so inside one chunk).
        cache: dict[str, tuple[list[str], dict[str, str]]] = {}
        if cache_path.exists():
            with cache_path.open() as handle:
                for line in handle:
                    try:
                        row = json.loads(line)
                        tokens, acr = row["t"], dict(row["a"])
                        if not isinstance(row["id"], str) or not all(
                            isinstance(t, str) for t in [*tokens, *acr, *acr.values()]
                        ):
                            continue  # wrong types: re-read from the store
                        cache[row["id"]] = ([intern(t) for t in tokens], acr)
                    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                        continue  # unreadable, or from before acronyms were cached: re-read
        prepared, self._prepared = self._prepared, {}
        cache.update(prepared)
        missing = [i for i in ids if i not in cache]
        self.read_back = len(missing)  # chunks read from the store to tokenise (observability)
        for start in range(0, len(missing), 2000):
            batch = missing[start : start + 2000]
            docs = self.store.get(ids=batch, include=["documents"])
            for cid, doc in zip(docs["ids"], docs["documents"], strict=False):
                cache[cid] = ([intern(t) for t in tokenize(doc or "")], find_acronyms(doc or ""))
        tokens = [cache[i][0] for i in ids]
        acronyms: dict[str, str] = {}
        for cid in ids:
            acronyms.update(cache[cid][1])
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(".tmp")
        with tmp.open("w") as handle:
            for cid in ids:
                handle.write(json.dumps({"id": cid, "t": cache[cid][0], "a": cache[cid][1]}) + "\n")
        tmp.replace(cache_path)
        del cache
        bm25 = bm25s.BM25()
        if ids:
            bm25.index(tokens, show_progress=False)
        self._bm25, self._ids, self._state = bm25, ids, state
        self._vocab = bm25.vocab_dict if ids else ()
        self._shelves = None
        self._acronyms = acronyms
        # Each build goes to a directory of its own: other processes may have the previous one
        # memory-mapped, and rewriting a mapped file in place would crash them (SIGBUS). Old
        # builds are unlinked once the manifest names the new one; their readers keep the inodes.
        index = f"index-{state[1][:12]}"
        if ids:
            shutil.rmtree(self.dir / index, ignore_errors=True)
            bm25.save(str(self.dir / index))
            _save_ids(self.dir / index, ids)
            # Serve from the memory-mapped copies, as a fresh process would, and let the
            # in-memory build go.
            self._bm25 = bm25s.BM25.load(str(self.dir / index), mmap=True)
            self._ids = load_ids(self.dir / index)
            self._vocab = self._bm25.vocab_dict
        _write_json(
            self.dir / "manifest.json",
            {"state": list(state), "index": index, "acronyms": acronyms},
        )
        for old in self.dir.glob("index*"):
            if old.name != index and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        log.info("BM25 index: %d chunks (%d newly tokenised)", len(ids), len(missing))

    # ------------------------------------------------------------------------------ queries
    def expand(self, question: str) -> str:
        """Add the other form of acronyms / spelled-out names found in the question."""
        extra = []
        lower = question.lower()
        for short, long_form in self._acronyms.items():
            # A substring test first: the regex runs only for the few acronyms that can match.
            has_short = short in lower and bool(re.search(rf"\b{re.escape(short)}\b", lower))
            has_long = long_form.lower() in lower
            if has_short and not has_long:
                extra.append(long_form)
            elif has_long and not has_short:
                extra.append(short)
        return question if not extra else f"{question} ({'; '.join(extra[:4])})"

    def _query_tokens(self, question: str) -> list[str]:
        tokens = []
        for token in tokenize(question):
            if token in self._vocab or len(token) < 5 or token.isdigit():
                tokens.append(token)
                continue
            tokens.append(self._close_word(token) or token)
        return tokens

    def _close_word(self, token: str) -> str | None:
        """The vocabulary word closest to an unknown query word (a typo), among words with its
        first letter and within two of its length: difflib over a whole large vocabulary costs
        tens of ms per word, and a first-letter typo is rare."""
        if self._shelves is None:
            shelves: dict[tuple[str, int], list[str]] = {}
            for word in self._vocab:
                shelves.setdefault((word[:1], len(word)), []).append(word)
            self._shelves = shelves
        near = [
            w
            for length in range(len(token) - 2, len(token) + 3)
            for w in self._shelves.get((token[:1], length), ())
        ]
        close = difflib.get_close_matches(token, near, n=1, cutoff=0.85)
        return close[0] if close else None

    def _scorer(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max(2, len(os.sched_getaffinity(0))), thread_name_prefix="rag-bm25"
                )
            return self._pool

    def bm25_scores(self, question: str, n: int) -> dict[str, float]:
        """Chunk id -> BM25 score of the top `n` chunks with any query term."""
        bm25, ids = self._bm25, self._ids  # one build throughout, should a refresh swap them
        if bm25 is None or not len(ids):
            return {}
        tokens = [t for t in self._query_tokens(question) if t in bm25.vocab_dict]
        if not tokens:
            return {}
        scores = bm25.get_scores(tokens)
        rows = np.flatnonzero(scores)  # only chunks with a query term (a partition of all of
        if len(rows) > n:  # them costs ~5 ms at 100k chunks, of these well under 1 ms)
            rows = rows[np.argpartition(-scores[rows], n - 1)[:n]]
        return {_text(ids[int(i)]): float(scores[i]) for i in rows}

    def search(
        self,
        question: str,
        top_k: int = 5,
        filters: Filters | None = None,
        *,
        per_paper: bool = True,
    ) -> list[Source]:
        if self._bm25 is None or self._stale:
            self.refresh()
        expanded = self.expand(question)
        fetch = max(40, top_k * 8)
        # BM25 scoring (numpy over the mapped index) runs on another core while this thread
        # embeds the query (ONNX Runtime) and searches HNSW (Chroma): both release the GIL.
        sparse_job = self._scorer().submit(self.bm25_scores, expanded, fetch)
        qvec = self.embed_query(expanded)
        known: dict[str, Hit] = {}  # chunks whose text and metadata have been read
        if filters and filters.author:  # authors are matched on metadata, so read it for all
            full = self.store.query(qvec, fetch, filters.where())
            n_dense = len(full)
            known = {h.id: h for h in full if _matches(h.metadata, filters)}
            cosine = {cid: 1.0 - h.distance for cid, h in known.items()}
        else:
            scored = self.store.nearest(qvec, fetch, filters.where() if filters else None)
            n_dense = len(scored)
            cosine = {cid: 1.0 - d for cid, d in scored}
        sparse = sparse_job.result()
        # Convex fusion of cosine and max-normalised BM25: a rare exact term ("7.988x", a model
        # name) lifts its chunk even when the dense ranking puts a topical neighbour first.
        top_bm25 = max(sparse.values(), default=0.0) or 1.0
        fused = {
            cid: self.alpha * cos + (1.0 - self.alpha) * sparse.get(cid, 0.0) / top_bm25
            for cid, cos in cosine.items()
        }
        # BM25-only chunks need their vectors for the cosine. They were not among the `fetch`
        # nearest, so their cosine is at most about the weakest dense hit's: read only those that
        # could still reach the top_k with it.
        extra = [cid for cid in sparse if cid not in cosine]
        if extra:
            ceiling = min(cosine.values()) + HNSW_SLACK if n_dense >= fetch and cosine else 1.0
            floor = _kth_score(fused, top_k, per_paper=per_paper)
            extra = [
                cid
                for cid in extra
                if self.alpha * ceiling + (1.0 - self.alpha) * sparse[cid] / top_bm25 >= floor
            ]
        if extra:  # vectors only (~1 ms for 40 at 100k chunks); metadata when a filter needs it
            include = ["embeddings", "documents", "metadatas"] if filters else ["embeddings"]
            got = self.store.get(ids=extra, include=include)
            for row, (cid, vec) in enumerate(zip(got["ids"], got["embeddings"], strict=False)):
                cos = float(np.dot(np.asarray(vec, dtype=np.float32), qvec))
                if filters:
                    meta = got["metadatas"][row] or {}
                    if not _matches(meta, filters):
                        continue
                    known[cid] = Hit(cid, got["documents"][row] or "", meta, 1.0 - cos)
                cosine[cid] = cos
                fused[cid] = self.alpha * cos + (1.0 - self.alpha) * sparse[cid] / top_bm25
        ranked = sorted(fused, key=lambda c: fused[c], reverse=True)
        chosen = pick(ranked, top_k, per_paper=per_paper)
        unread = [(cid, 1.0 - cosine[cid]) for cid in chosen if cid not in known]
        known.update((h.id, h) for h in self.store.hits(unread))
        return self.to_sources([known[c] for c in chosen if c in known], top_k, per_paper=per_paper)


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


def load_ids(index: Path) -> IdColumn:
    return IdColumn(index)


def _save_ids(index: Path, ids: Sequence[str]) -> None:
    """The chunk id of each BM25 row: UTF-8 back to back, and the offset of each (memory-mapped
    by readers). The offsets go last: a reader that finds them finds the ids they index."""
    encoded = [i.encode() for i in ids]
    ends = np.cumsum(np.array([len(e) for e in encoded], dtype=np.int64))
    small = not len(ends) or ends[-1] < 2**31  # 4 bytes an offset will do
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32 if small else np.int64)
    offsets[1:] = ends
    tmp = index / (IDS + ".tmp")
    with tmp.open("wb") as handle:
        handle.writelines(encoded)
    tmp.replace(index / IDS)
    tmp = index / (OFFSETS + ".tmp")
    with tmp.open("wb") as handle:
        np.save(handle, offsets)
    tmp.replace(index / OFFSETS)


_INDEX_NAME = re.compile(r"index(-[0-9a-f]{1,40})?")  # a directory of this one, nothing else


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


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically: readers in other processes see the old file or the new one, never half."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def _text(cid: str | bytes) -> str:
    return cid.decode() if isinstance(cid, bytes) else cid


def _kth_score(fused: dict[str, float], k: int, *, per_paper: bool) -> float:
    """The fused score a chunk must reach to enter the top k (of distinct papers if per_paper)."""
    ranked = pick(sorted(fused, key=lambda c: fused[c], reverse=True), k, per_paper=per_paper)
    return fused[ranked[-1]] if len(ranked) == k else float("-inf")


def _matches(meta: dict[str, Any], filters: Filters) -> bool:
    year = int(meta.get("year") or 0)
    if filters.year_from is not None and year < filters.year_from:
        return False
    if filters.year_to is not None and (year == 0 or year > filters.year_to):
        return False
    return not (
        filters.author and filters.author.lower() not in str(meta.get("authors", "")).lower()
    )


def index_dir(settings: Settings) -> Path:
    return settings.data_dir / "bm25" / settings.collection
