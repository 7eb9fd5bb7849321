"""The two answer endpoints: POST /v1/chat/completions and the legacy POST /v1/completions.

    body ─► refuse_unsupported (tools, logprobs, ...) ─► output_plan (response_format)
        ─► Engines.get(model) ─► ask (worker thread) ─► Reply: the model that actually answered
           (the extractive id, and a notice first in the content, when the LLM fell back)
        ─► one JSON object, or SSE chunks (one word each) + usage + `data: [DONE]`

Both endpoints answer the same way; they differ in the question (the last user message and its
history, or the prompt) and in the payload's shape (openai.types' ChatCompletion vs Completion).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.params import Depends
from fastapi.responses import JSONResponse, StreamingResponse
from openai.types import Completion, CompletionChoice, CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from rag.api.engines import EXTRACTIVE_MODEL, Engines
from rag.api.replies import (
    FALLBACK_NOTE,
    check_question,
    rag_field,
    reply_text,
    split_messages,
    sse,
    usage,
    words,
)
from rag.api.schemas import APIError, ChatRequest, CompletionRequest, Sampling
from rag.api.structured import Plan, json_content, output_plan, refuse_unsupported
from rag.arxiv import resolve
from rag.errors import ConfigError
from rag.types import Answer

log = logging.getLogger("rag.api")

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass
class Reply:
    model: str  # what answered: the extractive id when the LLM-backed model fell back
    answer: Answer
    content: str
    tokens: dict[str, int]


async def answer(
    engines: Engines,
    body: Sampling,
    question: str,
    history: list[dict[str, Any]],
    plan: Plan | None = None,
) -> Reply:
    model, ask = engines.get(body.model)
    started = time.perf_counter()
    try:
        categories = resolve(body.categories or [])
    except ConfigError as exc:
        raise APIError(400, str(exc), param="categories", code="invalid_value") from None
    result: Answer = await run_in_threadpool(
        ask, question, body.top_k, history=history or None, categories=categories or None
    )
    shown = engines.shown_model(model, result)
    note = None
    if shown != model:
        note = FALLBACK_NOTE.format(model=model, extractive=EXTRACTIVE_MODEL)
    if plan is not None:
        content = json_content(result, note or result.notice, plan)
    else:
        content = reply_text(result, note)
    log.info(
        "answered model=%s shown=%s stream=%s abstained=%s backend=%s in %.2fs",
        model,
        shown,
        body.stream,
        result.abstained,
        result.backend,
        time.perf_counter() - started,
    )
    return Reply(shown, result, content, usage(question, history, content))


def _add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in b}


def typed(model: type[BaseModel], payload: dict[str, Any]) -> dict[str, Any]:
    """`payload` as built, once openai's own type for it accepts it: a field that drifted from
    what the clients parse fails here, in the tests, not in a user's client."""
    model.model_validate(payload)
    return payload


def add_completion_routes(app: FastAPI, engines: Engines, guarded: list[Depends]) -> None:
    @app.post("/v1/chat/completions", dependencies=guarded, tags=["chat"], response_model=None)
    async def chat_completions(body: ChatRequest) -> JSONResponse | StreamingResponse:
        refuse_unsupported(body)
        plan = output_plan(body.response_format)
        engines.get(body.model)  # an unknown model is a 404 before the messages are read
        question, history = split_messages(body.messages)
        reply = await answer(engines, body, question, history, plan)
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if not body.stream:
            return JSONResponse(
                typed(
                    ChatCompletion,
                    {
                        "id": ident,
                        "object": "chat.completion",
                        "created": created,
                        "model": reply.model,
                        "system_fingerprint": None,
                        "choices": [
                            {
                                "index": 0,
                                "message": {
                                    "role": "assistant",
                                    "content": reply.content,
                                    "refusal": None,
                                },
                                "logprobs": None,
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": reply.tokens,
                    },
                )
                | {"rag": rag_field(reply.answer)}
            )
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            out: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": reply.model,
                "system_fingerprint": None,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                out["usage"] = None
            return typed(ChatCompletionChunk, out)

        async def events() -> AsyncIterator[str]:
            yield sse(chunk({"role": "assistant", "content": ""}))
            for word in words(reply.content):
                yield sse(chunk({"content": word}))
            yield sse({**chunk({}, "stop"), "rag": rag_field(reply.answer)})
            if include_usage:
                yield sse({**chunk({}), "choices": [], "usage": reply.tokens})
            yield sse("[DONE]")

        return StreamingResponse(events(), media_type="text/event-stream", headers=_SSE_HEADERS)

    @app.post("/v1/completions", dependencies=guarded, tags=["completions"], response_model=None)
    async def completions(body: CompletionRequest) -> JSONResponse | StreamingResponse:
        """Legacy text completion: each prompt is a question; its completion the cited answer."""
        refuse_unsupported(body)
        engines.get(body.model)
        prompts = body.prompts
        what = "prompt" if len(prompts) == 1 else "prompt {i}"
        questions = [check_question(p, "prompt", what.format(i=i)) for i, p in enumerate(prompts)]
        # Several prompts are answered at once, each in its own worker thread.
        replies = list(await asyncio.gather(*(answer(engines, body, q, []) for q in questions)))
        ident, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        model = replies[0].model
        total: dict[str, int] = {}
        for reply in replies:
            total = _add(total, reply.tokens)
        texts = [
            (prompt if body.echo else "") + reply.content
            for prompt, reply in zip(prompts, replies, strict=True)
        ]

        def completion(choices: list[CompletionChoice], tokens: dict[str, int] | None) -> dict:
            payload = Completion(
                id=ident,
                object="text_completion",
                created=created,
                model=model,
                choices=choices,
                usage=CompletionUsage(**tokens) if tokens else None,
            ).model_dump(mode="json", exclude_none=False)
            payload.pop("system_fingerprint", None)
            return payload

        def choice(index: int, text: str, finish: str | None) -> CompletionChoice:
            # finish_reason is required by the type; a streamed piece carries null (as OpenAI's)
            made = CompletionChoice(index=index, text=text, logprobs=None, finish_reason="stop")
            return made if finish else made.model_copy(update={"finish_reason": None})

        if not body.stream:
            payload = completion([choice(i, t, "stop") for i, t in enumerate(texts)], total)
            payload["rag"] = rag_field(replies[0].answer)
            if len(replies) > 1:
                payload["rag"] = [rag_field(r.answer) for r in replies]
            return JSONResponse(payload)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        async def events() -> AsyncIterator[str]:
            for i, (text, reply) in enumerate(zip(texts, replies, strict=True)):
                for word in words(text):
                    yield sse(completion([choice(i, word, None)], None))
                last = completion([choice(i, "", "stop")], None)
                yield sse({**last, "rag": rag_field(reply.answer)})
            if include_usage:
                yield sse(completion([], total))
            yield sse("[DONE]")

        return StreamingResponse(events(), media_type="text/event-stream", headers=_SSE_HEADERS)
