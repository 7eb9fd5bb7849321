"""Corpus loaders on the real bundled dumps and on small hand-made files."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from conftest import CORPUS, LRA_TITLE

from rag.corpus import load_corpus, load_csv, load_daily_papers, normalize_title, title_id
from rag.errors import CorpusError
from rag.types import Paper


def test_bundled_corpus_counts() -> None:
    result = load_corpus([CORPUS])
    assert result.entries == 324
    assert len(result.papers) == 277
    assert result.duplicates == 47
    assert result.errors == []
    titles = {p.title for p in result.papers}
    assert LRA_TITLE in titles
    # The glued page word is removed: "SubscribeVicaSplat: ..." -> "VicaSplat: ..."
    assert any(t.startswith("VicaSplat:") for t in titles)
    assert not any(t.startswith(("Subscribe", "new", "Daily Papers")) for t in titles)


def test_bundled_metadata_lines_are_parsed() -> None:
    papers = {p.title: p for p in load_corpus([CORPUS]).papers}
    tint = papers["Transformer in Transformer"]
    assert tint.n_authors == 6
    assert tint.published == dt.date(2021, 2, 26)
    assert sum(1 for p in papers.values() if p.published) >= 50
    # Every paper has an abstract that is not a metadata line.
    assert all(len(p.abstract) > 200 for p in papers.values())


def test_daily_dump_without_blank_lines_and_cut_off(tmp_path: Path) -> None:
    dump = tmp_path / "page.txt"
    abstract = "We study things. " * 20
    dump.write_text(
        "Get trending papers in your email inbox!\nSubscribeFirst Paper Title\n"
        f"{abstract}\n  • 3 authors\n·\nMar 5, 2024 12\nSecond Paper\n{abstract}\nCut Off Title\n",
        encoding="utf-8",
    )
    items = list(load_daily_papers(dump))
    papers = [i for i in items if not isinstance(i, Exception)]
    errors = [i for i in items if isinstance(i, Exception)]
    assert [p.title for p in papers] == ["First Paper Title", "Second Paper"]
    assert papers[0].n_authors == 3 and papers[0].published == dt.date(2024, 3, 5)
    assert papers[0].line == 2
    assert len(errors) == 1 and errors[0].line == 9 and "cut off" in str(errors[0])


def test_jsonl_arxiv_shape_and_bad_lines(tmp_path: Path) -> None:
    good = {
        "id": "2011.04006v2",
        "title": "  Long Range\n Arena ",
        "abstract": "  A benchmark\n of long sequences.",
        "authors": "Yi Tay, Mostafa Dehghani and Samira Abnar",
        "categories": "cs.LG cs.CL",
        "update_date": "2020-11-08",
    }
    path = tmp_path / "arxiv.jsonl"
    path.write_text(
        json.dumps(good) + "\n{broken json\n" + json.dumps({"title": "No abstract"}) + "\n"
    )
    result = load_corpus([path])
    assert len(result.papers) == 1
    paper = result.papers[0]
    assert paper.id == "2011.04006"
    assert paper.title == "Long Range Arena"
    assert paper.authors == ["Yi Tay", "Mostafa Dehghani", "Samira Abnar"]
    assert paper.categories == ["cs.LG", "cs.CL"]
    assert paper.published == dt.date(2020, 11, 8)
    lines = sorted((e.line, e.reason) for e in result.errors)
    assert lines[0][0] == 2 and "malformed JSON" in lines[0][1]
    assert lines[1][0] == 3 and "no abstract" in lines[1][1]


def test_json_array_and_csv(tmp_path: Path) -> None:
    array = tmp_path / "papers.json"
    array.write_text(
        json.dumps([{"title": "A", "abstract": "Alpha text."}, {"title": "B", "abstract": "Beta."}])
    )
    csv_file = tmp_path / "papers.csv"
    csv_file.write_text(
        "Title,Abstract,Date\nC,Gamma text.,2023-01-02\n,missing title,\n", encoding="utf-8"
    )
    result = load_corpus([array, csv_file])
    assert [p.title for p in result.papers] == ["A", "B", "C"]
    assert result.papers[2].published == dt.date(2023, 1, 2)
    assert len(result.errors) == 1 and result.errors[0].line == 3


def test_csv_without_required_columns_says_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("name,text\nx,y\n")
    result = load_corpus([bad])
    assert result.papers == []
    assert "needs 'title' and 'abstract'" in str(result.errors[0])
    assert result.errors[0].file == str(bad) and result.errors[0].line == 1


def test_dedupe_across_formats_by_title(tmp_path: Path) -> None:
    path = tmp_path / "dup.jsonl"
    path.write_text(
        json.dumps({"title": LRA_TITLE.upper(), "abstract": "Same paper, other text."}) + "\n"
    )
    result = load_corpus([CORPUS, path])
    assert len(result.papers) == 277
    assert result.duplicates == 48


def test_title_ids_are_stable() -> None:
    assert (
        normalize_title("SiT: Self-supervised vIsion Transformer")
        == "sit self supervised vision transformer"
    )
    assert title_id("A  Title!") == title_id("a title")


# ------------------------------------------------------- issue 16 items 6 and 7: loaders
def test_ids_win_over_titles(tmp_path: Path) -> None:
    """Records with two different ids are two papers, whatever their titles; a record without an
    id of its own is still matched by title (to either)."""
    path = tmp_path / "ids.jsonl"
    rows = [
        {"id": "2401.00001", "title": "Scaling Laws", "abstract": "Loss falls as a power law."},
        {"id": "2401.00002", "title": "scaling laws!", "abstract": "Another study entirely."},
        {"title": "SCALING LAWS", "abstract": "Loss falls as a power law."},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = load_corpus([path])
    assert [p.id for p in result.papers] == ["2401.00001", "2401.00002"]
    assert result.duplicates == 1 and result.errors == []


def test_csv_quotes_that_never_close_are_errors_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text(
        "title,abstract\n"
        'Multi-line cell,"A quoted abstract\nthat spans two lines, legitimately."\n'
        'Bad row,"This quote is never closed.\n'
        "Swallowed row,A good row after it.\n"
    )
    items = list(load_csv(path))
    papers = [i for i in items if isinstance(i, Paper)]
    errors = [i for i in items if isinstance(i, CorpusError)]
    assert [(p.title, p.line) for p in papers] == [("Multi-line cell", 2), ("Swallowed row", 5)]
    assert papers[0].abstract == "A quoted abstract that spans two lines, legitimately."
    assert [(e.line, e.reason.split(";")[0]) for e in errors] == [
        (4, "a quoted cell that starts here is never closed")
    ]


def test_a_loader_that_breaks_mid_file_costs_that_file_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loader bug (anything it raises) ends its file with one error naming the file and the
    last line read; the records before it and every other file still go in."""
    import rag.corpus

    good = tmp_path / "a.jsonl"
    good.write_text(json.dumps({"title": "Good", "abstract": "A good abstract."}) + "\n")
    broken = tmp_path / "b.jsonl"
    broken.write_text(json.dumps({"title": "Before", "abstract": "Read before the bug."}) + "\n")
    real = rag.corpus._load_file

    def buggy(path: Path, **kwargs: object) -> object:
        yield from real(path, **kwargs)
        if path == broken:
            raise KeyError("a loader bug")

    monkeypatch.setattr(rag.corpus, "_load_file", buggy)
    result = load_corpus([good, broken])
    assert [p.title for p in result.papers] == ["Good", "Before"]
    (error,) = result.errors
    assert error.file == str(broken) and error.line == 1
    assert "cannot read the rest of this file after line 1 (KeyError)" in str(error)


