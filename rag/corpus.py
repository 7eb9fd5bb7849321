"""The corpus: files and directories in, deduplicated `Paper` records out, streamed.

Formats are read by `rag.loaders` (Daily Papers .txt dumps, arXiv-style .jsonl/.json, .csv) and
each record is checked by `rag.records`. Nothing in a file stops the ingest of the others: a bad
record is a `CorpusError` with its file and line, and a file that cannot be read at all (or trips
a loader) is one error for that file, with the good records before it kept.

Deduplication across files: a record with the same id as an earlier one is a duplicate (or an
error, when it is a different paper behind the same id). Records are matched by normalised title
only when one of the two has no id of its own: two records with different ids are two papers,
whatever their titles.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from rag.errors import CorpusError
from rag.loaders import SUPPORTED, OnRead, load_csv, load_daily_papers, load_json
from rag.loaders import load_file as _load_file
from rag.records import Limits, clean_text, is_title_id, normalize_title, title_id
from rag.types import Paper

__all__ = [
    "SUPPORTED",
    "Limits",
    "LoadResult",
    "bundled_corpus_dir",
    "clean_text",
    "iter_corpus",
    "iter_files",
    "load_corpus",
    "load_csv",
    "load_daily_papers",
    "load_file",
    "load_json",
    "normalize_title",
    "title_id",
]

log = logging.getLogger(__name__)


def iter_files(paths: Iterable[Path]) -> Iterator[Path | CorpusError]:
    """Expand directories; report paths that do not exist or have an unsupported type."""
    for path in paths:
        try:
            yield from _expand(path)
        except OSError as exc:
            yield CorpusError(
                f"cannot read: {exc.strerror or exc}; check the path and its permissions",
                file=str(path),
            )


def _printable(path: Path) -> str:
    """The path as text that can be printed and stored (undecodable bytes shown as U+FFFD)."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _expand(path: Path) -> Iterator[Path | CorpusError]:
    if _printable(path) != str(path):  # bytes that are not UTF-8 in a file name
        yield CorpusError(
            "the file name is not valid UTF-8 (it would be stored with each paper); rename it",
            file=_printable(path),
        )
    elif not path.exists():
        yield CorpusError("no such file or directory; check the path", file=str(path))
    elif path.is_dir():
        children = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not children:
            yield CorpusError(
                "directory has no files; add .txt, .jsonl, .json or .csv files", file=str(path)
            )
        yield from iter_files(children)
    elif path.suffix.lower() not in SUPPORTED:
        yield CorpusError(
            f"unsupported file type '{path.suffix or path.name}'; use .txt (Daily Papers dump), "
            ".jsonl/.json (arXiv metadata) or .csv",
            file=str(path),
        )
    elif path.stat().st_size == 0:
        yield CorpusError("empty file; nothing to ingest", file=str(path))
    else:
        yield path


def load_file(
    path: Path, *, max_chars: int = 20_000, max_id_chars: int = 256, on_read: OnRead = None
) -> Iterator[Paper | CorpusError]:
    """One file's records and errors. Never raises: a file that cannot be read, or that trips
    its loader part-way, ends with one error naming it; the records before that are kept."""
    file = str(path)
    last = 0  # line of the last record read, to say how far the file was read
    try:
        for item in _load_file(path, limits=Limits(max_chars, max_id_chars), on_read=on_read):
            last = item.line or last
            yield item
    except OSError as exc:
        yield CorpusError(
            f"cannot read: {exc.strerror or exc}; check the file's permissions", file=file
        )
    except (RecursionError, MemoryError) as exc:
        yield CorpusError(
            f"cannot read the rest of this file ({type(exc).__name__}) after line {last}; "
            "split it or simplify its records",
            file=file,
            line=last or None,
        )
    except Exception as exc:  # a bug in a loader: this file's remaining records, not the ingest
        log.exception("reading %s failed", file)
        yield CorpusError(
            f"cannot read the rest of this file after line {last} ({type(exc).__name__}); "
            "check the records after that line",
            file=file,
            line=last or None,
        )


@dataclass
class LoadResult:
    papers: list[Paper] = field(default_factory=list)
    errors: list[CorpusError] = field(default_factory=list)
    duplicates: int = 0
    entries: int = 0


def iter_corpus(
    paths: Iterable[Path],
    *,
    max_chars: int = 20_000,
    max_id_chars: int = 256,
    on_read: OnRead = None,
) -> Iterator[Paper | CorpusError | None]:
    """Stream papers and errors from many files, deduped; `None` marks a skipped duplicate.

    One pass over each file, in memory bounded by a record: the dedupe index (each paper's id, and
    hashes of its title and abstract, not the papers) is a temporary SQLite database on disk. A paper
    kept from one Daily Papers dump gets the author count and date that only a duplicate of it in
    another dump carries: those dumps (.txt, a few hundred entries each) are read by a metadata
    pre-pass first; JSON and CSV files, which carry their metadata on the record, are not.
    `on_read` is told the bytes of each block the main pass reads.
    """
    paths = list(paths)
    extra = _duplicate_metadata(paths, max_chars, max_id_chars)
    seen = _Seen()
    for item in iter_files(paths):
        if isinstance(item, CorpusError):
            yield item
            continue
        empty = True
        for rec in load_file(item, max_chars=max_chars, max_id_chars=max_id_chars, on_read=on_read):
            empty = False
            if isinstance(rec, CorpusError):
                yield rec
                continue
            key = normalize_title(rec.title)
            title, abstract = hash(key), hash(rec.abstract)
            first_id = rec.id if seen.has(rec.id) else None
            if first_id is None and (same := seen.title_id(title)) is not None:
                # By title only when one of the two has no id of its own: ids win.
                first_id = same if is_title_id(rec.id) or is_title_id(same) else None
            if first_id is None:
                for name, value in _metadata_for(extra, rec, key).items():
                    if not getattr(rec, name):
                        setattr(rec, name, value)
                seen.add(rec, title, abstract)
                yield rec
                continue
            first_abstract, first_title, where = seen.first(first_id)
            abstract, title = abstract & _LOW32, title & _LOW32
            if first_abstract != abstract and first_id == rec.id and first_title != title:
                # "LRA" and "lra" are one paper; these are two behind one id
                yield CorpusError(
                    f"id '{rec.id}' was already used by {where} for a different "
                    "paper; give each paper its own id",
                    file=rec.source,
                    line=rec.line,
                )
            elif first_abstract != abstract and first_id == rec.id and not is_title_id(rec.id):
                # Two versions of one explicit id: keeping either silently could keep the stale one.
                yield CorpusError(
                    f"id '{rec.id}' appears again with a different abstract (first at "
                    f"{where}); keep one version of the record",
                    file=rec.source,
                    line=rec.line,
                )
            else:
                yield None
        if empty:
            yield CorpusError(
                "no papers found in this file; add records with a title and an abstract",
                file=str(item),
            )


