"""Crashes: `rag ingest` killed with SIGKILL at random moments, stores built differently, corrupt
stores, and two ingests at once.

The kill loop runs the real CLI in a subprocess with the real model on 40 bundled papers, kills it
at a seeded random moment, reruns the ingest to completion and compares the store with a clean
ingest: the same chunk ids, documents and metadata (no duplicates, none missing) and the same
answer to a question. The subprocess writes in batches of 4 papers instead of 256 so that a 40-paper
ingest has ten write points for a kill to land between or inside. It prints a line as each write
starts and ends; three runs in four are killed a random 0-1 s after the start or the end of a
randomly chosen write (so the kill lands in the ingest however loaded the machine is), the fourth
after a random delay from process start (imports, model load or ingest).
"""

from __future__ import annotations

import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import CORPUS, HashEmbedding

from rag import Assistant, Settings
from rag.corpus import load_corpus
from rag.embeddings import get_embedder
from rag.errors import StoreError

pytestmark = pytest.mark.e2e

RAG = str(Path(sys.executable).with_name("rag"))
SEED = int(os.environ.get("CRASH_SEED", "20240229"))
RUNS = int(os.environ.get("CRASH_RUNS", "20"))
QUESTION = "What training-free metric predicts the trained performance of an RNN architecture?"
# The real CLI, writing every 4 papers so that kills land between and inside writes.
SMALL_BATCHES = (
    "import sys, rag.ingest; rag.ingest.PAPER_BATCH = 4\n"
    "write = rag.ingest.Ingestor._write\n"
    "def marked(self, plan, vectors, report):\n"
    "    print('@write-start', flush=True); write(self, plan, vectors, report)\n"
    "    print('@write-end', flush=True)\n"
    "rag.ingest.Ingestor._write = marked\n"
    "from rag.cli import app; app(['ingest', *sys.argv[1:]], prog_name='rag')"
)
WRITES = 10  # 40 papers in batches of 4

Snapshot = dict[str, tuple[str, str, int, int, str]]


# ----------------------------------------------------------------------------------- helpers
def write_corpora(folder: Path) -> tuple[Path, Path]:
    """v2: 40 bundled papers (shuffled, so new, changed and unchanged papers interleave);
    v1: 20 of them, 5 with an older, different abstract."""
    papers = load_corpus([CORPUS]).papers[:40]

    def record(paper: Any, abstract: str | None = None) -> str:
        return json.dumps(
            {
                "title": paper.title,
                "abstract": abstract or paper.abstract,
                "published": paper.published.isoformat() if paper.published else None,
            }
        )

    v2 = folder / "v2.jsonl"
    order = list(range(40))
    random.Random(SEED).shuffle(order)
    v2.write_text("".join(record(papers[i]) + "\n" for i in order))
    v1 = folder / "v1.jsonl"
    lines = []
    for i, paper in enumerate(papers[:20]):
        old = None
        if i % 4 == 0:  # an earlier version: the first half of the abstract
            old = paper.abstract[: len(paper.abstract) // 2].rsplit(" ", 1)[0] + "."
        lines.append(record(paper, old) + "\n")
    v1.write_text("".join(lines))
    return v1, v2


def cli_env(data_dir: Path) -> dict[str, str]:
    return {**os.environ, "RAG_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"}


def snapshot(data_dir: Path, embedder: Any) -> Snapshot:
    """Every stored chunk: id -> (document, paper id, position, n_chunks, paper hash)."""
    store = Assistant(Settings(data_dir=data_dir, _env_file=None), embedder=embedder).store
    got = store.get(include=["documents", "metadatas"])
    return {
        cid: (doc, str(m["paper_id"]), int(m["position"]), int(m["n_chunks"]), m["paper_hash"])
        for cid, doc, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
    }


def ask(data_dir: Path, embedder: Any) -> tuple[str, list[str]]:
    answer = Assistant(Settings(data_dir=data_dir, _env_file=None), embedder=embedder).ask(QUESTION)
    return answer.text, [s.paper_id for s in answer.sources]


def wait_for_lock(proc: subprocess.Popen[bytes], data_dir: Path, limit: float = 300) -> bool:
    """Until the subprocess holds the ingest lock (it writes its pid there): True, or False if
    it exited first."""
    lock = data_dir / "ingest.lock"
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if lock.read_text().strip() == str(proc.pid):
                return True
        except OSError:
            pass
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"rag ingest did not take the lock within {limit:.0f} s")


