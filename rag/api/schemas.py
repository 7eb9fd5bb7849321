"""The OpenAI request bodies (chat and legacy completions), and the OpenAI-style error object.

    JSON body ─► ChatRequest / CompletionRequest (pydantic: limits on messages and their size, and
                 OpenAI's types and ranges on the sampling fields that are accepted and ignored)
    any failure ─► APIError ─► {"error": {message, type, param, code}} with its HTTP status

FastAPI's own 422 (a body that does not validate) is turned into OpenAI's 400 here too
(rag.api.problems words it), with the first problem and where it is.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from rag.errors import ConfigError, EmbeddingError, LLMError, RagError, StoreError

MAX_MESSAGES = 50
MAX_MESSAGE_CHARS = 8_000
MAX_QUESTION_CHARS = 2_000  # what Assistant accepts, after whitespace is collapsed
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_PROMPTS = 8  # prompts one /v1/completions request may carry (each is answered in turn)


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


class JSONSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    name: str = "answer"
    description: str | None = None
    json_schema: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """`text`, `json_object`, or `json_schema` (rag.api.structured builds the JSON answer)."""

    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class Sampling(BaseModel):
    """Fields every OpenAI completion body may carry. They are checked as OpenAI checks them (a
    wrong type or range is a 400) and then ignored: the answer is whatever survives verification,
    never sampled, never cut to `max_tokens`."""

    model_config = ConfigDict(extra="allow")
    model: str | None = Field(None, description="A /v1/models id; unset = the configured backend.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="Only one choice is ever produced.")
    top_k: int | None = Field(None, ge=1, le=50, description="rag extension: sources to retrieve.")
    categories: list[str] | None = Field(
        None,
        max_length=20,
        description="rag extension: only papers in these arXiv categories (codes or names).",
    )
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    user: str | None = None
    logit_bias: dict[str, float] | None = None


class ChatRequest(Sampling):
    """The OpenAI chat-completions body."""

    messages: list[ChatMessage]
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None

    @field_validator("messages")
    @classmethod
    def _not_too_many(cls, value: list[ChatMessage]) -> list[ChatMessage]:
        if len(value) > MAX_MESSAGES:
            raise ValueError(
                f"{len(value)} messages sent; the limit is {MAX_MESSAGES}, drop the oldest turns"
            )
        return value


class CompletionRequest(Sampling):
    """The legacy text-completions body: the prompt is the question (one, or a list of them)."""

    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = Field(None, ge=1, le=1)
    logprobs: int | None = Field(None, ge=0, le=5)

    @field_validator("prompt")
    @classmethod
    def _text_prompts(cls, value: Any) -> Any:
        if isinstance(value, list) and any(not isinstance(p, str) for p in value):
            raise ValueError("token-id prompts are not supported; send the prompt as text")
        if isinstance(value, list) and not 1 <= len(value) <= MAX_PROMPTS:
            raise ValueError(f"send 1 to {MAX_PROMPTS} prompts; {len(value)} were sent")
        return value

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)  # type: ignore[arg-type]


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


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "error"
