"""What the API test modules share: a served `create_api`, the openai client, a copy of the real
store per module, an engine with changed settings over the same parts, and the error envelope."""

from __future__ import annotations

import shutil
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import served
from openai import OpenAI

from rag import Assistant, Settings
from rag.api import create_api

LRA_Q = "What range of sequence lengths does the Long Range Arena benchmark cover?"


def serving(assistant: Assistant) -> AbstractContextManager[str]:
    """`create_api(assistant)` under uvicorn (conftest's `served`); yields the base URL."""
    return served(create_api(assistant), startup=30, lifespan="off")


def client(base: str, api_key: str = "unused") -> OpenAI:
    return OpenAI(base_url=f"{base}/v1", api_key=api_key, max_retries=0, timeout=120)


def store_copy(real_store_dir: Path, factory: pytest.TempPathFactory, name: str) -> Assistant:
    """An engine over a private copy of the ingested bundled corpus."""
    data_dir = factory.mktemp(name) / "store"
    shutil.copytree(real_store_dir, data_dir)
    return Assistant(Settings(data_dir=data_dir, _env_file=None))


def sibling(assistant: Assistant, **overrides: Any) -> Assistant:
    """Another engine over the same store and model, with some settings changed."""
    return Assistant(
        assistant.settings.with_overrides(**overrides),
        embedder=assistant.embedder,
        store=assistant.store,
    )


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The OpenAI-style error object of a response that must have `status`."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text
    return body["error"]