@pytest.fixture(scope="module")
def crash_lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The corpora, a v1 template store and a clean reference ingest of v2, both by the CLI."""
    root = tmp_path_factory.mktemp("crash")
    v1, v2 = write_corpora(root)
    template, reference = root / "template", root / "reference"
    done = subprocess.run(
        [RAG, "ingest", str(v1)], env=cli_env(template), capture_output=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", SMALL_BATCHES, str(v2)],
        env=cli_env(reference),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert wait_for_lock(proc, reference)
    locked = time.monotonic()
    out, errs = proc.communicate(timeout=600)
    assert proc.returncode == 0, errs
    assert b"added 40" in out
    embedder = get_embedder(Settings(_env_file=None))
    return {
        "root": root,
        "v2": v2,
        "template": template,
        "template_snapshot": snapshot(template, embedder),
        "reference": snapshot(reference, embedder),
        "reference_dir": reference,
        "answer": ask(reference, embedder),
        "embedder": embedder,
        "to_lock": locked - started,
        "ingesting": time.monotonic() - locked,
    }


def read_markers(proc: subprocess.Popen[bytes]) -> queue.Queue[str | None]:
    """The subprocess's stdout lines, read in a thread (None at its end)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.put(raw.decode(errors="replace").strip())
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def wait_for_marker(lines: queue.Queue[str | None], marker: str, count: int) -> bool:
    """Until the `count`-th `marker` line: True, or False if the process ended first."""
    seen = 0
    while (line := lines.get(timeout=600)) is not None:
        if line == marker:
            seen += 1
            if seen == count:
                return True
    return False


# ---------------------------------------------------------------------------------- kill loop
@pytest.mark.slow
@pytest.mark.timeout(5400)
def test_sigkill_at_random_moments_then_rerun_gives_the_clean_store(
    crash_lab: dict[str, Any],
) -> None:
    ref: Snapshot = crash_lab["reference"]
    embedder = crash_lab["embedder"]
    assert len({(pid, pos) for _, pid, pos, _, _ in ref.values()}) == len(ref)
    text, source_ids = crash_lab["answer"]
    assert "hidden covariance" in text

    rng = random.Random(SEED)
    outcomes: dict[str, int] = {}
    log: list[dict[str, Any]] = []
    for run in range(RUNS):
        data_dir = crash_lab["root"] / f"run{run:02d}"
        if run % 2:  # half the runs update a store that already holds v1
            shutil.copytree(crash_lab["template"], data_dir)
        else:
            data_dir.mkdir()
        # Never open the run's store before the subprocess is gone: two processes, one store.
        start = crash_lab["template_snapshot"] if run % 2 else {}
        proc = subprocess.Popen(
            [sys.executable, "-c", SMALL_BATCHES, str(crash_lab["v2"])],
            env=cli_env(data_dir),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        markers = read_markers(proc)
        if run % 4 == 3:  # any moment from process start: imports, model load, ingest
            delay = rng.uniform(0.5, (crash_lab["to_lock"] + crash_lab["ingesting"]) * 1.1)
            moment = f"{delay:.2f} s after start"
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.01)
        else:  # inside or just after a chosen write, wherever the ingest is in wall time
            write, edge, delay = rng.randrange(WRITES), rng.choice(["start", "end"]), rng.random()
            moment = f"{delay:.2f} s after write {write + 1} {edge}s"
            wait_for_marker(markers, f"@write-{edge}", write + 1)
            time.sleep(delay)
        finished = proc.poll() is not None
        if not finished:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)

        after_kill = snapshot(data_dir, embedder)
        if finished:
            outcome = "finished before the kill"
        elif after_kill == start:
            outcome = "killed before writing"
        elif after_kill == ref:
            outcome = "killed after the last write"
        else:
            outcome = "killed mid-write"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

        report = Assistant(Settings(data_dir=data_dir, _env_file=None), embedder=embedder).ingest(
            [crash_lab["v2"]]
        )
        assert report.ok, report.failed
        recovered = snapshot(data_dir, embedder)
        missing, extra = set(ref) - set(recovered), set(recovered) - set(ref)
        assert not missing and not extra, f"run {run}: missing {missing}, extra {extra}"
        assert recovered == ref, f"run {run}: same ids but different documents or metadata"
        assert ask(data_dir, embedder) == (text, source_ids), f"run {run}: answer differs"
        log.append(
            {
                "run": run,
                "kill": moment,
                "outcome": outcome,
                "chunks_after_kill": len(after_kill),
                "rerun_written": report.chunks_written,
            }
        )
        shutil.rmtree(data_dir)

    summary = {"seed": SEED, "runs": RUNS, "chunks": len(ref), "outcomes": outcomes, "log": log}
    print(json.dumps(summary, indent=1))
    (crash_lab["root"] / "summary.json").write_text(json.dumps(summary, indent=1))
    assert outcomes.get("killed mid-write", 0) >= 1, outcomes  # the loop really hit writes


