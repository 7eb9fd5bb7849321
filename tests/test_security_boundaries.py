"""Security at the server's edges (issue 16, items 1, 3 and 4), over real HTTP.

- The UI ingests only files uploaded through the page: a client naming any other server path
  (absolute, `..`, a symlink, a file planted in Gradio's cache, a FIFO) is refused without the
  file being read; who may ingest at all follows RAG_UI_INGEST / RAG_API_KEY; failure reports
  echo no more of a file than short, escaped excerpts.
- The API's 4 MB body cap counts what is read, so a chunked body is cut off at the cap.
- With RAG_API_KEY set, every /v1 request without the token is a 401 before anything else.

Servers are uvicorn on 127.0.0.1 in a thread (real HTTP), over an embedded Chroma store with the
fake embedder, so the file runs in seconds. Nothing here is timed: waits are bounded, a hang fails.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import os
import re
import selectors
import shutil
import socket
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ROOT, HashEmbedding, served

from rag import Assistant, IngestFailure, IngestReport, Settings
from rag.api import MAX_BODY_BYTES, create_api

KEY = "sk-rag-edge-7c1d9e2f4a6b8c0dSECRET"
MARKER = "Zanzibar Quokka Spectroscopy"  # a title no bundled paper has
CHUNK = 64 * 1024
HUGE = 150 * 1024 * 1024  # what the chunked body weighed


def paper_line(title: str = MARKER, pid: str = "7777.00001") -> str:
    return json.dumps(
        {
            "id": pid,
            "title": title,
            "abstract": f"We measure quokka spectra in Zanzibar. {title} reaches 97.1% recall.",
        }
    )


@pytest.fixture
def engine(tmp_path: Path, fake_embedder: HashEmbedding) -> Assistant:
    settings = Settings(
        data_dir=tmp_path / "store", llm="extractive", min_score=0.0, _env_file=None
    )
    return Assistant(settings, embedder=fake_embedder)


def with_settings(engine: Assistant, **overrides: Any) -> Assistant:
    return Assistant(
        engine.settings.with_overrides(**overrides), embedder=engine.embedder, store=engine.store
    )


def raw_request(
    base: str, head: bytes, body_chunks: Iterator[bytes] | None = None
) -> tuple[int, bytes, int]:
    """Send `head` (and chunks, until the server answers) on a raw socket; return (status, the
    response bytes, body bytes sent). Stops sending as soon as the server has replied."""
    host, port = base.removeprefix("http://").split(":")
    sent = 0
    # selectors (epoll), not select.select: late in the full suite this process holds more than
    # 1024 descriptors, past what select() can watch.
    with (
        socket.create_connection((host, int(port)), timeout=60) as sock,
        selectors.DefaultSelector() as watch,
    ):
        watch.register(sock, selectors.EVENT_READ)
        sock.sendall(head)
        for chunk in body_chunks or ():
            if watch.select(0):
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        raw = b""
        try:
            while part := sock.recv(65536):
                raw += part
                if b"\r\n\r\n" in raw and _complete(raw):
                    break
        except ConnectionResetError:
            pass
    assert raw.startswith(b"HTTP/1.1 "), raw[:200]
    return int(raw.split()[1]), raw, sent


def _complete(raw: bytes) -> bool:
    head, _, body = raw.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)content-length: *(\d+)", head)
    return bool(length) and len(body) >= int(length.group(1))


def chunked(total: int) -> Iterator[bytes]:
    """A chunked-encoded body of `total` bytes, in CHUNK-sized chunks, never terminated early."""
    piece = b"x" * CHUNK
    for _ in range(total // CHUNK):
        yield f"{CHUNK:x}\r\n".encode() + piece + b"\r\n"
    yield b"0\r\n\r\n"


def post_head(path: str, *extra: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".encode()
        + b"".join(h + b"\r\n" for h in extra)
        + b"\r\n"
    )


def error_code(raw: bytes) -> str:
    body = raw.partition(b"\r\n\r\n")[2]
    return json.loads(body)["error"]["code"]


# ------------------------------------------------------------------- item 3: the body cap
def test_chunked_body_is_cut_off_at_the_cap_over_real_http(engine: Assistant) -> None:
    with served(create_api(engine)) as base:
        head = post_head("/v1/chat/completions", b"Transfer-Encoding: chunked")
        status, raw, sent = raw_request(base, head, chunked(HUGE))
        assert status == 413 and error_code(raw) == "request_too_large", raw[:300]
        assert b"Traceback" not in raw
        # The server answered long before the 150 MB were through (what is in flight is the
        # kernel's socket buffers, not the server's memory).
        assert sent < HUGE // 4, sent
        # A chunked body under the cap is read and answered as usual.
        small = json.dumps(
            {"model": "rag-extractive", "messages": [{"role": "user", "content": "quokka?"}]}
        )

        def pieces() -> Iterator[bytes]:
            yield small.encode()[:10]
            yield small.encode()[10:]

        ok = httpx.post(
            f"{base}/v1/chat/completions",
            content=pieces(),
            headers={"Content-Type": "application/json"},
            timeout=120,
        )
        assert ok.request.headers.get("transfer-encoding") == "chunked"
        assert ok.status_code == 200, ok.text
        # A declared length over the cap is still refused before anything is read.
        status, raw, _ = raw_request(
            base, post_head("/v1/chat/completions", b"Content-Length: 9999999")
        )
        assert status == 413 and error_code(raw) == "request_too_large"


def test_body_cap_stops_reading_at_the_cap(engine: Assistant) -> None:
    """The ASGI app itself: a body that never ends (chunked, no length) is read up to the cap
    plus the one chunk that passed it, then answered 413; receive is never called again."""
    app = create_api(engine)
    handed = 0
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal handed
        handed += CHUNK
        return {"type": "http.request", "body": b"x" * CHUNK, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"x"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 120))
    start = next(m for m in messages if m["type"] == "http.response.start")
    assert start["status"] == 413
    assert (b"connection", b"close") in start["headers"]
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    assert json.loads(body)["error"]["code"] == "request_too_large"
    assert MAX_BODY_BYTES < handed <= MAX_BODY_BYTES + CHUNK, handed
    assert [m["type"] for m in messages].count("http.response.start") == 1


# ------------------------------------------------------------------------ item 4: auth first
def test_every_v1_request_without_the_token_is_401_first(engine: Assistant) -> None:
    guarded = with_settings(engine, api_key=KEY)
    bad_tokens: list[list[bytes]] = [
        [],
        [b"Authorization: Bearer sk-wrong"],
        [b"Authorization: Bearer " + KEY.encode() + b"x"],
        [b"Authorization: Basic " + KEY.encode()],
        [b"Authorization: " + KEY.encode()],
        [b"Authorization: Bearer " + KEY.encode(), b"Authorization: Bearer sk-wrong"],
    ]
    good = [b"Authorization: Bearer " + KEY.encode()]
    chat = "/v1/chat/completions"
    # (request head without auth headers, body chunks, what a caller WITH the token gets)
    cases: list[tuple[str, Any, Iterator[bytes] | None, tuple[int, str | None]]] = [
        ("unknown path", lambda h: get_head("/v1/nothing-here", *h), None, (404, "unknown_url")),
        (
            "unknown path, POST",
            lambda h: post_head("/v1/admin", b"Content-Length: 2", *h) + b"{}",
            None,
            (404, "unknown_url"),
        ),
        ("the bare prefix", lambda h: get_head("/v1", *h), None, (307, None)),
        (
            "bad JSON",
            lambda h: post_head(chat, b"Content-Length: 9", *h) + b"{not json",
            None,
            (400, "invalid_json"),
        ),
        (
            "wrong body",
            lambda h: post_head(chat, b"Content-Length: 2", *h) + b"[]",
            None,
            (400, "invalid_value"),
        ),
        (
            "declared 9.5 MB",
            lambda h: post_head(chat, b"Content-Length: 9999999", *h),
            None,
            (413, "request_too_large"),
        ),
        (
            "chunked 150 MB",
            lambda h: post_head(chat, b"Transfer-Encoding: chunked", *h),
            "huge",
            (413, "request_too_large"),
        ),
        (
            "method not allowed",
            lambda h: method_head("OPTIONS", "/v1/models", *h),
            None,
            (405, None),
        ),
        ("DELETE", lambda h: method_head("DELETE", chat, *h), None, (404, "unknown_url")),
        ("models", lambda h: get_head("/v1/models", *h), None, (200, None)),
        ("docs", lambda h: get_head("/v1/docs", *h), None, (200, None)),
        ("schema", lambda h: get_head("/v1/openapi.json", *h), None, (200, None)),
    ]
    with served(create_api(guarded)) as base:
        for name, head, body, (status_with_key, code_with_key) in cases:
            for headers in bad_tokens:
                status, raw, sent = raw_request(
                    base, head(headers), chunked(HUGE) if body else None
                )
                assert status == 401, (name, headers, raw[:300])
                assert error_code(raw) == "invalid_api_key", name
                assert b"www-authenticate: Bearer" in raw.lower().replace(b"bearer", b"Bearer")
                assert KEY.encode() not in raw and b"Traceback" not in raw
                if body:
                    assert sent < HUGE // 4, sent  # refused before the body was read
            status, raw, _ = raw_request(base, head(good), chunked(HUGE) if body else None)
            assert status == status_with_key, (name, raw[:300])
            if code_with_key:
                assert error_code(raw) == code_with_key, name
            assert KEY.encode() not in raw
        assert httpx.get(f"{base}/healthz", timeout=60).status_code == 200  # probes stay open
        # A websocket to /v1 without the token is closed before it is accepted.
        status, raw, _ = raw_request(
            base,
            get_head(
                "/v1/models",
                b"Upgrade: websocket",
                b"Connection: Upgrade",
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                b"Sec-WebSocket-Version: 13",
            ),
        )
        assert status in (401, 403), raw[:200]


def get_head(path: str, *extra: bytes) -> bytes:
    return method_head("GET", path, *extra)


def method_head(method: str, path: str, *extra: bytes) -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
        + b"".join(h + b"\r\n" for h in extra)
        + b"\r\n"
    )


# ------------------------------------------------------ item 1: the UI ingests uploads only
def upload_dir() -> Path:
    from rag_ui.access import upload_folder

    return upload_folder()


def call_ingest(base: str, files: list[dict[str, Any]], key: str = "") -> tuple[str, str]:
    """Gradio's HTTP API, as a hostile client uses it: POST the FileData, read the SSE result.
    Returns (event, data) of the final event."""
    start = httpx.post(f"{base}/gradio_api/call/ingest", json={"data": [files, key]}, timeout=60)
    assert start.status_code == 200, start.text
    event_id = start.json()["event_id"]
    with httpx.stream("GET", f"{base}/gradio_api/call/ingest/{event_id}", timeout=120) as stream:
        text = "".join(stream.iter_text())
    events = re.findall(r"event: (\w+)\ndata: (.*)", text)
    assert events, text
    return events[-1]


def file_data(path: str | Path, name: str = "papers.jsonl") -> dict[str, Any]:
    return {"path": str(path), "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def assert_not_ingested(engine: Assistant, before: int) -> None:
    assert engine.store.paper_count() == before
    if before:
        assert all(s.title != MARKER for s in engine.retrieve(MARKER, 20))


@pytest.mark.e2e
@pytest.mark.parametrize("gradio_check", [True, False], ids=["both-checks", "handler-only"])
def test_ui_ingest_refuses_every_path_it_did_not_receive_as_an_upload(
    engine: Assistant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gradio_check: bool
) -> None:
    """Gradio refuses a non-upload before copying it (rag_ui.server turns its check on for the
    mounted app) and the ingest handler refuses it again on its own: `handler-only` switches
    Gradio's check off to show the second layer holds alone."""
    pytest.importorskip("rag_ui.app")
    from gradio_client import Client, handle_file

    from rag_ui import server
    from rag_ui.server import build_app

    if not gradio_check:
        monkeypatch.setattr(server, "_check_file_inputs", lambda blocks: None)

    secret = tmp_path / "secret.jsonl"  # corpus-shaped, so ingesting it would succeed
    secret.write_text(paper_line() + "\n")
    in_cwd = ROOT / "tests" / "data" / "security" / "server_file.jsonl"  # Gradio allows cwd files
    planted_dir = upload_dir() / f"rag-test-{uuid.uuid4().hex}"
    planted_dir.mkdir(parents=True)
    planted = planted_dir / "planted.jsonl"  # in the cache, but never uploaded
    planted.write_text(paper_line(pid="7777.00002") + "\n")
    link = planted_dir / "link.jsonl"
    link.symlink_to(secret)
    fifo = planted_dir / "pipe.jsonl"  # opening it to read would block the handler for good
    os.mkfifo(fifo)
    outside_fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(outside_fifo)
    dotdot = f"{upload_dir()}/../{os.path.relpath(secret, upload_dir().parent)}"
    attempts = {
        "absolute path": file_data(secret),
        "file in the server's cwd": file_data(in_cwd),
        "`..` out of the upload folder": file_data(dotdot),
        "symlink in the upload folder": file_data(link),
        "file planted in the upload folder": file_data(planted),
        "FIFO in the upload folder": file_data(fifo),
        "/etc file": file_data("/etc/hostname", "hostname.txt"),
    }
    if gradio_check:  # without Gradio's check, Gradio itself would open it to copy it
        attempts["FIFO outside"] = file_data(outside_fifo)
    layers: dict[str, str] = {}
    try:
        with served(build_app(engine)) as base:
            before = engine.store.paper_count()
            for name, attempt in attempts.items():
                event, data = call_ingest(base, [attempt])
                layers[name] = event
                assert "Traceback" not in data, name
                if event == "complete":  # refused by our handler: the report says why
                    assert "was not uploaded through this page" in data, (name, data)
                else:  # refused by Gradio before it copied anything
                    assert event == "error", (name, event, data)
                assert MARKER not in data and "97.1%" not in data, name
                assert_not_ingested(engine, before)
            if gradio_check:  # Gradio refused what lies outside its upload folder ...
                assert {k for k, v in layers.items() if v == "error"} >= {
                    "absolute path",
                    "file in the server's cwd",
                    "`..` out of the upload folder",
                    "symlink in the upload folder",
                    "/etc file",
                    "FIFO outside",
                }, layers
                # ... so nothing was copied into its cache (copies are named by content hash)
                digest = hashlib.sha1(secret.read_bytes()).hexdigest()
                assert not (upload_dir() / digest).exists()
            else:  # the handler refused every one itself (/etc/hostname: Gradio, by file type)
                assert {v for k, v in layers.items() if k != "/etc file"} == {"complete"}, layers
            # No one holds a FIFO open: nothing tried to read them (a reader would still be
            # blocked in open(), and the call above would not have returned).
            for pipe in (fifo, outside_fifo):
                with pytest.raises(OSError):
                    os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
            # A file uploaded through the page is ingested, as before.
            mine = tmp_path / "upload" / "mine.jsonl"
            mine.parent.mkdir()
            mine.write_text(paper_line(pid="7777.00009") + "\n")  # not the secret's bytes
            client = Client(base + "/", verbose=False, download_files=False)
            report, _ = client.predict([handle_file(str(mine))], api_name="/ingest")
            assert re.search(r"<b>1</b>added", report), report
            assert any(s.title == MARKER for s in engine.retrieve(MARKER, 5))
    finally:
        shutil.rmtree(planted_dir, ignore_errors=True)
        if not gradio_check:  # the copies Gradio made without its check
            for source in (secret, in_cwd):
                digest = hashlib.sha1(source.read_bytes()).hexdigest()
                shutil.rmtree(upload_dir() / digest, ignore_errors=True)
    assert stat.S_ISFIFO(os.stat(outside_fifo).st_mode)


