"""`python -m bench startup`: wall time of `rag --help` and of a first `rag ask` in a new process.

Each command runs in a fresh interpreter with the environment as it is (the default data dir and
settings, as a user would run it); the store must already hold the bundled corpus (`rag ingest`).
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import PYTHON, ROOT, save, table

QUESTION = "What range of sequence lengths does the Long Range Arena benchmark cover?"


def _time(cmd: list[str]) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return seconds


def main(runs: int = 3) -> None:
    rag = str(Path(PYTHON).with_name("rag"))
    results: dict[str, Any] = {"runs": runs}
    for name, cmd in (("rag --help", [rag, "--help"]), ("rag ask (first)", [rag, "ask", QUESTION])):
        secs = [_time(cmd) for _ in range(runs)]
        results[name] = {"seconds": secs, "median_s": statistics.median(secs)}
    table(
        f"startup, wall seconds, {runs} fresh processes each",
        ["command", "median s", "min s", "max s"],
        [
            [k, v["median_s"], min(v["seconds"]), max(v["seconds"])]
            for k, v in results.items()
            if isinstance(v, dict)
        ],
    )
    print(f"wrote {save('startup', results)}")
