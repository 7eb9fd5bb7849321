"""The exceptions `rag` raises on purpose. Every message says what to do next.

    RagError                  base class; front-ends catch it and show its message
    ├── ConfigError           a setting is missing or contradicts another
    ├── CorpusError           an input file cannot be read (carries file and line)
    ├── StoreError            the Chroma store is unreachable, locked, corrupt or built differently
    ├── EmbeddingError        the embedding model cannot be loaded
    └── LLMError              the answering model failed after its retries

Anything else that escapes is a bug and deserves a traceback.
"""

from __future__ import annotations


class RagError(Exception):
    """Base of every error `rag` raises deliberately; `str(err)` is a complete, user-facing message."""


class ConfigError(RagError):
    """A setting is missing, malformed or inconsistent."""


class CorpusError(RagError):
    """An input file or record cannot be used. `file` and `line` locate it when known."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        self.file = file
        self.line = line
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(f"{where}{message}")
        self.reason = message


class StoreError(RagError):
    """The vector store cannot be opened or used as configured."""


class EmbeddingError(RagError):
    """The embedding model cannot be loaded or used."""


class LLMError(RagError):
    """The language model endpoint failed (after retries) or answered with garbage."""
