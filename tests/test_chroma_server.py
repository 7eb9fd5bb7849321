"""The same pipeline against a real `chroma run` server on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import LRA_TITLE

from rag import Assistant, Settings
from rag.errors import StoreError

pytestmark = pytest.mark.e2e


def test_ingest_and_ask_through_chroma_server(
    chroma_server, real_assistant: Assistant, tmp_path: Path
) -> None:
    host, port = chroma_server
    settings = Settings(
        data_dir=tmp_path,
        chroma_host=host,
        chroma_port=port,
        collection="server-test",
        _env_file=None,
    )
    assistant = Assistant(settings, embedder=real_assistant.embedder)
    assert assistant.store.where == f"Chroma server {host}:{port}"
    report = assistant.ingest()
    assert report.added == 277
    assert assistant.ingest().skipped == 277  # idempotent on the server too
    assert not (tmp_path / "chroma").exists()  # nothing written locally
    answer = assistant.ask(
        "What range of sequence lengths does the Long Range Arena benchmark cover?"
    )
    assert answer.sources[0].title == LRA_TITLE and "16K" in answer.text


def test_unreachable_server_says_how_to_start_it(tmp_path: Path, fake_embedder) -> None:
    settings = Settings(data_dir=tmp_path, chroma_host="127.0.0.1", chroma_port=1, _env_file=None)
    with pytest.raises(StoreError, match=r"chroma run --host 127\.0\.0\.1 --port 1"):
        Assistant(settings, embedder=fake_embedder).store  # noqa: B018
