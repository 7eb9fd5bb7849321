"""A running server and its store (issue 16, items 9 and 10).

Item 9: a server sees outside changes to its store. `rag ingest` (and `--rebuild`) from another
process bump the store generation (RAG_DATA_DIR/store.generation); the server stats it per
request, reopens the collection and refreshes BM25. Tested with two processes: uvicorn serving
the API in this process, the real `rag ingest` in a subprocess, the real model on both sides.

Item 10: a BM25 index that does not match the store (its rows, its ids, its manifest's types) is
found on load, logged and rebuilt, by the next ask and by `rag ingest` even when no paper changed.
Nothing here is timed; every wait has a bound.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import CORPUS
from local_servers import free_port

from rag import Assistant, Settings
from rag.corpus import load_corpus
from rag.embeddings import get_embedder
from rag.hybrid import IDS, OFFSETS, index_dir
from rag.store import generation
from rag.types import Paper

RAG = str(Path(sys.executable).with_name("rag"))
PAPERS = load_corpus([CORPUS]).papers
FIRST, SECOND, THIRD = PAPERS[100:102], PAPERS[102:104], PAPERS[104:106]


def jsonl(path: Path, papers: list[Paper]) -> Path:
    path.write_text(
        "".join(
            json.dumps({"id": p.id, "title": p.title, "abstract": p.abstract}) + "\n"
            for p in papers
        )
    )
    return path


@contextmanager
def api_server(assistant: Assistant) -> Iterator[str]:
    """`rag serve --api-only`'s app under uvicorn in a thread on a free 127.0.0.1 port."""
    import uvicorn

    from rag_ui.server import build_app

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(assistant, ui=False, api=True),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def rag_ingest(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAG_DATA_DIR": str(data_dir), "COLUMNS": "1000"}
    return subprocess.run(
        [RAG, "ingest", *args], capture_output=True, text=True, env=env, timeout=900
    )


def asked(client: httpx.Client, url: str, question: str) -> tuple[int, list[str]]:
    """Status and the titles of the sources the API answered with."""
    reply = client.post(
        f"{url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": question}], "top_k": 3},
    )
    if reply.status_code != 200:
        return reply.status_code, []
    return 200, [s["title"] for s in reply.json()["rag"]["sources"]]


@pytest.mark.e2e
def test_a_served_api_sees_an_outside_ingest_and_rebuild(tmp_path: Path) -> None:
    data_dir = tmp_path / "store"
    settings = Settings(data_dir=data_dir, min_score=0.0, _env_file=None)
    assistant = Assistant(settings, embedder=get_embedder(Settings(_env_file=None)))
    assert assistant.ingest([jsonl(tmp_path / "first.jsonl", FIRST)]).added == 2

    with api_server(assistant) as url, httpx.Client(timeout=300) as client:
        assert client.get(f"{url}/healthz").json()["papers"] == 2
        status, titles = asked(client, url, SECOND[0].title)
        assert status == 200 and SECOND[0].title not in titles
        stamp = generation(settings)

        # Another process adds two papers: counted and retrieved, by dense and BM25 search.
        result = rag_ingest(data_dir, str(jsonl(tmp_path / "second.jsonl", SECOND)))
        assert result.returncode == 0, result.stderr
        assert "added 2" in result.stdout
        assert generation(settings) != stamp  # the outside ingest bumped the stamp
        assert client.get(f"{url}/healthz").json()["papers"] == 4
        for paper in SECOND:
            status, titles = asked(client, url, paper.title)
            assert status == 200 and titles[0] == paper.title, titles
        bm25 = assistant.retriever.bm25_scores(SECOND[1].title, 5)  # type: ignore[attr-defined]
        assert any(cid.startswith(SECOND[1].id) for cid in bm25)

        # Another process rebuilds the store from other papers: no 503, the new store answers.
        result = rag_ingest(data_dir, "--rebuild", str(jsonl(tmp_path / "third.jsonl", THIRD)))
        assert result.returncode == 0, result.stderr
        health = client.get(f"{url}/healthz")
        assert health.status_code == 200 and health.json()["papers"] == 2
        for paper in THIRD:
            status, titles = asked(client, url, paper.title)
            assert status == 200 and titles[0] == paper.title, titles
        status, titles = asked(client, url, FIRST[0].title)
        assert status == 200 and not {p.title for p in FIRST + SECOND} & set(titles)


