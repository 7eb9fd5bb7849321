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

    schemas.py   the request body (pydantic), the error object, limits
    gate.py      BearerAuth, BodyLimit: ASGI middleware that acts before any routing
    replies.py   messages -> question + history; Answer -> reply text, `rag` field, usage, SSE
    app.py       Engines (model id -> answer), create_api: error handlers and routes
"""

from rag.api.app import EXTRACTIVE_MODEL, Engines, create_api
from rag.api.gate import BearerAuth, BodyLimit, bearer_ok, is_api_path
from rag.api.replies import (
    SOURCES_HEADER,
    cited_numbers,
    rag_field,
    reply_text,
    split_messages,
    split_sources_block,
)
from rag.api.schemas import (
    MAX_BODY_BYTES,
    MAX_MESSAGE_CHARS,
    MAX_MESSAGES,
    MAX_QUESTION_CHARS,
    APIError,
    ChatMessage,
    ChatRequest,
    ContentPart,
    StreamOptions,
)

__all__ = [
    "EXTRACTIVE_MODEL",
    "MAX_BODY_BYTES",
    "MAX_MESSAGES",
    "MAX_MESSAGE_CHARS",
    "MAX_QUESTION_CHARS",
    "SOURCES_HEADER",
    "APIError",
    "BearerAuth",
    "BodyLimit",
    "ChatMessage",
    "ChatRequest",
    "ContentPart",
    "Engines",
    "StreamOptions",
    "bearer_ok",
    "cited_numbers",
    "create_api",
    "is_api_path",
    "rag_field",
    "reply_text",
    "split_messages",
    "split_sources_block",
]
