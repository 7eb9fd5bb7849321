"""Shared fixtures: offline fakes for unit tests, and the real parts for end-to-end tests."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
# Tests never read the developer's .env or environment settings.
for key in list(os.environ):
    if key.startswith("RAG_") or key == "OPENAI_API_KEY":
        del os.environ[key]
# With the `local` extra installed, RAG_LLM=auto means the local model (seconds an answer); tests
# choose it where they test it, and the extractive backend everywhere else (subprocesses too).
os.environ["RAG_LLM"] = "extractive"

sys.path.insert(0, str(Path(__file__).parent))
from local_servers import free_port, start_chroma, stop_process  # noqa: E402
from openai_server import FakeOpenAI  # noqa: E402

from rag import Assistant, Settings  # noqa: E402
from rag.embed_base import EncoderEmbedding  # noqa: E402
from rag.types import Source  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "rag" / "data" / "corpus"
LRA_TITLE = "Long Range Arena: A Benchmark for Efficient Transformers"


def make_source(number: int, title: str, text: str, score: float = 0.8) -> Source:
    """A retrieved source as the pipeline hands it on (paper id p<number>)."""
    return Source(
        number=number, paper_id=f"p{number}", title=title, snippet=text[:80], text=text, score=score
    )


class HashEmbedding(EncoderEmbedding):
    """A tiny deterministic bag-of-words embedder: same words -> similar vectors. Offline, instant."""

    dim: int = 64
    max_tokens: int = 256
    fingerprint: str = "hash-test:64"

    def count_tokens(self, text: str) -> int:
        return len(re.findall(r"\w+|[^\w\s]", text)) + 2

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                h = int(hashlib.md5(word.encode()).hexdigest(), 16)
                out[i, h % self.dim] += 1.0 if (h >> 8) % 2 else -1.0
            norm = np.linalg.norm(out[i])
            out[i] = out[i] / norm if norm else out[i]
            if not norm:
                out[i, 0] = 1.0
        return out


@pytest.fixture
def fake_embedder() -> HashEmbedding:
    return HashEmbedding(model_name="hash-test")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", min_score=0.0, _env_file=None)


@pytest.fixture
def fake_assistant(settings: Settings, fake_embedder: HashEmbedding) -> Assistant:
    """Real embedded Chroma, fake embeddings: fast unit-level pipeline tests."""
    return Assistant(settings, embedder=fake_embedder)


@pytest.fixture(scope="session")
def real_store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled corpus ingested once with the real model into an embedded Chroma store."""
    data_dir = tmp_path_factory.mktemp("real-store")
    assistant = Assistant(Settings(data_dir=data_dir, _env_file=None))
    report = assistant.ingest()
    assert report.added == 277 and not report.failed, report
    return data_dir


@pytest.fixture
def real_assistant(real_store_dir: Path, tmp_path: Path) -> Assistant:
    """A private copy of the ingested store, so tests may write to it."""
    data_dir = tmp_path / "store"
    shutil.copytree(real_store_dir, data_dir)
    return Assistant(Settings(data_dir=data_dir, _env_file=None))


@pytest.fixture
def fake_llm() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@contextmanager
def served(app: Any, *, startup: float = 120.0, lifespan: str = "auto") -> Iterator[str]:
    """`app` under uvicorn in a thread on a free 127.0.0.1 port (real HTTP); yields its base URL,
    "http://127.0.0.1:PORT", and stops it afterwards. Fails the test if the server has not started
    within `startup` seconds. `lifespan` as uvicorn's (Gradio needs its startup: "auto")."""
    import threading

    import uvicorn

    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@contextmanager
def serving(assistant: Assistant, *, startup: float = 120.0) -> Iterator[str]:
    """`rag serve`'s app (rag_ui.server.build_app) `served`; yields its URL ("http://…:PORT/")."""
    from rag_ui.server import build_app

    with served(build_app(assistant), startup=startup) as url:
        yield f"{url}/"


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real `chroma run` server on 127.0.0.1."""
    try:
        proc, port = start_chroma(tmp_path_factory.mktemp("chroma-server"), timeout=60)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield "127.0.0.1", port
    stop_process(proc, 10)


def answer_reply(template: str) -> Any:
    """A FakeOpenAI reply that fills {title1} etc. from the prompt's numbered sources."""

    def reply(messages: list[dict[str, Any]]) -> str:
        prompt = "\n".join(str(m.get("content", "")) for m in messages)
        titles = re.findall(r"^\[(\d+)\] ([^\n]*)$", prompt, re.M)  # "[n] Title" lines
        return template.format(**{f"title{n}": t for n, t in titles})

    return reply
