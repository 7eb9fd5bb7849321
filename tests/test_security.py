"""Security: the API key never leaks, the server is private by default, uploads are bounded.

The key is given the way users give it (OPENAI_API_KEY, RAG_OPENAI_API_KEY, Settings); faults are
injected at the LLM endpoint so that errors, retries and fallbacks all produce messages and logs;
then everything captured is searched for the key: logs at DEBUG (ours, openai's, httpx's),
exception messages, Answer JSON, `rag info` and `rag ask --verbose` output.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, free_port, serving
from typer.testing import CliRunner

from rag import Answer, Assistant, Settings
from rag.answer import OpenAIBackend
from rag.errors import LLMError

RAG = str(Path(sys.executable).with_name("rag"))
KEY = "sk-rag-test-9f8e7d6c5b4a39281706f5e4d3c2b1a0SECRET"
Q = "What range of sequence lengths does the Long Range Arena benchmark cover?"


def leaks(text: str) -> bool:
    """The key, or a recognisable piece of it, appears in `text`."""
    return KEY in text or KEY[8:30] in text or KEY[-16:] in text


# ------------------------------------------------------------------------------- the API key
@pytest.mark.e2e
@pytest.mark.parametrize("fault", ["500", "429", "refuse", "malformed", "empty", "timeout", "cut"])
def test_api_key_never_in_logs_errors_or_answers(
    real_assistant: Assistant, fake_llm: Any, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: rag, openai, httpx, httpcore
    fake_llm.fault = fault
    settings = real_assistant.settings.with_overrides(
        llm="openai",
        llm_base_url=fake_llm.base_url,
        openai_api_key=KEY,
        llm_timeout=2.0,
        llm_max_retries=1,
        verify_judge="llm",
    )
    assistant = Assistant(settings, embedder=real_assistant.embedder, store=real_assistant.store)
    captured: list[str] = []

    answer = assistant.ask(Q)
    streamed = next(i for i in assistant.ask_stream(Q) if isinstance(i, Answer))
    chat = assistant.chat(
        [{"role": "user", "content": Q}, {"role": "assistant", "content": "x"}], "And?"
    )
    for got in (answer, streamed, chat):
        captured += [got.model_dump_json(), got.notice or "", repr(got)]
    if fault != "cut":
        assert answer.notice and answer.backend == "extractive"  # the fault really happened
    backend = assistant.llm
    assert isinstance(backend, OpenAIBackend)
    if fault != "cut":  # a cut only happens to streams
        with pytest.raises(LLMError) as err:
            backend.chat([{"role": "user", "content": "hi"}])
        captured += [str(err.value), repr(err.value), str(err.value.__cause__)]
    captured += [repr(settings), str(settings), settings.model_dump_json(), str(assistant.info())]
    captured += [r.getMessage() for r in caplog.records] + [caplog.text]

    # The key was really sent (so there was something to leak) ...
    assert any(h.get("Authorization") == f"Bearer {KEY}" for h in fake_llm.headers)
    # ... and appears nowhere else.
    for text in captured:
        assert not leaks(text), text[:500]


def test_key_from_either_variable_is_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "RAG_OPENAI_API_KEY"):
        monkeypatch.setenv(name, KEY)
        settings = Settings(_env_file=None)
        assert settings.openai_api_key is not None
        assert settings.openai_api_key.get_secret_value() == KEY
        for text in (repr(settings), str(settings), settings.model_dump_json()):
            assert not leaks(text)
        monkeypatch.delenv(name)


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RAG, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "1000", **env},
        timeout=600,
    )


@pytest.mark.e2e
def test_api_key_never_in_cli_output(real_store_dir: Path, fake_llm: Any, tmp_path: Path) -> None:
    fake_llm.fault = "500"
    env = {"RAG_DATA_DIR": str(real_store_dir), "RAG_LLM_TIMEOUT": "3"}
    outputs = []
    for name in ("OPENAI_API_KEY", "RAG_OPENAI_API_KEY"):
        keyed = {**env, name: KEY, "RAG_LLM": "openai", "RAG_LLM_BASE_URL": fake_llm.base_url}
        info = cli("info", **keyed)
        info_json = cli("info", "--json", **keyed)
        ask = cli("--verbose", "ask", Q, "--json", **keyed)
        assert info.returncode == info_json.returncode == ask.returncode == 0, ask.stderr
        assert '"backend": "extractive"' in ask.stdout and "HTTP 500" in ask.stdout
        outputs += [info, info_json, ask]
    # An endpoint that is not there, and an error exit: the messages name the URL, not the key.
    down = cli(
        "--verbose",
        "ask",
        Q,
        **env,
        OPENAI_API_KEY=KEY,
        RAG_LLM="openai",
        RAG_LLM_BASE_URL=f"http://127.0.0.1:{free_port()}/v1",
    )
    bad = cli("ask", "", **env, OPENAI_API_KEY=KEY)
    assert bad.returncode == 1 and "question is empty" in bad.stderr
    outputs += [down, bad]
    assert any(fake_llm.base_url in o.stdout + o.stderr for o in outputs)
    for out in outputs:
        assert not leaks(out.stdout) and not leaks(out.stderr), out.stderr[-2000:]


# --------------------------------------------------------------------------- private by default
def test_default_bind_is_loopback_and_share_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).host == "127.0.0.1"
    assert Settings.model_fields["host"].default == "127.0.0.1"
    assert "RAG_HOST=127.0.0.1" in (ROOT / ".env.example").read_text()
    from rag.cli import serve

    params = inspect.signature(serve).parameters
    assert params["share"].default is False
    assert params["host"].default is None  # None = Settings.host


def test_rag_serve_binds_loopback_without_share(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`rag serve` as typed, with the server start replaced by a recorder."""
    pytest.importorskip("rag_ui.app")
    import gradio as gr
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))

    def no_share(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("rag serve launched a Gradio share link without --share")

    monkeypatch.setattr(gr.Blocks, "launch", no_share)
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # no .env from the developer's checkout
    from rag.cli import app

    for args in (
        ["serve", "--no-ingest-if-empty"],
        ["serve", "--api-only", "--no-ingest-if-empty"],
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
    assert [c["host"] for c in calls] == ["127.0.0.1", "127.0.0.1"]


# ---------------------------------------------------------------------------------- uploads
def test_upload_size_limit_setting_exists() -> None:
    field = Settings.model_fields["max_upload_mb"]
    assert field.default == 20.0 and field.description
    assert "RAG_MAX_UPLOAD_MB=20.0" in (ROOT / ".env.example").read_text()
    assert Settings(_env_file=None, max_upload_mb=1).max_upload_mb == 1
    with pytest.raises(ValueError):
        Settings(_env_file=None, max_upload_mb=0)  # no "unlimited" by accident
    pytest.importorskip("rag_ui.app")
    from rag_ui.app import max_upload_bytes

    assistant = Assistant(Settings(_env_file=None, max_upload_mb=2))
    assert max_upload_bytes(assistant) == 2 * 1024 * 1024


# ---------------------------------------------------------------------- the key in reports and UI
@pytest.mark.e2e
def test_api_key_never_in_eval_reports(real_store_dir: Path, fake_llm: Any, tmp_path: Path) -> None:
    """`rag eval` with a key and a failing endpoint: report.json, report.md and the console."""
    fake_llm.fault, fake_llm.fault_times = (
        "500",
        3,
    )  # errors (notices, judge failures), then answers
    out = tmp_path / "run"
    data_dir = tmp_path / "store"
    shutil.copytree(real_store_dir, data_dir)
    run = cli(
        "eval",
        "--limit",
        "3",
        "--out",
        str(out),
        RAG_DATA_DIR=str(data_dir),
        OPENAI_API_KEY=KEY,
        RAG_LLM="openai",
        RAG_LLM_BASE_URL=fake_llm.base_url,
        RAG_LLM_TIMEOUT="3",
        RAG_LLM_MAX_RETRIES="0",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert any(h.get("Authorization") == f"Bearer {KEY}" for h in fake_llm.headers)
    report = json.loads((out / "report.json").read_text())
    assert report["meta"]["backend"] == "openai" and report["settings"]["openai_api_key"] == "<set>"
    assert "HTTP 500" in (out / "report.json").read_text()  # the failures were reported ...
    texts = [p.read_text(errors="replace") for p in out.iterdir() if p.suffix in (".json", ".md")]
    texts += [p.read_bytes().decode("latin-1") for p in out.iterdir() if p.suffix == ".png"]
    for text in [*texts, run.stdout, run.stderr]:
        assert not leaks(text), text[:500]  # ... without the key


@pytest.mark.e2e
def test_api_key_never_in_the_ui(
    real_assistant: Assistant, fake_llm: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The served UI with a key and a failing endpoint: the page, its config and every reply."""
    pytest.importorskip("rag_ui.app")
    import httpx
    from gradio_client import Client

    caplog.set_level(logging.DEBUG)
    fake_llm.fault = "500"
    settings = real_assistant.settings.with_overrides(
        llm="openai",
        llm_base_url=fake_llm.base_url,
        openai_api_key=KEY,
        llm_timeout=3.0,
        llm_max_retries=0,
    )
    assistant = Assistant(settings, embedder=real_assistant.embedder, store=real_assistant.store)
    with serving(assistant) as url:
        client = Client(url, verbose=False, download_files=False)
        _, chat, panel = client.predict(Q, [], 5, "any", "any", "", "", api_name="/ask")
        seen = [json.dumps(chat), str(panel)]
        assert "HTTP 500" in seen[0]  # the fallback notice is shown ...
        for path in ("", "config", "gradio_api/info"):
            seen.append(httpx.get(url + path, timeout=60).text)
    assert any(h.get("Authorization") == f"Bearer {KEY}" for h in fake_llm.headers)
    for text in [*seen, caplog.text]:
        assert not leaks(text), text[:500]  # ... and the key nowhere
