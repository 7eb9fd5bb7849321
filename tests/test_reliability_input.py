"""Bad input: every malformed file or record gives an error naming the file, the line (where there
is one) and the fix; every good record beside it goes in; nothing already stored is lost or
changed; the CLI exits 2 ("partial").

The cases run through `Assistant.ingest` on a real embedded Chroma store holding 20 bundled papers
(fake embeddings: the model does not matter for parsing), then all together through the real
`rag ingest` subprocess and the real model on a copy of the full bundled store.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import CORPUS

from rag import Assistant, Settings
from rag.chunking import paper_of
from rag.corpus import load_corpus
from rag.embeddings import get_embedder
from rag.types import Paper

RAG = str(Path(sys.executable).with_name("rag"))
DUMP = CORPUS / "000_fed507252a3b44d8.txt"
PAPERS = load_corpus([CORPUS]).papers
NEW = PAPERS[:70]  # good records the cases carry (NEW[0:3] open the first dump)
STORED = PAPERS[-20:]  # already in the store before each case
CUT = load_corpus([DUMP]).papers[2]  # the entry the cut dumps stop inside
CUT_LINE = DUMP.read_text()[: DUMP.read_text().index(CUT.title)].count("\n") + 1


def rec(i: int, **changes: object) -> dict[str, object]:
    """A good record: a real bundled paper not yet stored."""
    paper = NEW[i]
    record: dict[str, object] = {"id": f"2401.{i:05d}", "title": paper.title}
    record["abstract"] = paper.abstract
    record.update(changes)
    return record


def line(i: int, **changes: object) -> str:
    return json.dumps(rec(i, **changes)) + "\n"


def csv_text(
    header: list[str], rows: list[list[str]], end: str = "\n", quoting: int = csv.QUOTE_MINIMAL
) -> str:
    """A CSV file; without a header (`[]`), the rows alone."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=end, quoting=quoting)
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


@dataclass
class Case:
    """`make(dir)` writes the input and returns the path to ingest."""

    make: Callable[[Path], Path]
    errors: list[tuple[str, int | None, str]]  # (file name, line, words of reason and fix)
    good: list[str] = field(default_factory=list)  # titles that must be stored afterwards
    check: Callable[[dict[str, str]], None] | None = None  # on the new documents, by id