def test_two_assistants_on_one_data_dir_follow_each_other(
    settings: Settings, fake_embedder: Any, tmp_path: Path
) -> None:
    """The same through two Assistants in one process (the UI's and another's), fake model."""
    one = Assistant(settings, embedder=fake_embedder)
    two = Assistant(settings, embedder=fake_embedder)
    one.ingest([jsonl(tmp_path / "first.jsonl", FIRST)])
    assert {s.title for s in two.retrieve(FIRST[0].title, 5)} == {p.title for p in FIRST}

    one.ingest([jsonl(tmp_path / "second.jsonl", SECOND)])
    assert two.store.paper_count() == 4
    assert two.retrieve(SECOND[0].title, 1)[0].title == SECOND[0].title
    assert any(c.startswith(SECOND[1].id) for c in two.retriever.bm25_scores(SECOND[1].title, 5))

    one.ingest([jsonl(tmp_path / "third.jsonl", THIRD)], rebuild=True)
    assert {s.title for s in two.retrieve(THIRD[0].title, 5)} == {p.title for p in THIRD}
    assert two.info()["papers"] == 2
    # ... and back: `two` writes, `one` (which rebuilt) follows.
    two.ingest([jsonl(tmp_path / "first.jsonl", FIRST)])
    assert one.retrieve(FIRST[1].title, 1)[0].title == FIRST[1].title


def test_a_collection_deleted_underneath_is_reopened_once(
    settings: Settings, fake_embedder: Any, tmp_path: Path
) -> None:
    """A rebuild that has dropped the collection but not yet bumped the stamp (the window in
    the middle of `rag ingest --rebuild`): the store reopens it instead of failing."""
    one = Assistant(settings, embedder=fake_embedder)
    one.ingest([jsonl(tmp_path / "first.jsonl", FIRST)])
    other = Assistant(settings, embedder=fake_embedder)
    other.store.reset()  # a rebuild's first step, no stamp yet
    assert one.store.count() == 0  # the new, empty collection: no StoreError
    assert one.retrieve(FIRST[0].title, 3) == []


# ------------------------------------------------------------------------------------ item 10
def _manifest(root: Path) -> dict[str, Any]:
    return json.loads((root / "manifest.json").read_text())


def _set_manifest(root: Path, **changes: Any) -> None:
    meta = _manifest(root)
    meta.update(changes)
    (root / "manifest.json").write_text(json.dumps(meta))


def more_rows_than_ids(root: Path, bigger: Path) -> None:
    """The score matrix of a bigger build under this build's ids (ids shorter than the index:
    a query scored rows that have no id, IndexError in every ask)."""
    index = root / _manifest(root)["index"]
    other = bigger / _manifest(bigger)["index"]
    for f in other.iterdir():
        if f.name not in (IDS, OFFSETS):
            shutil.copy(f, index / f.name)


def ids_of_other_chunks(root: Path, bigger: Path) -> None:
    """As many ids as chunks, but not the store's."""
    from rag.hybrid import _save_ids, load_ids

    index = root / _manifest(root)["index"]
    ids = load_ids(index).all()
    _save_ids(index, ["nope#0", *ids[1:]])


def offsets_cut_short(root: Path, bigger: Path) -> None:
    index = root / _manifest(root)["index"]
    np.save(index / OFFSETS, np.load(index / OFFSETS)[:-2])


CORRUPTIONS: dict[str, Callable[[Path, Path], None]] = {
    "index-has-more-rows-than-ids": more_rows_than_ids,
    "ids-of-other-chunks": ids_of_other_chunks,
    "id-offsets-cut-short": offsets_cut_short,
    "acronyms-a-list": lambda root, _: _set_manifest(root, acronyms=["vit"]),
    "acronyms-of-numbers": lambda root, _: _set_manifest(root, acronyms={"vit": 5}),
    "state-of-wrong-types": lambda root, _: _set_manifest(root, state={"n": 3}),
    "index-outside-the-folder": lambda root, _: _set_manifest(root, index="../../chroma"),
    "index-a-number": lambda root, _: _set_manifest(root, index=7),
    "manifest-not-an-object": lambda root, _: (root / "manifest.json").write_text("[1, 2]"),
}


