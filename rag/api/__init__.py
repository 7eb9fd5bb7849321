"""The OpenAI-compatible HTTP API, so existing chat clients can talk to the corpus.

    POST /v1/chat/completions ─► CORS ─► bearer check ─► body cap ─► ChatRequest (pydantic)
        ─► tools refused, response_format planned ─► engine for `model`
        ─► Assistant.ask(last user message, history=earlier user/assistant turns)  (worker thread)
        ─► chat.completion JSON, or SSE chat.completion.chunk events + `data: [DONE]`
    POST /v1/completions (legacy: the prompt is the question), GET /v1/models,
    GET /v1/models/{id}, GET /healthz

Thin over `Assistant`: a reply's content is the verified, cited `Answer.text` followed by a short
"Sources:" list of the cited papers; the full numbered sources, the verdict per sentence and the
backend travel in an extra top-level `rag` field (docs/api.md documents it). Streaming sends the
answer only after verification, word by word, because an SSE stream cannot take back text a
verifier would have dropped. Errors are OpenAI-style `{"error": {message, type, param, code}}`
with the matching HTTP status and never a traceback. The API key is compared in constant time and
never logged or echoed.

    schemas.py      the request bodies (pydantic), the error object, limits
    problems.py     a body that does not validate -> an OpenAI-style 400 in the caller's terms
    gate.py         ApiCORS, BearerAuth, BodyLimit: ASGI middleware that acts before any routing
    replies.py      messages -> question + history; Answer -> reply text, `rag` field, usage, SSE
    structured.py   tools/logprobs refused; response_format -> rag's JSON answer object
    engines.py      Engines: model id -> answer, and which model actually answered (fallback)
    completions.py  POST /v1/chat/completions and POST /v1/completions
    app.py          create_api: middleware, error handlers and the other routes
"""

from rag.api.app import create_api
from rag.api.engines import EXTRACTIVE_MODEL, Engines
from rag.api.gate import ApiCORS, BearerAuth, BodyLimit, bearer_ok, is_api_path
from rag.api.replies import (
    FALLBACK_NOTE,
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
    CompletionRequest,
    ContentPart,
    ResponseFormat,
    StreamOptions,
)
from rag.api.structured import ANSWER_SHAPE, answer_object

__all__ = [
    "ANSWER_SHAPE",
    "EXTRACTIVE_MODEL",
    "FALLBACK_NOTE",
    "MAX_BODY_BYTES",
    "MAX_MESSAGES",
    "MAX_MESSAGE_CHARS",
    "MAX_QUESTION_CHARS",
    "SOURCES_HEADER",
    "APIError",
    "ApiCORS",
    "BearerAuth",
    "BodyLimit",
    "ChatMessage",
    "ChatRequest",
    "CompletionRequest",
    "ContentPart",
    "Engines",
    "ResponseFormat",
    "StreamOptions",
    "answer_object",
    "bearer_ok",
    "cited_numbers",
    "create_api",
    "is_api_path",
    "rag_field",
    "reply_text",
    "split_messages",
    "split_sources_block",
]
