"""The FastAPI app: the model ids, the error handlers and the routes.

    create_api(assistant) ─► BearerAuth, BodyLimit (rag.api.gate) ─► routes:
        POST /v1/chat/completions ─► Engines.get(model) ─► answer (worker thread)
            ─► chat.completion JSON, or SSE chat.completion.chunk events + `data: [DONE]`
        GET /v1/models, GET /v1/models/{id}, GET /healthz, and an OpenAI-style 404 for the rest

Every error leaves as an OpenAI-style error object, never a traceback, with the keys scrubbed.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag.api.gate import BearerAuth, BodyLimit, bearer_ok, unauthorized
from rag.api.replies import rag_field, reply_text, split_messages, sse, usage, words
from rag.api.schemas import (
    RAG_ERRORS,
    APIError,
    ChatRequest,
    error_response,
    slug,
    validation_error,
)
from rag.assistant import Assistant
from rag.errors import RagError
from rag.types import Answer
from rag.verify import Verifier

log = logging.getLogger("rag.api")  # the name its records had before the split

EXTRACTIVE_MODEL = "rag-extractive"

# ask(question, top_k, *, history=None) -> Answer
Ask = Callable[..., Answer]


# ----------------------------------------------------------------------------------- engines
class Engines:
    """Model id -> how it is answered (one id per answer backend).

    The configured backend's id is `Assistant.ask`; the extractive id, when another backend is
    configured, is the same assistant's pipeline over its extractive backend
    (`Assistant.pipeline(backend)`): it shares the store, embedder and retriever, so an ingest
    through the assistant (e.g. a UI upload) is seen there too."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self._verifier: Verifier | None = None
        self._lock = threading.Lock()
        self.created = int(time.time())
        kind = assistant.settings.resolved_llm
        self.default = {
            "openai": f"rag-{assistant.settings.llm_model}",
            "local": "rag-local",
        }.get(kind, EXTRACTIVE_MODEL)
        self.ids = [EXTRACTIVE_MODEL] + ([self.default] if self.default != EXTRACTIVE_MODEL else [])

    def get(self, model: str | None) -> tuple[str, Ask]:
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
            return model, self.assistant.ask
        return model, self._ask_extractive

    def _ask_extractive(
        self, question: str, top_k: int | None = None, *, history: Any = None
    ) -> Answer:
        """The extractive answer (the question is already checked by `split_messages`)."""
        assistant = self.assistant
        pipeline = assistant.pipeline(assistant.extractive)
        if assistant.settings.verify_judge == "llm":
            # The LLM judge is the configured chat backend's; extractive answers are judged
            # offline, as an assistant configured for the extractive backend judges them.
            pipeline = replace(pipeline, verifier=self._offline_verifier())
        answer = None
        for item in pipeline.run(question, top_k, history=history, stream=False):
            if isinstance(item, Answer):
                answer = item
        assert answer is not None
        return answer

    def _offline_verifier(self) -> Verifier:
        with self._lock:
            if self._verifier is None:
                settings = self.assistant.settings
                self._verifier = Verifier(self.assistant.embedder, policy=settings.unsupported)
            return self._verifier

    def card(self, model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": self.created, "owned_by": "rag"}


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
        return error_response(err)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return respond(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return respond(validation_error(exc))

    @app.exception_handler(RagError)
    async def _rag_error(request: Request, exc: RagError) -> JSONResponse:
        code = next((c for kind, c in RAG_ERRORS if isinstance(exc, kind)), "rag_error")
        log.warning("request failed: %s", scrub(str(exc)))
        return respond(APIError(503, str(exc), type="server_error", code=code))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err = APIError(exc.status_code, str(exc.detail), code=slug(str(exc.detail)))
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
            raise unauthorized()

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
        model, ask = engines.get(body.model)
        question, history = split_messages(body.messages)
        started = time.perf_counter()
        answer: Answer = await run_in_threadpool(ask, question, body.top_k, history=history or None)
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
        tokens = usage(question, history, content)
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
                    "usage": tokens,
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
            yield sse(chunk({"role": "assistant", "content": ""}))
            for word in words(content):
                yield sse(chunk({"content": word}))
            yield sse({**chunk({}, "stop"), "rag": rag_field(answer)})
            if include_usage:
                yield sse({**chunk({}), "choices": [], "usage": tokens})
            yield sse("[DONE]")

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
