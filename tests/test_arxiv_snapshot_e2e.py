"""arXiv snapshot records end to end on the real parts: the bundled embedding model, an embedded
Chroma store, the extractive backend (deterministic); asked through `Assistant`, the CLI and the API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rag import Assistant, Settings
from rag.api.app import create_api
from rag.query import parse_filters

pytestmark = pytest.mark.e2e

SNAPSHOT = Path(__file__).parent / "data" / "arxiv-snapshot.json"
RAG = str(Path(sys.executable).with_name("rag"))
ATTENTION = "https://arxiv.org/abs/1706.03762"


@pytest.fixture(scope="module")
def snapshot_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("snapshot-store")
    report = Assistant(Settings(data_dir=data_dir, llm="extractive", _env_file=None)).ingest(
        [SNAPSHOT]
    )
    assert (report.added, report.failed) == (5, [])
    return data_dir


@pytest.fixture
def assistant(snapshot_store: Path) -> Assistant:
    return Assistant(Settings(data_dir=snapshot_store, llm="extractive", _env_file=None))


def test_a_2017_question_finds_the_paper_by_its_first_version(assistant: Assistant) -> None:
    answer = assistant.ask(
        "Which 2017 paper proposes the Transformer, a network architecture based solely on "
        "attention mechanisms?"
    )
    assert not answer.abstained, answer.text
    assert answer.filters == {"years": "2017–2017"}  # read from the question, and it matched
    top = answer.sources[0]
    assert (top.paper_id, top.url, top.categories) == ("1706.03762", ATTENTION, ["cs.CL", "cs.LG"])
    assert top.published is not None and top.published.isoformat() == "2017-06-12"
    assert "Transformer" in answer.text
    # The wording: its year filter now keeps the paper (update_date said 2023).
    question = "Which 2017 papers propose an architecture based solely on attention?"
    (found,) = assistant.retrieve(question, filters=parse_filters(question))
    assert (found.paper_id, found.url) == ("1706.03762", ATTENTION)


def test_category_filters_explicit_and_read_from_the_question(assistant: Assistant) -> None:
    question = "Which model pre-trains deep bidirectional representations from unlabeled text?"
    answer = assistant.ask(question, categories=["Computation and Language"])
    assert answer.filters == {"categories": "cs.CL"}
    assert {s.paper_id for s in answer.sources} <= {"1706.03762", "1810.04805"}
    assert answer.sources[0].paper_id == "1810.04805" and not answer.abstained
    # hep-th holds one paper here: whatever is asked, nothing else comes back
    other = assistant.ask(question, categories=["hep-th"])
    assert [s.paper_id for s in other.sources] == ["hep-th/9711200"]
    read = assistant.ask(
        "Which cs.CV papers present a residual learning framework for training deeper networks?"
    )
    assert read.filters == {"categories": "cs.CV"}
    assert [s.paper_id for s in read.sources] == ["1512.03385"]
    assert read.sources[0].url == "https://arxiv.org/abs/1512.03385"


def test_old_style_id_links_and_dois(assistant: Assistant) -> None:
    answer = assistant.ask(
        "Which hep-th papers relate conformal field theories to supergravity on Anti-deSitter "
        "spacetimes?"
    )
    assert answer.filters == {"categories": "hep-th"} and not answer.abstained
    top = answer.sources[0]
    assert (top.paper_id, top.url) == ("hep-th/9711200", "https://arxiv.org/abs/hep-th/9711200")
    assert top.doi == "10.1023/A:1026654312961"


def test_the_cli_and_the_api_show_the_link(snapshot_store: Path) -> None:
    env = {**os.environ, "RAG_DATA_DIR": str(snapshot_store), "RAG_LLM": "extractive"}
    question = "Which paper proposes the Transformer, an architecture based solely on attention?"
    done = subprocess.run(
        [RAG, "ask", question, "--category", "cs.LG"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "Attention Is All You Need (2017-06-12)" in done.stdout and ATTENTION in done.stdout
    bad = subprocess.run(
        [RAG, "ask", question, "--category", "not a category"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert bad.returncode == 1 and "unknown category 'not a category'" in bad.stderr

    client = TestClient(
        create_api(Assistant(Settings(data_dir=snapshot_store, llm="extractive", _env_file=None)))
    )
    body = {
        "model": "rag-extractive",
        "messages": [{"role": "user", "content": question}],
        "categories": ["cs.CL"],
    }
    reply = client.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200, reply.text
    rag = reply.json()["rag"]
    assert rag["filters"] == {"categories": "cs.CL"}
    first = rag["sources"][0]
    assert (first["paper_id"], first["url"], first["categories"]) == (
        "1706.03762",
        ATTENTION,
        ["cs.CL", "cs.LG"],
    )
    refused = client.post("/v1/chat/completions", json={**body, "categories": ["no such thing"]})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "categories"