@pytest.mark.e2e
def test_ui_ingest_needs_the_key_when_rag_api_key_is_set(engine: Assistant, tmp_path: Path) -> None:
    pytest.importorskip("rag_ui.app")
    from gradio_client import Client, handle_file

    from rag_ui.server import build_app

    guarded = with_settings(engine, api_key=KEY)
    papers = tmp_path / "mine.jsonl"
    papers.write_text(paper_line() + "\n")
    seen: list[str] = []
    with served(build_app(guarded, api=True)) as base:
        client = Client(base + "/", verbose=False, download_files=False)
        page = httpx.get(f"{base}/config", timeout=60).text
        assert "Access key (RAG_API_KEY)" in page and KEY not in page
        for typed, why in (
            ("", "Type the server's access key"),
            ("sk-wrong", "key is wrong"),
            (KEY + "x", "key is wrong"),
        ):
            report, _ = client.predict([handle_file(str(papers))], typed, api_name="/ingest")
            assert why in html.unescape(report) and "added" not in report, report
            seen.append(report)
        # Without the key argument at all (older scripts): the same refusal.
        report, _ = client.predict([handle_file(str(papers))], api_name="/ingest")
        assert "Type the server's access key" in html.unescape(report)
        assert guarded.store.paper_count() == 0
        report, _ = client.predict([handle_file(str(papers))], KEY, api_name="/ingest")
        assert re.search(r"<b>1</b>added", report), report
        seen.append(report)
        # The API sees the upload too (with the key), and never without it.
        headers = {"Authorization": f"Bearer {KEY}"}
        body = {
            "model": "rag-extractive",
            "messages": [{"role": "user", "content": f"What does {MARKER} reach?"}],
        }
        answer = httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=120)
        assert answer.status_code == 200 and "97.1%" in answer.text
        assert httpx.post(f"{base}/v1/chat/completions", json=body, timeout=60).status_code == 401
    assert all(KEY not in text for text in seen)


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("host", "ui_ingest", "allowed"),
    [
        ("0.0.0.0", "auto", False),
        ("192.168.1.20", "auto", False),
        ("0.0.0.0", "off", False),
        ("127.0.0.1", "off", False),
        ("0.0.0.0", "open", True),
    ],
)
def test_ui_ingest_policy_on_a_reachable_host(
    engine: Assistant, tmp_path: Path, host: str, ui_ingest: str, allowed: bool
) -> None:
    """RAG_HOST other than loopback without a key: the page cannot write unless told to."""
    pytest.importorskip("rag_ui.app")
    from gradio_client import Client, handle_file

    from rag_ui.server import build_app

    # The policy reads the configured host; the test server itself still listens on 127.0.0.1.
    exposed = with_settings(engine, host=host, ui_ingest=ui_ingest)
    papers = tmp_path / "mine.jsonl"
    papers.write_text(paper_line() + "\n")
    with served(build_app(exposed)) as base:
        client = Client(base + "/", verbose=False, download_files=False)
        report, _ = client.predict([handle_file(str(papers))], api_name="/ingest")
    if allowed:
        assert re.search(r"<b>1</b>added", report), report
    else:
        shown = html.unescape(report)
        assert "Adding papers here is off" in shown and "rag ingest FILE" in shown, report
        assert exposed.store.paper_count() == 0


