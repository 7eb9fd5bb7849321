"""The /v1 API against the client libraries people already use, each in a subprocess under
tests/netguard (nothing may leave 127.0.0.1): the official `openai` client, LangChain's
ChatOpenAI / OpenAI, llama-index's OpenAILike, litellm and simonw's `llm` CLI.

What each client gets (tests/client_probe.py) must match the compatibility table in docs/api.md,
cell by cell: the table is the measured outcome, not a promise."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, served

from rag import Assistant, Settings
from rag.api import create_api

pytestmark = pytest.mark.e2e

TESTS = Path(__file__).parent
DOCS = TESTS.parent / "docs" / "api.md"
sys.path.insert(0, str(TESTS))
from client_probe import CLIENTS, FEATURES  # noqa: E402

ROWS = {  # client -> how its row in docs/api.md's table starts
    "openai": "openai",
    "langchain": "LangChain",
    "llama-index": "llama-index",
    "litellm": "litellm",
    "llm": "llm",
}


def documented() -> dict[str, dict[str, str]]:
    """docs/api.md's compatibility table: {client: {feature: first word of the cell}}."""
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("<!-- compatibility table -->")
    after = text[start:].splitlines()[1:]
    first = next(i for i, ln in enumerate(after) if ln.startswith("|"))
    lines = []
    for line in after[first:]:  # the table: the run of "|" lines after the marker
        if not line.startswith("|"):
            break
        lines.append(line)
    header = [c.strip().lower() for c in lines[0].strip("|").split("|")]
    table: dict[str, dict[str, str]] = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for client, label in ROWS.items():
            if cells[0].startswith(label):
                table[client] = {
                    h: (re.findall(r"\w+", c) or [""])[0]
                    for h, c in zip(header, cells, strict=True)
                }
    return table


@pytest.fixture(scope="module")
def urls(
    real_store_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    data_dir = tmp_path_factory.mktemp("api-clients") / "store"
    shutil.copytree(real_store_dir, data_dir)
    assistant = Assistant(Settings(data_dir=data_dir, _env_file=None))
    down = Assistant(
        assistant.settings.with_overrides(
            llm="openai",
            llm_base_url=f"http://127.0.0.1:{free_port()}/v1",
            llm_max_retries=0,
            llm_timeout=10,
        ),
        embedder=assistant.embedder,
        store=assistant.store,
    )
    with (
        served(create_api(assistant), startup=30, lifespan="off") as base,
        served(create_api(down), startup=30, lifespan="off") as fallback,
    ):
        yield base, fallback


def test_the_table_covers_every_client_and_feature() -> None:
    table = documented()
    assert set(table) == set(CLIENTS)
    for row in table.values():
        assert set(FEATURES) <= set(row)


@pytest.mark.parametrize("client", list(CLIENTS))
def test_client_matches_the_table(client: str, urls: tuple[str, str], tmp_path: Path) -> None:
    log = tmp_path / "netguard.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS / "netguard"), str(TESTS)]),
        "NETGUARD_LOG": str(log),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "HF_HUB_OFFLINE": "1",
    }
    done = subprocess.run(
        [sys.executable, str(TESTS / "client_probe.py"), client, *urls],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    expected = {f: documented()[client][f] for f in FEATURES}
    assert {f: measured[f] for f in FEATURES} == expected, measured
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(e["event"] == "armed" for e in events)
    blocked = [e for e in events if e["event"] == "blocked"]
    assert not blocked, blocked[:3]
