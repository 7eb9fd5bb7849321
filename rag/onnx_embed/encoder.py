"""`OnnxEmbedding`: the llama-index embedder over the cached ONNX model.

    texts ─► word pieces (memo from count_tokens, else the tokenizer) ─► sorted by length
          ─► batches, `workers` at a time (one core each) ─► pooled, normalised float32 rows

The model file comes from rag.onnx_embed.build (built on first use); running it from
rag.onnx_embed.session.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import PrivateAttr

from rag.embed_base import EncoderEmbedding, resolve_model_path
from rag.errors import ConfigError, EmbeddingError
from rag.onnx_embed.build import RECIPE, Quantize, ensure_model
from rag.onnx_embed.session import check_cuda, feed, load_tokenizer, mean_pool, open_session, pad
from rag.settings import BUNDLED_MODEL

_PIECES_KEPT = 8192  # counted texts whose word pieces `encode` may reuse (~3 ingest batches)


class OnnxEmbedding(EncoderEmbedding):
    """A sentence-transformers model on ONNX Runtime (int8 by default), normalised vectors."""

    max_tokens: int = 256
    dim: int = 384
    fingerprint: str = ""
    onnx_path: str = ""
    workers: int = 1
    device: str = "cpu"
    _session: Any = PrivateAttr(default=None)
    _pool: Any = PrivateAttr(default=None)
    _pool_lock: Any = PrivateAttr(default_factory=threading.Lock)
    _tokenizer: Any = PrivateAttr(default=None)
    _pieces: dict[str, list[int]] = PrivateAttr(default_factory=dict)
    _counter: Any = PrivateAttr(default=None)
    _pooling: str = PrivateAttr(default="mean")

    def __init__(
        self,
        model: str = BUNDLED_MODEL,
        batch_size: int = 1,  # see rag.device.BEST_BATCH
        *,
        quantize: Quantize = "int8",
        workers: int | None = None,
        cache_dir: Path | None = None,
        device: str = "cpu",
        **kwargs: Any,
    ) -> None:
        model_dir = resolve_model_path(model)
        pooling = _pooling_mode(model_dir)
        st_config = model_dir / "sentence_bert_config.json"
        max_tokens = (
            int(json.loads(st_config.read_text()).get("max_seq_length", 256))
            if st_config.is_file()
            else 256
        )
        dim = int(json.loads((model_dir / "config.json").read_text())["hidden_size"])
        if device == "cuda":  # before a build that would be wasted without a GPU
            check_cuda()
        path = ensure_model(model_dir, quantize, cache_dir)
        try:
            session = open_session(path, 1, device)
        except ConfigError:
            raise
        except Exception as exc:
            raise EmbeddingError(
                f"cannot load the ONNX model {path} ({exc}); delete {path.parent} so it is rebuilt"
            ) from exc
        # fp32 ONNX reproduces torch, so it shares torch's fingerprint (and stores).
        suffix = "" if quantize == "none" else f":onnx-{RECIPE[quantize]}"
        super().__init__(
            model_name=model,
            embed_batch_size=batch_size,
            max_tokens=max_tokens,
            dim=dim,
            fingerprint=f"{model}:{dim}{suffix}",
            onnx_path=str(path),
            # One GPU runs one batch at a time; on the CPU, one text per core at once.
            workers=1 if device == "cuda" else workers or len(os.sched_getaffinity(0)),
            device=device,
            **kwargs,
        )
        self._session = session
        self._tokenizer = load_tokenizer(model_dir, max_tokens)
        self._counter = load_tokenizer(model_dir, None)
        self._pooling = pooling

    @classmethod
    def class_name(cls) -> str:
        return "RagOnnxEmbedding"

    @property
    def tokenizer(self) -> Any:
        """The model's `tokenizers.Tokenizer` (truncating at `max_tokens`)."""
        return self._tokenizer

    def count_tokens(self, text: str) -> int:
        """Word pieces the model sees for `text`, special tokens included, before truncation.

        Chunking counts every chunk it makes, and those chunks are encoded next: their word
        pieces are kept (a bounded memo) so `encode` does not tokenise them a second time."""
        ids = self._counter.encode(text).ids
        if len(ids) <= self.max_tokens:  # what the truncating tokenizer would give too
            if len(self._pieces) >= _PIECES_KEPT:
                self._pieces.clear()
            self._pieces[text] = ids
        return len(ids)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalised float32 vectors, one row per text.

        Batches (one text each by default) run `workers` at a time, each on one core: ORT
        releases the GIL, and separate runs use two cores better than one run split across
        them (10.2 s vs 11.6 s for the bundled chunks on two cores). A text's vector does not
        depend on which worker ran it.
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        rows: list[Any] = [self._pieces.pop(t, None) for t in texts]
        todo = [i for i, row in enumerate(rows) if row is None]
        if todo:
            for i, enc in zip(
                todo, self._tokenizer.encode_batch([texts[i] for i in todo]), strict=True
            ):
                rows[i] = enc.ids
        # Longest first: similar lengths share a batch, and the last runs are the short ones.
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]), reverse=True)
        step = self.embed_batch_size
        batches = [order[start : start + step] for start in range(0, len(order), step)]

        def run(idx: list[int]) -> None:
            ids, mask = pad([rows[i] for i in idx])
            hidden = self._session.run(None, feed(ids, mask))[0]
            if self._pooling == "cls":
                pooled = hidden[:, 0]
                out[idx] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            else:
                out[idx] = mean_pool(hidden, mask)

        if len(batches) == 1 or self.workers == 1:
            for idx in batches:
                run(idx)
        else:
            for _ in self._executor().map(run, batches):
                pass  # map re-raises a worker's error here
        return out

    def _executor(self) -> Any:
        with self._pool_lock:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="rag-encode")
            return self._pool


def _pooling_mode(model_dir: Path) -> str:
    config = model_dir / "1_Pooling" / "config.json"
    if not config.is_file():
        return "mean"
    modes = json.loads(config.read_text())
    if modes.get("pooling_mode_mean_tokens"):
        return "mean"
    if modes.get("pooling_mode_cls_token"):
        return "cls"
    raise EmbeddingError(
        f"{model_dir} uses a pooling the ONNX backend does not implement (only mean and CLS); "
        "set RAG_EMBED_BACKEND=torch"
    )
