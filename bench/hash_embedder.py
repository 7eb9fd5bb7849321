"""The cheap embedder `bench snapshot --embedder hash` puts in the model's place.

`--embedder hash` (HashEmbedding below) replaces the model with a deterministic 384-dim vector
per text, a hash of its words: no model to load or run, so an ingest of 100k records takes
minutes instead of hours on 2 cores, and everything else (reading, chunking, BM25, Chroma's
HNSW at the model's dimension, the dedupe index) is the same work on the same chunks. Memory
figures measured with it leave out the encoder, whose memory does not depend on N (its
session, one text at a time); throughput figures measured with it say nothing of the encoder.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

from rag.embed_base import EncoderEmbedding

_WORD = re.compile(r"\w+|[^\w\s]")


class HashEmbedding(EncoderEmbedding):
    """Words hashed into 384 dimensions (signed), normalised: same words, same vector."""

    dim: int = 384
    max_tokens: int = 256
    fingerprint: str = "bench-hash:384"

    def count_tokens(self, text: str) -> int:
        return len(_WORD.findall(text)) + 2  # a word piece a word or mark, plus [CLS] [SEP]

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            codes = np.array([zlib.crc32(w.encode()) for w in text.lower().split()], np.int64)
            np.add.at(out[i], codes % self.dim, np.where(codes & 256, 1.0, -1.0))
            norm = float(np.linalg.norm(out[i]))
            out[i] = out[i] / norm if norm else np.eye(self.dim, dtype=np.float32)[0]
        return out
