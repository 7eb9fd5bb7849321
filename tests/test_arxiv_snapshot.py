"""The arXiv metadata snapshot format (issue 20 item 1) and streaming it (item 2): parsing,
category filters read from questions and given explicitly, links, one pass over a file."""

from __future__ import annotations

import datetime as dt
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest
from conftest import CORPUS

from rag import Assistant
from rag.arxiv import categories_in, category_keys, paper_url, resolve
from rag.corpus import load_corpus
from rag.errors import ConfigError
from rag.query import parse_filters
from rag.records import parse_date
from rag.retrieve import Filters
from rag.textfile import byte_lines

SNAPSHOT = Path(__file__).parent / "data" / "arxiv-snapshot.json"


def papers() -> dict[str, Any]:
    result = load_corpus([SNAPSHOT])
    assert result.errors == []
    return {p.id: p for p in result.papers}


# ------------------------------------------------------------------------------ the format
def test_snapshot_records_are_parsed_field_by_field() -> None:
    attention = papers()["1706.03762"]
    assert attention.title == "Attention Is All You Need"
    assert attention.published == dt.date(2017, 6, 12)  # the first version, not update_date
    assert attention.updated == dt.date(2023, 8, 3)
    assert attention.authors[0] == "Ashish Vaswani" and attention.authors[5] == "Aidan N. Gomez"
    assert attention.n_authors == 8
    assert attention.categories == ["cs.CL", "cs.LG"]
    assert attention.doi is None
    # hard line breaks and leading spaces are gone, the words around them kept apart
    assert attention.abstract.startswith("The dominant sequence transduction models are based")
    assert "recurrent or convolutional" in attention.abstract and "\n" not in attention.abstract


def test_old_style_ids_suffixes_and_dois() -> None:
    by_id = papers()
    maldacena = by_id["hep-th/9711200"]
    assert maldacena.published == dt.date(1997, 11, 27)
    assert maldacena.doi == "10.1023/A:1026654312961"
    assert maldacena.categories == ["hep-th"]
    fixture = by_id["math/0309136"]
    assert fixture.title == "A Record with a Suffix in authors_parsed"
    assert fixture.authors == ["A. N. Author Jr.", "B. Second"]  # from authors_parsed
    assert by_id["1810.04805"].title.endswith("for Language Understanding")


def test_links() -> None:
    assert paper_url("1706.03762") == "https://arxiv.org/abs/1706.03762"
    assert paper_url("hep-th/9711200", "10.1023/A:1026654312961") == (
        "https://arxiv.org/abs/hep-th/9711200"
    )
    assert paper_url("t-0123456789abcdef", "10.1000/xyz 10.1000/abc") == (
        "https://doi.org/10.1000/xyz"
    )
    assert paper_url("t-0123456789abcdef") is None


def test_rfc2822_dates_and_the_earliest_version(tmp_path: Path) -> None:
    assert parse_date("Mon, 12 Jun 2017 17:57:34 GMT") == dt.date(2017, 6, 12)
    assert parse_date("2 Aug 2023 00:41:18 +0000") == dt.date(2023, 8, 2)
    record = {
        "id": "2401.00001v3",
        "title": "T",
        "abstract": "An abstract.",
        "versions": [
            {"version": "v2", "created": "Tue, 9 Jan 2024 10:00:00 GMT"},
            {"version": "v1", "created": "not a date"},
            {"version": "v1", "created": "Mon, 1 Jan 2024 10:00:00 GMT"},
        ],
        "update_date": "2024-02-01",
    }
    path = tmp_path / "v.jsonl"
    path.write_text(json.dumps(record) + "\n")
    (paper,) = load_corpus([path]).papers
    assert (paper.id, paper.published, paper.updated) == (
        "2401.00001",
        dt.date(2024, 1, 1),
        dt.date(2024, 2, 1),
    )


def test_bad_categories_are_an_error_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    good = json.loads(SNAPSHOT.read_text().splitlines()[0])
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": "1", "categories": 5}))
    result = load_corpus([path])
    assert [p.id for p in result.papers] == ["1706.03762"]
    (error,) = result.errors
    assert (error.file, error.line) == (str(path), 2) and "'categories' is a int" in error.reason


# ------------------------------------------------------------------------------ categories
def test_categories_read_from_questions() -> None:
    assert categories_in("Which cs.LG papers use attention?") == ["cs.LG"]
    assert categories_in("What is new in computation and language?") == ["cs.CL"]
    assert categories_in("machine learning papers on attention") == ["cs.LG", "stat.ML"]
    assert categories_in("robotics papers on grasping") == ["cs.RO"]
    assert categories_in("hep-th results on dualities") == ["hep-th"]
    # everyday words that are also category names are not filters
    assert categories_in("What is the performance of the model?") == []
    assert categories_in("Which logic does the sound method use in computation?") == []
    assert categories_in("What does cs mean?") == []


