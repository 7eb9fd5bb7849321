"""The OpenAI chat-completions request body, and the OpenAI-style error object.

    JSON body ─► ChatRequest (pydantic: limits on messages and their size)
    any failure ─► APIError ─► {"error": {message, type, param, code}} with its HTTP status

FastAPI's own 422 (a body that does not validate) is turned into OpenAI's 400 here too, with the
first problem and where it is.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from rag.errors import ConfigError, EmbeddingError, LLMError, RagError, StoreError

MAX_MESSAGES = 50
MAX_MESSAGE_CHARS = 8_000
MAX_QUESTION_CHARS = 2_000  # what Assistant accepts, after whitespace is collapsed
MAX_BODY_BYTES = 4 * 1024 * 1024


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


RAG_ERRORS: list[tuple[type[RagError], str]] = [
    (StoreError, "store_unavailable"),
    (EmbeddingError, "embedding_unavailable"),
    (LLMError, "llm_unavailable"),
    (ConfigError, "config_error"),
]


def error_response(err: APIError, *, close: bool = False) -> JSONResponse:
    body = {
        "error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}
    }
    headers = dict(err.headers or {})
    if close:  # the rest of the request body is never read, so the connection cannot be reused
        headers["Connection"] = "close"
    return JSONResponse(body, status_code=err.status, headers=headers)


def validation_error(exc: RequestValidationError) -> APIError:
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


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "error"
