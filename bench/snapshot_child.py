"""What `bench snapshot` runs in its fresh interpreters, and the cheap embedder it can use.

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


CHILD = """
import json, sys, time
from pathlib import Path
from rag import Assistant, Settings
args = json.loads(sys.argv[1])
server = {"chroma_host": "127.0.0.1", "chroma_port": args["port"]} if args.get("port") else {}
embedder = None
if args.get("embedder") == "hash":
    from bench.snapshot_child import HashEmbedding
    embedder = HashEmbedding(model_name="bench-hash")
settings = Settings(data_dir=Path(args["data_dir"]), _env_file=None, **server)
assistant = Assistant(settings, embedder=embedder)
assistant.embedder  # the model loads before the clock starts
def progress(done, total):
    print(f"@progress {done} {total}", flush=True)
started = time.perf_counter()
report = assistant.ingest([Path(p) for p in args["paths"]], progress=progress)
seconds = time.perf_counter() - started
got = assistant.store.get(include=[])
print("@report " + json.dumps({
    "seconds": seconds, "added": report.added, "skipped": report.skipped,
    "failed": len(report.failed), "chunks_written": report.chunks_written,
    "papers": assistant.store.paper_count(), "chunks": len(got["ids"]),
    "ids_digest": hash(tuple(sorted(got["ids"]))),
}), flush=True)
"""


READER = """
import json, sys, time
from pathlib import Path
from rag.corpus import iter_corpus
from rag.types import Paper
started, papers = time.perf_counter(), 0
for item in iter_corpus([Path(sys.argv[1])]):
    papers += isinstance(item, Paper)
print("@report " + json.dumps({"papers": papers, "seconds": time.perf_counter() - started}))
"""
