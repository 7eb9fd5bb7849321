"""One corpus record -> one `Paper`, or a `CorpusError` that says what is wrong and where.

Every loader (rag.loaders) hands its raw fields here, so the checks that protect the rest of the
pipeline live in one place: text normalised, required fields present, lengths bounded (a runaway
id or title would be copied into every chunk id, every chunk's metadata and the BM25 id column),
field types checked, and no lone UTF-16 surrogate (it cannot be encoded, so it would crash
hashing, tokenising and the store). A record that breaks any of them is rejected with its file
and line; nothing here raises.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import math
import re
import unicodedata
from dataclasses import dataclass

from rag.errors import CorpusError
from rag.types import Paper

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\ufeff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_ARXIV_VERSION = re.compile(r"v\d+$")
_RFC2822 = re.compile(r"^(?:[A-Za-z]{3},\s*)?\d{1,2}\s+[A-Za-z]{3}\s+\d{4}\b")
# No real title is this long (arXiv's longest are ~300 characters); a longer one is an abstract in
# the title column or a broken record, and it would be copied into every chunk of the paper.
MAX_TITLE_CHARS = 1_000


@dataclass(frozen=True)
class Limits:
    """Bounds on one record (Settings: RAG_MAX_ABSTRACT_CHARS, RAG_MAX_ID_CHARS)."""

    abstract_chars: int = 20_000
    id_chars: int = 256


DEFAULT_LIMITS = Limits()


def normalize_title(title: str) -> str:
    """Lower-case alphanumerics only: the dedupe key for papers without an arXiv id."""
    text = unicodedata.normalize("NFKC", title).lower()
    return " ".join(re.findall(r"[^\W_]+", text))


def is_title_id(paper_id: str) -> bool:
    """True for ids made from the title (records that carry no id of their own)."""
    return paper_id.startswith("t-")


def title_id(title: str) -> str:
    """Stable paper id for a record without an external id."""
    key = normalize_title(title).encode("utf-8", "surrogatepass")
    return "t-" + hashlib.sha1(key).hexdigest()[:16]


def clean_text(text: str) -> str:
    """NFC, no control characters, single spaces."""
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub(" ", text)
    return " ".join(text.split())


def parse_date(value: object) -> dt.date | None:
    if not value or not isinstance(value, str):
        return None
    value = value.strip()
    if _RFC2822.match(value):  # arXiv versions: "Mon, 12 Jun 2017 17:57:34 GMT"
        try:
            return email.utils.parsedate_to_datetime(value).date()
        except (TypeError, ValueError):
            pass
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


# A whole field that says "no value": what pandas, spreadsheets and JSON's NaN/Infinity leave
# where text is missing. Stored, it became a paper titled "nan".
_MISSING = {
    "nan",
    "-nan",
    "inf",
    "+inf",
    "-inf",
    "infinity",
    "+infinity",
    "-infinity",
    "null",
    "none",
}
# Characters that show nothing: format (Cf: zero-width, bidi marks, soft hyphen), controls, marks
# alone, separators, and the filler letters (Hangul fillers, Braille blank).
_BLANK_LETTERS = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800"}


def _invisible(text: str) -> bool:
    """True when no character of `text` would show."""
    return all(
        ch.isspace() or ch in _BLANK_LETTERS or unicodedata.category(ch)[0] in "CMZ" for ch in text
    )


def _not_text(name: str, value: object, text: str) -> str | None:
    """Why a title or abstract is not text: NaN/Infinity, a missing-value word, or only
    characters that show nothing; None when it is fine."""
    if isinstance(value, float) and not math.isfinite(value):
        shown = "NaN" if math.isnan(value) else ("-" if value < 0 else "") + "Infinity"
        return f"'{name}' is {shown} (a number, not text); give the {name} as text"
    if text.lower() in _MISSING:
        return (
            f"'{name}' is '{text}', a missing value written as text; give the real {name} "
            "(or drop the record)"
        )
    if text and _invisible(text):
        codes = ", ".join(sorted({f"U+{ord(c):04X}" for c in text if not c.isspace()}))[:80]
        return (
            f"'{name}' has no visible characters (only {codes}); give the real {name} "
            "(or drop the record)"
        )
    return None


def _scalar(value: object) -> str | None:
    """A text field's value as text: strings and numbers only (`True` or a list is not a title)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return str(value)


def _lone_surrogate(fields: dict[str, object]) -> str | None:
    """The first field holding an unpaired UTF-16 surrogate (e.g. a JSON "\\ud800" escape)."""
    for name, value in fields.items():
        texts = value if isinstance(value, list) else [value]
        for text in texts:
            if isinstance(text, str) and (m := _SURROGATE.search(text)):
                return f"{name}' has an unpaired surrogate \\u{ord(m.group()):04x} at character {m.start() + 1}"
    return None