def write(name: str, data: bytes | str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    return make


def mixed_directory(folder: Path) -> Path:
    root = folder / "mixed"
    (root / "nested").mkdir(parents=True)
    (root / "good.jsonl").write_text(line(30))
    (root / "good.csv").write_text(
        csv_text(["title", "abstract"], [[NEW[31].title, NEW[31].abstract]])
    )
    (root / "paper.pdf").write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n")
    (root / "nested" / "bad.jsonl").write_text(line(32) + "{broken\n")
    (root / ".hidden.jsonl").write_text("{ignored\n")  # dot-files are skipped
    return root


def cut_dump(at_title: bool) -> Callable[[Path], Path]:
    """The first real Daily Papers dump, cut off inside its third entry."""

    def make(folder: Path) -> Path:
        text = DUMP.read_text()
        start = text.index(CUT.title)
        assert len(CUT.abstract) > 400
        end = start + len(CUT.title) // 2 if at_title else text.index(CUT.abstract[:80]) + 300
        path = folder / "cut.txt"
        path.write_text(text[:end])
        return path

    return make


DATA = Path(__file__).parent / "data"  # small bad-input fixtures


def fixture(name: str) -> str:
    return (DATA / name).read_text()


def deep_json(depth: int = 100_000) -> str:
    """JSON nested deeper than Python's parser can recurse (RecursionError in json.loads)."""
    return "[" * depth + "]" * depth


def bad_files_beside_good_ones(folder: Path) -> Path:
    """One file of each kind that used to stop the whole ingest, beside good files: every good
    record of every file must go in."""
    root = folder / "many"
    root.mkdir()
    (root / "a_good.jsonl").write_text(line(50))
    (root / "a_deep_first.jsonl").write_text(deep_json() + "\n" + line(57, id="2401.80057"))
    (root / "b_deep.json").write_text(
        '{"papers": [' + json.dumps(rec(51)) + ", " + deep_json() + "]}"
    )
    (root / "c_huge_cell.csv").write_text(
        csv_text(
            ["title", "abstract"],
            [["Huge cell", "word " * 40_000], [NEW[52].title, NEW[52].abstract]],
        )
    )
    (root / "d_types.jsonl").write_text(fixture("wrong-types.jsonl"))
    (root / "e_surrogate.jsonl").write_text(fixture("lone-surrogate.jsonl") + line(53))
    (root / "f_unclosed.csv").write_text(
        csv_text(["title", "abstract"], [[NEW[54].title, NEW[54].abstract]])
        + fixture("unclosed-quote-row.csv")
        + unquoted_row(NEW[55])
    )
    (root / "g_dots.jsonl").write_text(line(56, title="." * 260))
    return root


def utf16_files(folder: Path) -> Path:
    """UTF-16 with a byte-order mark, as Windows editors save "Unicode" text: read as text."""
    root = folder / "utf16"
    root.mkdir()
    rows = [[NEW[p].title, NEW[p].abstract] for p in (64, 65)]
    (root / "ah.csv").write_bytes(csv_text(["title", "abstract"], rows, "\r\n").encode("utf-16"))
    (root / "ai.jsonl").write_bytes(b"\xfe\xff" + line(66).encode("utf-16-be"))
    dump = f"{NEW[67].title}\n{NEW[67].abstract}\n"
    (root / "aj.txt").write_bytes(b"\xff\xfe" + dump.encode("utf-16-le"))
    return root


def unreadable_encodings(folder: Path) -> Path:
    """UTF-16 without a byte-order mark and UTF-32: named, not called binary."""
    root = folder / "encodings"
    root.mkdir()
    (root / "ak.jsonl").write_bytes((DATA / "utf16-no-bom.jsonl").read_bytes())
    (root / "al.jsonl").write_bytes(line(68).encode("utf-32"))
    (root / "am.jsonl").write_text(line(69))
    return root


def unquoted(text: str) -> str:
    return text.replace(",", ";").replace('"', "'")


def unquoted_row(paper: Paper) -> str:
    """A CSV row that needs no quotes: the row an unclosed quote above it would swallow."""
    return f"{unquoted(paper.title)},{unquoted(paper.abstract)}\n"


def fits_the_model(docs: dict[str, str]) -> None:
    from conftest import HashEmbedding

    counter = HashEmbedding(model_name="hash-test")
    assert docs and all(counter.count_tokens(d) <= counter.max_tokens for d in docs.values())


def two_papers(docs: dict[str, str]) -> None:
    assert {paper_of(cid) for cid in docs} == {"2401.90001", "2401.90002"}


LATIN1 = '{"title": "Caf\xe9 society", "abstract": "na\xefve"}\n'.encode("latin-1")
HUGE = json.dumps({"id": "x-huge", "title": "A huge one", "abstract": "word " * 210_000})


def bom_check(docs: dict[str, str]) -> None:
    assert not any("\ufeff" in d for d in docs.values())


def crlf_check(docs: dict[str, str]) -> None:
    assert docs and not any("\r" in d for d in docs.values())


def control_check(docs: dict[str, str]) -> None:
    (doc,) = [d for d in docs.values() if "Bell" in d]
    assert not any(ord(c) < 32 and c != "\n" for c in doc) and "\x7f" not in doc
    assert "Bell and escape title" in doc and "[31m red" in doc


def html_check(docs: dict[str, str]) -> None:
    chunks = [d for d in docs.values() if d.startswith("<b>Bold</b> claims\n")]
    assert chunks and "<script>alert('x')</script>" in chunks[-1]  # stored as text, verbatim


CASES: dict[str, Case] = {
    "malformed-json-line": Case(
        write("a.jsonl", line(0) + "{oops, not json\n" + line(1)),
        [("a.jsonl", 2, "malformed JSON (Expecting property name enclosed in double quotes")],
        [NEW[0].title, NEW[1].title],
    ),
    "json-array-instead-of-lines": Case(  # read as an array; the bad element is reported
        write("array.jsonl", json.dumps([rec(2), {"title": "No text"}, rec(3)], indent=1)),
        [("array.jsonl", None, "'No text' has no abstract; add a non-empty 'abstract'")],
        [NEW[2].title, NEW[3].title],
    ),
    "broken-json-array": Case(
        write("broken.json", "[\n" + json.dumps(rec(4)) + ",\n" + json.dumps(rec(5))[:60]),
        [("broken.json", 3, "invalid JSON")],
    ),
    "missing-abstract": Case(
        write("b.jsonl", line(6) + json.dumps({"id": "x1", "title": "Nothing else"}) + "\n"),
        [("b.jsonl", 2, "'Nothing else' has no abstract; add a non-empty 'abstract'")],
        [NEW[6].title],
    ),
    "empty-abstract": Case(
        write("c.jsonl", line(7, id="x2", abstract="  \t ") + line(8)),
        [("c.jsonl", 1, "has no abstract; add a non-empty 'abstract'")],
        [NEW[8].title],
    ),
    "empty-title": Case(
        write("d.jsonl", line(9) + line(10, id="x3", title="   ")),
        [("d.jsonl", 2, "record has no title; add a non-empty 'title'")],
        [NEW[9].title],
    ),
    "non-utf8-bytes": Case(
        write("e.jsonl", line(11).encode() + LATIN1 + line(12).encode()),
        [("e.jsonl", 2, "not UTF-8 at column 15; re-save the file as UTF-8")],
        [NEW[11].title, NEW[12].title],
    ),
    "byte-order-mark": Case(
        write("f.jsonl", b"\xef\xbb\xbf" + line(13).encode()), [], [NEW[13].title], bom_check
    ),
    "crlf-line-ends": Case(
        write(
            "g.csv", csv_text(["title", "abstract"], [[NEW[14].title, NEW[14].abstract]], "\r\n")
        ),
        [],
        [NEW[14].title],
        crlf_check,
    ),
    "control-characters": Case(
        write(
            "h.jsonl",
            line(15, title="Bell\x07 and\x00 escape\x1b title", abstract="Red \x1b[31m red\x7f."),
        ),
        [],
        ["Bell and escape title"],
        control_check,
    ),
    "html-and-script": Case(
        write(
            "i.jsonl",
            line(
                16,
                title="<b>Bold</b> claims",
                abstract=NEW[16].abstract + " "
                "<script>alert('x')</script> <img src=x onerror=alert(1)>",
            ),
        ),
        [],
        ["<b>Bold</b> claims"],
        html_check,
    ),
    "one-megabyte-abstract": Case(
        write("j.jsonl", line(17) + HUGE + "\n"),
        [
            (
                "j.jsonl",
                2,
                "is 1,049,999 characters, over the 20,000 limit; check the record (or "
                "raise RAG_MAX_ABSTRACT_CHARS)",
            )
        ],
        [NEW[17].title],
    ),
    "same-id-different-paper": Case(
        write("k.jsonl", line(18) + line(19, id="2401.00018")),
        [("k.jsonl", 2, "id '2401.00018' was already used by")],
        [NEW[18].title],
    ),
    "same-id-two-versions": Case(
        write(
            "l.jsonl", line(20, id="2401.00020v1") + line(20, id="2401.00020v2", abstract="New.")
        ),
        [("l.jsonl", 2, "id '2401.00020' appears again with a different abstract")],
        [NEW[20].title],
    ),
    "csv-unknown-columns": Case(
        write("m.csv", "name,text\nfoo,bar\n"),
        [("m.csv", 1, "CSV needs 'title' and 'abstract' columns, found: name, text; rename")],
    ),
    "csv-missing-column-and-cell": Case(
        write(
            "n.csv",
            csv_text(
                ["title", "abstract"], [[NEW[21].title, NEW[21].abstract], ["Orphan title", ""]]
            ),
        ),
        [("n.csv", 3, "'Orphan title' has no abstract")],
        [NEW[21].title],
    ),
    "csv-title-only": Case(
        write("o.csv", "title\nOnly a title\n"),
        [("o.csv", 1, "CSV needs 'title' and 'abstract' columns, found: title")],
    ),
    "empty-file": Case(write("p.jsonl", b""), [("p.jsonl", None, "empty file")]),
    "blank-lines-only": Case(
        write("q.jsonl", "\n  \n\n"), [("q.jsonl", None, "no papers found in this file")]
    ),
    "binary-file": Case(
        write("r.json", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))),
        [("r.json", None, "binary file, not text; give rag a .txt, .jsonl, .json or .csv")],
    ),
    "unsupported-type": Case(
        write("s.pdf", b"%PDF-1.7"), [("s.pdf", None, "unsupported file type '.pdf'")]
    ),
    "not-an-object-per-line": Case(
        write("t.jsonl", line(22) + "[1, 2, 3]\n"),
        [("t.jsonl", 2, "expected a JSON object per record, got list")],
        [NEW[22].title],
    ),
    "mixed-directory": Case(
        mixed_directory,
        [
            ("paper.pdf", None, "unsupported file type '.pdf'"),
            ("bad.jsonl", 2, "malformed JSON"),
        ],
        [NEW[30].title, NEW[31].title, NEW[32].title],
    ),
    "path-does-not-exist": Case(
        lambda folder: folder / "nowhere" / "papers.jsonl",
        [("papers.jsonl", None, "no such file or directory; check the path")],
    ),
    "daily-dump-cut-mid-abstract": Case(
        cut_dump(at_title=False),
        [("cut.txt", CUT_LINE, f"ends in the middle of the abstract of '{CUT.title[:60]}'")],
        [NEW[0].title, NEW[1].title],
    ),
    "daily-dump-cut-mid-title": Case(
        cut_dump(at_title=True),
        [("cut.txt", CUT_LINE, "(entry cut off); add its abstract")],
        [NEW[0].title, NEW[1].title],
    ),
    # ---- issue 16: an ingest that never ends (5), one bad record losing others (6), silent
    # loss and replacement (7), one id multiplying disk use (8)
    "title-of-260-dots": Case(  # fits tiktoken's budget, not the model's 256 word pieces
        write("u.jsonl", line(23, title="." * 260)), [], ["." * 260], fits_the_model
    ),
    "abstract-of-dots": Case(
        write("v.jsonl", line(24, title="Dots only", abstract="." * 5_000)),
        [],
        ["Dots only"],
        fits_the_model,
    ),
    "deeply-nested-json-line": Case(
        lambda folder: write("w.jsonl", line(25) + deep_json() + "\n" + line(26))(folder),
        [("w.jsonl", 2, "malformed JSON (nested too deeply to read); fix or remove this line")],
        [NEW[25].title, NEW[26].title],
    ),
    "csv-cell-over-128-kb": Case(
        lambda folder: write(
            "x.csv",
            csv_text(
                ["title", "abstract"],
                [
                    [NEW[27].title, NEW[27].abstract],
                    ["Huge cell", "word " * 40_000],
                    ["word " * 30_000, "A title cell of 150 KB."],
                    [NEW[28].title, NEW[28].abstract],
                ],
            ),
        )(folder),
        [
            ("x.csv", 3, "'Huge cell' is 199,999 characters, over the 20,000 limit; check the"),
            ("x.csv", 4, "title is 149,999 characters, over the 1,000 a title can have; check"),
        ],
        [NEW[27].title, NEW[28].title],
    ),
    "wrong-field-types": Case(
        write("y.jsonl", line(29) + fixture("wrong-types.jsonl") + line(33)),
        [
            ("y.jsonl", 2, "'categories' is a int; give a space-separated string"),
            ("y.jsonl", 3, "'authors' is a int; give a list of names or a comma-separated string"),
            ("y.jsonl", 4, "'id' of 'An id that is an object' is a dict; give a string"),
            ("y.jsonl", 5, "'categories' is a list; give a space-separated string"),
        ],
        [NEW[29].title, NEW[33].title],
    ),
    "lone-surrogate-in-title": Case(
        write("z.jsonl", line(34) + fixture("lone-surrogate.jsonl") + line(35)),
        [("z.jsonl", 2, "'title' has an unpaired surrogate \\ud800 at character 8")],
        [NEW[34].title, NEW[35].title],
    ),
    "bad-files-beside-good-ones": Case(
        bad_files_beside_good_ones,
        [
            ("b_deep.json", 1, "malformed JSON (nested too deeply to read)"),
            ("a_deep_first.jsonl", 1, "malformed JSON (nested too deeply to read)"),
            ("c_huge_cell.csv", 2, "'Huge cell' is 199,999 characters"),
            ("d_types.jsonl", 1, "'categories' is a int"),
            ("d_types.jsonl", 2, "'authors' is a int"),
            ("d_types.jsonl", 3, "'id' of 'An id that is an object' is a dict"),
            ("d_types.jsonl", 4, "'categories' is a list"),
            ("e_surrogate.jsonl", 1, "unpaired surrogate"),
            ("f_unclosed.csv", 3, "a quoted cell that starts here is never closed"),
        ],
        [NEW[i].title for i in (50, 52, 53, 54, 57)] + [unquoted(NEW[55].title), "." * 260],
    ),
    "same-title-different-ids": Case(  # ids win over titles: two papers, both kept
        write(
            "aa.jsonl",
            line(40, id="2401.90001")
            + line(41, id="2401.90002", title=NEW[40].title.upper() + "!"),
        ),
        [],
        [NEW[40].title, NEW[40].title.upper() + "!"],
        two_papers,
    ),
    "csv-unclosed-quote-at-the-end": Case(  # it used to swallow the next row, "failed 0"
        write(
            "ab.csv",
            csv_text(["title", "abstract"], [[NEW[42].title, NEW[42].abstract]])
            + fixture("unclosed-quote-row.csv")
            + unquoted_row(NEW[43]),
        ),
        [("ab.csv", 3, "a quoted cell that starts here is never closed; add the closing quote")],
        [unquoted(NEW[43].title), NEW[42].title],
    ),
    "csv-quote-closed-by-a-later-row": Case(
        write(
            "ac.csv",
            "title,abstract\n"
            + fixture("unclosed-quote-row.csv")
            + csv_text(
                [],
                [[NEW[44].title, NEW[44].abstract], [NEW[45].title, NEW[45].abstract]],
                quoting=csv.QUOTE_ALL,  # row 3's first quote closes the one row 2 opened
            ),
        ),
        [("ac.csv", 2, "a quote closes in the middle of a cell")],
        [NEW[44].title, NEW[45].title],
    ),
    "nan-and-infinity": Case(  # JSON's NaN/Infinity and pandas' "nan" were stored as text
        write("an.jsonl", line(60) + fixture("nan-infinity.jsonl") + line(61)),
        [
            ("an.jsonl", 2, "'title' is NaN (a number, not text); give the title as text"),
            ("an.jsonl", 3, "'abstract' is Infinity (a number, not text)"),
            ("an.jsonl", 4, "'title' is 'nan', a missing value written as text"),
            ("an.jsonl", 5, "'id' of 'A record whose id is NaN' is a float; give a string"),
        ],
        [NEW[60].title, NEW[61].title],
    ),
    "invisible-only-text": Case(
        write("ao.jsonl", line(62) + fixture("invisible.jsonl") + line(63)),
        [
            ("ao.jsonl", 2, "'title' has no visible characters (only U+200C, U+200D, U+2060)"),
            ("ao.jsonl", 3, "'abstract' has no visible characters (only U+00AD, U+2800, U+3164)"),
        ],
        [NEW[62].title, NEW[63].title],
    ),
    "utf16-with-byte-order-mark": Case(
        utf16_files, [], [NEW[64].title, NEW[65].title, NEW[66].title, NEW[67].title]
    ),
    "utf16-without-mark-and-utf32": Case(
        unreadable_encodings,
        [
            (
                "ak.jsonl",
                None,
                "looks like UTF-16 text without a byte-order mark; re-save it as UTF-8",
            ),
            ("al.jsonl", None, "this file is UTF-32 text; re-save it as UTF-8"),
        ],
        [NEW[69].title],
    ),
    "csv-duplicate-header": Case(  # was "… has no abstract"
        lambda folder: write("ap.csv", fixture("duplicate-header.csv"))(folder),
        [("ap.csv", 1, "duplicate column 'abstract' in the header; rename or remove one of them")],
    ),
    "one-megabyte-id": Case(
        lambda folder: write("ad.jsonl", line(46) + line(47, id="x" * 1_000_000) + line(48))(
            folder
        ),
        [("ad.jsonl", 2, "is 1,000,000 characters, over the 256 limit; use the arXiv id")],
        [NEW[46].title, NEW[48].title],
    ),
}


