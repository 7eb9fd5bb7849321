"""What every answer backend is, and the shared half of the chat-model backends.

    Backend.generate(question, sources) -> raw text with [n] citations   (Verifier judges it)
    Backend.stream(question, sources)   -> the same text in pieces

`ChatBackend` is the part the OpenAI-compatible and the local llama.cpp backends share: the
excerpts a model is shown (`rag.evidence`), the two chat messages, and generate/stream on top
of the two calls each subclass supplies (`complete`, `complete_stream`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rag import evidence
from rag.prompts import SYSTEM_PROMPT, USER_TEMPLATE, format_source
from rag.settings import Settings
from rag.types import Source

Messages = list[dict[str, str]]
Selector = Callable[[str, list[Source], int], list[evidence.Excerpt]]


@runtime_checkable
class Backend(Protocol):
    name: str

    def generate(self, question: str, sources: list[Source]) -> str: ...

    def stream(self, question: str, sources: list[Source]) -> Iterator[str]: ...


@runtime_checkable
class Chat(Protocol):
    """A backend that can also hold a free conversation (condensing follow-ups, an LLM judge)."""

    def chat(self, messages: Messages, max_tokens: int = 400) -> str: ...


def lexical_selector(question: str, sources: list[Source], budget: int) -> list[evidence.Excerpt]:
    """Excerpts by word overlap alone (no embedder at hand): the fallback selector."""

    def vectors(src: Source) -> tuple[list[str], np.ndarray]:
        sentences = evidence.source_sentences(src)
        return sentences, np.zeros((len(sentences), 1), dtype=np.float32)

    return evidence.select(question, np.zeros(1, dtype=np.float32), sources, vectors, budget)


class ChatBackend:
    """Chat-model backends: plain prompt over focused excerpts; subclasses make the calls."""

    name = "chat"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Set by the Assistant to the embedding-aware selector; this one needs no model.
        self.selector: Selector = lexical_selector

    # ----------------------------------------------------------------- the subclass's part
    def complete(self, messages: Messages, max_tokens: int) -> str:
        raise NotImplementedError

    def complete_stream(self, messages: Messages, max_tokens: int) -> Iterator[str]:
        raise NotImplementedError

    # ---------------------------------------------------------------------------- shared
    def messages(self, question: str, sources: list[Source]) -> Messages:
        excerpts = self.selector(question, sources, self.settings.context_tokens)
        lines = [format_source(e.number, e.title, " ".join(e.sentences)) for e in excerpts]
        question = " ".join(question.split())
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {
                "role": "user",
                "content": USER_TEMPLATE.format(sources="\n\n".join(lines), question=question),
            },
        ]

    def chat(self, messages: Messages, max_tokens: int = 400) -> str:
        return self.complete(messages, max_tokens)

    def generate(self, question: str, sources: list[Source]) -> str:
        return self.complete(self.messages(question, sources), self.settings.llm_max_tokens)

    def stream(self, question: str, sources: list[Source]) -> Iterator[str]:
        yield from self.complete_stream(
            self.messages(question, sources), self.settings.llm_max_tokens
        )


def describe(backend: Any) -> str:
    return str(getattr(backend, "name", type(backend).__name__))
