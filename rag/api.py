"""The OpenAI-compatible HTTP API, so existing chat clients can talk to the corpus.

    POST /v1/chat/completions ─► bearer check ─► body cap ─► ChatRequest (pydantic) ─► engine for `model`
        ─► Assistant.ask(last user message, history=earlier user/assistant turns)  (worker thread)
        ─► chat.completion JSON, or SSE chat.completion.chunk events + `data: [DONE]`
    GET /v1/models, GET /v1/models/{id}, GET /healthz

Thin over `Assistant`: a reply's content is the verified, cited `Answer.text` followed by a short
"Sources:" list of the cited papers; the full numbered sources, the verdict per sentence and the
backend travel in an extra top-level `rag` field (docs/api.md documents it). Streaming sends the
answer only after verification, word by word, because an SSE stream cannot take back text a
verifier would have dropped. Errors are OpenAI-style `{"error": {message, type, param, code}}`
with the matching HTTP status and never a traceback. The API key is compared in constant time and
never logged or echoed.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.assistant import Assistant
from rag.chunking import count_tiktoken
from rag.errors import ConfigError, EmbeddingError, LLMError, RagError, StoreError
from rag.store import Store
from rag.types import Answer, Source

log = logging.getLogger(__name__)

MAX_MESSAGES = 50
MAX_MESSAGE_CHARS = 8_000
MAX_QUESTION_CHARS = 2_000  # what Assistant accepts, after whitespace is collapsed
MAX_BODY_BYTES = 4 * 1024 * 1024
EXTRACTIVE_MODEL = "rag-extractive"
SOURCES_HEADER = "Sources:"

_SOURCES_BLOCK = re.compile(r"\n\s*\n" + SOURCES_HEADER + r"\n((?:\[\d+\][^\n]*(?:\n|$))+)\s*$")
_SOURCE_LINE = re.compile(r"^\[(\d+)\]\s*(.*?)(?:\s+\((\d{4}-\d{2}-\d{2})\))?\s*$")
_CITATION = re.compile(r"\[(\d+)\]")


# ------------------------------------------------------------------------------------ request
class ContentPart(BaseModel):
    """One part of a multi-part message; only "text" parts are read."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text for p in self.content if p.type == "text" and p.text)
        return self.content or ""

    @field_validator("content")
    @classmethod
    def _not_too_long(cls, value: str | list[ContentPart] | None) -> Any:
        parts = value if isinstance(value, list) else [value]
        size = sum(len(p.text or "") if isinstance(p, ContentPart) else len(p or "") for p in parts)
        if size > MAX_MESSAGE_CHARS:
            raise ValueError(
                f"a message is {size:,} characters; the limit is {MAX_MESSAGE_CHARS:,}, shorten it"
            )
        return value


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The OpenAI chat-completions body. Sampling parameters (temperature, max_tokens, ...) are
    accepted and ignored: the answer is whatever survives verification."""

    model_config = ConfigDict(extra="allow")
    model: str | None = Field(None, description="A /v1/models id; unset = the configured backend.")
    messages: list[ChatMessage]
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="Only one choice is ever produced.")
    top_k: int | None = Field(None, ge=1, le=50, description="rag extension: sources to retrieve.")

    @field_validator("messages")
    @classmethod
    def _not_too_many(cls, value: list[ChatMessage]) -> list[ChatMessage]:
        if len(value) > MAX_MESSAGES:
            raise ValueError(
                f"{len(value)} messages sent; the limit is {MAX_MESSAGES}, drop the oldest turns"
            )
        return value


# ------------------------------------------------------------------------------------- errors
class APIError(Exception):
    """An error answered as an OpenAI-style error object."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.param, self.code, self.headers = param, code, headers


_RAG_ERRORS: list[tuple[type[RagError], str]] = [
    (StoreError, "store_unavailable"),
    (EmbeddingError, "embedding_unavailable"),
    (LLMError, "llm_unavailable"),
    (ConfigError, "config_error"),
]


# ----------------------------------------------------------------------------------- engines
class _BackendVariant(Assistant):
    """The same engine with another answer backend: it shares the parent's store, embedder and
    retriever, so an ingest through the parent (e.g. a UI upload) is seen here too."""

    def __init__(self, parent: Assistant, llm: str) -> None:
        super().__init__(
            parent.settings.with_overrides(llm=llm), embedder=parent.embedder, store=parent.store
        )
        self._parent = parent

    @property
    def store(self) -> Store:
        return self._parent.store

    @property
    def retriever(self) -> Any:
        return self._parent.retriever


