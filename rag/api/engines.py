"""Model id -> how a question is answered, and whether an answer came from the model asked for.

Engines.get(model) ─► (id, ask): the configured backend's id is `Assistant.ask`, the
    extractive id the same assistant's pipeline over its extractive backend
Engines.shown_model(model, answer) ─► the id of the backend that actually wrote the answer
    (the extractive id when the LLM-backed model fell back)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from rag.api.schemas import APIError
from rag.assistant import Assistant
from rag.retrieve import Filters
from rag.types import Answer
from rag.verify import Verifier

EXTRACTIVE_MODEL = "rag-extractive"
MAX_ECHOED_MODEL = 80  # characters of an unknown model name repeated in the 404

# ask(question, top_k, *, history=None) -> Answer
Ask = Callable[..., Answer]


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
            shown = model if len(model) <= MAX_ECHOED_MODEL else f"{model[:MAX_ECHOED_MODEL]}…"
            raise APIError(
                404,
                f"the model '{shown}' does not exist; use one of: {', '.join(self.ids)} "
                "(GET /v1/models lists them)",
                param="model",
                code="model_not_found",
            )
        if model == self.default:
            return model, self.assistant.ask
        return model, self._ask_extractive

    def _ask_extractive(
        self,
        question: str,
        top_k: int | None = None,
        *,
        history: Any = None,
        categories: list[str] | None = None,
    ) -> Answer:
        """The extractive answer (the question is already checked by `split_messages`)."""
        assistant = self.assistant
        pipeline = assistant.pipeline(assistant.extractive)
        if assistant.settings.verify_judge == "llm":
            # The LLM judge is the configured chat backend's; extractive answers are judged
            # offline, as an assistant configured for the extractive backend judges them.
            pipeline = replace(pipeline, verifier=self._offline_verifier())
        answer = None
        filters = Filters(categories=categories) if categories else None
        for item in pipeline.run(question, top_k, filters=filters, history=history, stream=False):
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

    def shown_model(self, model: str, answer: Answer) -> str:
        """The id of what wrote `answer`: the extractive id when the LLM-backed `model` fell back
        to the sources' own sentences (the LLM failed, or nothing it wrote held up)."""
        if model != EXTRACTIVE_MODEL and answer.backend == self.assistant.extractive.name:
            return EXTRACTIVE_MODEL
        return model
