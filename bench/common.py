"""Shared helpers for the benchmarks: corpora, timing, memory, a `chroma run`, results and tables.

Benchmarks run each measured pipeline in a fresh subprocess (`python -m bench.worker JOB ARGS`) so
model loading, imports and memory are counted the same way on every side, and so one run cannot
warm another's caches. The machine is shared, so every comparison is measured in the same run and
reported as a ratio next to the raw figures.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tests.local_servers import start_chroma, stop_process

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
PYTHON = sys.executable

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")


# ------------------------------------------------------------------------------------ corpora
def bundled_papers() -> list[Any]:
    from rag.corpus import bundled_corpus_dir, iter_corpus
    from rag.types import Paper

    return [
        p for p in iter_corpus([bundled_corpus_dir()], max_chars=20_000) if isinstance(p, Paper)
    ]


def sentence_pool(papers: Sequence[Any]) -> list[str]:
    return [s for p in papers for s in _SENTENCE.split(p.abstract) if len(s.split()) >= 5]


def synthetic_records(n: int, seed: int) -> list[dict[str, Any]]:
    """`n` never-seen abstracts: real corpus sentences recombined across papers.

    Titles join the first half of one real title to the second half of another; abstracts are
    5-10 sentences drawn from the whole corpus, so the text reads like the corpus (same
    vocabulary, lengths and token statistics) but no abstract (or chunk) existed before.
    """
    papers = bundled_papers()
    rng = random.Random(seed)
    pool = sentence_pool(papers)
    titles = [p.title.split() for p in papers]
    records = []
    for i in range(n):
        a, b = rng.choice(titles), rng.choice(titles)
        title = " ".join(a[: max(1, len(a) // 2)] + b[len(b) // 2 :])
        body = " ".join(rng.sample(pool, rng.randint(5, 10)))
        year = rng.randint(2017, 2025)
        records.append(
            {
                "id": f"syn{seed}.{i:07d}",
                "title": f"{title} ({seed}-{i})",
                "abstract": body,
                "authors": [f"Author {rng.randint(1, 5000)}" for _ in range(rng.randint(1, 6))],
                "published": f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            }
        )
    return records


def write_jsonl(records: Sequence[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return path


def questions() -> tuple[list[tuple[str, str]], str]:
    """(question, title fragment of the paper that answers it) and where they came from."""
    dev = ROOT / "eval" / "data" / "questions.jsonl"
    if dev.is_file():
        out = []
        for line in dev.read_text().splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            title = rec.get("title") or rec.get("paper_title") or ""
            if rec.get("answerable", True) and title:
                out.append((rec["question"], title))
        if out:
            return out, str(dev.relative_to(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    from test_core_e2e import QUESTIONS

    return [(q, t) for q, t, _ in QUESTIONS], "tests/test_core_e2e.py (12 questions)"


# ------------------------------------------------------------------------------ measurement
def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "p50_ms": round(pct(ms, 50), 2),
        "p95_ms": round(pct(ms, 95), 2),
        "mean_ms": round(statistics.fmean(ms), 2) if ms else float("nan"),
        "n": len(ms),
    }


def rss_mb(pid: int | None = None) -> float:
    """Resident memory of a process (and its children when it is a server) in MB."""
    pids = [pid or os.getpid()]
    if pid:
        pids += _children(pid)
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for kid in kids:
        out += [int(kid), *_children(int(kid))]
    return out


def du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    cpu = ""
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    return {
        "when": dt.datetime.now().isoformat(timespec="seconds"),
        "commit": commit,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_avg_1_5_15": [round(x, 2) for x in load],
        "python": platform.python_version(),
    }


def run_worker(job: str, args: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `bench.worker JOB` in a fresh interpreter; its last stdout line is the JSON result."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [PYTHON, "-m", "bench.worker", job, json.dumps(args)],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bench worker {job} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------- output
def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"bench": name, "machine": machine(), **data}, indent=2) + "\n")
    return path


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        t.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*[_fmt(v) for v in row])
    Console(width=200).print(t)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


# ----------------------------------------------------------------------------- chroma run
class ChromaServer:
    """A `chroma run` on 127.0.0.1 serving `path`, its peak RSS sampled while it runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.proc, self.port = start_chroma(path, timeout=120)
        self.peak_mb = rss_mb(self.proc.pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.peak_mb = max(self.peak_mb, rss_mb(self.proc.pid))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        stop_process(self.proc, 20)


@contextlib.contextmanager
def chroma_store(kind: str, path: Path) -> Iterator[ChromaServer | None]:
    """Nothing for an embedded store; a `chroma run` server for `server`, stopped after."""
    server = ChromaServer(path) if kind == "server" else None
    try:
        yield server
    finally:
        if server is not None:
            server.close()