def test_records_are_checked_field_by_field(tmp_path: Path) -> None:
    """Wrong types, unpaired surrogates and runaway lengths are errors for their line."""
    path = tmp_path / "r.jsonl"
    abstract = "A good abstract."
    rows = [
        {"title": ["a", "list"], "abstract": abstract},
        {"title": True, "abstract": abstract},
        {"title": "Ok", "abstract": abstract, "authors": [{"name": 5}, "B. Author"]},
        {"title": "Surrogate author", "abstract": abstract, "authors": ["A \udc00"]},
        {"title": "x" * 1_001, "abstract": abstract},
        {"id": "9" * 257, "title": "Long id", "abstract": abstract},
        {"id": "9" * 256, "title": "Id at the limit", "abstract": abstract},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = load_corpus([path])
    assert [(p.title, p.authors) for p in result.papers] == [
        ("Ok", ["B. Author"]),
        ("Id at the limit", []),
    ]
    assert [(e.line, e.reason.split(";")[0]) for e in result.errors] == [
        (1, "record has no title"),
        (2, "record has no title"),
        (4, "'authors' has an unpaired surrogate \\udc00 at character 3, which is not a character"),
        (5, "title is 1,001 characters, over the 1,000 a title can have"),
        (6, "'id' of 'Long id' is 257 characters, over the 256 limit"),
    ]
    assert load_corpus([path], max_id_chars=300).papers[1].title == "Long id"


def test_a_file_name_that_is_not_utf8_is_an_error_not_a_crash(tmp_path: Path) -> None:
    """Such a name reaches Python as lone surrogates, which the store cannot encode."""
    import os

    bad = tmp_path / os.fsdecode(b"caf\xe9.jsonl")
    bad.write_text(json.dumps({"title": "Named badly", "abstract": "A good abstract."}) + "\n")
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"title": "Named well", "abstract": "A good abstract."}) + "\n")
    result = load_corpus([tmp_path])
    assert [p.title for p in result.papers] == ["Named well"]
    (error,) = result.errors
    assert error.file == str(tmp_path / "caf\ufffd.jsonl")
    assert "not valid UTF-8" in str(error)
    str(error).encode()  # printable
