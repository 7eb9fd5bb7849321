"""File formats: one loader per format, each yielding `Paper`s and `CorpusError`s for one file.

  .txt          Hugging Face "Daily Papers" page dumps, as copied from the browser
  .jsonl/.json  arXiv-metadata-style records (the public arXiv snapshot is JSON Lines named .json)
  .csv          title/abstract columns, optional id, authors, date

A loader never stops at a bad record: the error (with file and line) is yielded and reading goes
on with the next record. Record fields are checked in `rag.records`.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from rag.errors import CorpusError
from rag.records import DEFAULT_LIMITS, Limits, clean_text, from_record, make_paper, parse_date
from rag.textfile import OnRead, decoded_lines
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

Records = Iterator[Paper | CorpusError]


def _is_abstract(line: str) -> bool:
    words = line.count(" ") + 1
    if len(line) >= 250 or words >= 40:
        return True
    return len(line) >= 120 and line.endswith(".") and ". " in line


def load_daily_papers(
    path: Path, *, limits: Limits = DEFAULT_LIMITS, on_read: OnRead = None
) -> Records:
    """Parse a Daily Papers page dump: title line, abstract line, optional author/date lines."""
    file = str(path)
    pending: tuple[int, str] | None = None  # a title waiting for its abstract
    current: dict | None = None  # the last paper, still open for metadata lines
    last_line = abstract_line = 0  # last non-empty line; last line that was abstract text

    def flush() -> Records:
        nonlocal current
        if current is not None:
            yield make_paper(file=file, limits=limits, **current)
            current = None

    for number, item in decoded_lines(path, on_read):
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
                current["published"] = parse_date(m.group(1) + m.group(2))
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
        tail = handle.read().decode("utf-8", "ignore").replace("\x00", "")  # UTF-16 too
    return bool(tail) and tail[-1] not in "\n\r" and tail.rstrip()[-1:] not in ".!?)]\"'”’"


def _parse_json(text: str) -> object:
    """json.loads, with nesting too deep for Python's parser (RecursionError) as a ValueError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None


