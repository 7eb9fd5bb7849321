"""Local servers for tests and benchmarks: a free 127.0.0.1 port, a real `chroma run`, stopping a
process. Tests import this (never bench/); `bench retrieve` and `bench llm` import it too, so
both start Chroma the same way."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_chroma(path: Path, timeout: float) -> tuple[subprocess.Popen[bytes], int]:
    """A real `chroma run` serving `path` on 127.0.0.1 (a free port), once it accepts
    connections. Used by `bench retrieve` and by the tests' `chroma_server` fixture."""
    port = free_port()
    chroma = Path(sys.executable).with_name("chroma")
    proc = subprocess.Popen(
        [str(chroma), "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, port
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"chroma run did not start within {timeout:.0f} s")


def stop_process(proc: subprocess.Popen[bytes], wait: float) -> None:
    """Terminate, and kill if it has not exited within `wait` seconds."""
    proc.terminate()
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
