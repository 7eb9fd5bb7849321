"""The Chroma vector store: embedded (PersistentClient under RAG_DATA_DIR) or a `chroma run` server.

    client.py      opening Chroma (embedded or server); a failure's cause and the fix to name
    collection.py  `Store`: one collection, its metadata check, batched writes, the reads
    rows.py        a chunk's text kept in its metadata, read back from either layout (`Hit`)
    generation.py  the stamp every ingest replaces, so running servers reopen and refresh

The collection's metadata records the embedding model, its dimension and the chunking scheme; a
store built with other ones is refused with the fix, never silently mixed. Writes go in batches of
Chroma's own maximum. Every chunk carries its paper's metadata and a `paper_hash`, which is how
ingest knows, without any side file, which papers are new, changed or unchanged.
"""

from rag.store.client import data_dir_error, embedded_path, embedded_store_exists, open_client
from rag.store.collection import GET_PAGE, SCHEMA, Store
from rag.store.generation import GENERATION, bump_generation, generation, generation_path
from rag.store.rows import Hit

_client = open_client  # the name `rag.assistant` imports it by

__all__ = [
    "GENERATION",
    "GET_PAGE",
    "SCHEMA",
    "Hit",
    "Store",
    "bump_generation",
    "data_dir_error",
    "embedded_path",
    "embedded_store_exists",
    "generation",
    "generation_path",
    "open_client",
]
