"""Outages: the LLM endpoint failing in every way `fake_llm` can play, and the Chroma server going
away mid-session and coming back.

LLM faults must end, within RAG_LLM_TIMEOUT, in the extractive answer with `Answer.notice` (never
a hang, never a traceback), for `ask` and `ask_stream` alike. Retries are bounded, back off,
honour Retry-After up to a cap and never run past the total budget; the waits are recorded by
replacing the backend's `sleep`, so no test asserts on wall-clock time.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import CORPUS, LRA_TITLE, answer_reply, free_port

from rag import Answer, Assistant, Settings
from rag.answer import OpenAIBackend
from rag.corpus import load_corpus
from rag.errors import StoreError

pytestmark = pytest.mark.e2e
HANG = 90  # seconds: a call that has not returned by then is a hang (the budget is 3-10 s)

RAG = str(Path(sys.executable).with_name("rag"))
Q = "What range of sequence lengths does the Long Range Arena benchmark cover?"
GOOD = "{title1} covers sequences from 1K to 16K tokens [1]."


def openai_assistant(real: Assistant, base_url: str, **extra: Any) -> Assistant:
    values: dict[str, Any] = {
        "llm": "openai",
        "llm_base_url": base_url,
        "llm_timeout": 3.0,
        "llm_max_retries": 2,
    }
    values.update(extra)
    settings = real.settings.with_overrides(**values)
    return Assistant(settings, embedder=real.embedder, store=real.store)


def record_waits(assistant: Assistant, *, really: bool = True) -> list[float]:
    """Replace the backend's sleep with one that records (and by default does) each wait."""
    waits: list[float] = []
    backend = assistant.llm
    assert isinstance(backend, OpenAIBackend)

    def sleep(seconds: float) -> None:
        waits.append(round(seconds, 3))
        if really:
            time.sleep(seconds)

    backend.sleep = sleep
    return waits


