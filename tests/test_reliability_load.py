"""Load: many questions at once while an ingest writes to the same store.

The real model and a copy of the real bundled store (277 papers). The ingest rewrites 77 of the
papers: the same ids, titles and abstracts with new authors, so every one of their chunks is
re-embedded and upserted (8 papers per write) while the questions run, yet no answer may change.
That makes "identical to the serial answer" exact for every question at every moment of the
ingest. A gate after each write holds the ingest until a few more questions have been answered,
so reads and writes interleave on any machine, however loaded, with no timing assumption.

- The Python API: 50 `ask`s at once (a 50-thread pool) on the `Assistant` that is ingesting.
- The UI: 20 gradio_client users at once asking through the running app (`/ask`) while a 21st
  uploads the 77 papers through the app's own `/ingest`.

No ask may fail, and every answer (text, source papers, abstained) must be identical to the
serial answer, which is the same before and after the ingest.
"""

from __future__ import annotations

import html
import json
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import CORPUS, serving

from rag import Assistant, Settings
from rag.corpus import load_corpus
from rag.embeddings import get_embedder
from rag.ingest import Ingestor

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

QUESTIONS = [
    "What range of sequence lengths does the Long Range Arena benchmark cover?",
    "What training-free metric predicts the trained performance of an RNN architecture?",
    "Which survey will observe an order of magnitude more astrophysical transients?",
    "How does Transformer Fusion with Optimal Transport merge independently-trained networks?",
    "What is attention entropy collapse and how does it affect Transformer training?",
    "How does CBNet build a composite backbone for object detection?",
    "How many unannotated 3D volumes is MIS-FM pretrained on?",
    "How does TCNCA replace the linear recurrence of MEGA?",
    "Which component does One Wide Feedforward share across layers?",
    "How can looped transformers work as programmable computers?",
    "What does MetaFormer argue contributes most to the performance of vision transformers?",
    "What is P2AT designed for?",
]
ASKS = 50
UI_USERS = 20
BATCH = 8  # papers per write while the questions run (77 papers -> 10 writes)
GATE_WAIT = 300  # seconds a write waits for answers before going on regardless (a bound only)
Reply = tuple[Any, ...]


def reply(assistant: Assistant, question: str) -> Reply:
    answer = assistant.ask(question)
    return answer.text, tuple(s.paper_id for s in answer.sources), answer.abstained


REWRITE_AUTHORS = ["Ada Loadtest", "Bo Concurrent"]


@pytest.fixture(scope="module")
def rewrite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The last 77 bundled papers, same ids, titles, abstracts and dates, new authors."""
    path = tmp_path_factory.mktemp("load") / "rewrite.jsonl"
    records = [
        {
            "id": p.id,
            "title": p.title,
            "abstract": p.abstract,
            "published": p.published.isoformat() if p.published else None,
            "authors": REWRITE_AUTHORS,
        }
        for p in load_corpus([CORPUS]).papers[200:]
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def rewritten(assistant: Assistant) -> int:
    """Papers whose stored chunks all carry the new authors."""
    metas = assistant.store.get(include=["metadatas"])["metadatas"]
    papers: dict[str, set[bool]] = {}
    for m in metas:
        papers.setdefault(m["paper_id"], set()).add(m["authors"] == "; ".join(REWRITE_AUTHORS))
    return sum(1 for flags in papers.values() if flags == {True})


class Gate:
    """Counts answered questions; after its n-th write the ingest waits for `step * n` answers."""

    def __init__(self, total: int, step: int) -> None:
        self.total, self.step = total, step
        self.answered = 0
        self.writes = 0
        self.ingest_running = True
        self.answered_during_ingest = 0
        self.first_write = threading.Event()
        self._cond = threading.Condition()

    def answer_done(self) -> None:
        with self._cond:
            self.answered += 1
            if self.ingest_running:
                self.answered_during_ingest += 1
            self._cond.notify_all()

    def write_done(self) -> None:
        with self._cond:
            self.writes += 1
            self.first_write.set()
            want = min(self.total, self.step * self.writes)
            self._cond.wait_for(lambda: self.answered >= want, timeout=GATE_WAIT)

    def ingest_finished(self) -> None:
        with self._cond:
            self.ingest_running = False


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Callable[[int, int], Gate]:
    """Small writes, each followed by the gate (Ingestor._write is wrapped, nothing else)."""
    monkeypatch.setattr("rag.ingest.PAPER_BATCH", BATCH)
    write = Ingestor._write

    def make(total: int, step: int) -> Gate:
        g = Gate(total, step)

        def gated(self: Ingestor, plan: Any, vectors: Any, report: Any) -> None:
            write(self, plan, vectors, report)
            g.write_done()

        monkeypatch.setattr(Ingestor, "_write", gated)
        return g

    return make


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any], list[BaseException]]:
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(fn())
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, results, errors


def assert_identical_to_serial(
    results: list[tuple[str, Reply]], before: dict[str, Reply], after: dict[str, Reply]
) -> None:
    assert after == before, "the rewrite changed a serial answer"
    assert sum(1 for text, *_ in before.values() if text) == len(before)
    for question, got in results:
        assert got == before[question], question


# ---------------------------------------------------------------------------- the Python API
def test_fifty_concurrent_asks_while_ingesting(
    real_assistant: Assistant, rewrite: Path, gate: Callable[[int, int], Gate]
) -> None:
    assistant = real_assistant
    before = {q: reply(assistant, q) for q in QUESTIONS}
    g = gate(ASKS, 5)

    def ingest() -> Any:
        try:
            return assistant.ingest([rewrite])
        finally:
            g.ingest_finished()

    ingester, reports, ingest_errors = in_thread(ingest)
    assert g.first_write.wait(600), "the ingest never wrote its first batch"

    def ask(question: str) -> tuple[str, Reply]:
        try:
            return question, reply(assistant, question)
        finally:
            g.answer_done()

    with ThreadPoolExecutor(max_workers=ASKS) as pool:
        futures = [pool.submit(ask, QUESTIONS[i % len(QUESTIONS)]) for i in range(ASKS)]
        results = [f.result() for f in futures]  # an exception here is an error
    ingester.join(600)
    assert not ingester.is_alive(), "the ingest did not finish"
    assert not ingest_errors, ingest_errors
    # Only the authors changed: every chunk keeps its text and vector and gets new metadata.
    assert reports[0].ok and reports[0].updated == 77, reports[0]
    assert reports[0].chunks_written == 0 and reports[0].chunks_relabelled > 77, reports[0]
    assert assistant.info()["papers"] == 277 and rewritten(assistant) == 77

    after = {q: reply(assistant, q) for q in QUESTIONS}
    assert_identical_to_serial(results, before, after)
    assert g.writes >= 5 and g.answered_during_ingest >= 1, "no ask overlapped the ingest"
    print(
        f"\n{ASKS} concurrent asks, 0 errors, {len(results)} identical to the serial answer; "
        f"{g.answered_during_ingest} answered while the ingest ran "
        f"({g.writes} writes, {reports[0].chunks_relabelled} chunks relabelled)"
    )


def test_counting_tokens_beside_encoding_is_safe() -> None:
    """The bug the load test found: chunking (count_tokens) in the ingest thread switched off
    the shared tokenizer's padding under a concurrent `encode` -> ragged batches, ValueError."""
    embedder = get_embedder(Settings(_env_file=None))
    texts = [" ".join(["word"] * n) for n in (3, 40, 7, 120, 15, 200)]
    expected = embedder.encode(texts)
    stop = threading.Event()
    errors: list[BaseException] = []

    def count() -> None:
        while not stop.is_set():
            try:
                embedder.count_tokens("a sentence to count " * 30)
            except BaseException as exc:
                errors.append(exc)
                return

    counters = [threading.Thread(target=count, daemon=True) for _ in range(2)]
    for t in counters:
        t.start()
    try:
        for _ in range(30):
            assert np.allclose(embedder.encode(texts), expected, atol=1e-5)
    finally:
        stop.set()
        for t in counters:
            t.join(60)
    assert not errors, errors