@pytest.fixture
def two_stores(settings: Settings, fake_embedder: Any, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A store of 4 papers (with its BM25 index), and the index of a 6-paper store beside it."""
    papers = jsonl(tmp_path / "papers.jsonl", FIRST + SECOND)
    Assistant(settings, embedder=fake_embedder).ingest([papers])
    big = Settings(data_dir=tmp_path / "big", _env_file=None)
    more = jsonl(tmp_path / "more.jsonl", FIRST + SECOND + THIRD)
    Assistant(big, embedder=fake_embedder).ingest([more])
    return index_dir(settings), index_dir(big), papers


def _assert_valid_index(settings: Settings, fake_embedder: Any, caplog: Any) -> None:
    """A fresh process loads the index on disk without a warning and it scores every paper."""
    caplog.clear()
    fresh = Assistant(settings, embedder=fake_embedder)
    for paper in FIRST + SECOND:
        assert fresh.retrieve(paper.title, 1)[0].title == paper.title
    assert not [r for r in caplog.records if "does not match the store" in r.getMessage()]


@pytest.mark.parametrize("first", ["ask", "ingest"])
@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_a_bm25_index_that_does_not_match_is_rebuilt(
    two_stores: tuple[Path, Path, Path],
    settings: Settings,
    fake_embedder: Any,
    caplog: pytest.LogCaptureFixture,
    name: str,
    first: str,
) -> None:
    root, bigger, papers = two_stores
    CORRUPTIONS[name](root, bigger)
    caplog.set_level(logging.WARNING, logger="rag.hybrid")
    assistant = Assistant(settings, embedder=fake_embedder)

    if first == "ask":  # the next question works, and repairs the index on disk
        for paper in FIRST + SECOND:
            assert assistant.retrieve(paper.title, 1)[0].title == paper.title
        assert assistant.ask(SECOND[0].title).sources
    else:  # `rag ingest` of what is already stored: "unchanged", and the index repaired
        report = assistant.ingest([papers])
        assert report.skipped == 4 and report.added == report.updated == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("does not match the store" in w and "rebuilding" in w for w in warned), warned
    meta = _manifest(root)
    assert isinstance(meta["acronyms"], dict) and meta["index"].startswith("index-")
    _assert_valid_index(settings, fake_embedder, caplog)


def test_a_token_cache_of_wrong_types_is_read_again(
    two_stores: tuple[Path, Path, Path],
    settings: Settings,
    fake_embedder: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Rows of the BM25 token cache with wrong types are re-read from the store on a rebuild."""
    root, _, _ = two_stores
    cache = root / "tokens.jsonl"
    rows = [json.loads(r) for r in cache.read_text().splitlines()]
    rows[0]["t"] = [1, 2, None]
    rows[1]["a"] = {"vit": 5}
    cache.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _set_manifest(root, acronyms=[])
    assistant = Assistant(settings, embedder=fake_embedder)
    assert assistant.retrieve(FIRST[0].title, 1)[0].title == FIRST[0].title
    assert assistant.retriever.read_back == 2  # type: ignore[attr-defined]
    _assert_valid_index(settings, fake_embedder, caplog)


def test_chunks_without_cached_tokens_are_read_back_in_small_batches(
    two_stores: tuple[Path, Path, Path],
    settings: Settings,
    fake_embedder: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With no token cache (a resume after a kill -9 before the first index was built), every
    chunk is read back from the store, READ_BACK_BATCH ids per request, and all are indexed."""
    import rag.hybrid

    root, _, _ = two_stores
    (root / "tokens.jsonl").unlink()
    _set_manifest(root, acronyms=[])
    monkeypatch.setattr(rag.hybrid, "READ_BACK_BATCH", 3)
    assistant = Assistant(settings, embedder=fake_embedder)
    stored = len(assistant.store.get(include=[])["ids"])
    requests: list[int] = []
    get = assistant.store.get

    def counting_get(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("ids"):
            requests.append(len(kwargs["ids"]))
        return get(*args, **kwargs)

    monkeypatch.setattr(assistant.store, "get", counting_get)
    for paper in FIRST + SECOND:
        assert assistant.retrieve(paper.title, 1)[0].title == paper.title
    assert assistant.retriever.read_back == stored > 3  # type: ignore[attr-defined]
    assert max(requests) == 3 and sum(requests) >= stored
    _assert_valid_index(settings, fake_embedder, caplog)