class _Seen:
    """The papers kept so far, as little as deduplication needs: id -> 32-bit hashes of its
    abstract and normalised title and where it was read, and the 64-bit title hash -> id. In a
    private temporary SQLite database on disk (deleted when closed, or with the process), whose
    page cache (~2 MB) is all it holds in memory: a dict of the same was ~200 bytes a paper, 0.6
    GB at the arXiv snapshot's 2.8M. Python's string hash: two different titles collide with
    odds of about N²/2⁶⁵ (1 in 5 million at 2.8M papers); the 32-bit hashes are only ever
    compared between two records with the same id."""

    def __init__(self) -> None:
        self._db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(
            "CREATE TABLE ids (id TEXT PRIMARY KEY, abstract INT, title INT, line INT, source INT)"
            " WITHOUT ROWID"
        )
        self._db.execute("CREATE TABLE titles (title INTEGER PRIMARY KEY, id TEXT)")
        self._db.execute("BEGIN")  # one transaction: nothing to roll back, no commit per paper
        self._sources: dict[str, int] = {}

    def has(self, paper_id: str) -> bool:
        found = self._db.execute("SELECT 1 FROM ids WHERE id = ?", (paper_id,)).fetchone()
        return found is not None

    def title_id(self, title: int) -> str | None:
        """The id of the first kept paper with this title hash."""
        found = self._db.execute("SELECT id FROM titles WHERE title = ?", (title,)).fetchone()
        return None if found is None else str(found[0])

    def add(self, paper: Paper, title: int, abstract: int) -> None:
        source = self._sources.setdefault(paper.source, len(self._sources))
        row = (paper.id, abstract & _LOW32, title & _LOW32, min(paper.line, _LOW32), source)
        self._db.execute("INSERT OR REPLACE INTO ids VALUES (?, ?, ?, ?, ?)", row)
        self._db.execute("INSERT OR IGNORE INTO titles VALUES (?, ?)", (title, paper.id))

    def first(self, paper_id: str) -> tuple[int, int, str]:
        """(abstract hash, title hash, "file:line") of the kept paper with this id."""
        abstract, title, line, number = self._db.execute(
            "SELECT abstract, title, line, source FROM ids WHERE id = ?", (paper_id,)
        ).fetchone()
        source = next(s for s, n in self._sources.items() if n == number)
        return abstract, title, f"{source}:{line}"


_LOW32 = (1 << 32) - 1


_META_FIELDS = ("n_authors", "published", "authors")
Extra = dict[tuple[str, str], dict[str, object]]


def _duplicate_metadata(paths: list[Path], max_chars: int, max_id_chars: int) -> Extra:
    """The first value seen of each metadata field, across all files: by ("id", paper id), by
    ("any", normalised title) and, from records without an id of their own, by ("title",
    normalised title), from the Daily Papers dumps (.txt) only. Errors are reported by the main
    pass, which reads the same files."""
    found: Extra = {}
    for item in iter_files(paths):
        if isinstance(item, CorpusError) or item.suffix.lower() != ".txt":
            continue
        for rec in load_file(item, max_chars=max_chars, max_id_chars=max_id_chars):
            if not isinstance(rec, Paper):
                continue
            title = normalize_title(rec.title)
            keys = [("id", rec.id), ("any", title)]
            if is_title_id(rec.id):
                keys.append(("title", title))
            for key in keys:
                meta = found.setdefault(key, {})
                for name in _META_FIELDS:
                    if getattr(rec, name) and name not in meta:
                        meta[name] = getattr(rec, name)
    return found


def _metadata_for(extra: Extra, rec: Paper, key: str) -> dict[str, object]:
    """Metadata the duplicates of `rec` carry: the records with its id and those deduplicated
    with it by title (any, for a record without an id of its own; else only those without)."""
    meta = dict(extra.get(("any" if is_title_id(rec.id) else "title", key), {}))
    meta.update(extra.get(("id", rec.id), {}))
    return meta


def load_corpus(
    paths: Iterable[Path], *, max_chars: int = 20_000, max_id_chars: int = 256
) -> LoadResult:
    result = LoadResult()
    for item in iter_corpus(paths, max_chars=max_chars, max_id_chars=max_id_chars):
        if item is None:
            result.duplicates += 1
            result.entries += 1
        elif isinstance(item, CorpusError):
            result.errors.append(item)
        else:
            result.papers.append(item)
            result.entries += 1
    return result


def bundled_corpus_dir() -> Path:
    """The Daily Papers dumps shipped inside the package (the default corpus)."""
    return Path(str(resources.files("rag") / "data" / "corpus"))
