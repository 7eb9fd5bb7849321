"""The OpenAI-compatible API end to end: uvicorn on 127.0.0.1, the official `openai` client, the
real MiniLM model and the real embedded Chroma store with the bundled corpus."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from api_support import LRA_Q, client, serving, sibling, store_copy
from conftest import LRA_TITLE, answer_reply, free_port

from rag import CANNOT_ANSWER, Assistant, Settings
from rag.api import split_sources_block

pytestmark = pytest.mark.e2e

FOLLOW_UP = "And what kinds of data does it include?"
API_KEY = "sk-rag-test-3f9a1c0d5e7b"


@pytest.fixture(scope="module")
def api_assistant(real_store_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    return store_copy(real_store_dir, tmp_path_factory, "api")


@pytest.fixture(scope="module")
def base(api_assistant: Assistant) -> Iterator[str]:
    with serving(api_assistant) as url:
        yield url


def ask(base: str, messages: list[dict[str, str]], **kw: Any) -> Any:
    return client(base).chat.completions.create(model="rag-extractive", messages=messages, **kw)


def assert_openai_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code
    assert "Traceback" not in response.text
    return body["error"]


# ------------------------------------------------------------------------------ happy paths
def test_completion_is_cited_and_carries_sources(base: str) -> None:
    resp = ask(base, [{"role": "user", "content": LRA_Q}])
    assert resp.object == "chat.completion" and resp.model == "rag-extractive"
    choice = resp.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    content = choice.message.content
    assert "16K" in content and "[1]" in content
    rag = resp.model_extra["rag"]
    assert rag["abstained"] is False and rag["backend"] == "extractive"
    lra = next(s for s in rag["sources"] if s["title"] == LRA_TITLE)
    assert lra["cited"] and f"[{lra['number']}]" in content
    assert set(lra) == {
        "number",
        "title",
        "paper_id",
        "published",
        "score",
        "snippet",
        "cited",
        "url",
        "doi",
        "categories",
    }
    assert rag["sentences"] and all(s["supported"] and s["citations"] for s in rag["sentences"])
    # The plain-text fallback lists exactly the cited sources.
    answer, titles = split_sources_block(content)
    assert "\n\nSources:\n" in content and "Sources:" not in answer
    assert titles == [s["title"] for s in rag["sources"] if s["cited"]]
    assert LRA_TITLE in titles
    assert resp.usage is not None and resp.usage.total_tokens > resp.usage.completion_tokens > 0


def test_stream_reassembles_to_the_same_verified_text(base: str) -> None:
    plain = ask(base, [{"role": "user", "content": LRA_Q}])
    chunks = list(
        ask(
            base,
            [{"role": "user", "content": LRA_Q}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    pieces = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 5  # word by word, not one blob
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason == "stop")
    assert final.model_extra["rag"]["sources"] == plain.model_extra["rag"]["sources"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0


def test_raw_stream_ends_with_done(base: str) -> None:
    body = {
        "model": "rag-extractive",
        "stream": True,
        "messages": [{"role": "user", "content": LRA_Q}],
    }
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=120) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert "rag" in json.loads(events[-2].removeprefix("data: "))


def test_follow_up_is_answered_from_the_same_paper(base: str) -> None:
    first = ask(base, [{"role": "user", "content": LRA_Q}]).choices[0].message.content
    resp = ask(
        base,
        [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": LRA_Q},
            {"role": "assistant", "content": first},
            {"role": "user", "content": FOLLOW_UP},
        ],
    )
    rag = resp.model_extra["rag"]
    assert not rag["abstained"], resp.choices[0].message.content
    assert "Long Range Arena" in (rag["standalone_question"] or "")
    cited = [s["title"] for s in rag["sources"] if s["cited"]]
    assert LRA_TITLE in cited
    assert "mathematical expressions" in resp.choices[0].message.content


def test_unanswerable_question_gets_the_refusal(base: str) -> None:
    resp = ask(base, [{"role": "user", "content": "What is the capital of Australia?"}])
    assert resp.choices[0].message.content == CANNOT_ANSWER
    rag = resp.model_extra["rag"]
    assert rag["abstained"] is True and rag["sentences"] == []
    assert not any(s["cited"] for s in rag["sources"])


def test_models_and_health(base: str) -> None:
    models = httpx.get(f"{base}/v1/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["rag-extractive"]
    assert client(base).models.retrieve("rag-extractive").id == "rag-extractive"
    assert_openai_error(httpx.get(f"{base}/v1/embeddings"), 404, "unknown_url")
    wrong_method = assert_openai_error(httpx.get(f"{base}/v1/chat/completions"), 404, "unknown_url")
    assert "POST /v1/chat/completions" in wrong_method["message"]
    health = httpx.get(f"{base}/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["papers"] == 277


# ---------------------------------------------------------------------------- bad requests
@pytest.mark.parametrize(
    ("messages", "extra", "code", "param"),
    [
        ([], {}, "no_user_message", "messages"),
        ([{"role": "system", "content": "hi"}], {}, "no_user_message", "messages"),
        ([{"role": "user", "content": "   "}], {}, "empty_question", "messages.0.content"),
        ([{"role": "user", "content": "word " * 2000}], {}, "invalid_value", "messages.0.content"),
        (
            [{"role": "user", "content": "long " * 500}],
            {},
            "question_too_long",
            "messages.0.content",
        ),
        ([{"role": "user", "content": LRA_Q}] * 51, {}, "invalid_value", "messages"),
        ([{"role": "user", "content": LRA_Q}], {"n": 2}, "invalid_value", "n"),
        ([{"role": "robot", "content": LRA_Q}], {}, "invalid_value", "messages.0.role"),
    ],
)
def test_bad_requests_are_openai_400s(
    base: str, messages: list[dict[str, str]], extra: dict[str, Any], code: str, param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(base).chat.completions.create(
            model="rag-extractive", messages=messages, extra_body=extra or None
        )
    err = info.value
    assert err.status_code == 400 and err.code == code and err.param == param
    assert_openai_error(err.response, 400, code)


def test_unknown_model_is_404(base: str) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client(base).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": LRA_Q}]
        )
    error = assert_openai_error(info.value.response, 404, "model_not_found")
    assert error["param"] == "model" and "rag-extractive" in error["message"]


def test_invalid_json_and_wrong_body_are_400(base: str) -> None:
    url = f"{base}/v1/chat/completions"
    bad = httpx.post(url, content=b"{not json", headers={"Content-Type": "application/json"})
    assert_openai_error(bad, 400, "invalid_json")
    assert_openai_error(httpx.post(url, json=["a list"]), 400, "invalid_value")
    # A declared 9.5 MB body is refused before it is read (raw socket: no client sends a lie).
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 9999999\r\nConnection: close\r\n\r\n"
        )
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, payload = raw.partition(b"\r\n\r\n")
    huge = httpx.Response(int(head.split()[1]), content=payload)
    assert_openai_error(huge, 413, "request_too_large")


# ------------------------------------------------------------------------------------ auth
def test_api_key_is_required_and_never_echoed(
    api_assistant: Assistant, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("RAG_API_KEY", API_KEY)
    settings = Settings(data_dir=api_assistant.settings.data_dir, _env_file=None)
    assert settings.api_key is not None
    guarded = Assistant(settings, embedder=api_assistant.embedder, store=api_assistant.store)
    seen: list[str] = []
    with serving(guarded) as url:
        with pytest.raises(openai.AuthenticationError) as info:
            client(url, "sk-wrong").chat.completions.create(
                model="rag-extractive", messages=[{"role": "user", "content": LRA_Q}]
            )
        assert_openai_error(info.value.response, 401, "invalid_api_key")
        missing = httpx.get(f"{url}/v1/models")
        assert_openai_error(missing, 401, "invalid_api_key")
        assert missing.headers["www-authenticate"] == "Bearer"
        prefix = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {API_KEY}x"})
        assert prefix.status_code == 401

        good = client(url, API_KEY).chat.completions.create(
            model="rag-extractive", messages=[{"role": "user", "content": LRA_Q}]
        )
        assert "16K" in good.choices[0].message.content
        auth = {"Authorization": f"Bearer {API_KEY}"}
        for response in (
            info.value.response,
            missing,
            prefix,
            httpx.get(f"{url}/v1/models", headers=auth),
            httpx.get(f"{url}/healthz"),  # health stays open for probes
            httpx.post(
                f"{url}/v1/chat/completions",
                headers=auth,
                json={"model": API_KEY, "messages": [{"role": "user", "content": LRA_Q}]},
            ),
            httpx.post(f"{url}/v1/chat/completions", headers=auth, json={"messages": []}),
        ):
            seen.append(response.text + json.dumps(dict(response.headers)))
        assert seen[4].startswith('{"status":"ok"')
        assert '"model_not_found"' in seen[5]
    seen.append(good.model_dump_json())
    assert all(API_KEY not in text for text in seen)
    assert API_KEY not in caplog.text


# ------------------------------------------------------------- backends, failures, threads
def test_model_selects_the_backend(api_assistant: Assistant, fake_llm: Any) -> None:
    fake_llm.reply = answer_reply(
        "Long Range Arena covers sequences ranging from 1K to 16K tokens [1]."
    )
    configured = sibling(
        api_assistant, llm="openai", llm_base_url=fake_llm.base_url, llm_max_retries=0
    )
    with serving(configured) as url:
        ids = [m.id for m in client(url).models.list()]
        assert ids == ["rag-extractive", "rag-gpt-4o-mini"]
        extractive = client(url).chat.completions.create(
            model="rag-extractive", messages=[{"role": "user", "content": LRA_Q}]
        )
        assert extractive.model_extra["rag"]["backend"] == "extractive"
        assert fake_llm.requests == []
        llm = client(url).chat.completions.create(
            model="rag-gpt-4o-mini", messages=[{"role": "user", "content": LRA_Q}]
        )
        assert llm.model_extra["rag"]["backend"] == "openai:gpt-4o-mini"
        assert len(fake_llm.requests) == 1
        assert "1K to 16K tokens [1]" in llm.choices[0].message.content


def test_the_extractive_model_is_judged_offline_when_the_llm_judges(
    api_assistant: Assistant, fake_llm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LLM judge (RAG_VERIFY_JUDGE=llm) belongs to the configured chat backend: the
    extractive model id neither answers nor judges with it."""
    from rag.verify import Verifier

    judged: list[bool] = []
    judge = Verifier.judge

    def spy(self: Verifier, *args: Any, **kwargs: Any) -> Any:
        judged.append(self.llm_judge is None)
        return judge(self, *args, **kwargs)

    monkeypatch.setattr(Verifier, "judge", spy)
    configured = sibling(
        api_assistant,
        llm="openai",
        llm_base_url=fake_llm.base_url,
        llm_max_retries=0,
        verify_judge="llm",
    )
    with serving(configured) as url:
        extractive = client(url).chat.completions.create(
            model="rag-extractive", messages=[{"role": "user", "content": LRA_Q}]
        )
    assert extractive.model_extra["rag"]["backend"] == "extractive"
    assert "16K" in extractive.choices[0].message.content
    assert judged and all(judged)  # judged, and offline
    assert fake_llm.requests == []


