"""The ask pipeline, one pass per question, over parts handed in by `Assistant`.

    question ─► condense (follow-ups) ─► filters (explicit, or read from the question)
             ─► retrieve ─► evidence gate (abstain before any model call)
             ─► backend.stream / generate ─► verify sentence by sentence ─► Answer

What reaches the user is verified text only: while a backend streams, each sentence is judged
as soon as the next one starts, and only what survives is passed on (an unsupported sentence
never appears, not even for a moment). An `LLMError` from the backend becomes the extractive
answer with a notice naming the failure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from rag.answer import names_found
from rag.backends.base import Backend, Chat
from rag.chat import condense, normalize_history, trim_history
from rag.errors import LLMError
from rag.prompts import CANNOT_ANSWER
from rag.retrieve import Filters
from rag.settings import Settings
from rag.text import split_sentences
from rag.types import Answer, Sentence, Source
from rag.verify import Verifier, render

log = logging.getLogger(__name__)


@dataclass
class Pipeline:
    settings: Settings
    retriever: Any  # .search(question, top_k, filters) -> list[Source]
    backend: Backend
    fallback: Backend  # the extractive backend
    verifier: Verifier
    parse_filters: Callable[[str], Filters | None]

    def run(
        self,
        question: str,
        top_k: int | None = None,
        *,
        filters: Filters | None = None,
        history: Sequence[Any] | None = None,
        stream: bool = True,
    ) -> Iterator[str | Answer]:
        """Yield verified text pieces (when streaming), then the final `Answer`."""
        backend = self.backend
        timings: dict[str, float] = {}
        started = time.perf_counter()
        standalone = question
        messages = normalize_history(history)
        if messages:
            messages = trim_history(messages, self.settings.history_tokens)
            llm_chat = backend.chat if isinstance(backend, Chat) else None
            standalone = condense(messages, question, llm_chat)
        explicit = filters is not None and not filters.is_empty()
        filters = self._filters_for(standalone, filters)
        notice = None
        top_k = top_k or self.settings.top_k
        t = time.perf_counter()
        sources = self.retriever.search(standalone, top_k, filters)
        if (
            not explicit
            and filters is not None
            and not filters.is_empty()
            and (not sources or sources[0].score < self.settings.min_score)
        ):
            described = ", ".join(f"{k} {v}" for k, v in filters.describe().items())
            notice = f"No paper matched the filter read from the question ({described}); searched all papers."
            filters = None
            sources = self.retriever.search(standalone, top_k, None)
        timings["retrieve"] = time.perf_counter() - t
        base = {
            "question": question,
            "standalone_question": standalone if standalone != question else None,
            "filters": filters.describe() if filters else {},
            "sources": sources,
            "notice": notice,
            "timings": timings,
        }
        if not self.evidence_ok(standalone, sources):
            timings["total"] = time.perf_counter() - started
            yield Answer(text=CANNOT_ANSWER, abstained=True, backend=backend.name, **base)
            return
        t = time.perf_counter()
        kept: list[Sentence] = []
        try:
            pieces = (
                backend.stream(standalone, sources)
                if stream
                else iter([backend.generate(standalone, sources)])
            )
            for shown in self._verified(pieces, sources, kept, timings, t):
                if stream:
                    yield shown
        except LLMError as exc:
            log.warning("LLM failed, falling back to extractive: %s", exc)
            base["notice"] = (
                f"The language model failed ({exc}); this is the extractive answer instead."
            )
            backend = self.fallback
            if stream and kept:
                yield "\n\n"
            kept = []
            raw = backend.generate(standalone, sources)
            for shown in self._verified(iter([raw]), sources, kept, timings, t):
                if stream:
                    yield shown
        timings["answer"] = time.perf_counter() - t - timings.get("verify", 0.0)
        supported = any(s.supported for s in kept)
        timings["total"] = time.perf_counter() - started
        yield Answer(
            text=render(kept) if supported else CANNOT_ANSWER,
            sentences=kept if supported or self.settings.unsupported == "flag" else [],
            abstained=not supported,
            backend=backend.name,
            **base,
        )

    def _verified(
        self,
        pieces: Iterator[str],
        sources: list[Source],
        kept: list[Sentence],
        timings: dict[str, float],
        started: float,
    ) -> Iterator[str]:
        """Judge each sentence once it is complete (the next one has begun, or the text ended);
        append the judged sentences to `kept` and yield the rendering of each one shown."""
        buffer = ""
        done = 0  # sentences of `buffer` already judged

        def judge(sentence: str) -> Iterator[str]:
            t = time.perf_counter()
            _text, judged = self.verifier.verify(sentence, sources)
            timings["verify"] = timings.get("verify", 0.0) + time.perf_counter() - t
            for s in judged:
                if "first_text" not in timings:
                    timings["first_text"] = time.perf_counter() - started
                kept.append(s)
                yield render([s]) + " "

        for piece in pieces:
            buffer += piece
            sentences = split_sentences(buffer)
            while done < len(sentences) - 1:
                yield from judge(sentences[done])
                done += 1
        for sentence in split_sentences(buffer)[done:]:
            yield from judge(sentence)

    def evidence_ok(self, question: str, sources: list[Source]) -> bool:
        """Worth answering: the best source is close enough, or names all the question names."""
        if not sources:
            return False
        return sources[0].score >= self.settings.min_score or names_found(question, sources[0])

    def _filters_for(self, question: str, filters: Filters | None) -> Filters | None:
        parsed = self.parse_filters(question)
        if filters is None or filters.is_empty():
            return parsed if parsed and not parsed.is_empty() else filters
        return filters
