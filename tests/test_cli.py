"""The CLI as a user runs it: a subprocess, real store, one-line errors, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
RAG = str(Path(sys.executable).with_name("rag"))


def run(*args: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "RAG_DATA_DIR": str(data_dir), **env}
    return subprocess.run([RAG, *args], capture_output=True, text=True, env=full_env, timeout=600)


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = run("--help", data_dir=tmp_path)
    assert result.returncode == 0
    for command in ("ingest", "ask", "chat", "info", "serve", "eval"):
        assert command in result.stdout


def test_ask_json_and_info(real_store_dir: Path, tmp_path: Path) -> None:
    result = run(
        "ask",
        "What range of sequence lengths does the Long Range Arena benchmark cover?",
        "--json",
        data_dir=real_store_dir,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert "1K to 16K tokens" in answer["text"] and answer["abstained"] is False
    assert answer["sources"][0]["title"].startswith("Long Range Arena")
    info = run("info", "--json", data_dir=real_store_dir)
    assert json.loads(info.stdout)["papers"] == 277


def test_partial_ingest_exit_code_and_messages(real_store_dir: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    import shutil

    shutil.copytree(real_store_dir, store)
    bad = tmp_path / "mixed.jsonl"
    bad.write_text('{"title": "Good one", "abstract": "A fine abstract about ferrets."}\n{oops\n')
    result = run("ingest", str(bad), data_dir=store)
    assert result.returncode == 2
    assert "added 1" in result.stdout
    assert f"{bad}:2: malformed JSON" in result.stderr
    assert "Traceback" not in result.stderr


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    result = run("ask", "anything", data_dir=tmp_path, RAG_LLM="openai")
    assert result.returncode == 1
    assert "RAG_LLM_BASE_URL" in result.stderr and "Traceback" not in result.stderr
    result = run("ingest", str(tmp_path / "missing.jsonl"), data_dir=tmp_path)
    assert result.returncode == 2 and "no such file" in result.stderr