def test_ingest_policy_table() -> None:
    pytest.importorskip("rag_ui.app")
    from rag_ui.access import ingest_policy, is_loopback

    def policy(shared: bool = False, **kw: Any) -> str:
        return ingest_policy(Settings(_env_file=None, **kw), shared=shared)

    assert Settings(_env_file=None).ui_ingest == "auto"
    assert "RAG_UI_INGEST=auto" in (ROOT / ".env.example").read_text()
    assert policy() == "open"  # the default: 127.0.0.1, no key
    assert policy(host="localhost") == policy(host="::1") == policy(host="127.0.0.2") == "open"
    for host in ("0.0.0.0", "::", "10.0.0.5", "example.org", "my-laptop"):
        assert policy(host=host) == "off", host
        assert policy(host=host, api_key=KEY) == "key", host
    assert policy(shared=True) == "off" and policy(shared=True, api_key=KEY) == "key"
    assert policy(api_key=KEY) == "key"
    assert policy(ui_ingest="open", host="0.0.0.0") == "open"
    assert policy(ui_ingest="open", api_key=KEY) == "open"
    assert policy(ui_ingest="off", api_key=KEY) == "off"
    assert policy(ui_ingest="key") == "off"  # key without RAG_API_KEY: nobody
    assert policy(ui_ingest="key", api_key=KEY) == "key"
    assert is_loopback("[::1]") and not is_loopback("")
    with pytest.raises(ValueError):
        Settings(_env_file=None, ui_ingest="maybe")