def make_paper(
    *,
    title: object,
    abstract: object,
    file: str,
    line: int,
    limits: Limits,
    paper_id: object = None,
    **meta: object,
) -> Paper | CorpusError:
    """Check and normalise one record's fields; never raises."""

    def error(message: str) -> CorpusError:
        return CorpusError(message, file=file, line=line)

    title_s, abstract_s = _scalar(title), _scalar(abstract)
    title_s = clean_text(title_s) if title_s is not None else ""
    abstract_s = clean_text(abstract_s) if abstract_s is not None else ""
    if bad := _lone_surrogate({"title": title_s, "abstract": abstract_s, "id": paper_id, **meta}):
        return error(
            f"'{bad}, which is not a character; fix the escape (or re-save the file as UTF-8)"
        )
    for name, value, text in (("title", title, title_s), ("abstract", abstract, abstract_s)):
        if reason := _not_text(name, value, text):
            return error(reason)
    if not title_s:
        return error("record has no title; add a non-empty 'title'")
    if len(title_s) > MAX_TITLE_CHARS:
        return error(
            f"title is {len(title_s):,} characters, over the {MAX_TITLE_CHARS:,} a title can have; "
            "check the record (an abstract in the title column?)"
        )
    if not abstract_s:
        return error(f"'{title_s[:60]}' has no abstract; add a non-empty 'abstract'")
    if len(abstract_s) > limits.abstract_chars:
        return error(
            f"abstract of '{title_s[:60]}' is {len(abstract_s):,} characters, over the "
            f"{limits.abstract_chars:,} limit; check the record (or raise RAG_MAX_ABSTRACT_CHARS)"
        )
    pid = ""
    if paper_id not in (None, ""):
        raw = _scalar(paper_id)
        if isinstance(paper_id, float) and not math.isfinite(paper_id):
            raw = None
        if raw is None:
            return error(
                f"'id' of '{title_s[:60]}' is a {type(paper_id).__name__}; give a string such as "
                "an arXiv id"
            )
        pid = _ARXIV_VERSION.sub("", clean_text(raw))
        if len(pid) > limits.id_chars:
            return error(
                f"'id' of '{title_s[:60]}' is {len(pid):,} characters, over the "
                f"{limits.id_chars:,} limit; use the arXiv id or another short key (or raise "
                "RAG_MAX_ID_CHARS)"
            )
    try:
        return Paper(
            id=pid or title_id(title_s),
            title=title_s,
            abstract=abstract_s,
            source=file,
            line=line,
            **meta,  # type: ignore[arg-type]
        )
    except ValueError as exc:  # pydantic: a metadata field of the wrong type
        return error(f"a field has the wrong type ({_first_line(exc)}); fix the record")


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def authors_of(value: object) -> list[str] | None:
    """Author names from a list (names, {"name": ...} objects, arXiv [last, first, suffix]) or a
    "A, B and C" string; None when the value is of a type that cannot hold names."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        names = []
        for item in value:
            if isinstance(item, list):  # arXiv authors_parsed: [last, first, suffix]
                parts = [
                    p for p in item[1:2] + item[:1] + item[2:3] if isinstance(p, str | int) and p
                ]
                names.append(clean_text(" ".join(str(p) for p in parts)))
            elif isinstance(item, dict):
                name = item.get("name", "")
                names.append(clean_text(name) if isinstance(name, str) else "")
            elif isinstance(item, str | int):
                names.append(clean_text(str(item)))
            else:
                return None
        return [n for n in names if n]
    if isinstance(value, str):
        parts = re.split(r",\s*|\s+and\s+", clean_text(value))
        return [p for p in (x.strip() for x in parts) if p]
    return None


def categories_of(value: object) -> list[str] | None:
    """arXiv categories from "cs.CL cs.LG" or a list of strings; None for any other type."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list) and all(isinstance(c, str) for c in value):
        return [c for c in (clean_text(c) for c in value) if c]
    return None


def from_record(record: object, file: str, line: int, limits: Limits) -> Paper | CorpusError:
    """A JSON object or CSV row -> Paper. Never raises: a record that trips anything is an error
    for its own line, and the records around it are still read."""
    try:
        return _from_record(record, file, line, limits)
    except (RecursionError, MemoryError):
        return CorpusError(
            "record is nested too deeply to read; flatten it to one object of simple fields",
            file=file,
            line=line,
        )
    except Exception as exc:  # a field shape no check above foresaw: this record only
        return CorpusError(
            f"record cannot be read ({type(exc).__name__}: {_first_line(exc)[:120]}); check "
            "its fields against docs/corpus.md",
            file=file,
            line=line,
        )


def _from_record(record: object, file: str, line: int, limits: Limits) -> Paper | CorpusError:
    if not isinstance(record, dict):
        return CorpusError(
            f"expected a JSON object per record, got {type(record).__name__}; write one "
            '{"title": ..., "abstract": ...} object per line',
            file=file,
            line=line,
        )
    rec = {str(k).lower(): v for k, v in record.items()}
    raw_authors = rec.get("authors_parsed") or rec.get("authors")
    authors = authors_of(raw_authors)
    if authors is None:
        return CorpusError(
            f"'authors' is a {type(raw_authors).__name__}; give a list of names or a "
            "comma-separated string",
            file=file,
            line=line,
        )
    categories = categories_of(rec.get("categories"))
    if categories is None:
        return CorpusError(
            f"'categories' is a {type(rec.get('categories')).__name__}; give a space-separated "
            'string ("cs.CL cs.LG") or a list of strings',
            file=file,
            line=line,
        )
    # The first version is when a paper appeared; arXiv's update_date is its last revision.
    published = parse_date(rec.get("published")) or parse_date(rec.get("date"))
    published = published or _first_version(rec.get("versions")) or parse_date(rec.get("created"))
    updated = parse_date(rec.get("update_date"))
    doi = _scalar(rec.get("doi"))
    return make_paper(
        title=rec.get("title"),
        abstract=rec.get("abstract") or rec.get("summary"),
        paper_id=rec.get("id") or rec.get("arxiv_id") or rec.get("paper_id"),
        file=file,
        line=line,
        limits=limits,
        authors=authors,
        n_authors=len(authors) or None,
        published=published or updated,
        updated=updated,
        categories=categories,
        doi=clean_text(doi) or None if doi else None,
    )


def _first_version(versions: object) -> dt.date | None:
    """The earliest `created` of arXiv's [{"version": "v1", "created": <RFC 2822>}, ...]."""
    if not isinstance(versions, list):
        return None
    dates = [parse_date(v.get("created")) for v in versions if isinstance(v, dict)]
    return min((d for d in dates if d), default=None)
