"""The gate in front of every /v1 request: CORS, then the bearer token, then the body cap.

    request ─► ApiCORS (RAG_API_CORS_ORIGINS; Starlette's CORSMiddleware, /v1 only)
            ─► BearerAuth (RAG_API_KEY, constant-time) ─► BodyLimit (declared and counted bytes)
            ─► routing, parsing, validation (rag.api.app)

All are plain ASGI middleware, so they act before FastAPI reads, routes or validates anything.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence

from fastapi.responses import JSONResponse
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.api.schemas import MAX_BODY_BYTES, APIError, error_response


def is_api_path(path: str) -> bool:
    """The paths the API answers (and guards): /v1 and everything under it."""
    return path == "/v1" or path.startswith("/v1/")


def unauthorized() -> APIError:
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


class ApiCORS:
    """Starlette's CORSMiddleware for /v1 only (the UI mounted at "/" stays same-origin).

    A preflight (OPTIONS with Access-Control-Request-Method) from an allowed origin is answered
    here, before the token check (browsers send no Authorization on a preflight); every /v1
    response to an allowed origin, errors and 401s included, carries Access-Control-Allow-Origin.
    Any request header is allowed (the openai JS client sends its own `x-stainless-*` ones);
    credentials (cookies) are not, as the API's auth is a bearer token."""

    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["*"],
            allow_credentials=False,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_api_path(scope["path"]):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


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
                await error_response(unauthorized())(scope, receive, send)
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
        return error_response(
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