def contents(assistant: Assistant) -> dict[str, str]:
    got = assistant.store.get(include=["documents"])
    return dict(zip(got["ids"], got["documents"], strict=True))


@pytest.fixture
def seeded(fake_assistant: Assistant, tmp_path: Path) -> Assistant:
    seed = tmp_path / "seed.jsonl"
    seed.write_text(
        "".join(json.dumps({"title": p.title, "abstract": p.abstract}) + "\n" for p in STORED)
    )
    assert fake_assistant.ingest([seed]).added == len(STORED)
    return fake_assistant


def assert_failures(
    failed: list[tuple[str, int | None, str]], expected: list[tuple[str, int | None, str]]
) -> None:
    """Each expected (file name, line, words) matches exactly one failure, and nothing else failed."""
    assert len(failed) == len(expected), failed
    left = list(failed)
    for file, number, words in expected:
        match = [
            f
            for f in left
            if Path(f[0]).name == file and (number is None or f[1] == number) and words in f[2]
        ]
        assert match, f"no failure {file}:{number} '{words}' in {left}"
        left.remove(match[0])
        assert ";" in match[0][2]  # the fix follows the problem


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_through_the_api(seeded: Assistant, tmp_path: Path, name: str) -> None:
    case = CASES[name]
    folder = tmp_path / "input"
    folder.mkdir()
    path = case.make(folder)
    before = contents(seeded)

    report = seeded.ingest([path])

    assert all(str(folder) in f.file for f in report.failed)
    assert_failures([(f.file, f.line, f.reason) for f in report.failed], case.errors)
    assert report.added == len(case.good)
    after = contents(seeded)
    assert {i: after.get(i) for i in before} == before  # nothing stored was lost or changed
    titles = {m["title"] for m in seeded.store.get(include=["metadatas"])["metadatas"]}
    assert set(case.good) <= titles
    if case.check:
        case.check({i: d for i, d in after.items() if i not in before})