# ------------------------------------------------------------------------------------ the UI
def client(url: str) -> Any:
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False)


TIMING = re.compile(r'<span class="rag-chip">[0-9.]+ s</span>')  # the answer's own latency
# A source card's author line: the one thing the rewrite changes (dates and scores stay).
AUTHORS = re.compile(r" · <span>(?!\d{4}-\d\d-\d\d<)[^<]*</span>")


def ui_ask(url: str, question: str) -> Reply:
    """One user: a fresh client asks in a new chat; returns (reply text, sources panel without
    the author lines)."""
    _, chat, panel = client(url).predict(question, [], 5, "any", "any", "", "", api_name="/ask")
    content = chat[-1]["content"]
    if isinstance(content, list):
        content = " ".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    text = html.unescape(re.sub(r"<[^>]+>", " ", TIMING.sub("", str(content))))
    return " ".join(text.split()), AUTHORS.sub("", str(panel))


def test_twenty_concurrent_users_through_the_ui_while_one_uploads(
    real_assistant: Assistant, rewrite: Path, gate: Callable[[int, int], Gate]
) -> None:
    pytest.importorskip("rag_ui.app")
    from gradio_client import handle_file

    assistant = real_assistant
    with serving(assistant) as url:
        before = {q: ui_ask(url, q) for q in QUESTIONS}
        g = gate(UI_USERS, 2)

        def upload() -> Any:
            try:
                return client(url).predict([handle_file(str(rewrite))], api_name="/ingest")
            finally:
                g.ingest_finished()

        uploader, uploaded, upload_errors = in_thread(upload)
        assert g.first_write.wait(600), "the upload never wrote its first batch"

        def ask(question: str) -> tuple[str, Reply]:
            try:
                return question, ui_ask(url, question)
            finally:
                g.answer_done()

        with ThreadPoolExecutor(max_workers=UI_USERS) as pool:
            futures = [pool.submit(ask, QUESTIONS[i % len(QUESTIONS)]) for i in range(UI_USERS)]
            results = [f.result() for f in futures]  # an exception here is an error
        uploader.join(600)
        assert not uploader.is_alive(), "the upload did not finish"
        assert not upload_errors, upload_errors
        report = html.unescape(re.sub(r"<[^>]+>", " ", str(uploaded[0][0])))
        assert re.search(r"\b77\s*updated", report), report
        assert re.search(r"\b0\s*failed", report) and "with problems" not in report, report
        after = {q: ui_ask(url, q) for q in QUESTIONS}
    assert assistant.info()["papers"] == 277 and rewritten(assistant) == 77
    assert_identical_to_serial(results, before, after)
    assert g.writes >= 5 and g.answered_during_ingest >= 1, "no UI ask overlapped the upload"
    assert "16K" in before[QUESTIONS[0]][0]
    print(
        f"\n{UI_USERS} concurrent UI users, 0 errors, {len(results)} identical to the serial "
        f"answer; {g.answered_during_ingest} answered while the upload was ingesting ({g.writes} writes)"
    )
