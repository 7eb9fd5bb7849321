"""The FastAPI app: the error handlers, the middleware and the routes.

    create_api(assistant) ─► ApiCORS (RAG_API_CORS_ORIGINS) ─► BearerAuth, BodyLimit (rag.api.gate)
        ─► routes: POST /v1/chat/completions, POST /v1/completions (rag.api.completions),
        GET /v1/models, GET /v1/models/{id}, GET /healthz, and an OpenAI-style 404 for the rest

Every error leaves as an OpenAI-style error object, never a traceback, with the keys scrubbed.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag.api.completions import add_completion_routes
from rag.api.engines import Engines
from rag.api.gate import ApiCORS, BearerAuth, BodyLimit, bearer_ok, unauthorized
from rag.api.problems import validation_error
from rag.api.schemas import RAG_ERRORS, APIError, error_response, slug
from rag.assistant import Assistant
from rag.errors import RagError

log = logging.getLogger("rag.api")  # the name its records had before the split


# ------------------------------------------------------------------------------------- app
def create_api(assistant: Assistant) -> FastAPI:
    """The API as a FastAPI app; `rag_ui.server` (`rag serve`) mounts the UI on top of it at "/"."""
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
    # Outermost: a browser's preflight carries no token, and a 401 needs the CORS headers too.
    if settings.api_cors_origins:
        app.add_middleware(ApiCORS, origins=settings.api_cors_origins)

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
        return respond(validation_error(exc, request.headers.get("content-type")))

    @app.exception_handler(RagError)
    async def _rag_error(request: Request, exc: RagError) -> JSONResponse:
        code = next((c for kind, c in RAG_ERRORS if isinstance(exc, kind)), "rag_error")
        log.warning("request failed: %s", scrub(str(exc)))
        return respond(APIError(503, str(exc), type="server_error", code=code))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err = APIError(exc.status_code, str(exc.detail), code=slug(str(exc.detail)))
        err.headers = dict(exc.headers or {})
        if (
            exc.status_code == 405
            and request.method == "OPTIONS"
            and "access-control-request-method" in request.headers
        ):  # a browser's CORS preflight, and no origin is allowed
            err.message = (
                "cross-origin requests are not enabled; set RAG_API_CORS_ORIGINS to the web "
                "page's origin (e.g. https://app.example.com) to let it call /v1"
            )
            err.code = "cors_not_enabled"
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

    add_completion_routes(app, engines, guarded)

    # Registered last: an unknown /v1 path gets an OpenAI-style 404 instead of falling through to
    # the UI that rag_ui.server mounts at "/".
    @app.api_route(
        "/v1/{path:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        include_in_schema=False,
    )
    async def unknown(request: Request, path: str) -> None:
        raise APIError(
            404,
            f"there is no {request.method} /v1/{path[:100]}; this API serves POST "
            "/v1/chat/completions, POST /v1/completions, GET /v1/models, GET /v1/models/{id} "
            "and GET /healthz",
            code="unknown_url",
        )

    return app
