"""rag: retrieval-augmented Q&A over research-paper abstracts, with verified citations.

from rag import Assistant
assistant = Assistant()
assistant.ingest()
print(assistant.ask("What range of sequence lengths does Long Range Arena cover?").text)
"""

from rag.assistant import Assistant
from rag.errors import ConfigError, CorpusError, EmbeddingError, LLMError, RagError, StoreError
from rag.prompts import CANNOT_ANSWER
from rag.retrieve import Filters
from rag.settings import Settings
from rag.types import Answer, IngestFailure, IngestReport, Paper, Sentence, Source

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
