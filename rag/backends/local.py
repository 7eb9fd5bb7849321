"""A GGUF chat model run in-process by llama-cpp-python (extra `local`).

    RAG_LLM_GGUF, or the bundled Qwen2.5-Coder-1.5B-Instruct (`model_file.bundled_gguf`)
      ─► llama_cpp.Llama (loaded once per file and process, its chat template from the GGUF)
      ─► create_chat_completion(ChatBackend.messages) ─► text / streamed deltas

One model answers one question at a time (a lock): llama.cpp contexts are not thread-safe and
two answers at once on two cores would only make both slow.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

from rag.backends.base import ChatBackend, Messages
from rag.backends.model_file import bundled_gguf
from rag.errors import ConfigError, LLMError
from rag.settings import Settings

_MODELS: dict[str, Any] = {}
_LOAD_LOCK = threading.Lock()


@atexit.register
def _close_models() -> None:
    """Free llama.cpp models before interpreter shutdown (its __del__ then fails noisily)."""
    for model in _MODELS.values():
        with contextlib.suppress(Exception):
            model.close()
    _MODELS.clear()


def load(path: str, n_ctx: int = 4096) -> Any:
    with _LOAD_LOCK:
        if path not in _MODELS:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise ConfigError(
                    "RAG_LLM=local needs llama-cpp-python: pip install -e '.[local]'"
                ) from exc
            try:
                _MODELS[path] = Llama(
                    model_path=path,
                    n_ctx=n_ctx,
                    n_threads=max(1, len(os.sched_getaffinity(0))),
                    verbose=False,
                )
            except Exception as exc:
                raise ConfigError(
                    f"cannot load the GGUF model {path}: {exc}; check RAG_LLM_GGUF"
                ) from exc
        return _MODELS[path]


class LocalBackend(ChatBackend):
    """A local instruction-tuned GGUF model, prompted like any chat endpoint."""

    def __init__(self, settings: Settings, llm: Any | None = None) -> None:
        super().__init__(settings)
        path = str(settings.llm_gguf) if settings.llm_gguf else str(bundled_gguf())
        self.name = f"local:{os.path.basename(path)}"
        self.llm = llm if llm is not None else load(path)
        self._lock = threading.Lock()

    def _call(self, messages: Messages, max_tokens: int, stream: bool) -> Any:
        return self.llm.create_chat_completion(
            messages=messages,
            max_tokens=max_tokens,
            temperature=self.settings.llm_temperature,
            stream=stream,
        )

    def complete(self, messages: Messages, max_tokens: int) -> str:
        with self._lock:
            try:
                out = self._call(messages, max_tokens, stream=False)
            except Exception as exc:
                raise LLMError(f"the local model failed: {type(exc).__name__}: {exc}") from exc
        text = (out["choices"][0]["message"].get("content") or "").strip()
        if not text:
            raise LLMError("the local model returned an empty answer")
        return text

    def complete_stream(self, messages: Messages, max_tokens: int) -> Iterator[str]:
        got_any = False
        with self._lock:
            try:
                for part in self._call(messages, max_tokens, stream=True):
                    piece = part["choices"][0].get("delta", {}).get("content")
                    if piece:
                        got_any = True
                        yield piece
            except Exception as exc:
                raise LLMError(f"the local model failed: {type(exc).__name__}: {exc}") from exc
        if not got_any:
            raise LLMError("the local model returned an empty answer")
