"""`Assistant`: the one engine behind the UI, the CLI, the HTTP API and the eval.

    question ─► condense (chat) ─► retrieve ─► [abstain if evidence is weak]
             ─► backend (openai | local | extractive) ─► verify ─► Answer

Everything expensive (embedding model, Chroma, LLM client) is built lazily from `Settings` and
can be injected instead, which is how the unit tests run in seconds with fakes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rag.answer import Backend, ExtractiveBackend, LocalBackend, OpenAIBackend, names_found
from rag.chat import condense, normalize_history, trim_history
from rag.chunking import Chunker
from rag.chunking import fingerprint as chunking_fingerprint
from rag.corpus import bundled_corpus_dir
from rag.errors import ConfigError, LLMError
from rag.ingest import Ingestor, Progress, ingest_lock
from rag.prompts import CANNOT_ANSWER, JUDGE_PROMPT
from rag.retrieve import Filters, Retriever
from rag.settings import Settings
from rag.store import Store, embedded_store_exists
from rag.types import Answer, IngestReport, Source
from rag.verify import Verifier

log = logging.getLogger(__name__)


class Assistant:
    """Ask questions about a corpus of abstracts and get verified, cited answers.

    >>> assistant = Assistant()
    >>> assistant.ingest()                       # the bundled corpus
    >>> assistant.ask("What range of sequence lengths does Long Range Arena cover?").text
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        embedder: Any | None = None,
        store: Store | None = None,
        llm: Backend | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self._embedder = embedder
        self._store = store
        self._llm = llm
        self._lock = threading.RLock()
        self._retriever: Retriever | None = None
        self._verifier: Verifier | None = None
        self.extractive = ExtractiveBackend()

    # ------------------------------------------------------------------------------ components
    @property
    def embedder(self) -> Any:
        with self._lock:
            if self._embedder is None:
                from rag.embeddings import get_embedder

                self._embedder = get_embedder(self.settings)
            return self._embedder

    @property
    def chunker(self) -> Chunker:
        """How an ingest chunks: the settings' sizes, chunks kept within the embedder's limit."""
        emb = self.embedder
        return Chunker(
            self.settings.chunk_tokens,
            self.settings.chunk_overlap,
            count_model_tokens=getattr(emb, "count_tokens", None),
            max_model_tokens=int(getattr(emb, "max_tokens", 256)),
        )

    @property
    def chunking(self) -> str:
        return chunking_fingerprint(self.settings.chunk_tokens, self.settings.chunk_overlap)

    @property
    def store(self) -> Store:
        with self._lock:
            if self._store is None:
                emb = self.embedder
                self._store = Store(
                    self.settings,
                    embed_fingerprint=str(
                        getattr(emb, "fingerprint", None) or getattr(emb, "model_name", "custom")
                    ),
                    dim=int(
                        getattr(emb, "dim", 0) or len(emb.get_query_embedding("dimension probe"))
                    ),
                    chunking=self.chunking,
                )
            return self._store

    @property
    def retriever(self) -> Retriever:
        with self._lock:
            if self._retriever is None:
                if self.settings.retrieval == "hybrid":
                    from rag.hybrid import HybridRetriever

                    self._retriever = HybridRetriever(self.store, self.embedder, self.settings)
                else:
                    self._retriever = Retriever(self.store, self.embedder)
            return self._retriever

    @property
    def llm(self) -> Backend:
        """The configured answer backend (extractive when none is configured)."""
        with self._lock:
            if self._llm is None:
                kind = self.settings.resolved_llm
                if kind == "openai":
                    if not (self.settings.llm_base_url or self.settings.openai_api_key):
                        raise ConfigError(
                            "RAG_LLM=openai needs RAG_LLM_BASE_URL (any OpenAI-compatible endpoint) "
                            "or OPENAI_API_KEY; set one, or use RAG_LLM=extractive"
                        )
                    self._llm = OpenAIBackend(self.settings)
                elif kind == "local":
                    self._llm = LocalBackend(self.settings)
                else:
                    self._llm = self.extractive
            return self._llm

    @property
    def verifier(self) -> Verifier:
        with self._lock:
            if self._verifier is None:
                judge = None
                if self.settings.verify_judge == "llm" and isinstance(self.llm, OpenAIBackend):
                    judge = self._llm_judge
                self._verifier = Verifier(
                    self.embedder, policy=self.settings.unsupported, llm_judge=judge
                )
            return self._verifier

    def _llm_judge(self, claim: str, source: str) -> bool:
        assert isinstance(self.llm, OpenAIBackend)
        reply = self.llm.chat(
            [{"role": "user", "content": JUDGE_PROMPT.format(source=source, claim=claim)}], 3
        )
        return reply.strip().lower().startswith("yes")

    # ---------------------------------------------------------------------------------- ingest
    def ingest(
        self,
        paths: Sequence[str | Path] | None = None,
        *,
        rebuild: bool = False,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Add papers from files or directories (None = the bundled corpus). Safe to repeat."""
        targets = [Path(p) for p in paths] if paths else [bundled_corpus_dir()]
        emb = self.embedder
        chunker = self.chunker
        # The lock comes first: a --rebuild must never drop a collection another ingest is filling.
        with ingest_lock(self.settings.data_dir):
            if rebuild:
                self._reset_store()
            # No store on disk yet: nothing to skip, so encoding starts while it is opened.
            fresh = (
                self._store is None
                and not self.settings.chroma_host
                and not embedded_store_exists(self.settings)
            )
            ingestor = Ingestor(
                (lambda: self.store) if fresh else self.store,
                emb,
                chunker,
                self.chunking,
                self.settings.max_abstract_chars,
                on_chunks=self._prepare_bm25,
                fresh=fresh,
                max_id_chars=self.settings.max_id_chars,
            )
            report = ingestor.run(targets, progress=progress)
        if hasattr(self.retriever, "refresh"):
            self.retriever.refresh()
        return report

    def _prepare_bm25(self, ids: list[str], texts: list[str]) -> None:
        """A hybrid retriever tokenises new chunks while the ingest runs (resolved here, in the
        ingest's writing thread, because it needs the store, which that thread has opened)."""
        prepare = getattr(self.retriever, "prepare", None)
        if prepare:
            prepare(ids, texts)

    def _reset_store(self) -> None:
        import chromadb  # noqa: F401 - make sure the client is importable before deleting

        with self._lock:
            store = self._store
            if store is None:
                try:
                    store = self.store
                except Exception:
                    from rag.store import _client

                    _client(self.settings).delete_collection(self.settings.collection)
                    self._store = None
                    self._retriever = None
                    return
            store.reset()
            self._retriever = None

    def is_empty(self) -> bool:
        return self.store.count() == 0

    def info(self) -> dict[str, Any]:
        store = self.store
        return {
            "papers": store.paper_count(),
            "chunks": store.count(),
            "store": store.where,
            "collection": self.settings.collection,
            "embedding_model": getattr(self.embedder, "fingerprint", self.settings.embed_model),
            "chunking": self.chunking,
            "backend": self.settings.resolved_llm,
            "retrieval": self.settings.retrieval,
        }

    # -------------------------------------------------------------------------------- retrieve
    def retrieve(
        self, question: str, top_k: int | None = None, filters: Filters | None = None
    ) -> list[Source]:
        question = _check_question(question)
        return self.retriever.search(question, top_k or self.settings.top_k, filters)

    # ------------------------------------------------------------------------------------- ask
    def ask(
        self,
        question: str,
        top_k: int | None = None,
        *,
        filters: Filters | None = None,
        history: Sequence[Any] | None = None,
    ) -> Answer:
        """Answer one question (optionally as a follow-up in a conversation)."""
        answer = None
        for item in self.ask_stream(
            question, top_k, filters=filters, history=history, stream=False
        ):
            if isinstance(item, Answer):
                answer = item
        assert answer is not None
        return answer

    def chat(self, history: Sequence[Any] | None, message: str, top_k: int | None = None) -> Answer:
        """A conversation turn: the follow-up is condensed into a standalone question first."""
        return self.ask(message, top_k, history=history)

    def ask_stream(
        self,
        question: str,
        top_k: int | None = None,
        *,
        filters: Filters | None = None,
        history: Sequence[Any] | None = None,
        stream: bool = True,
    ) -> Iterator[str | Answer]:
        """Yield text pieces as the backend produces them, then the final verified `Answer`.

        The pieces are a preview; the `Answer` (verified) is what the user should end up seeing.
        """
        question = _check_question(question)
        backend = self.llm  # a misconfigured backend fails now, not after retrieval
        timings: dict[str, float] = {}
        started = time.perf_counter()
        standalone = question
        messages = normalize_history(history)
        if messages:
            messages = trim_history(messages, self.settings.history_tokens)
            llm_chat = self.llm.chat if isinstance(self.llm, OpenAIBackend) else None
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
        }
        if not self._evidence_ok(standalone, sources):
            timings["total"] = time.perf_counter() - started
            yield Answer(
                text=CANNOT_ANSWER,
                sources=sources,
                abstained=True,
                backend=backend.name,
                notice=notice,
                timings=timings,
                **base,
            )
            return
        t = time.perf_counter()
        try:
            if stream:
                pieces: list[str] = []
                for piece in backend.stream(standalone, sources):
                    pieces.append(piece)
                    yield piece
                raw = "".join(pieces)
            else:
                raw = backend.generate(standalone, sources)
        except LLMError as exc:
            log.warning("LLM failed, falling back to extractive: %s", exc)
            notice = f"The language model failed ({exc}); this is the extractive answer instead."
            backend = self.extractive
            raw = backend.generate(standalone, sources)
            if stream:
                yield "\n\n"
        timings["answer"] = time.perf_counter() - t
        t = time.perf_counter()
        text, sentences = self.verifier.verify(raw, sources)
        timings["verify"] = time.perf_counter() - t
        abstained = not text
        timings["total"] = time.perf_counter() - started
        yield Answer(
            text=text or CANNOT_ANSWER,
            sources=sources,
            sentences=sentences,
            abstained=abstained,
            backend=backend.name,
            notice=notice,
            timings=timings,
            **base,
        )

    def _evidence_ok(self, question: str, sources: list[Source]) -> bool:
        """Worth answering: the best source is close enough, or names all the question names."""
        if not sources:
            return False
        return sources[0].score >= self.settings.min_score or names_found(question, sources[0])

    def _filters_for(self, question: str, filters: Filters | None) -> Filters | None:
        from rag.query import parse_filters

        parsed = parse_filters(question)
        if filters is None or filters.is_empty():
            return parsed if parsed and not parsed.is_empty() else filters
        return filters


def _check_question(question: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise ConfigError("the question is empty; type a question about the papers")
    question = " ".join(question.split())
    if len(question) > 2000:
        raise ConfigError("the question is over 2,000 characters; shorten it")
    return question


ProgressCallback = Callable[[int, int | None], None]