class Engines:
    """Model id -> the Assistant that answers for it (one id per answer backend)."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self._extractive: Assistant | None = None
        self._lock = threading.Lock()
        self.created = int(time.time())
        kind = assistant.settings.resolved_llm
        self.default = {
            "openai": f"rag-{assistant.settings.llm_model}",
            "local": "rag-local",
        }.get(kind, EXTRACTIVE_MODEL)
        self.ids = [EXTRACTIVE_MODEL] + ([self.default] if self.default != EXTRACTIVE_MODEL else [])

    def get(self, model: str | None) -> tuple[str, Assistant]:
        model = model or self.default
        if model not in self.ids:
            raise APIError(
                404,
                f"the model '{model}' does not exist; use one of: {', '.join(self.ids)} "
                "(GET /v1/models lists them)",
                param="model",
                code="model_not_found",
            )
        if model == self.default:
            return model, self.assistant
        with self._lock:
            if self._extractive is None:
                self._extractive = _BackendVariant(self.assistant, "extractive")
            return model, self._extractive

    def card(self, model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": self.created, "owned_by": "rag"}


# ---------------------------------------------------------------------------------- messages
_SURROGATE = re.compile("[\ud800-\udfff]")


def split_messages(messages: Sequence[ChatMessage]) -> tuple[str, list[dict[str, Any]]]:
    """The last user message is the question; earlier user/assistant turns are the history.

    An assistant turn this API wrote ends with a "Sources:" list; it is taken off the text and its
    titles become the turn's `sources`, which lets the engine name the paper a follow-up means."""
    last = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
    if last is None:
        raise APIError(
            400,
            "`messages` has no user message; send at least one "
            '{"role": "user", "content": "<your question>"}',
            param="messages",
            code="no_user_message",
        )
    for i, message in enumerate(messages):  # a JSON "\ud800" escape: not text (it was a 500)
        if bad := _SURROGATE.search(message.text):
            raise APIError(
                400,
                f"message {i} holds a lone surrogate (U+{ord(bad.group()):04X} at character "
                f"{bad.start() + 1}), which is not a character; send the text as valid UTF-8 "
                "(fix the \\u escape)",
                param=f"messages.{i}.content",
                code="invalid_text",
            )
    question = " ".join(messages[last].text.split())
    if not question:
        raise APIError(
            400,
            "the last user message is empty; put your question in it",
            param=f"messages.{last}.content",
            code="empty_question",
        )
    if len(question) > MAX_QUESTION_CHARS:
        raise APIError(
            400,
            f"the question (last user message) is {len(question):,} characters; the limit is "
            f"{MAX_QUESTION_CHARS:,}, shorten it",
            param=f"messages.{last}.content",
            code="question_too_long",
        )
    history: list[dict[str, Any]] = []
    for message in messages[:last]:
        if message.role not in ("user", "assistant") or not message.text.strip():
            continue
        turn: dict[str, Any] = {"role": message.role, "content": message.text}
        if message.role == "assistant":
            body, titles = split_sources_block(message.text)
            turn["content"] = body
            if titles:
                turn["sources"] = titles
        history.append(turn)
    return question, history


def split_sources_block(text: str) -> tuple[str, list[str]]:
    """'answer [1]\\n\\nSources:\\n[1] Title (2020-11-08)' -> ('answer [1]', ['Title'])."""
    match = _SOURCES_BLOCK.search(text)
    if not match:
        return text, []
    titles = []
    for line in match.group(1).splitlines():
        parsed = _SOURCE_LINE.match(line.strip())
        if parsed and parsed.group(2):
            titles.append(parsed.group(2))
    return text[: match.start()].rstrip(), titles


# ---------------------------------------------------------------------------------- replies
def cited_numbers(answer: Answer) -> set[int]:
    if answer.abstained:
        return set()
    numbers = {n for s in answer.sentences for n in s.citations}
    return numbers | {int(n) for n in _CITATION.findall(answer.text)}


def reply_text(answer: Answer) -> str:
    """The verified answer plus the cited sources, for clients that ignore the `rag` field."""
    if answer.abstained:
        return answer.text
    cited = [s for s in answer.sources if s.number in cited_numbers(answer)]
    if not cited:
        return answer.text
    lines = [
        f"[{s.number}] {s.title}" + (f" ({s.published})" if s.published else "") for s in cited
    ]
    return f"{answer.text}\n\n{SOURCES_HEADER}\n" + "\n".join(lines)


def rag_field(answer: Answer) -> dict[str, Any]:
    cited = cited_numbers(answer)

    def source(s: Source) -> dict[str, Any]:
        return {
            "number": s.number,
            "title": s.title,
            "paper_id": s.paper_id,
            "published": s.published.isoformat() if s.published else None,
            "score": round(s.score, 4),
            "snippet": s.snippet,
            "cited": s.number in cited,
        }

    return {
        "sources": [source(s) for s in answer.sources],
        "abstained": answer.abstained,
        "backend": answer.backend,
        "sentences": []
        if answer.abstained
        else [
            {
                "text": s.text,
                "citations": s.citations,
                "supported": s.supported,
                "score": round(s.score, 4),
            }
            for s in answer.sentences
        ],
        "standalone_question": answer.standalone_question,
        "filters": answer.filters,
        "notice": answer.notice,
    }


