"""kill -9 in the middle of ingesting arXiv-snapshot records, then a rerun: the store equals a
clean ingest's, category keys, links and dates included (the crash loop in
test_reliability_crash.py covers the store on simpler records; this one the snapshot loader)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import CORPUS
from test_reliability_crash import SMALL_BATCHES, read_markers, wait_for_marker

from rag import Assistant, Settings
from rag.corpus import load_corpus

pytestmark = pytest.mark.e2e

CATEGORIES = ["cs.CL cs.LG", "cs.CV", "hep-th", "math.PR stat.ML", "quant-ph"]


def write_snapshot(path: Path, n: int = 40) -> Path:
    """`n` bundled abstracts as snapshot lines: hard line breaks, RFC 2822 versions, both id
    styles, authors_parsed, categories."""
    lines = []
    for i, paper in enumerate(load_corpus([CORPUS]).papers[:n]):
        words = paper.abstract.split()
        abstract = "  " + "\n".join(" ".join(words[j : j + 12]) for j in range(0, len(words), 12))
        lines.append(
            {
                "id": f"hep-th/97{i % 12 + 1:02d}{i:03d}" if i % 5 == 0 else f"2101.{i:05d}",
                "submitter": "A. Author",
                "authors": "A. Author and B. Author",
                "title": paper.title,
                "comments": None,
                "journal-ref": None,
                "doi": f"10.1000/x{i}" if i % 3 == 0 else None,
                "report-no": None,
                "categories": CATEGORIES[i % len(CATEGORIES)],
                "license": None,
                "abstract": abstract + "\n",
                "versions": [
                    {"version": "v1", "created": f"Mon, {i % 27 + 1} Feb 2021 10:00:00 GMT"}
                ],
                "update_date": "2023-08-03",
                "authors_parsed": [["Author", "A.", ""], ["Author", "B.", ""]],
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def stored(data_dir: Path) -> dict[str, tuple[str | None, dict[str, Any]]]:
    got = Assistant(Settings(data_dir=data_dir, _env_file=None)).store.get(
        include=["documents", "metadatas"]
    )
    return {
        cid: (doc, meta)
        for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
    }


def test_kill_9_mid_ingest_of_snapshot_records_then_rerun(tmp_path: Path) -> None:
    snapshot = write_snapshot(tmp_path / "arxiv-metadata-oai-snapshot.json")
    reference = tmp_path / "reference"
    report = Assistant(Settings(data_dir=reference, _env_file=None)).ingest([snapshot])
    assert (report.added, report.failed) == (40, [])
    clean = stored(reference)

    data_dir = tmp_path / "killed"
    env = {**os.environ, "RAG_DATA_DIR": str(data_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SMALL_BATCHES, str(snapshot)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    markers = read_markers(proc)
    assert wait_for_marker(markers, "@write-start", 5), "the ingest ended before its 5th write"
    os.kill(proc.pid, signal.SIGKILL)  # inside the 5th of 10 writes: about half is stored
    proc.wait(timeout=60)
    partial = stored(data_dir)
    assert 0 < len(partial) < len(clean)

    rerun = Assistant(Settings(data_dir=data_dir, _env_file=None)).ingest([snapshot])
    assert rerun.ok and rerun.added + rerun.skipped + rerun.updated == 40
    assert stored(data_dir) == clean  # same ids, documents and metadata: nothing lost or doubled
    meta = next(m for _, m in clean.values() if m["paper_id"] == "hep-th/9701000")
    assert (meta["published"], meta["updated"], meta["categories"]) == (
        "2021-02-01",
        "2023-08-03",
        "cs.CL cs.LG",
    )
    assert meta["cat:cs.CL"] and meta["cat:cs.LG"] and meta["cat:cs"]