def test_parse_filters_reads_categories_and_years_together() -> None:
    filters = parse_filters(
        "Which cs.CL papers from 2017 propose an architecture based on attention?"
    )
    assert (filters.year_from, filters.year_to, filters.categories) == (2017, 2017, ["cs.CL"])
    assert parse_filters("ImageNet 2012 results").is_empty()


def test_explicit_categories_resolve_codes_and_names() -> None:
    assert resolve(["CS.cl", "Machine Learning"]) == ["cs.CL", "cs.LG", "stat.ML"]
    assert resolve(["cs.CL,hep-th"]) == ["cs.CL", "hep-th"]
    assert resolve(["my-label"]) == ["my-label"]  # a corpus's own labels work too
    with pytest.raises(ConfigError, match="unknown category 'not a category'"):
        resolve(["not a category"])


def test_filters_as_where_and_as_a_metadata_check() -> None:
    meta = {"year": 2017, **category_keys(["cs.CL", "cs.LG"])}
    assert meta["cat:cs"] is True  # the archive matches too
    assert Filters(categories=["cs.CL"]).where() == {"cat:cs.CL": True}
    where = Filters(year_from=2017, categories=["cs.CV", "cs.CL"]).where()
    assert where == {
        "$and": [{"year": {"$gte": 2017}}, {"$or": [{"cat:cs.CV": True}, {"cat:cs.CL": True}]}]
    }
    assert Filters(categories=["cs.CV", "cs"]).matches(meta)
    assert not Filters(categories=["cs.CV"]).matches(meta)
    assert Filters(categories=["cs.LG"]).describe() == {"categories": "cs.LG"}


# ------------------------------------------------------------------------------ streaming
def test_lines_are_split_as_splitlines_splits_across_block_boundaries() -> None:
    rng = random.Random(20)
    for _ in range(2000):
        data = bytes(rng.choice(b"ab\r\n") for _ in range(rng.randrange(0, 30)))
        cut = rng.randrange(0, len(data) + 1)
        lines = byte_lines(data[:cut], io.BytesIO(data[cut:]), block=rng.randrange(1, 4))
        assert list(lines) == data.splitlines(), data


def test_json_lines_are_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One pass over a JSON Lines file (the dumps' metadata pre-pass reads .txt files only)."""
    import rag.loaders

    opened: list[str] = []
    real = rag.loaders.decoded_lines

    def counting(path: Path, on_read: Any = None) -> Any:
        opened.append(path.name)
        return real(path, on_read)

    monkeypatch.setattr(rag.loaders, "decoded_lines", counting)
    result = load_corpus([SNAPSHOT])
    assert len(result.papers) == 5 and opened == ["arxiv-snapshot.json"]
    opened.clear()
    load_corpus([CORPUS / "002_95e11eaea0e7db1a.txt"])
    assert len(opened) == 2  # the dumps still lend each other dates and author counts


def test_ingest_reports_progress_towards_an_estimated_total(fake_assistant: Assistant) -> None:
    calls: list[tuple[int, int | None]] = []
    report = fake_assistant.ingest([SNAPSHOT], progress=lambda d, t: calls.append((d, t)))
    assert report.added == 5 and report.ok
    assert calls[-1] == (5, 5)
    assert all(t is None or t >= d for d, t in calls)
    assert any(t is not None for d, t in calls[:-1])


def test_the_dedupe_index_still_names_the_first_record(tmp_path: Path) -> None:
    """Deduplication keeps hashes, not papers: its errors still say where the first one was."""
    path = tmp_path / "twice.jsonl"
    rows = [
        {"id": "2401.00001", "title": "One", "abstract": "First paper."},
        {"id": "2401.00002", "title": "Two", "abstract": "Second paper."},
        {"id": "2401.00001", "title": "Other", "abstract": "Another paper."},
        {"id": "2401.00002", "title": "Two", "abstract": "Second paper, revised."},
        {"title": "ONE!", "abstract": "First paper."},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = load_corpus([path])
    assert [p.id for p in result.papers] == ["2401.00001", "2401.00002"]
    assert result.duplicates == 1  # the title-only record is the first paper again
    assert [(e.line, e.reason.split(";")[0]) for e in result.errors] == [
        (3, f"id '2401.00001' was already used by {path}:1 for a different paper"),
        (4, f"id '2401.00002' appears again with a different abstract (first at {path}:2)"),
    ]
