"""Corpus loaders: files in, normalised `Paper` records out.

Formats (picked by extension; a directory is walked recursively):
  .txt          Hugging Face "Daily Papers" page dumps, as copied from the browser
  .jsonl/.json  arXiv-metadata-style records (the public arXiv snapshot is JSON Lines named .json)
  .csv          title/abstract columns, optional id, authors, date

Loaders never stop at a bad record: they yield `CorpusError`s (with file and line) beside the good
`Paper`s, and `load_corpus` dedupes across files (arXiv id when present, else normalised title).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from rag.errors import CorpusError
from rag.types import Paper

SUPPORTED = (".txt", ".jsonl", ".ndjson", ".json", ".csv")
_MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"
_PAGE_DATE = re.compile(rf"^(?:{_MONTHS})\s+\d{{1,2}}$")
# "Feb 26, 2021 1" (date, upvotes); the page omits the year for the current year: "Mar 20 2".
_META_DATE = re.compile(rf"^((?:{_MONTHS})\s+\d{{1,2}})(,\s+\d{{4}})?(?:\s+\d+)?$")
_AUTHORS = re.compile(r"^[•·*-]?\s*(\d+)\s+authors?$")
_NOISE = {
    "new",
    "subscribe",
    "daily papers",
    "byak and the research community",
    "get trending papers in your email inbox!",
    "get trending papers in your email inbox once a day!",
    "·",
    "•",
}
# Page words that the browser copy sometimes glues to the next title ("SubscribeVicaSplat: ...").
_GLUED = re.compile(
    r"^(?:Subscribe|Daily Papers|byAK and the research community|"
    r"Get trending papers in your email inbox(?: once a day)?!|new)(?=[A-Z0-9])"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\ufeff]")
_ARXIV_VERSION = re.compile(r"v\d+$")


def normalize_title(title: str) -> str:
    """Lower-case alphanumerics only: the dedupe key for papers without an arXiv id."""
    text = unicodedata.normalize("NFKC", title).lower()
    return " ".join(re.findall(r"[^\W_]+", text))


def _title_id(paper_id: str) -> bool:
    return paper_id.startswith("t-")


def title_id(title: str) -> str:
    """Stable paper id for a record without an external id."""
    return "t-" + hashlib.sha1(normalize_title(title).encode()).hexdigest()[:16]


def clean_text(text: str) -> str:
    """NFC, no control characters, single spaces."""
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub(" ", text)
    return " ".join(text.split())


def _is_abstract(line: str) -> bool:
    words = line.count(" ") + 1
    if len(line) >= 250 or words >= 40:
        return True
    return len(line) >= 120 and line.endswith(".") and ". " in line


def _parse_date(value: object) -> dt.date | None:
    if not value or not isinstance(value, str):
        return None
    value = value.strip()
    for fmt in (
        "%Y-%m-%d",
        "%b %d, %Y",
        "%a, %d %b %Y %H:%M:%S %Z",
        "%Y-%m-%dT%H:%M:%S",
        "%Y/%m/%d",
        "%Y",
    ):
        try:
            return dt.datetime.strptime(
                value[: len(dt.datetime.now().strftime(fmt)) + 8], fmt
            ).date()
        except ValueError:
            continue
    match = re.match(r"^(\d{4})-(\d{2})-(\d{2})", value)
    if match:
        try:
            return dt.date(*map(int, match.groups()))
        except ValueError:
            return None
    return None


def _decoded_lines(path: Path) -> Iterator[tuple[int, str | CorpusError]]:
    """Yield (line number, text) with a BOM dropped, CRLF handled and bad bytes reported per line."""
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        yield (
            0,
            CorpusError(
                "this is a binary file, not text; give rag a .txt, .jsonl, .json or .csv file",
                file=str(path),
            ),
        )
        return
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield (
                number,
                CorpusError(
                    f"bytes that are not UTF-8 at column {exc.start + 1}; re-save the file as UTF-8",
                    file=str(path),
                    line=number,
                ),
            )


def _make_paper(
    *,
    title: object,
    abstract: object,
    file: str,
    line: int,
    max_chars: int,
    paper_id: object = None,
    **meta: object,
) -> Paper | CorpusError:
    title_s = clean_text(str(title)) if isinstance(title, str | int | float) else ""
    abstract_s = clean_text(str(abstract)) if isinstance(abstract, str | int | float) else ""
    if not title_s:
        return CorpusError("record has no title; add a non-empty 'title'", file=file, line=line)
    if not abstract_s:
        return CorpusError(
            f"'{title_s[:60]}' has no abstract; add a non-empty 'abstract'", file=file, line=line
        )
    if len(abstract_s) > max_chars:
        return CorpusError(
            f"abstract of '{title_s[:60]}' is {len(abstract_s):,} characters, over the "
            f"{max_chars:,} limit; check the record (or raise RAG_MAX_ABSTRACT_CHARS)",
            file=file,
            line=line,
        )
    pid = clean_text(str(paper_id)) if paper_id not in (None, "") else ""
    pid = _ARXIV_VERSION.sub("", pid) if pid else title_id(title_s)
    return Paper(id=pid, title=title_s, abstract=abstract_s, source=file, line=line, **meta)  # type: ignore[arg-type]


def load_daily_papers(path: Path, *, max_chars: int = 20_000) -> Iterator[Paper | CorpusError]:
    """Parse a Daily Papers page dump: title line, abstract line, optional author/date lines."""
    file = str(path)
    pending: tuple[int, str] | None = None  # a title waiting for its abstract
    current: dict | None = None  # the last paper, still open for metadata lines
    last_line = abstract_line = 0  # last non-empty line; last line that was abstract text

    def flush() -> Iterator[Paper | CorpusError]:
        nonlocal current
        if current is not None:
            yield _make_paper(file=file, max_chars=max_chars, **current)
            current = None

    for number, item in _decoded_lines(path):
        if isinstance(item, CorpusError):
            yield item
            continue
        line = _GLUED.sub("", clean_text(item))
        last_line = number if line else last_line
        if not line or line.lower() in _NOISE or _PAGE_DATE.match(line):
            continue
        if m := _AUTHORS.match(line):
            if current is not None:
                current["n_authors"] = int(m.group(1))
            continue
        if m := _META_DATE.match(line):
            if current is not None and m.group(2):  # without a year the date cannot be placed
                current["published"] = _parse_date(m.group(1) + m.group(2))
            continue
        if _is_abstract(line):
            abstract_line = number
            if pending is not None:
                yield from flush()
                current = {"title": pending[1], "abstract": line, "line": pending[0]}
                pending = None
            elif current is not None:  # a second paragraph of the same abstract
                current["abstract"] += " " + line
            else:
                yield CorpusError(
                    "abstract without a title line before it; add the title on its own line",
                    file=file,
                    line=number,
                )
            continue
        if pending is not None:
            yield CorpusError(
                f"title '{pending[1][:60]}' has no abstract after it; add the abstract line",
                file=file,
                line=pending[0],
            )
        pending = (number, line)
    if current is not None and pending is None and abstract_line == last_line and _cut_off(path):
        yield CorpusError(
            f"the file ends in the middle of the abstract of '{current['title'][:60]}' (entry cut "
            "off); complete the abstract, or end the file with a newline if it is complete",
            file=file,
            line=current["line"],
        )
        current = None
    yield from flush()
    if pending is not None:
        yield CorpusError(
            f"the file ends after the title '{pending[1][:60]}' (entry cut off); add its abstract",
            file=file,
            line=pending[0],
        )


def _cut_off(path: Path) -> bool:
    """The file stops mid-sentence: no sentence end and no newline at its very end."""
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - 8))
        tail = handle.read().decode("utf-8", "ignore")
    return bool(tail) and tail[-1] not in "\n\r" and tail.rstrip()[-1:] not in ".!?)]\"'”’"


def _authors(value: object) -> list[str]:
    if isinstance(value, list):
        names = []
        for item in value:
            if isinstance(item, list):  # arXiv authors_parsed: [last, first, suffix]
                names.append(clean_text(" ".join(str(p) for p in item[1:2] + item[:1] if p)))
            elif isinstance(item, dict):
                names.append(clean_text(str(item.get("name", ""))))
            else:
                names.append(clean_text(str(item)))
        return [n for n in names if n]
    if isinstance(value, str) and value.strip():
        parts = re.split(r",\s*|\s+and\s+", clean_text(value))
        return [p for p in (x.strip() for x in parts) if p]
    return []


def _from_record(record: object, file: str, line: int, max_chars: int) -> Paper | CorpusError:
    if not isinstance(record, dict):
        return CorpusError(
            f"expected a JSON object per record, got {type(record).__name__}; write one "
            '{"title": ..., "abstract": ...} object per line',
            file=file,
            line=line,
        )
    rec = {str(k).lower(): v for k, v in record.items()}
    authors = _authors(rec.get("authors_parsed") or rec.get("authors"))
    published = None
    for key in ("published", "date", "update_date", "created"):
        published = published or _parse_date(rec.get(key))
    versions = rec.get("versions")
    if (
        published is None
        and isinstance(versions, list)
        and versions
        and isinstance(versions[0], dict)
    ):
        published = _parse_date(versions[0].get("created"))
    cats = rec.get("categories")
    categories = cats.split() if isinstance(cats, str) else [str(c) for c in cats or []]
    return _make_paper(
        title=rec.get("title"),
        abstract=rec.get("abstract") or rec.get("summary"),
        paper_id=rec.get("id") or rec.get("arxiv_id") or rec.get("paper_id"),
        file=file,
        line=line,
        max_chars=max_chars,
        authors=authors,
        n_authors=len(authors) or None,
        published=published,
        categories=categories,
    )


def load_json(path: Path, *, max_chars: int = 20_000) -> Iterator[Paper | CorpusError]:
    """JSON Lines (one record a line), or a JSON array / {"papers": [...]} document."""
    file = str(path)
    lines = list(_decoded_lines(path))
    texts = [t for _, t in lines if isinstance(t, str)]
    head = next((t.strip() for t in texts if t.strip()), "")
    if head.startswith("[") or (head.startswith("{") and not _one_object_per_line(texts)):
        try:
            doc = json.loads("\n".join(texts))
        except json.JSONDecodeError as exc:
            yield CorpusError(
                f"invalid JSON ({exc.msg}); fix it or write one record per line (JSON Lines)",
                file=file,
                line=exc.lineno,
            )
            return
        records = doc.get("papers", [doc]) if isinstance(doc, dict) else doc
        if not isinstance(records, list):
            yield CorpusError(
                "expected a list of records; write [{...}, ...] or one record per line",
                file=file,
                line=1,
            )
            return
        for i, rec in enumerate(records):
            yield _from_record(rec, file, _approx_line(texts, i), max_chars)
        return
    for number, item in lines:
        if isinstance(item, CorpusError):
            yield item
            continue
        if not item.strip():
            continue
        try:
            record = json.loads(item)
        except json.JSONDecodeError as exc:
            yield CorpusError(
                f"malformed JSON ({exc.msg} at column {exc.colno}); fix or remove this line",
                file=file,
                line=number,
            )
            continue
        yield _from_record(record, file, number, max_chars)


def _one_object_per_line(texts: list[str]) -> bool:
    first = next((t for t in texts if t.strip()), "")
    try:
        json.loads(first)
    except json.JSONDecodeError:
        return False
    return True


def _approx_line(texts: list[str], index: int) -> int:
    return 1 if len(texts) == 1 else index + 2


def load_csv(path: Path, *, max_chars: int = 20_000) -> Iterator[Paper | CorpusError]:
    """CSV with a header row: title and abstract (or summary) required; id, authors, date optional."""
    file = str(path)
    good: list[str] = []
    for _number, item in _decoded_lines(path):
        if isinstance(item, CorpusError):
            yield item
            good.append("")  # keep line numbers aligned
        else:
            good.append(item)
    reader = csv.DictReader(io.StringIO("\n".join(good)))
    fields = [f.strip().lower() for f in reader.fieldnames or []]
    if not fields:
        yield CorpusError("empty CSV file; add a header row with title,abstract", file=file, line=1)
        return
    if "title" not in fields or not ({"abstract", "summary"} & set(fields)):
        yield CorpusError(
            f"CSV needs 'title' and 'abstract' columns, found: {', '.join(fields)}; rename the columns",
            file=file,
            line=1,
        )
        return
    reader.fieldnames = fields
    for row in reader:
        if not any((v or "").strip() for k, v in row.items() if k is not None):
            continue
        yield _from_record({k: v for k, v in row.items() if k}, file, reader.line_num, max_chars)


def iter_files(paths: Iterable[Path]) -> Iterator[Path | CorpusError]:
    """Expand directories; report paths that do not exist or have an unsupported type."""
    for path in paths:
        if not path.exists():
            yield CorpusError("no such file or directory; check the path", file=str(path))
        elif path.is_dir():
            children = sorted(
                p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
            )
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


def load_file(path: Path, *, max_chars: int = 20_000) -> Iterator[Paper | CorpusError]:
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return load_daily_papers(path, max_chars=max_chars)
    if suffix == ".csv":
        return load_csv(path, max_chars=max_chars)
    return load_json(path, max_chars=max_chars)


@dataclass
class LoadResult:
    papers: list[Paper] = field(default_factory=list)
    errors: list[CorpusError] = field(default_factory=list)
    duplicates: int = 0
    entries: int = 0


def iter_corpus(
    paths: Iterable[Path], *, max_chars: int = 20_000
) -> Iterator[Paper | CorpusError | None]:
    """Stream papers and errors from many files, deduped; `None` marks a skipped duplicate.

    A paper kept from one dump gets the author count and date that only a duplicate of it in
    another dump carries (a metadata-only pre-pass, so the papers themselves still stream).
    """
    paths = list(paths)
    extra = _duplicate_metadata(paths, max_chars)
    seen_ids: dict[str, Paper] = {}
    seen_titles: dict[str, str] = {}
    for item in iter_files(paths):
        if isinstance(item, CorpusError):
            yield item
            continue
        try:
            records = list(load_file(item, max_chars=max_chars))
        except OSError as exc:
            yield CorpusError(
                f"cannot read: {exc.strerror}; check the file's permissions", file=str(item)
            )
            continue
        if not records:
            yield CorpusError(
                "no papers found in this file; add records with a title and an abstract",
                file=str(item),
            )
        for rec in records:
            if isinstance(rec, CorpusError):
                yield rec
                continue
            key = normalize_title(rec.title)
            first = seen_ids.get(rec.id) or seen_ids.get(seen_titles.get(key, ""))
            if first is None:
                for name, value in extra.get(key, {}).items():
                    if not getattr(rec, name):
                        setattr(rec, name, value)
                seen_ids[rec.id] = rec
                seen_titles[key] = rec.id
                yield rec
            elif (
                first.abstract != rec.abstract
                and first.id == rec.id
                and normalize_title(first.title) != key  # "LRA" and "lra" are one paper
            ):
                yield CorpusError(
                    f"id '{rec.id}' was already used by {first.source}:{first.line} for a different "
                    "paper; give each paper its own id",
                    file=rec.source,
                    line=rec.line,
                )
            elif first.abstract != rec.abstract and first.id == rec.id and not _title_id(rec.id):
                # Two versions of one explicit id: keeping either silently could keep the stale one.
                yield CorpusError(
                    f"id '{rec.id}' appears again with a different abstract (first at "
                    f"{first.source}:{first.line}); keep one version of the record",
                    file=rec.source,
                    line=rec.line,
                )
            else:
                yield None


_META_FIELDS = ("n_authors", "published", "authors")


def _duplicate_metadata(paths: list[Path], max_chars: int) -> dict[str, dict[str, object]]:
    """Normalised title -> the first value seen of each metadata field, across all files."""
    found: dict[str, dict[str, object]] = {}
    for item in iter_files(paths):
        if isinstance(item, CorpusError):
            continue
        try:
            for rec in load_file(item, max_chars=max_chars):
                if isinstance(rec, Paper):
                    meta = found.setdefault(normalize_title(rec.title), {})
                    for name in _META_FIELDS:
                        if getattr(rec, name) and name not in meta:
                            meta[name] = getattr(rec, name)
        except OSError:
            continue  # reported by the main pass
    return found


def load_corpus(paths: Iterable[Path], *, max_chars: int = 20_000) -> LoadResult:
    result = LoadResult()
    for item in iter_corpus(paths, max_chars=max_chars):
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
