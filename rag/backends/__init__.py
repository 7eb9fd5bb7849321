"""Answer backends behind one name → factory registry (the way `llm` registers its models).

    RAG_LLM=<name> ─► registry[name](settings) ─► Backend (generate / stream, maybe chat)

Built in: `extractive` (offline, quotes the sentences that answer), `openai` (any
OpenAI-compatible endpoint), `local` (a GGUF model in-process through llama-cpp-python). A new
backend is one module that calls `register("name")` on its factory, plus its name in
`Settings.llm`.
"""

from __future__ import annotations

from collections.abc import Callable

from rag.backends.base import Backend, Chat, ChatBackend
from rag.errors import ConfigError
from rag.settings import Settings

Factory = Callable[[Settings], Backend]
_REGISTRY: dict[str, Factory] = {}


def register(name: str) -> Callable[[Factory], Factory]:
    def add(factory: Factory) -> Factory:
        _REGISTRY[name] = factory
        return factory

    return add


def names() -> list[str]:
    return sorted(_REGISTRY)


def create(name: str, settings: Settings) -> Backend:
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown RAG_LLM={name!r}; use one of: {', '.join(names())}") from None
    return factory(settings)


@register("extractive")
def _extractive(settings: Settings) -> Backend:
    from rag.answer import ExtractiveBackend

    return ExtractiveBackend(max_sentences=settings.extractive_sentences)


@register("openai")
def _openai(settings: Settings) -> Backend:
    if not (settings.llm_base_url or settings.openai_api_key):
        raise ConfigError(
            "RAG_LLM=openai needs RAG_LLM_BASE_URL (any OpenAI-compatible endpoint) "
            "or OPENAI_API_KEY; set one, or use RAG_LLM=extractive"
        )
    from rag.backends.openai_compat import OpenAIBackend

    return OpenAIBackend(settings)


@register("local")
def _local(settings: Settings) -> Backend:
    from rag.backends.local import LocalBackend

    return LocalBackend(settings)


__all__ = ["Backend", "Chat", "ChatBackend", "create", "names", "register"]
