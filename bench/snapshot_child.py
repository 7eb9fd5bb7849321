"""What `bench snapshot` runs in its fresh interpreters, as text: importing this module imports
nothing. (A child's peak RSS counts the parent's memory at the fork, so the parent stays light:
the hash embedder, which imports llama-index, lives in bench.hash_embedder, imported by the
child alone.)"""

CHILD = """
import json, sys, time
from pathlib import Path
from rag import Assistant, Settings
args = json.loads(sys.argv[1])
server = {"chroma_host": "127.0.0.1", "chroma_port": args["port"]} if args.get("port") else {}
embedder = None
if args.get("embedder") == "hash":
    from bench.hash_embedder import HashEmbedding
    embedder = HashEmbedding(model_name="bench-hash")
settings = Settings(data_dir=Path(args["data_dir"]), _env_file=None, **server)
assistant = Assistant(settings, embedder=embedder)
assistant.embedder  # the model loads before the clock starts
def peak_mb():  # the process's peak RSS so far (VmHWM), MiB
    with open("/proc/self/status") as status:
        hwm = [line.split()[1] for line in status if line.startswith("VmHWM:")]
    return int(hwm[0]) / 1024 if hwm else 0.0
stream_peak = [0.0]
def progress(done, total):
    # The last value, read as the stream of papers ends and before the BM25 index is rebuilt,
    # is the stream's peak.
    stream_peak[0] = peak_mb()
    print(f"@progress {done} {total}", flush=True)
started = time.perf_counter()
report = assistant.ingest([Path(p) for p in args["paths"]], progress=progress)
seconds = time.perf_counter() - started
ingest_peak = peak_mb()  # the ingest call's peak: before this script lists the store's ids
# The bench's own check, not part of an ingest: every id in one list, for the digest below (at
# 100k records it takes the process above the ingest's peak).
got = assistant.store.get(include=[])  # the parent's ru_maxrss (peak_rss_mb) includes it
print("@report " + json.dumps({
    "seconds": seconds, "added": report.added, "skipped": report.skipped,
    "failed": len(report.failed), "chunks_written": report.chunks_written,
    "papers": assistant.store.paper_count(), "chunks": len(got["ids"]),
    "ids_digest": hash(tuple(sorted(got["ids"]))),
    "stream_peak_rss_mb": stream_peak[0], "ingest_peak_rss_mb": ingest_peak,
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