def test_concurrent_requests_are_answered_in_parallel(
    api_assistant: Assistant, fake_llm: Any
) -> None:
    # Each fake-LLM call waits until the other one has arrived: if the API answered one request
    # at a time, the barrier would break, the LLM call fail and the answer fall back to extractive.
    barrier = threading.Barrier(2, timeout=60)
    template = answer_reply("Long Range Arena covers sequences ranging from 1K to 16K tokens [1].")

    def reply(messages: list[dict[str, Any]]) -> str:
        barrier.wait()
        return template(messages)

    fake_llm.reply = reply
    configured = sibling(
        api_assistant,
        llm="openai",
        llm_base_url=fake_llm.base_url,
        llm_max_retries=0,
        llm_timeout=120,
    )
    with serving(configured) as url:
        results: list[Any] = []

        def one() -> None:
            results.append(
                client(url).chat.completions.create(
                    model="rag-gpt-4o-mini", messages=[{"role": "user", "content": LRA_Q}]
                )
            )

        threads = [threading.Thread(target=one) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
    assert len(results) == 2
    for resp in results:
        rag = resp.model_extra["rag"]
        assert rag["backend"] == "openai:gpt-4o-mini" and rag["notice"] is None


def test_unreachable_store_is_503(api_assistant: Assistant) -> None:
    settings = api_assistant.settings.with_overrides(
        chroma_host="127.0.0.1", chroma_port=free_port()
    )
    broken = Assistant(settings, embedder=api_assistant.embedder)
    with serving(broken) as url:
        assert httpx.get(f"{url}/healthz", timeout=60).status_code == 503
        with pytest.raises(openai.InternalServerError) as info:
            client(url).chat.completions.create(
                model="rag-extractive", messages=[{"role": "user", "content": LRA_Q}]
            )
        error = assert_openai_error(info.value.response, 503, "store_unavailable")
        assert "chroma" in error["message"].lower()


def test_a_bug_is_a_500_without_traceback(
    api_assistant: Assistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    buggy = sibling(api_assistant)

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("internal detail that must not leak")

    monkeypatch.setattr(buggy, "ask", boom)
    with serving(buggy) as url:
        r = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "rag-extractive", "messages": [{"role": "user", "content": LRA_Q}]},
        )
    error = assert_openai_error(r, 500, "internal_error")
    assert "must not leak" not in r.text and error["type"] == "server_error"