def _json_error(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    return str(exc)


def load_json(path: Path, *, limits: Limits = DEFAULT_LIMITS, on_read: OnRead = None) -> Records:
    """JSON Lines (one record a line), or a JSON array / {"papers": [...]} document."""
    file = str(path)
    stream = decoded_lines(path, on_read)
    lines: list[tuple[int, str | CorpusError]] = []  # up to the first line with text
    for number, item in stream:
        lines.append((number, item))
        if isinstance(item, str) and item.strip():
            break
    head = next((t.strip() for _, t in lines if isinstance(t, str) and t.strip()), "")
    first = _first_line([head]) if head.startswith(("[", "{")) else "whole"
    # A document (an array, or an object over several lines) is read whole; JSON Lines, one
    # line at a time (the arXiv snapshot: 4.5 GB). A first line too deep to read is JSON Lines:
    # then it alone is the error, the lines after it read.
    if (head.startswith("[") and first != "deep") or first == "partial":
        lines.extend(stream)
        texts = [t for _, t in lines if isinstance(t, str)]
        try:
            doc = _parse_json("\n".join(texts))
        except json.JSONDecodeError as exc:
            yield CorpusError(
                f"invalid JSON ({exc.msg}); fix it or write one record per line (JSON Lines)",
                file=file,
                line=exc.lineno,
            )
            return
        except ValueError as exc:
            yield CorpusError(
                f"invalid JSON ({exc}); write one flat record per line (JSON Lines)",
                file=file,
                line=1,
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
            yield from_record(rec, file, _approx_line(texts, i), limits)
        return
    for number, item in itertools.chain(lines, stream):
        if isinstance(item, CorpusError):
            yield item
            continue
        if not item.strip():
            continue
        try:
            record = _parse_json(item)
        except ValueError as exc:
            yield CorpusError(
                f"malformed JSON ({_json_error(exc)}); fix or remove this line",
                file=file,
                line=number,
            )
            continue
        yield from_record(record, file, number, limits)


def _first_line(texts: list[str]) -> str:
    """How the first non-empty line parses alone: "whole" (a complete JSON value), "partial"
    (the start of a document over several lines) or "deep" (nested too deeply to read)."""
    first = next((t for t in texts if t.strip()), "")
    try:
        _parse_json(first)
    except json.JSONDecodeError:
        return "partial"
    except ValueError:
        return "deep"
    return "whole"


def _approx_line(texts: list[str], index: int) -> int:
    return 1 if len(texts) == 1 else index + 2


def _csv_rows(lines: list[str]) -> Iterator[tuple[int, list[str] | csv.Error]]:
    """(first line, cells) of each CSV record, parsed strictly: a quote that is never closed, or
    closed in the middle of a cell, is a `csv.Error` at the line where its record starts, and
    parsing resumes on the next line, so it cannot swallow the rows after it.

    Terminates: every restart begins at least one line further on than the one before."""
    start = 0  # index into lines of the first line not yet parsed
    while start < len(lines):
        rest = (lines[i] + "\n" for i in range(start, len(lines)))  # no copy per restart
        reader = csv.reader(rest, strict=True)
        done = 0  # lines the reader has consumed
        try:
            for row in reader:
                yield start + done + 1, row
                done = reader.line_num
        except csv.Error as exc:
            yield start + done + 1, exc
            start += done + 1  # the line after the one the bad record starts on
            continue
        return


def _csv_reason(exc: csv.Error) -> str:
    text = str(exc)
    if "unexpected end of data" in text:
        return 'a quoted cell that starts here is never closed; add the closing quote (")'
    if "expected after" in text:
        return (
            "a quote closes in the middle of a cell (a quote opened on this line may be closed on "
            'a later one); double quotes inside a quoted cell ("") and close each cell\'s quote'
        )
    return f"malformed CSV ({text}); fix this row"


def load_csv(path: Path, *, limits: Limits = DEFAULT_LIMITS, on_read: OnRead = None) -> Records:
    """CSV with a header row: title and abstract (or summary) required; id, authors, date optional."""
    file = str(path)
    good: list[str] = []
    for _number, item in decoded_lines(path, on_read):
        if isinstance(item, CorpusError):
            yield item
            good.append("")  # keep line numbers aligned
        else:
            good.append(item)
    # Cells are bounded by the record checks (RAG_MAX_ABSTRACT_CHARS, the title limit), which
    # say what is wrong; csv's own 128 KB cell limit would only raise mid-file. The file is in
    # memory already, so the csv limit protects nothing here.
    csv.field_size_limit(max(csv.field_size_limit(), sys.maxsize))
    fields: list[str] | None = None
    for number, row in _csv_rows(good):
        if isinstance(row, csv.Error):
            yield CorpusError(_csv_reason(row), file=file, line=number)
            continue
        if not any(cell.strip() for cell in row):
            continue
        if fields is None:
            fields = [f.strip().lower() for f in row]
            twice = sorted({f for f in fields if f and fields.count(f) > 1})
            if twice:  # which of the two is meant cannot be known: the file waits for a fix
                yield CorpusError(
                    f"duplicate column {', '.join(repr(f) for f in twice)} in the header; rename "
                    "or remove one of them",
                    file=file,
                    line=number,
                )
                return
            if "title" not in fields or not ({"abstract", "summary"} & set(fields)):
                yield CorpusError(
                    f"CSV needs 'title' and 'abstract' columns, found: {', '.join(fields)}; "
                    "rename the columns",
                    file=file,
                    line=number,
                )
                return
            continue
        record: dict[str, str] = {}
        for name, cell in zip(fields, row, strict=False):
            if name and name not in record:  # the first of two columns with one name
                record[name] = cell
        yield from_record(record, file, number, limits)
    if fields is None:
        yield CorpusError("empty CSV file; add a header row with title,abstract", file=file, line=1)


def load_file(path: Path, *, limits: Limits = DEFAULT_LIMITS, on_read: OnRead = None) -> Records:
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return load_daily_papers(path, limits=limits, on_read=on_read)
    if suffix == ".csv":
        return load_csv(path, limits=limits, on_read=on_read)
    return load_json(path, limits=limits, on_read=on_read)
