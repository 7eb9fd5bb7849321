"""Tracebacks and loose or misleading errors (issue 16, items 11 and 12).

Every case is run as a user meets it: the real `rag` CLI in a subprocess (one `error:` line, exit
code 1, no traceback), the /v1 API over HTTP (a 400 with a message, not a 500), or `Assistant`
for what the UI calls. Bad-record cases (NaN, invisible text, UTF-16, duplicate CSV headers) are
in test_reliability_input.py with the other bad inputs. Nothing here is timed.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rag import Assistant, Settings
from rag.errors import ConfigError, StoreError

RAG = str(Path(sys.executable).with_name("rag"))
GOOD = (
    '{"title": "Ferrets in burrows", "abstract": "We count ferrets in their burrows by season."}\n'
)


def run(*args: str | bytes, data_dir: Path, cwd: Path | None = None, **env: str) -> Any:
    full_env = {**os.environ, "RAG_DATA_DIR": str(data_dir), "COLUMNS": "1000", **env}
    return subprocess.run(
        [RAG, *args], capture_output=True, text=True, env=full_env, timeout=600, cwd=cwd
    )


def assert_one_line_error(result: Any, *words: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for w in words:
        assert w in result.stderr, (w, result.stderr)


# --------------------------------------------------------------------------------- item 11
def _read_only_dir(tmp_path: Path) -> Path:
    """A directory this process cannot write (root writes anywhere chmod allows: use sysfs)."""
    if os.geteuid() == 0:
        return Path("/sys/fs")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


@pytest.mark.parametrize("kind", ["a-file", "under-a-file", "read-only"])
def test_ingest_into_an_unusable_data_dir(tmp_path: Path, kind: str, fake_embedder: Any) -> None:
    papers = tmp_path / "good.jsonl"
    papers.write_text(GOOD)
    data_dir = {
        "a-file": papers,
        "under-a-file": papers / "store",
        "read-only": _read_only_dir(tmp_path),
    }[kind]
    words = ["cannot be written", "make it writable"] if kind == "read-only" else ["is a file"]

    result = run("ingest", str(papers), data_dir=data_dir)

    assert_one_line_error(result, f"RAG_DATA_DIR={data_dir}", *words)
    # The same through the library (the UI's upload calls this): a StoreError, nothing created.
    settings = Settings(data_dir=data_dir, _env_file=None)
    with pytest.raises(StoreError, match="RAG_DATA_DIR="):
        Assistant(settings, embedder=fake_embedder).ingest([papers])
    assert papers.read_text() == GOOD


def test_ask_with_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    """The shell hands Python bytes it decodes with surrogateescape: a lone surrogate each."""
    result = run("ask", b"which ferrets \xff\xfe live in burrows?", data_dir=tmp_path / "store")
    assert_one_line_error(result, "not valid text", "U+DCFF at character 15", "UTF-8")
    assert not (tmp_path / "store").exists()  # refused before anything was opened


@pytest.mark.parametrize("where", ["question", "history"])
def test_a_lone_surrogate_in_an_api_message_is_400(fake_assistant: Assistant, where: str) -> None:
    from rag.api import create_api

    messages = [{"role": "user", "content": "Which ferrets live in burrows?"}]
    if where == "question":
        messages[0]["content"] = "Which ferrets \\ud800 live in burrows?"
    else:
        messages = [
            {"role": "user", "content": "first \\udfff question"},
            {"role": "assistant", "content": "an answer"},
            *messages,
        ]
    body = json.dumps({"messages": messages}).replace("\\\\u", "\\u").encode()
    client = TestClient(create_api(fake_assistant), raise_server_exceptions=False)
    reply = client.post(
        "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["code"] == "invalid_text" and "lone surrogate" in error["message"]
    assert error["param"] == "messages.0.content"
    # The library refuses it too, for any front-end.
    with pytest.raises(ConfigError, match="not valid text"):
        fake_assistant.ask("Which ferrets \ud800 live?")


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e999"])
def test_a_setting_of_infinity_or_nan_is_refused(tmp_path: Path, value: str) -> None:
    result = run("info", data_dir=tmp_path, RAG_MAX_UPLOAD_MB=value)
    assert_one_line_error(result, "RAG_MAX_UPLOAD_MB: Input should be a finite number")
    with pytest.raises(ValueError, match="finite number"):
        Settings(_env_file=None, llm_timeout=float(value))


def test_rag_serve_with_an_infinite_upload_limit_does_not_start(tmp_path: Path) -> None:
    result = run("serve", "--api", data_dir=tmp_path, RAG_MAX_UPLOAD_MB="inf")
    assert_one_line_error(result, "RAG_MAX_UPLOAD_MB")


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_embed_model_at_a_directory_that_is_not_a_model(tmp_path: Path, backend: str) -> None:
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "README.md").write_text("notes\n")
    result = run(
        "ask",
        "which ferrets live in burrows?",
        data_dir=tmp_path / "store",
        RAG_EMBED_MODEL=str(folder),
        RAG_EMBED_BACKEND=backend,
    )
    assert_one_line_error(
        result,
        f"RAG_EMBED_MODEL={folder} is a directory but not a sentence-transformers model",
        "no config.json, model.safetensors or pytorch_model.bin",
    )
    from rag.embeddings import get_embedder

    (folder / "config.json").write_text("{not json")
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"no readable config\.json"):
        get_embedder(Settings(_env_file=None, embed_model=str(folder), embed_backend=backend))


# --------------------------------------------------------------------------------- item 12
class _Failing:
    """A collection whose every call raises `exc`."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise self.exc

        return fail