# --------------------------------------------------------------------------- two at a time
def test_second_ingest_while_one_runs_is_refused(crash_lab: dict[str, Any]) -> None:
    """A real `rag ingest` holds the store; an ingest (and a --rebuild) from another process is
    refused with the fix, and the first one's result is complete."""
    data_dir = crash_lab["root"] / "concurrent"
    embedder = crash_lab["embedder"]
    proc = subprocess.Popen(
        [sys.executable, "-c", SMALL_BATCHES, str(crash_lab["v2"])],
        env=cli_env(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert wait_for_lock(proc, data_dir), "the first ingest finished before it held the lock"
    second = Assistant(Settings(data_dir=data_dir, _env_file=None), embedder=embedder)
    with pytest.raises(StoreError, match=r"another `rag ingest` is writing to .*wait for it"):
        second.ingest([crash_lab["v2"]])
    with pytest.raises(StoreError, match="another `rag ingest` is writing"):
        second.ingest([crash_lab["v2"]], rebuild=True)
    out, errs = proc.communicate(timeout=600)
    assert proc.returncode == 0, errs
    assert b"added 40" in out
    assert snapshot(data_dir, embedder) == crash_lab["reference"]  # the rebuild dropped nothing
    assert second.ingest([crash_lab["v2"]]).skipped == 40  # and after it, the retry works


def test_cli_ingest_while_the_store_is_locked_exits_1_with_the_fix(
    crash_lab: dict[str, Any], tmp_path: Path
) -> None:
    data_dir = tmp_path / "locked"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from rag.ingest import ingest_lock\n"
            "with ingest_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(600)",
            str(data_dir),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
        result = subprocess.run(
            [RAG, "ingest", str(crash_lab["v2"])],
            env=cli_env(data_dir),
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    assert "another `rag ingest` is writing" in result.stderr
    assert "Traceback" not in result.stderr


def test_two_threads_ingesting_into_one_assistant(
    fake_assistant: Assistant, crash_lab: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flock is per open file, so it also stops a second ingest from the same process
    (e.g. two uploads in the UI at once)."""
    entered, gate = threading.Event(), threading.Event()
    encode = HashEmbedding.encode

    def held_encode(self: HashEmbedding, texts: list[str]) -> Any:
        entered.set()
        gate.wait(60)
        return encode(self, texts)

    monkeypatch.setattr(HashEmbedding, "encode", held_encode)
    results: list[Any] = []
    first = threading.Thread(
        target=lambda: results.append(fake_assistant.ingest([crash_lab["v2"]]))
    )
    first.start()
    try:
        assert entered.wait(60)
        with pytest.raises(StoreError, match="another `rag ingest` is writing"):
            fake_assistant.ingest([crash_lab["v2"]])
    finally:
        gate.set()
        first.join(60)
    assert results and results[0].added == 40 and results[0].ok
    assert fake_assistant.info()["papers"] == 40


# ------------------------------------------------------------------ built differently / corrupt
def test_store_built_with_another_embedding_model_is_refused(
    crash_lab: dict[str, Any], fake_embedder: Any, tmp_path: Path
) -> None:
    data_dir = tmp_path / "store"
    shutil.copytree(crash_lab["reference_dir"], data_dir)
    before = snapshot(data_dir, crash_lab["embedder"])
    other = Assistant(Settings(data_dir=data_dir, _env_file=None), embedder=fake_embedder)
    with pytest.raises(StoreError) as err:
        other.ask(QUESTION)
    message = str(err.value)
    assert "all-MiniLM-L6-v2:384" in message and "hash-test:64" in message
    assert "rag ingest --rebuild" in message and "RAG_EMBED_MODEL" in message
    with pytest.raises(StoreError):
        other.ingest([crash_lab["v2"]])  # never silently mixed
    assert snapshot(data_dir, crash_lab["embedder"]) == before
    # The fix the message names works.
    other.ingest([crash_lab["v2"]], rebuild=True)
    assert other.info()["embedding_model"] == "hash-test:64" and other.info()["papers"] == 40


def test_store_built_with_another_chunking_is_refused(
    crash_lab: dict[str, Any], tmp_path: Path
) -> None:
    data_dir = tmp_path / "store"
    shutil.copytree(crash_lab["reference_dir"], data_dir)
    before = snapshot(data_dir, crash_lab["embedder"])
    result = subprocess.run(
        [RAG, "ingest", str(crash_lab["v2"]), "--set", "chunk_tokens=120"],
        env=cli_env(data_dir),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 1
    assert "chunking" in result.stderr and "RAG_CHUNK_TOKENS" in result.stderr
    assert "rag ingest --rebuild" in result.stderr and "Traceback" not in result.stderr
    assert snapshot(data_dir, crash_lab["embedder"]) == before


def _garbage_pages(db: Path) -> None:
    data = bytearray(db.read_bytes())
    noise = random.Random(SEED)
    for start in range(0, len(data), 4096):
        data[start : start + 200] = bytes(noise.randrange(256) for _ in range(200))
    db.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(_garbage_pages, id="garbage-over-every-page"),
        pytest.param(lambda db: db.write_bytes(db.read_bytes()[:40_000]), id="truncated"),
        pytest.param(lambda db: db.write_text("not a database " * 100), id="replaced-by-text"),
        pytest.param(lambda db: db.write_bytes(b""), id="emptied"),
    ],
)
def test_corrupt_store_is_a_clear_store_error(
    crash_lab: dict[str, Any], tmp_path: Path, damage: Any
) -> None:
    data_dir = tmp_path / "store"
    shutil.copytree(crash_lab["reference_dir"], data_dir)
    damage(data_dir / "chroma" / "chroma.sqlite3")
    with pytest.raises(StoreError, match=r"move (it|the directory) away and run `rag ingest`"):
        Assistant(Settings(data_dir=data_dir, _env_file=None), embedder=crash_lab["embedder"]).ask(
            QUESTION
        )


def test_corrupt_store_through_the_cli(crash_lab: dict[str, Any], tmp_path: Path) -> None:
    data_dir = tmp_path / "store"
    shutil.copytree(crash_lab["reference_dir"], data_dir)
    _garbage_pages(data_dir / "chroma" / "chroma.sqlite3")
    result = subprocess.run(
        [RAG, "ask", QUESTION], env=cli_env(data_dir), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 1
    assert "error:" in result.stderr and "rag ingest" in result.stderr
    assert "Traceback" not in result.stderr
