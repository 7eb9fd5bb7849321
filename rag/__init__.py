"""rag: retrieval-augmented Q&A over research-paper abstracts, with verified citations.

from rag import Assistant
assistant = Assistant()
assistant.ingest()
print(assistant.ask("What range of sequence lengths does Long Range Arena cover?").text)
"""

import typing as _typing

from rag.errors import ConfigError, CorpusError, EmbeddingError, LLMError, RagError, StoreError
from rag.prompts import CANNOT_ANSWER
from rag.settings import Settings
from rag.types import Answer, IngestFailure, IngestReport, Paper, Sentence, Source

if _typing.TYPE_CHECKING:
    from rag.assistant import Assistant
    from rag.retrieve import Filters

# Assistant and Filters pull in llama-index, Chroma and numpy (~4 s); they load on first use so
# that `import rag.cli` (and `rag --help`) stays fast.
_LAZY = {"Assistant": "rag.assistant", "Filters": "rag.retrieve"}


def __getattr__(name: str) -> _typing.Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rag' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CANNOT_ANSWER",
    "Answer",
    "Assistant",
    "ConfigError",
    "CorpusError",
    "EmbeddingError",
    "Filters",
    "IngestFailure",
    "IngestReport",
    "LLMError",
    "Paper",
    "RagError",
    "Sentence",
    "Settings",
    "Source",
    "StoreError",
]
__version__ = "0.1.0"