# ------------------------------------------------- item 1: what a failure report may echo
def test_failure_report_echoes_only_short_escaped_excerpts() -> None:
    pytest.importorskip("rag_ui.app")
    from rag_ui.render import EXCERPT_CHARS, report_html, safe_reason

    long_title = "A" * 500 + "<script>x</script>\x00\x1b[31m\u202e"
    reason = safe_reason(f"'{long_title}' has no abstract; add a non-empty 'abstract'")
    quoted = reason.split(" has no abstract")[0]
    assert quoted.startswith("'A") and quoted.endswith("'…")
    assert len(quoted) <= EXCERPT_CHARS + 3 and "<script>" not in quoted
    assert "'abstract'" in reason
    assert safe_reason("x\x00y\u202ez") == "x\\x00y\\u202ez"
    assert len(safe_reason("found: " + "b, " * 10_000)) <= 241
    assert (
        safe_reason("/tmp/gradio/ab12/p.jsonl:3: bad", {"/tmp/gradio/ab12/p.jsonl": "p.jsonl"})
        == "p.jsonl:3: bad"
    )
    # A file of 1,000 bad lines shows 5 of them; a second file keeps its own 5; 20 at most.
    failures = [
        IngestFailure(
            file="/up/a/passwd.txt",
            line=i,
            reason=f"title 'root{i}:x:0:0:{'s' * 200}' has no abstract after it",
        )
        for i in range(1, 1001)
    ] + [
        IngestFailure(file="/up/b/other.csv", line=i, reason="malformed CSV row")
        for i in range(1, 40)
    ]
    markup = report_html(IngestReport(failed=failures), {"/up/a/passwd.txt": "passwd.txt"})
    assert markup.count("<li><code>passwd.txt:") == 5
    assert markup.count("<li><code>other.csv:") == 5
    assert "… and 995 more in <code>passwd.txt</code>" in markup
    assert "<b>1039</b>failed" in markup
    assert "s" * (EXCERPT_CHARS + 1) not in markup


@pytest.mark.e2e
def test_a_non_corpus_upload_is_echoed_only_in_short_excerpts(
    engine: Assistant, tmp_path: Path
) -> None:
    """Upload a config-like .txt of 300 secret lines: the report shows at most 5 short excerpts."""
    pytest.importorskip("rag_ui.app")
    from gradio_client import Client, handle_file

    from rag_ui.server import build_app

    lines = [
        f"user{i:03d}:x:{i}:{i}:SECRET-{i:03d}-{'q' * 150}:/home/u{i}:/bin/sh" for i in range(300)
    ]
    notes = tmp_path / "notes.txt"
    notes.write_text("\n".join(lines) + "\n")
    with served(build_app(engine)) as base:
        client = Client(base + "/", verbose=False, download_files=False)
        report, _ = client.predict([handle_file(str(notes))], api_name="/ingest")
    shown = re.findall(r"SECRET-\d{3}", report)
    assert 0 < len(set(shown)) <= 5, report
    assert "q" * 81 not in report
    assert "more in <code>notes.txt</code>" in report