def bounded(fn: Any) -> Any:
    """Run `fn` in a thread and fail if it hangs (a bound, not a timing measurement)."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(HANG)
    assert not worker.is_alive(), f"hung for over {HANG} s"
    if errors:
        raise errors[0]
    return result[0]


def final(items: list[Any]) -> Answer:
    answers = [i for i in items if isinstance(i, Answer)]
    assert len(answers) == 1 and items[-1] is answers[0]
    return answers[0]


def assert_fallback(answer: Answer, *reason: str) -> None:
    assert answer.backend == "extractive"
    assert answer.notice and answer.notice.startswith("The language model failed")
    for part in reason:
        assert part in answer.notice, answer.notice
    assert "Traceback" not in answer.notice
    assert answer.sources[0].title == LRA_TITLE and "16K" in answer.text


# ------------------------------------------------------------------------------- LLM faults
# fault -> (requests the server sees, waits between them, words the notice must hold)
FAULTS: dict[str, tuple[int, list[float], tuple[str, ...]]] = {
    "refuse": (3, [0.5, 1.0], ("APIConnectionError", "after 3 attempts")),
    "500": (3, [0.5, 1.0], ("HTTP 500", "after 3 attempts")),
    "429": (3, [0.0, 0.0], ("HTTP 429", "after 3 attempts")),  # Retry-After: 0 honoured
    "timeout": (1, [], ("RAG_LLM_TIMEOUT=3s",)),  # no retry: it would overrun the budget
    "malformed": (1, [], ("failed",)),  # not retried: the same request gets the same garbage
    "empty": (1, [], ("empty answer",)),
}


@pytest.mark.parametrize("mode", ["ask", "ask_stream"])
@pytest.mark.parametrize("fault", [*FAULTS, "closed-port", "cut"])
def test_llm_fault_falls_back_to_extractive_with_notice(
    real_assistant: Assistant, fake_llm: Any, fault: str, mode: str
) -> None:
    fake_llm.reply = answer_reply(GOOD)
    if fault == "closed-port":
        base_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    else:
        base_url = fake_llm.base_url
        fake_llm.fault = fault
    assistant = openai_assistant(real_assistant, base_url)
    waits = record_waits(assistant)
    if mode == "ask":
        answer = bounded(lambda: assistant.ask(Q))
        pieces: list[str] = []
    else:
        items = bounded(lambda: list(assistant.ask_stream(Q)))
        answer = final(items)
        pieces = [i for i in items if isinstance(i, str)]
        # Only verified text is streamed: no fragment of a failed reply, just the fallback.
        assert "".join(pieces).strip() == answer.text and "\n\n" not in pieces
    if fault == "cut":
        if mode == "ask":  # a cut only happens to streams; the plain call is answered
            assert answer.backend.startswith("openai") and answer.notice is None
            return
        assert_fallback(answer, "ended before the answer was complete")
        # GOOD is one sentence, cut half-way: none of it was complete, so none of it was shown.
        assert pieces and not any("covers sequences" in p for p in pieces)
        return
    if fault == "closed-port":
        assert_fallback(answer, "APIConnectionError", "after 3 attempts")
        assert waits == [0.5, 1.0] and fake_llm.requests == []
        return
    requests, expected_waits, words = FAULTS[fault]
    assert_fallback(answer, *words)
    assert len(fake_llm.requests) == requests
    assert waits == expected_waits


@pytest.mark.parametrize("fault", ["429", "500", "refuse"])
def test_a_transient_fault_is_retried_and_the_model_answers(
    real_assistant: Assistant, fake_llm: Any, fault: str
) -> None:
    fake_llm.reply = answer_reply(GOOD)
    fake_llm.fault, fake_llm.fault_times = fault, 2
    assistant = openai_assistant(real_assistant, fake_llm.base_url, llm_timeout=10.0)
    record_waits(assistant)
    answer = assistant.ask(Q)
    assert answer.backend == "openai:gpt-4o-mini" and answer.notice is None
    assert "1K to 16K tokens [1]" in answer.text
    assert len(fake_llm.requests) == 3
    fake_llm.requests.clear()
    fake_llm.fault_times = len(fake_llm.requests) + 1  # and in a stream
    answer = final(list(assistant.ask_stream(Q)))
    assert answer.backend == "openai:gpt-4o-mini" and "16K" in answer.text


def test_no_retries_when_set_to_zero(real_assistant: Assistant, fake_llm: Any) -> None:
    fake_llm.fault = "500"
    assistant = openai_assistant(real_assistant, fake_llm.base_url, llm_max_retries=0)
    assert_fallback(bounded(lambda: assistant.ask(Q)), "HTTP 500")
    assert len(fake_llm.requests) == 1


# ------------------------------------------------------------------------- Retry-After caps
class RateLimited:
    """A server that answers every request with 429 and a chosen Retry-After header."""

    def __init__(self, retry_after: str) -> None:
        self.retry_after = retry_after
        self.count = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                owner.count += 1
                body = json.dumps({"error": {"message": "slow down", "type": "rate_limit"}})
                self.send_response(429)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Retry-After", owner.retry_after)
                self.end_headers()
                self.wfile.write(body.encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def rate_limited() -> Iterator[Any]:
    servers: list[RateLimited] = []

    def start(retry_after: str) -> RateLimited:
        servers.append(RateLimited(retry_after))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def test_retry_after_is_honoured(real_assistant: Assistant, rate_limited: Any) -> None:
    server = rate_limited("1")
    assistant = openai_assistant(real_assistant, server.base_url, llm_timeout=10.0)
    waits = record_waits(assistant)
    assert_fallback(bounded(lambda: assistant.ask(Q)), "HTTP 429")
    assert waits == [1.0, 1.0] and server.count == 3


def test_retry_after_is_capped(real_assistant: Assistant, rate_limited: Any) -> None:
    server = rate_limited("3600")
    assistant = openai_assistant(real_assistant, server.base_url, llm_timeout=600.0)
    waits = record_waits(assistant, really=False)  # the waits are recorded, not slept
    assert_fallback(bounded(lambda: assistant.ask(Q)), "HTTP 429")
    assert waits == [OpenAIBackend.RETRY_AFTER_CAP] * 2 and server.count == 3


def test_a_wait_past_the_total_budget_is_not_made(
    real_assistant: Assistant, rate_limited: Any
) -> None:
    """Retry-After beyond what is left of RAG_LLM_TIMEOUT: give up now, do not sleep."""
    server = rate_limited("5")
    assistant = openai_assistant(real_assistant, server.base_url, llm_timeout=3.0)
    waits = record_waits(assistant)
    assert_fallback(bounded(lambda: assistant.ask(Q)), "HTTP 429")
    assert waits == [] and server.count == 1


def test_http_date_retry_after(real_assistant: Assistant, rate_limited: Any) -> None:
    server = rate_limited("Wed, 21 Oct 2015 07:28:00 GMT")  # in the past: retry at once
    assistant = openai_assistant(real_assistant, server.base_url, llm_timeout=10.0)
    waits = record_waits(assistant)
    assert_fallback(bounded(lambda: assistant.ask(Q)), "HTTP 429")
    assert waits == [0.0, 0.0]


def test_llm_outage_through_the_cli_is_a_note_not_a_traceback(
    real_store_dir: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(real_store_dir, store)
    env = {
        **os.environ,
        "COLUMNS": "1000",
        "RAG_DATA_DIR": str(store),
        "RAG_LLM": "openai",  # conftest sets RAG_LLM=extractive for subprocesses
        "RAG_LLM_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
        "RAG_LLM_TIMEOUT": "3",
    }
    result = subprocess.run([RAG, "ask", Q], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "1K to 16K tokens" in result.stdout and "[1]" in result.stdout
    assert "backend: extractive" in result.stdout
    assert "note: The language model failed" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


# ---------------------------------------------------------------------------- Chroma server
class ChromaServer:
    """A `chroma run` subprocess this test starts and stops (same port and data on restart)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        chroma = Path(sys.executable).with_name("chroma")
        self.proc = subprocess.Popen(
            [chroma, "run", "--host", "127.0.0.1", "--port", str(self.port), "--path", self.path],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError("chroma run did not start within 90 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def own_chroma(tmp_path: Path) -> Iterator[ChromaServer]:
    server = ChromaServer(tmp_path / "chroma-data")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def papers_30(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("papers") / "papers.jsonl"
    papers = [p for p in load_corpus([CORPUS]).papers if p.title == LRA_TITLE]
    papers += [p for p in load_corpus([CORPUS]).papers[:29] if p.title != LRA_TITLE]
    path.write_text(
        "".join(json.dumps({"title": p.title, "abstract": p.abstract}) + "\n" for p in papers)
    )
    return path


def test_chroma_server_stopped_mid_session_then_back(
    own_chroma: ChromaServer, real_assistant: Assistant, papers_30: Path, tmp_path: Path
) -> None:
    own_chroma.start()
    settings = Settings(
        data_dir=tmp_path / "local",
        chroma_host="127.0.0.1",
        chroma_port=own_chroma.port,
        _env_file=None,
    )
    assistant = Assistant(settings, embedder=real_assistant.embedder)
    assert assistant.ingest([papers_30]).added == 30
    before = assistant.ask(Q)
    assert "16K" in before.text

    own_chroma.stop()
    for call in (
        lambda: assistant.ask(Q),
        lambda: list(assistant.ask_stream(Q)),
        lambda: assistant.retrieve(Q),
        lambda: assistant.info(),
        lambda: assistant.ingest([papers_30]),
    ):
        with pytest.raises(StoreError, match=r"Chroma server at 127\.0\.0\.1:\d+ .*`chroma run`"):
            call()

    own_chroma.start()  # the same Assistant, no restart
    after = assistant.ask(Q)
    assert after.text == before.text
    assert [s.paper_id for s in after.sources] == [s.paper_id for s in before.sources]
    assert assistant.ingest([papers_30]).skipped == 30  # nothing was lost while it was down
    assert assistant.info()["papers"] == 30


def test_chroma_server_down_at_start_then_up(
    own_chroma: ChromaServer, real_assistant: Assistant, papers_30: Path, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path / "local",
        chroma_host="127.0.0.1",
        chroma_port=own_chroma.port,
        _env_file=None,
    )
    assistant = Assistant(settings, embedder=real_assistant.embedder)
    with pytest.raises(StoreError, match=r"cannot reach the Chroma server .*chroma run --host"):
        assistant.ask(Q)
    with pytest.raises(StoreError, match="cannot reach the Chroma server"):
        assistant.ingest([papers_30])
    own_chroma.start()
    assert assistant.ingest([papers_30]).added == 30
    assert "16K" in assistant.ask(Q).text
