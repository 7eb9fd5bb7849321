"""Drive a served `rag` /v1 API with one real client library and report what works, as JSON.

    python tests/client_probe.py CLIENT BASE_URL DOWN_URL  ->  {"chat": "works", "tools": "400", ...}

CLIENT is openai, langchain, llama-index, litellm or llm (the CLI, run as a subprocess). BASE_URL
serves the extractive model; DOWN_URL serves `rag-gpt-4o-mini` with its LLM endpoint down, so the
answer falls back. tests/test_api_clients.py runs this under tests/netguard (no client may leave
127.0.0.1) and compares the outcome with the compatibility table in docs/api.md.

Each feature is "works" when the client returned what a user of that client would see as right
(a cited answer; the streamed text; parsed JSON; for an error, the client's own typed error with
our message), "400" when the client surfaced the API's refusal naming the parameter, and
"fail: ..." otherwise. A missing method is a "fail" too; nothing is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no cost-map download at import
os.environ.setdefault("LITELLM_TELEMETRY", "False")

QUESTION = "What range of sequence lengths does the Long Range Arena benchmark cover?"
SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string"},
        "citations": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["answer", "citations"],
    "additionalProperties": False,
}
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
FEATURES = ("chat", "streaming", "completions", "structured", "tools", "errors", "fallback")


def cited(text: str | None) -> str:
    if text and "16K" in text and "[1]" in text:
        return "works"
    return f"fail: not the cited answer: {text!r:.200}"


def parsed(value: Any) -> str:
    data = json.loads(value) if isinstance(value, str) else value
    if hasattr(data, "model_dump"):
        data = data.model_dump()
    if isinstance(data, dict) and "16K" in data.get("answer", "") and 1 in data["citations"]:
        return "works"
    return f"fail: not the JSON answer: {data!r:.200}"


def refused(exc: BaseException, param: str) -> str:
    status = getattr(exc, "status_code", None) or getattr(
        getattr(exc, "response", None), "status_code", None
    )
    if status == 400 and f"`{param}`" in str(exc):
        return "400"
    return f"fail: {type(exc).__name__} {status}: {exc!s:.200}"


def not_found(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    if status == 404 and "rag-extractive" in str(exc):
        return "works"
    return f"fail: {type(exc).__name__} {status}: {exc!s:.200}"


def fell_back(model: str | None, text: str | None) -> str:
    if model == "rag-extractive" and (text or "").startswith("Note: the language model behind"):
        return "works"
    return f"fail: model {model!r}, text {text!r:.120}"


Probe = dict[str, Callable[[], str]]


# ------------------------------------------------------------------------------------ clients
def probe_openai(base: str, down: str) -> Probe:
    import openai
    from pydantic import BaseModel

    class Cited(BaseModel):
        answer: str
        citations: list[int]

    def make(url: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)

    client, model = make(base), "rag-extractive"
    messages = [{"role": "user", "content": QUESTION}]

    def stream() -> str:
        chunks = client.chat.completions.create(model=model, messages=messages, stream=True)
        return cited("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))

    def down_chat() -> str:
        resp = make(down).chat.completions.create(model="rag-gpt-4o-mini", messages=messages)
        return fell_back(resp.model, resp.choices[0].message.content)

    return {
        "chat": lambda: cited(
            client.chat.completions.create(model=model, messages=messages)
            .choices[0]
            .message.content
        ),
        "streaming": stream,
        "completions": lambda: cited(
            client.completions.create(model=model, prompt=QUESTION).choices[0].text
        ),
        "structured": lambda: parsed(
            client.chat.completions.parse(model=model, messages=messages, response_format=Cited)
            .choices[0]
            .message.parsed
        ),
        "tools": lambda: client.chat.completions.create(
            model=model, messages=messages, tools=[TOOL]
        ),
        "errors": lambda: client.chat.completions.create(model="gpt-4o", messages=messages),
        "fallback": down_chat,
    }


def probe_langchain(base: str, down: str) -> Probe:
    from langchain_openai import ChatOpenAI, OpenAI
    from pydantic import BaseModel

    class Cited(BaseModel):
        answer: str
        citations: list[int]

    def chat(url: str, model: str = "rag-extractive") -> ChatOpenAI:
        return ChatOpenAI(
            model=model, base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120
        )

    def down_chat() -> str:
        reply = chat(down, "rag-gpt-4o-mini").invoke(QUESTION)
        return fell_back(reply.response_metadata.get("model_name"), str(reply.content))

    def tools() -> Any:
        return chat(base).bind_tools([TOOL]).invoke(QUESTION)

    return {
        "chat": lambda: cited(str(chat(base).invoke(QUESTION).content)),
        "streaming": lambda: cited("".join(str(c.content) for c in chat(base).stream(QUESTION))),
        "completions": lambda: cited(
            OpenAI(
                model="rag-extractive",
                base_url=f"{base}/v1",
                api_key="unused",
                max_retries=0,
                timeout=120,
            ).invoke(QUESTION)
        ),
        "structured": lambda: parsed(chat(base).with_structured_output(Cited).invoke(QUESTION)),
        "tools": tools,
        "errors": lambda: chat(base, "gpt-4o").invoke(QUESTION),
        "fallback": down_chat,
    }


def probe_llama_index(base: str, down: str) -> Probe:
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.openai_like import OpenAILike

    def llm(url: str, model: str = "rag-extractive", **kw: Any) -> OpenAILike:
        return OpenAILike(
            model=model, api_base=f"{url}/v1", api_key="unused", max_retries=0, timeout=120, **kw
        )

    messages = [ChatMessage(role="user", content=QUESTION)]

    def stream() -> str:
        # Each streamed response carries the text so far; the last one carries all of it.
        pieces = list(llm(base, is_chat_model=True).stream_chat(messages))
        return cited(pieces[-1].message.content if pieces else None)

    def down_chat() -> str:
        reply = llm(down, "rag-gpt-4o-mini", is_chat_model=True).chat(messages)
        return fell_back(reply.raw.model, reply.message.content)

    json_llm = llm(
        base, is_chat_model=True, additional_kwargs={"response_format": {"type": "json_object"}}
    )
    return {
        "chat": lambda: cited(llm(base, is_chat_model=True).chat(messages).message.content),
        "streaming": stream,
        "completions": lambda: cited(llm(base).complete(QUESTION).text),  # its default mode
        "structured": lambda: parsed(json_llm.chat(messages).message.content),
        "tools": lambda: llm(base, is_chat_model=True).chat(messages, tools=[TOOL]),
        "errors": lambda: llm(base, "gpt-4o", is_chat_model=True).chat(messages),
        "fallback": down_chat,
    }


def probe_litellm(base: str, down: str) -> Probe:
    import litellm
    from pydantic import BaseModel

    class Cited(BaseModel):
        answer: str
        citations: list[int]

    common = {"api_base": f"{base}/v1", "api_key": "unused", "num_retries": 0, "timeout": 120}
    messages = [{"role": "user", "content": QUESTION}]
    model = "openai/rag-extractive"

    def stream() -> str:
        chunks = litellm.completion(model=model, messages=messages, stream=True, **common)
        return cited("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))

    def down_chat() -> str:
        resp = litellm.completion(
            model="openai/rag-gpt-4o-mini",
            messages=messages,
            **{**common, "api_base": f"{down}/v1"},
        )
        return fell_back(resp.model, resp.choices[0].message.content)

    return {
        "chat": lambda: cited(
            litellm.completion(model=model, messages=messages, **common).choices[0].message.content
        ),
        "streaming": stream,
        "completions": lambda: cited(
            litellm.text_completion(
                model="text-completion-openai/rag-extractive", prompt=QUESTION, **common
            )
            .choices[0]
            .text
        ),
        "structured": lambda: parsed(
            litellm.completion(model=model, messages=messages, response_format=Cited, **common)
            .choices[0]
            .message.content
        ),
        "tools": lambda: litellm.completion(model=model, messages=messages, tools=[TOOL], **common),
        "errors": lambda: litellm.completion(model="openai/gpt-4o", messages=messages, **common),
        "fallback": down_chat,
    }


def probe_llm_cli(base: str, down: str) -> Probe:
    """simonw's `llm` CLI, configured through extra-openai-models.yaml in a private LLM_USER_PATH."""
    home = Path(tempfile.mkdtemp(prefix="llm-home-"))
    entries = [
        ("rag", "rag-extractive", base, ""),
        ("rag-completion", "rag-extractive", base, "  completion: true\n"),
        ("rag-tools", "rag-extractive", base, "  supports_tools: true\n"),
        ("rag-unknown", "gpt-4o", base, ""),
        ("rag-down", "rag-gpt-4o-mini", down, ""),
    ]
    (home / "extra-openai-models.yaml").write_text(
        "".join(
            f"- model_id: {mid}\n  model_name: {name}\n  api_base: {url}/v1\n"
            f"  supports_schema: true\n{extra}"
            for mid, name, url, extra in entries
        )
    )
    env = {**os.environ, "LLM_USER_PATH": str(home), "OPENAI_API_KEY": "unused"}
    exe = Path(sys.executable).with_name("llm")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(exe), *args], env=env, capture_output=True, text=True, timeout=300
        )

    def ok(done: subprocess.CompletedProcess[str]) -> str:
        if done.returncode != 0:
            return f"fail: exit {done.returncode}: {done.stderr.strip()[-300:]}"
        return done.stdout

    def error(done: subprocess.CompletedProcess[str], expect: str) -> str:
        said = done.stdout + done.stderr
        if done.returncode != 0 and expect in said:
            return "400" if expect.startswith("`") else "works"
        return f"fail: exit {done.returncode}: {said.strip()[-300:]}"

    def fallback() -> str:
        out = ok(run("-m", "rag-down", "--no-stream", QUESTION))
        logged = ok(run("logs", "-n", "1", "--json"))
        try:
            model = json.loads(logged)[0]["response_json"]["model"]
        except (ValueError, LookupError, TypeError):
            model = None
        return fell_back(model, out)

    return {
        "chat": lambda: cited(ok(run("-m", "rag", "--no-stream", QUESTION))),
        "streaming": lambda: cited(ok(run("-m", "rag", QUESTION))),  # llm streams by default
        "completions": lambda: cited(ok(run("-m", "rag-completion", QUESTION))),
        "structured": lambda: parsed(
            ok(run("-m", "rag", "--schema", json.dumps(SCHEMA), QUESTION))
        ),
        "tools": lambda: error(
            run(
                "-m", "rag-tools", "--functions", "def get_weather(city: str) -> str: ...", QUESTION
            ),
            "`tools`",
        ),
        "errors": lambda: error(run("-m", "rag-unknown", QUESTION), "rag-extractive"),
        "fallback": fallback,
    }


CLIENTS = {
    "openai": probe_openai,
    "langchain": probe_langchain,
    "llama-index": probe_llama_index,
    "litellm": probe_litellm,
    "llm": probe_llm_cli,
}


def run_probe(client: str, base: str, down: str) -> dict[str, str]:
    checks = CLIENTS[client](base, down)
    results: dict[str, str] = {}
    for feature in FEATURES:
        try:
            outcome = checks[feature]()
        except Exception as exc:
            if feature == "tools":
                outcome = refused(exc, "tools")
            elif feature == "errors":
                outcome = not_found(exc)
            else:
                outcome = f"fail: {type(exc).__name__}: {exc!s:.300}"
        else:
            if feature in ("tools", "errors") and not isinstance(outcome, str):
                outcome = f"fail: no error raised ({outcome!r:.200})"
        results[feature] = outcome
    return results


if __name__ == "__main__":
    name, base_url, down_url = sys.argv[1:4]
    print(json.dumps(run_probe(name, base_url, down_url)))