def _usage(question: str, history: list[dict[str, Any]], content: str) -> dict[str, int]:
    prompt = count_tiktoken(question) + sum(count_tiktoken(m["content"]) for m in history)
    completion = count_tiktoken(content)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


def _words(text: str) -> list[str]:
    """Pieces that join back to exactly `text`, one word (with its leading space) each."""
    return re.findall(r"\s*\S+\s*$|\s*\S+", text) or [text]


# ------------------------------------------------------------------------- gate: auth, size
def is_api_path(path: str) -> bool:
    """The paths the API answers (and guards): /v1 and everything under it."""
    return path == "/v1" or path.startswith("/v1/")


def _unauthorized() -> APIError:
    return APIError(
        401,
        "missing or wrong API key; send the server's RAG_API_KEY as `Authorization: Bearer <key>`",
        code="invalid_api_key",
        headers={"WWW-Authenticate": "Bearer"},
    )


def bearer_ok(headers: Sequence[tuple[bytes, bytes]], key: str) -> bool:
    """Exactly one `Authorization: Bearer <key>` header; compared in constant time."""
    values = [v for k, v in headers if k.lower() == b"authorization"]
    if len(values) != 1:
        return False
    scheme, _, token = values[0].strip().partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), key.encode())


class BearerAuth:
    """With RAG_API_KEY set, a /v1 request without the token is answered 401 here, first: before
    anything reads its body, routes it or checks its size (so a 404, 405, 413 or bad JSON tells
    a caller without the key nothing). A websocket to /v1 is closed (HTTP 403)."""

    def __init__(self, app: ASGIApp, key: str | None = None) -> None:
        self.app, self.key = app, key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.key
            and scope["type"] in ("http", "websocket")
            and is_api_path(scope["path"])
            and not bearer_ok(scope["headers"], self.key)
        ):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            else:
                await _error_response(_unauthorized())(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _BodyTooLarge(Exception):
    """Raised into the app by `BodyLimit`'s receive once the cap is passed."""


class BodyLimit:
    """Cap what is read of an API request body, not what is declared: a Content-Length over the
    limit is refused before anything is read, and any body (chunked or with a false length) is
    counted as it arrives and answered 413 as soon as the count passes the limit. Nothing after
    that chunk is read; the app's own reply to the cut-off body is replaced by the 413."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int = MAX_BODY_BYTES,
        applies: Callable[[str], bool] = is_api_path,
    ) -> None:
        self.app, self.limit, self.applies = app, limit, applies

    def _too_large(self) -> JSONResponse:
        megabytes = self.limit / (1024 * 1024)
        return _error_response(
            APIError(
                413,
                f"the request body is over {megabytes:g} MB; send fewer or shorter messages",
                code="request_too_large",
            ),
            close=True,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.applies(scope["path"]):
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k.lower() == b"content-length"), b"")
        if declared.strip().isdigit() and int(declared) > self.limit:
            await self._too_large()(scope, receive, send)
            return
        received = 0
        over = started = False

        async def counted() -> Message:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    over = True
                    raise _BodyTooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if over and not started:
                return  # the app's reply to the cut-off body; the 413 goes instead
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except Exception:
            if not over:
                raise
        if over and not started:
            await self._too_large()(scope, receive, send)


# ------------------------------------------------------------------------------------- app
def create_api(assistant: Assistant) -> FastAPI:
    """The API as a FastAPI app; `rag.server` mounts the UI on top of it at "/"."""
    settings = assistant.settings
    engines = Engines(assistant)
    secrets = [
        s.get_secret_value() for s in (settings.api_key, settings.openai_api_key) if s is not None
    ]

    app = FastAPI(
        title="rag API",
        description="OpenAI-compatible chat over the paper corpus; see docs/api.md.",
        version="1",
        docs_url="/v1/docs",
        redoc_url=None,
        openapi_url="/v1/openapi.json",
    )
    # Starlette runs the middleware added last first: the token is checked before the body is
    # counted, and both before routing, parsing or validation.
    app.add_middleware(BodyLimit)
    app.add_middleware(
        BearerAuth, key=settings.api_key.get_secret_value() if settings.api_key else None
    )

    def scrub(message: str) -> str:
        for secret in secrets:
            if secret and secret in message:
                message = message.replace(secret, "***")
        return message

    def respond(err: APIError) -> JSONResponse:
        err.message = scrub(err.message)
        return _error_response(err)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return respond(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return respond(_validation_error(exc))

    @app.exception_handler(RagError)
    async def _rag_error(request: Request, exc: RagError) -> JSONResponse:
        code = next((c for kind, c in _RAG_ERRORS if isinstance(exc, kind)), "rag_error")
        log.warning("request failed: %s", scrub(str(exc)))
        return respond(APIError(503, str(exc), type="server_error", code=code))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err = APIError(exc.status_code, str(exc.detail), code=_slug(str(exc.detail)))
        err.headers = dict(exc.headers or {})
        return respond(err)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return respond(
            APIError(
                500,
                "internal error while answering; the server log has the details",
                type="server_error",
                code="internal_error",
            )
        )

    async def authorize(request: Request) -> None:
        # BearerAuth already refused a missing or wrong token; this keeps each route guarded
        # on its own too, should the app ever be mounted without the middleware.
        if settings.api_key is not None and not bearer_ok(
            request.scope["headers"], settings.api_key.get_secret_value()
        ):
            raise _unauthorized()

    guarded = [Depends(authorize)]

    @app.get("/healthz", tags=["health"])
    async def healthz() -> JSONResponse:
        """Liveness and readiness: the store answers and holds this many papers (no auth)."""
        try:
            papers = await run_in_threadpool(lambda: assistant.store.paper_count())
        except RagError as exc:
            log.warning("health check failed: %s", scrub(str(exc)))
            return JSONResponse(
                {"status": "unavailable", "error": scrub(str(exc))}, status_code=503
            )
        return JSONResponse({"status": "ok", "papers": papers, "models": engines.ids})

    @app.get("/v1/models", dependencies=guarded, tags=["models"])
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [engines.card(m) for m in engines.ids]}

    @app.get("/v1/models/{model}", dependencies=guarded, tags=["models"])
    async def get_model(model: str) -> dict[str, Any]:
        name, _ = engines.get(model)
        return engines.card(name)

    @app.post("/v1/chat/completions", dependencies=guarded, tags=["chat"], response_model=None)
    async def chat_completions(body: ChatRequest) -> JSONResponse | StreamingResponse:
        model, engine = engines.get(body.model)
        question, history = split_messages(body.messages)
        started = time.perf_counter()
        answer: Answer = await run_in_threadpool(
            engine.ask, question, body.top_k, history=history or None
        )
        content = reply_text(answer)
        log.info(
            "answered model=%s stream=%s abstained=%s backend=%s in %.2fs",
            model,
            body.stream,
            answer.abstained,
            answer.backend,
            time.perf_counter() - started,
        )
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        usage = _usage(question, history, content)
        if not body.stream:
            return JSONResponse(
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "system_fingerprint": None,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content, "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                    "rag": rag_field(answer),
                }
            )
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            out: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": None,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                out["usage"] = None
            return out

        async def events() -> AsyncIterator[str]:
            yield _sse(chunk({"role": "assistant", "content": ""}))
            for word in _words(content):
                yield _sse(chunk({"content": word}))
            yield _sse({**chunk({}, "stop"), "rag": rag_field(answer)})
            if include_usage:
                yield _sse({**chunk({}), "choices": [], "usage": usage})
            yield _sse("[DONE]")

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # Registered last: an unknown /v1 path gets an OpenAI-style 404 instead of falling through to
    # the UI that rag.server mounts at "/".
    @app.api_route(
        "/v1/{path:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        include_in_schema=False,
    )
    async def unknown(request: Request, path: str) -> None:
        raise APIError(
            404,
            f"there is no {request.method} /v1/{path}; this API serves POST "
            "/v1/chat/completions, GET /v1/models, GET /v1/models/{id} and GET /healthz",
            code="unknown_url",
        )

    return app


def _error_response(err: APIError, *, close: bool = False) -> JSONResponse:
    body = {
        "error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}
    }
    headers = dict(err.headers or {})
    if close:  # the rest of the request body is never read, so the connection cannot be reused
        headers["Connection"] = "close"
    return JSONResponse(body, status_code=err.status, headers=headers)


def _validation_error(exc: RequestValidationError) -> APIError:
    """FastAPI's 422 becomes OpenAI's 400 with the first problem and where it is."""
    errors = exc.errors()
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    if first.get("type") == "json_invalid":
        return APIError(
            400,
            "the request body is not valid JSON; send a JSON object with `model` and `messages`",
            code="invalid_json",
        )
    if first.get("type") == "missing" and not loc:
        return APIError(
            400,
            "the request body is empty; send a JSON object with `model` and `messages`",
            code="invalid_body",
        )
    message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    where = f" at `{param}`" if param else ""
    return APIError(
        400, f"invalid request{where}: {message}{more}", param=param, code="invalid_value"
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "error"