@pytest.mark.parametrize(
    ("exc", "words", "moves"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "is full", False),
        (sqlite3.OperationalError("database or disk is full"), "is full", False),
        (
            sqlite3.OperationalError("attempt to write a readonly database"),
            "make it writable",
            False,
        ),
        (OverflowError("Python int too large to convert to C long"), "the store is fine", False),
        (sqlite3.DatabaseError("database disk image is malformed"), "if it is corrupt", True),
        (RuntimeError("something else"), "retry, and only if it keeps failing", True),
    ],
    ids=["enospc", "sqlite-full", "read-only", "overflow", "malformed", "unknown"],
)
def test_store_errors_give_the_fix_for_their_cause(
    fake_assistant: Assistant, exc: BaseException, words: str, moves: bool
) -> None:
    store = fake_assistant.store
    store.collection = _Failing(exc)
    with pytest.raises(StoreError) as caught:
        store.count()
    message = str(caught.value)
    assert words in message and ("move it away" in message) == moves, message


def test_an_overflowing_top_k_and_a_full_disk_leave_the_store_alone(
    fake_assistant: Assistant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    papers = tmp_path / "good.jsonl"
    papers.write_text(GOOD)
    fake_assistant.ingest([papers])
    with pytest.raises(StoreError) as caught:
        fake_assistant.retrieve("ferrets", top_k=10**20)
    assert "the store is fine" in str(caught.value) and "move" not in str(caught.value)

    more = tmp_path / "more.jsonl"
    more.write_text(GOOD.replace("Ferrets", "Otters").replace("ferrets", "otters"))
    collection = fake_assistant.store.collection

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(collection), "upsert", full)
    with pytest.raises(StoreError) as caught:
        fake_assistant.ingest([more])
    assert "is full" in str(caught.value) and "free some space" in str(caught.value)
    assert "move" not in str(caught.value)
    monkeypatch.undo()
    assert fake_assistant.ingest([more]).added == 1  # the store was fine: the retry works


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["serve", "--port", "99999"], {}, "--port must be between 1 and 65535, got 99999"),
        (["serve", "--port", "0"], {}, "--port must be between 1 and 65535, got 0"),
        (["info"], {"RAG_PORT": "99999"}, "RAG_PORT: Input should be less than or equal to 65535"),
        (["info"], {"RAG_CHROMA_PORT": "0"}, "RAG_CHROMA_PORT: Input should be greater than"),
        (["ask", "--top-k", "0", "q"], {}, "--top-k must be between 1 and 50, got 0"),
        (["ask", "--top-k", "51", "q"], {}, "--top-k must be between 1 and 50, got 51"),
        (["ask", "-k", str(10**20), "q"], {}, f"--top-k must be between 1 and 50, got {10**20}"),
        (
            ["info", "--set", "topk=3"],
            {},
            "--set: unknown setting 'topk'; valid keys: answer_gate, api_",
        ),
        (["ask", "q", "--set", "rag_nope=1"], {}, "unknown setting 'nope'; valid keys:"),
        (["ingest", ""], {}, "an empty path was given; name a file or directory"),
        (["ingest", "   "], {}, "an empty path was given"),
    ],
    ids=[
        "port-99999",
        "port-0",
        "env-port-99999",
        "env-chroma-port-0",
        "top-k-0",
        "top-k-51",
        "top-k-1e20",
        "set-unknown-key",
        "set-unknown-rag-key",
        "ingest-empty-path",
        "ingest-blank-path",
    ],
)
def test_loose_cli_input_is_refused(
    tmp_path: Path, args: list[str], env: dict[str, str], words: str
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "papers.jsonl").write_text(GOOD)  # what `rag ingest ""` used to ingest
    result = run(*args, data_dir=tmp_path / "store", cwd=cwd, **env)
    assert_one_line_error(result, words)
    if "--set" in words:
        assert "top_k" in result.stderr  # the valid keys are listed
    assert not (tmp_path / "store" / "chroma").exists()  # nothing was opened or ingested


def test_the_library_refuses_an_empty_path(fake_assistant: Assistant) -> None:
    with pytest.raises(ConfigError, match="an empty path"):
        fake_assistant.ingest([""])
