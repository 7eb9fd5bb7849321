"""`Assistant`: the one engine behind the UI, the CLI, the HTTP API and the eval.

    question ─► rag.pipeline.Pipeline: condense ─► retrieve ─► [abstain if evidence is weak]
             ─► backend (rag.backends: extractive | openai | local) ─► verify ─► Answer

Everything expensive (embedding model, Chroma, LLM client) is built lazily from `Settings` and
can be injected instead, which is how the unit tests run in seconds with fakes.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rag import backends
from rag.answer import ExtractiveBackend
from rag.backends import Backend, Chat, ChatBackend
from rag.chunking import Chunker
from rag.chunking import fingerprint as chunking_fingerprint
from rag.corpus import bundled_corpus_dir
from rag.errors import ConfigError
from rag.ingest import Ingestor, Progress, ingest_lock
from rag.pipeline import Pipeline
from rag.prompts import JUDGE_PROMPT
from rag.retrieve import Filters, Retriever
from rag.settings import Settings
from rag.store import Store, bump_generation, embedded_store_exists, generation
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
        # The store generation (rag.store.generation) this assistant's store and BM25 reflect.
        self._generation: Any = _UNSEEN
        self.extractive = ExtractiveBackend(max_sentences=self.settings.extractive_sentences)

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
        self._follow_store_changes()
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

    def _follow_store_changes(self) -> None:
        """Reopen the store and refresh BM25 (on its next search) when an ingest elsewhere (another
        process, another Assistant) has changed the store since this one last looked: one `stat`
        per call, so a running server sees outside ingests and rebuilds without a restart."""
        seen = generation(self.settings)
        if seen == self._generation:
            return
        with self._lock:
            if seen == self._generation:
                return
            if self._generation is not _UNSEEN:
                if self._store is not None:
                    self._store.reopen()
                invalidate = getattr(self._retriever, "invalidate", None)
                if invalidate:
                    invalidate()
            self._generation = seen

    @property
    def retriever(self) -> Retriever:
        self._follow_store_changes()
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
                self._llm = (
                    self.extractive
                    if kind == "extractive"
                    else backends.create(kind, self.settings)
                )
            if isinstance(self._llm, ChatBackend) and self._llm.selector is not self.excerpts:
                self._llm.selector = self.excerpts
            return self._llm

    def excerpts(self, question: str, sources: list[Source], budget: int) -> list[Any]:
        """The sentences of each source an LLM is shown (rag.evidence): ranked by the fitted
        answerability model (RAG_EXCERPT_RANK=answerable) or by embedding + words."""
        from rag import evidence
        from rag.embeddings import encode

        vector = encode(self.embedder, [question])[0]
        answers = None
        if self.settings.excerpt_rank == "answerable":
            probability = {
                (c.source.number, c.sentence): c.probability
                for c in self.extractive.candidates(question, sources)
            }

            def answers(number: int, sentence: str) -> float | None:
                return probability.get((number, sentence))

        return evidence.select(
            question, vector, sources, self.verifier.sentence_vectors, budget, answers=answers
        )

    @property
    def verifier(self) -> Verifier:
        with self._lock:
            if self._verifier is None:
                judge = None
                if self.settings.verify_judge == "llm" and isinstance(self.llm, Chat):
                    judge = self._llm_judge
                self._verifier = Verifier(
                    self.embedder, policy=self.settings.unsupported, llm_judge=judge
                )
            return self._verifier

    def _llm_judge(self, claim: str, source: str) -> bool:
        llm = self.llm
        assert isinstance(llm, Chat)
        reply = llm.chat(
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
        ray: str | None = None,
    ) -> IngestReport:
        """Add papers from files or directories (None = the bundled corpus). Safe to repeat.

        `ray` (default RAG_RAY_ADDRESS): encode on a Ray cluster, `auto`, `local` or its address
        (rag.ray_ingest; the `ray` extra). The store is the one a local ingest makes."""
        if paths and any(isinstance(p, str) and not p.strip() for p in paths):
            raise ConfigError(
                "an empty path was given; name a file or directory to ingest (`.` for the "
                "current directory)"
            )
        targets = [Path(p) for p in paths] if paths else [bundled_corpus_dir()]
        emb = self.embedder
        chunker = self.chunker
        # The lock comes first: a --rebuild must never drop a collection another ingest is filling.
        with ingest_lock(self.settings.data_dir):
            report: IngestReport | None = None
            try:
                if rebuild:
                    self._reset_store()
                    bump_generation(self.settings)  # running servers drop the deleted collection
                report = self._ingest_locked(
                    targets, emb, chunker, progress, ray or self.settings.ray_address
                )
                # Inside the lock: BM25 is written by one ingest at a time, and repaired here
                # when it no longer matches the store (rag.hybrid validates it on load).
                if hasattr(self.retriever, "refresh"):
                    self.retriever.refresh()
            finally:
                if report is None or rebuild or report.chunks_written or report.chunks_relabelled:
                    bump_generation(self.settings)  # running servers reopen and refresh BM25
                self._generation = generation(self.settings)
        return report  # type: ignore[return-value]  # set, or the ingest raised

    def _ingest_locked(
        self,
        targets: list[Path],
        emb: Any,
        chunker: Chunker,
        progress: Progress | None,
        ray: str | None = None,
    ) -> IngestReport:
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
        if not ray:
            return ingestor.run(targets, progress=progress)
        from rag.ray_ingest import RayEncodeStage

        stage = RayEncodeStage(self.settings, emb, address=ray)
        ingestor.encode_stage = stage
        try:
            return ingestor.run(targets, progress=progress)
        finally:
            stage.close()

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
        categories: Sequence[str] | None = None,
    ) -> Answer:
        """Answer one question (optionally as a follow-up in a conversation). `categories`
        (arXiv codes or names: "cs.CL", "Machine Learning") keeps papers in any of them."""
        answer = None
        for item in self.ask_stream(
            question, top_k, filters=filters, history=history, stream=False, categories=categories
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
        categories: Sequence[str] | None = None,
    ) -> Iterator[str | Answer]:
        """Yield verified text pieces as the backend produces them, then the final `Answer`."""
        question = _check_question(question)
        if categories:
            from rag.arxiv import resolve

            codes = resolve(list(categories))
            filters = (filters or Filters()).model_copy(update={"categories": codes})
        yield from self.pipeline().run(
            question, top_k, filters=filters, history=history, stream=stream
        )

    def pipeline(self, backend: Backend | None = None) -> Pipeline:
        """The ask pipeline over this assistant's parts (another backend may be swapped in)."""
        from rag.query import parse_filters

        llm = backend or self.llm  # a misconfigured backend fails now, not after retrieval
        if isinstance(llm, ChatBackend) and llm.selector is not self.excerpts:
            llm.selector = self.excerpts
        return Pipeline(
            settings=self.settings,
            retriever=self.retriever,
            backend=llm,
            fallback=self.extractive,
            verifier=self.verifier,
            parse_filters=parse_filters,
            excerpts=self.excerpts,
        )


def _check_question(question: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise ConfigError("the question is empty; type a question about the papers")
    if bad := _SURROGATE.search(question):
        raise ConfigError(
            f"the question is not valid text (a lone surrogate U+{ord(bad.group()):04X} at "
            f"character {bad.start() + 1}: bytes that are not UTF-8, or a broken \\u escape); "
            "retype it, or set your terminal to UTF-8 (e.g. LANG=C.UTF-8)"
        )
    question = " ".join(question.split())
    if len(question) > 2000:
        raise ConfigError("the question is over 2,000 characters; shorten it")
    return question


_UNSEEN = object()
_SURROGATE = re.compile("[\ud800-\udfff]")

ProgressCallback = Callable[[int, int | None], None]