def test_a_different_paper_behind_a_known_id_is_reported_with_both_titles(
    seeded: Assistant,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A later run that brings another paper under a stored id replaces it (an update, as a
    corrected abstract is) but says so, with the stored title and the new one, in the report
    and in `rag ingest`'s output; a metadata-only change is an update and no replacement."""
    from rag import cli

    first = tmp_path / "first.jsonl"
    first.write_text(line(57) + line(58))
    assert seeded.ingest([first]).added == 2
    second = tmp_path / "second.jsonl"
    second.write_text(
        line(57, title=NEW[59].title, abstract=NEW[59].abstract) + line(58, authors=["A. Author"])
    )

    monkeypatch.setattr(cli, "_assistant", lambda overrides=None: seeded)
    cli.ingest([second], rebuild=False, as_json=False, overrides=None)  # exit 0: nothing failed

    out = capsys.readouterr()
    assert "added 0, updated 2, unchanged 0" in out.out
    assert (
        f"replaced: {second}:1: '2401.00057' was '{NEW[57].title}', now '{NEW[59].title}'"
        in out.err
    )
    assert out.err.count("replaced:") == 1 and "Traceback" not in out.err
    got = seeded.store.get(where={"paper_id": "2401.00057"}, include=["metadatas"])["metadatas"]
    assert {m["title"] for m in got} == {NEW[59].title}

    third = tmp_path / "third.jsonl"
    third.write_text(line(57, title=NEW[57].title, abstract=NEW[57].abstract))
    report = seeded.ingest([third])
    assert report.updated == 1 and [(r.old_title, r.new_title) for r in report.replaced] == [
        (NEW[59].title, NEW[57].title)
    ]
    assert report.replaced[0].paper_id == "2401.00057" and report.replaced[0].line == 1


def test_bm25_ids_are_stored_at_their_own_length(seeded: Assistant, tmp_path: Path) -> None:
    """The BM25 index keeps each chunk id at its own length (it padded every row to the longest
    id: a 1 MB id made a 647 MB file); and an id over RAG_MAX_ID_CHARS is refused."""
    from rag.hybrid import IDS, OFFSETS, load_ids

    papers = tmp_path / "ids.jsonl"
    longest = "2401." + "9" * 251  # 256 characters: the limit
    papers.write_text(line(36, id=longest) + line(37) + line(38, id=longest + "0"))
    report = seeded.ingest([papers])
    assert report.added == 2 and len(report.failed) == 1
    assert "over the 256 limit" in report.failed[0].reason

    root = seeded.settings.data_dir / "bm25" / seeded.settings.collection
    index = root / json.loads((root / "manifest.json").read_text())["index"]
    ids = list(load_ids(index))
    assert sorted(ids) == sorted(seeded.store.get(include=[])["ids"])
    size = (index / IDS).stat().st_size + (index / OFFSETS).stat().st_size
    assert (index / IDS).stat().st_size == sum(len(i.encode()) for i in ids)
    assert size < 2 * sum(len(i) for i in ids) + 8 * len(ids) + 1024  # not rows x longest
    assert len(ids) * max(len(i) for i in ids) > 2 * size  # what padding would have cost


def test_at_least_fifteen_cases() -> None:
    assert len(CASES) >= 15


# ------------------------------------------------------------------------------- the real model
@pytest.fixture(scope="module")
def real_small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 20 STORED papers, embedded with the real model."""
    data_dir = tmp_path_factory.mktemp("real-small")
    seed = data_dir / "seed.jsonl"
    seed.write_text(
        "".join(json.dumps({"title": p.title, "abstract": p.abstract}) + "\n" for p in STORED)
    )
    assistant = Assistant(
        Settings(data_dir=data_dir, _env_file=None), embedder=get_embedder(Settings(_env_file=None))
    )
    assert assistant.ingest([seed]).added == 20
    return data_dir


def real_copy(real_small_store: Path, tmp_path: Path) -> Assistant:
    data_dir = tmp_path / "store"
    shutil.copytree(real_small_store, data_dir)
    return Assistant(
        Settings(data_dir=data_dir, _env_file=None), embedder=get_embedder(Settings(_env_file=None))
    )


def run_cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "1000", "RAG_DATA_DIR": str(data_dir)}
    return subprocess.run([RAG, *args], capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.e2e
@pytest.mark.slow
def test_every_bad_input_through_the_cli_with_the_real_model(
    real_small_store: Path, tmp_path: Path
) -> None:
    """All the cases at once through `rag ingest`: exit 2, one line per failure naming
    file:line and the fix, every good record in, the stored papers untouched."""
    assistant = real_copy(real_small_store, tmp_path)
    before = contents(assistant)
    paths = []
    expected: list[tuple[str, int | None, str]] = []
    good: set[str] = set()
    for name, case in CASES.items():
        folder = tmp_path / "cases" / name
        folder.mkdir(parents=True)
        paths.append(str(case.make(folder)))
        expected += case.errors
        good |= set(case.good)

    result = run_cli("ingest", *paths, data_dir=assistant.settings.data_dir)

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    failed = []
    for text in result.stderr.splitlines():
        if text.startswith("failed: "):
            where, reason = text.removeprefix("failed: ").split(": ", 1)
            file, _, number = where.rpartition(":")
            if not number.isdigit():
                file, number = where, ""
            failed.append((file, int(number) if number else None, reason))
    assert_failures(failed, expected)
    assert "partial ingest: the good records went in" in result.stderr
    after = contents(assistant)
    assert {i: after.get(i) for i in before} == before
    titles = {m["title"] for m in assistant.store.get(include=["metadatas"])["metadatas"]}
    assert good <= titles

    # A path that does not exist, alone: still exit 2 and the path named; store unchanged.
    missing = tmp_path / "no" / "such.jsonl"
    result = run_cli("ingest", str(missing), data_dir=assistant.settings.data_dir)
    assert result.returncode == 2
    assert f"failed: {missing}: no such file or directory; check the path" in result.stderr
    assert contents(assistant) == after


@pytest.mark.e2e
def test_bad_input_with_the_real_model_through_the_api(
    real_small_store: Path, tmp_path: Path
) -> None:
    assistant = real_copy(real_small_store, tmp_path)
    before = contents(assistant)
    folder = tmp_path / "input"
    folder.mkdir()
    report = assistant.ingest([CASES["mixed-directory"].make(folder)])
    assert report.added == 3 and len(report.failed) == 2
    after = contents(assistant)
    assert {i: after.get(i) for i in before} == before
    answer = assistant.ask(NEW[31].title)
    assert answer.sources[0].title == NEW[31].title
