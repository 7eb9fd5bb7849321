"""Answer backends behind one name → factory registry (the way `llm` registers its models).

    RAG_LLM=<name> ─► registry[name](settings) ─► Backend (generate / stream, maybe chat)

Built in: `extractive` (offline, quotes the sentences that answer), `openai` (any
OpenAI-compatible endpoint), `local` (a GGUF model in-process through llama-cpp-python). A new
backend is one module that calls `register("name")` on its factory: `Settings.llm` accepts any
registered name. A module in another package is found through the `rag.backends` entry-point
group, as llm finds its plugins (docs/architecture.md, "Adding a backend").
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from rag.backends.base import Backend, Chat, ChatBackend
from rag.errors import ConfigError
from rag.settings import Settings

log = logging.getLogger(__name__)

Factory = Callable[[Settings], Backend]
_REGISTRY: dict[str, Factory] = {}
_plugins_loaded = False


def register(name: str) -> Callable[[Factory], Factory]:
    def add(factory: Factory) -> Factory:
        _REGISTRY[name] = factory
        return factory

    return add


def names() -> list[str]:
    _load_plugins()
    return sorted(_REGISTRY)


def _load_plugins() -> None:
    """Import, once, the modules other packages name under the `rag.backends` entry-point group
    (`[project.entry-points."rag.backends"] mine = "my_pkg.backend"`); importing one runs its
    `register`. A plugin that fails to import is logged and skipped, never fatal."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for entry in entry_points(group="rag.backends"):
        try:
            entry.load()
        except Exception as exc:
            log.warning("answer backend plugin %s failed to load: %s", entry.value, exc)


def create(name: str, settings: Settings) -> Backend:
    _load_plugins()
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
