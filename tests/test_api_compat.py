"""What clients beyond plain chat ask the API for, with the official `openai` client against a
served `rag` on 127.0.0.1 (real MiniLM, real Chroma, the bundled corpus): legacy completions,
structured output, refused tools, a visible LLM fallback, and errors worded for the caller
(CORS: tests/test_api_cors.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from api_support import LRA_Q, client, error_of, serving, sibling, store_copy
from conftest import LRA_TITLE, free_port
from pydantic import BaseModel

from rag import CANNOT_ANSWER, Assistant

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api_assistant(real_store_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    return store_copy(real_store_dir, tmp_path_factory, "api-compat")


@pytest.fixture(scope="module")
def base(api_assistant: Assistant) -> Iterator[str]:
    with serving(api_assistant) as url:
        yield url


# ------------------------------------------------------------------------ legacy completions
def test_text_completion_is_the_cited_answer(base: str) -> None:
    resp = client(base).completions.create(model="rag-extractive", prompt=LRA_Q)
    assert resp.object == "text_completion" and resp.model == "rag-extractive"
    text = resp.choices[0].text
    assert "16K" in text and "[1]" in text and LRA_TITLE in text
    assert resp.choices[0].finish_reason == "stop" and resp.choices[0].index == 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert resp.usage.completion_tokens > 0
    assert resp.model_extra["rag"]["sources"][0]["title"] == LRA_TITLE


def test_text_completion_streams_the_same_text(base: str) -> None:
    plain = client(base).completions.create(model="rag-extractive", prompt=LRA_Q)
    chunks = list(
        client(base).completions.create(
            model="rag-extractive",
            prompt=LRA_Q,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.object == "text_completion" for c in chunks)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == plain.choices[0].text
    assert len([c for c in chunks if c.choices and c.choices[0].text]) > 5
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0


def test_text_completion_echo_and_several_prompts(base: str) -> None:
    echoed = client(base).completions.create(model="rag-extractive", prompt=LRA_Q, echo=True)
    assert echoed.choices[0].text.startswith(LRA_Q) and "16K" in echoed.choices[0].text
    both = client(base).completions.create(
        model="rag-extractive", prompt=[LRA_Q, "What is the capital of Australia?"]
    )
    assert [c.index for c in both.choices] == [0, 1]
    assert "16K" in both.choices[0].text and both.choices[1].text == CANNOT_ANSWER


@pytest.mark.parametrize(
    ("extra", "status", "param", "code"),
    [
        ({"prompt": [[1, 2, 3]]}, 400, "prompt", "invalid_value"),
        ({"prompt": "   "}, 400, "prompt", "empty_question"),
        ({"prompt": LRA_Q, "suffix": "end"}, 400, "suffix", "unsupported_parameter"),
        ({"prompt": LRA_Q, "logprobs": 2}, 400, "logprobs", "unsupported_parameter"),
        ({"prompt": LRA_Q, "temperature": "hot"}, 400, "temperature", "invalid_type"),
        ({"prompt": LRA_Q, "model": "gpt-3.5-turbo-instruct"}, 404, "model", "model_not_found"),
    ],
)
def test_text_completion_errors(
    base: str, extra: dict[str, Any], status: int, param: str, code: str
) -> None:
    body = {"model": "rag-extractive", **extra}
    error = error_of(httpx.post(f"{base}/v1/completions", json=body, timeout=60), status)
    assert error["param"] == param and error["code"] == code, error


# ------------------------------------------------------------------------ structured output
class CitedAnswer(BaseModel):
    answer: str
    citations: list[int]


class Paper(BaseModel):
    number: int
    title: str


class WithPapers(BaseModel):
    answer: str
    sources: list[Paper]


def test_json_object_is_the_answer_with_citations_and_sources(base: str) -> None:
    resp = client(base).chat.completions.create(
        model="rag-extractive",
        messages=[{"role": "user", "content": LRA_Q}],
        response_format={"type": "json_object"},
    )
    data = json.loads(resp.choices[0].message.content)
    assert set(data) == {"answer", "citations", "sources", "abstained", "notice"}
    assert "16K" in data["answer"] and data["citations"] and not data["abstained"]
    assert {s["number"] for s in data["sources"]} == set(data["citations"])
    assert LRA_TITLE in [s["title"] for s in data["sources"]]


def test_parse_with_a_pydantic_schema(base: str) -> None:
    resp = client(base).chat.completions.parse(
        model="rag-extractive",
        messages=[{"role": "user", "content": LRA_Q}],
        response_format=CitedAnswer,
    )
    parsed = resp.choices[0].message.parsed
    assert isinstance(parsed, CitedAnswer)
    assert "16K" in parsed.answer and 1 in parsed.citations
    nested = client(base).chat.completions.parse(
        model="rag-extractive",
        messages=[{"role": "user", "content": LRA_Q}],
        response_format=WithPapers,
    )
    papers = nested.choices[0].message.parsed.sources
    assert LRA_TITLE in [p.title for p in papers]


def test_streamed_json_joins_to_the_object(base: str) -> None:
    chunks = client(base).chat.completions.create(
        model="rag-extractive",
        messages=[{"role": "user", "content": "What is the capital of Australia?"}],
        response_format={"type": "json_object"},
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    data = json.loads(text)
    assert data["abstained"] is True and data["answer"] == CANNOT_ANSWER
    assert data["citations"] == [] and data["sources"] == []


def test_an_unsatisfiable_schema_is_a_400_before_answering(base: str) -> None:
    class Confidence(BaseModel):
        answer: str
        confidence: float

    with pytest.raises(openai.BadRequestError) as info:
        client(base).chat.completions.parse(
            model="rag-extractive",
            messages=[{"role": "user", "content": LRA_Q}],
            response_format=Confidence,
        )
    error = error_of(info.value.response, 400)
    assert error["code"] == "unsupported_schema"
    assert error["param"] == "response_format.json_schema.schema"
    assert "confidence" in error["message"] and '"citations"' in error["message"]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": "f", "parameters": {"type": "object"}},
                    }
                ]
            },
            "tools",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"functions": [{"name": "f", "parameters": {"type": "object"}}]}, "functions"),
        ({"function_call": {"name": "f"}}, "function_call"),
        ({"logprobs": True}, "logprobs"),
    ],
)
def test_tools_and_logprobs_are_refused_by_name(
    base: str, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(base).chat.completions.create(
            model="rag-extractive", messages=[{"role": "user", "content": LRA_Q}], **extra
        )
    assert info.value.param == param and info.value.code == "unsupported_parameter"
    assert f"`{param}` is not supported" in error_of(info.value.response, 400)["message"]


def test_text_format_and_no_tool_choice_are_plain_answers(base: str) -> None:
    resp = client(base).chat.completions.create(
        model="rag-extractive",
        messages=[{"role": "user", "content": LRA_Q}],
        response_format={"type": "text"},
        tool_choice="none",
    )
    assert "16K" in resp.choices[0].message.content


# -------------------------------------------------------------------------- fallback visible
def test_a_failed_llm_shows_in_the_model_and_the_content(api_assistant: Assistant) -> None:
    down = sibling(
        api_assistant,
        llm="openai",
        llm_base_url=f"http://127.0.0.1:{free_port()}/v1",
        llm_max_retries=0,
        llm_timeout=10,
    )
    with serving(down) as url:
        resp = client(url).chat.completions.create(
            model="rag-gpt-4o-mini", messages=[{"role": "user", "content": LRA_Q}]
        )
        assert resp.model == "rag-extractive"
        content = resp.choices[0].message.content
        first, _, rest = content.partition("\n\n")
        assert first.startswith("Note: the language model behind rag-gpt-4o-mini gave no")
        assert "rag-extractive" in first and "16K" in rest
        assert resp.model_extra["rag"]["backend"] == "extractive"
        assert "language model failed" in resp.model_extra["rag"]["notice"]
        chunks = list(
            client(url).chat.completions.create(
                model="rag-gpt-4o-mini",
                messages=[{"role": "user", "content": LRA_Q}],
                stream=True,
            )
        )
        assert {c.model for c in chunks} == {"rag-extractive"}
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == content
        # The note is not part of the conversation when the reply comes back as history.
        follow = client(url).chat.completions.create(
            model="rag-extractive",
            messages=[
                {"role": "user", "content": LRA_Q},
                {"role": "assistant", "content": content},
                {"role": "user", "content": "And what kinds of data does it include?"},
            ],
        )
        assert "Long Range Arena" in follow.model_extra["rag"]["standalone_question"]
        as_json = client(url).chat.completions.create(
            model="rag-gpt-4o-mini",
            messages=[{"role": "user", "content": LRA_Q}],
            response_format={"type": "json_object"},
        )
        assert as_json.model == "rag-extractive"
        assert json.loads(as_json.choices[0].message.content)["notice"].startswith("Note:")


def test_a_follow_up_keeps_the_method_the_user_named(base: str) -> None:
    """The issue's conversation through the API: "it" is MASFormer, not a fragment of the title
    of the paper that answered ("Efficient Long-Range Transformers: ...")."""
    first = client(base).chat.completions.create(
        model="rag-extractive", messages=[{"role": "user", "content": "What is MASFormer?"}]
    )
    follow = client(base).chat.completions.create(
        model="rag-extractive",
        messages=[
            {"role": "user", "content": "What is MASFormer?"},
            {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "content": "What sequence length example does it mention?"},
        ],
    )
    rag = follow.model_extra["rag"]
    assert rag["standalone_question"] == "What sequence length example does MASFormer mention?"
    assert rag["sources"][0]["title"].startswith("Efficient Long-Range Transformers")
    assert "8k tokens [1]" in follow.choices[0].message.content


# ----------------------------------------------------------------------- errors, worded well
def test_errors_speak_the_callers_terms(base: str) -> None:
    url = f"{base}/v1/chat/completions"
    question = {"model": "rag-extractive", "messages": [{"role": "user", "content": LRA_Q}]}
    form = httpx.post(url, content=json.dumps(question), headers={"Content-Type": "text/plain"})
    error = error_of(form, 415)
    assert "text/plain" in error["message"] and "application/json" in error["message"]
    huge = "m" * 100_000
    missing = error_of(httpx.post(url, json={**question, "model": huge}), 404)
    assert len(missing["message"]) < 400 and "rag-extractive" in missing["message"]
    wrong = error_of(
        httpx.post(url, json={**question, "messages": [{"role": "user", "content": 5}]}), 400
    )
    assert wrong["param"] == "messages.0.content" and wrong["code"] == "invalid_type"
    assert "str" not in wrong["param"] and "expected a string or an array" in wrong["message"]
    part = error_of(
        httpx.post(
            url,
            json={
                **question,
                "messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}],
            },
        ),
        400,
    )
    assert part["param"] == "messages.0.content.0.text"


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"temperature": "hot"}, "temperature", "invalid_type"),
        ({"temperature": 2.5}, "temperature", "invalid_value"),
        ({"max_tokens": -5}, "max_tokens", "invalid_value"),
        ({"max_completion_tokens": 0}, "max_completion_tokens", "invalid_value"),
        ({"top_p": 1.5}, "top_p", "invalid_value"),
        ({"presence_penalty": 3}, "presence_penalty", "invalid_value"),
        ({"n": 2}, "n", "invalid_value"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_value"),
        ({"stream": "sometimes"}, "stream", "invalid_type"),
        ({"response_format": {"type": "xml"}}, "response_format.type", "invalid_value"),
    ],
)
def test_ignored_fields_are_still_checked(
    base: str, extra: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(base).chat.completions.create(
            model="rag-extractive",
            messages=[{"role": "user", "content": LRA_Q}],
            extra_body=extra,
        )
    assert info.value.param == param and info.value.code == code
    assert f"`{param}`" in error_of(info.value.response, 400)["message"]


def test_accepted_sampling_fields_still_answer(base: str) -> None:
    resp = client(base).chat.completions.create(
        model="rag-extractive",
        messages=[{"role": "user", "content": LRA_Q}],
        temperature=0.2,
        top_p=0.9,
        max_tokens=256,
        seed=7,
        stop="Observation:",
        user="tester",
    )
    assert "16K" in resp.choices[0].message.content
