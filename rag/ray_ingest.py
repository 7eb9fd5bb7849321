"""Encoding on a Ray cluster: `rag ingest --ray auto|local|ADDRESS` (RAG_RAY_ADDRESS; extra `ray`).

    driver (`rag ingest`, as a local ingest): read ─► plan (skip what the store holds) ─► chunk
        ─► a window of new chunks ─► ray.data.from_items ─► map_batches(EncodeBatch, an actor
           pool: the model loads once per worker) ─► vectors, back in order
        ─► written by the driver (a Chroma server, or the embedded store) ─► BM25, as locally

Only the encoder moves: reading, planning, chunk ids, writes and the BM25 index are the local
ingest's own code (rag.ingest.Ingestor with this module as its encode stage), so a Ray ingest
makes the store a local one makes, is idempotent, and resumes the same way (a rerun skips what
is stored, by paper hash). Every worker builds the encoder from the driver's RAG_EMBED_* settings
and must arrive at the fingerprint the store records, or it refuses to encode. Ray retries a
failed task and restarts a dead worker (Ray Data's actor pools do both by default); rows carry
their position, so a retried batch fills the same slots and nothing is written twice (and chunk
ids are deterministic, so even a rerun's upserts replace, never duplicate).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from rag.errors import ConfigError, EmbeddingError
from rag.settings import Settings

log = logging.getLogger(__name__)

# New chunks per Ray Data job. Each job starts its actor pool afresh (~1 s per worker to load the
# ONNX model, several for torch), so windows are large; a kill loses at most one window of
# encoding (the store keeps every window written before it).
WINDOW = 20_000
ROWS_PER_CALL = 64  # chunks handed to a worker per call (its encoder batches them itself)
EMBED_FIELDS = ("embed_model", "embed_backend", "embed_batch_size", "embed_device")

LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_MISSING_EXTRA = (
    "`--ray` needs the optional `ray` extra: `pip install 'rag[ray]'` (or `bash "
    "scripts/bootstrap.sh ray`) on this machine and every node of the cluster, or drop "
    "--ray / RAG_RAY_ADDRESS to encode in this process"
)


def _ray() -> Any:
    # Ray's usage statistics are sent to Anyscale unless this is set before ray starts.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
        import ray.data  # the `data` part of the extra
    except ImportError as exc:
        raise ConfigError(_MISSING_EXTRA) from exc
    return ray


@contextlib.contextmanager
def ray_session(address: str) -> Iterator[None]:
    """Connected to Ray for the block: `auto` (the running cluster: RAY_ADDRESS or this
    machine's), `local` (a private instance on 127.0.0.1, no dashboard, stopped afterwards) or
    an address (`ray://head:10001`, `head:6379`). A session already open in this process (a
    test's, a notebook's) is used as it is."""
    if address == "local":
        # Ray's single-machine mode: the node's address is 127.0.0.1 and every Ray server listens
        # there only (read when ray is first imported). Without it they listen on every interface.
        os.environ.setdefault(LOOPBACK_ONLY, "0")
    ray = _ray()
    if ray.is_initialized():
        yield
        return
    if address not in ("auto", "local"):
        _check_reachable(address)
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address == "local":
            ray.init(
                address="local", include_dashboard=False, _node_ip_address="127.0.0.1", **quiet
            )
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise _unreachable(address, exc) from exc
    # Ray Data logs every job at INFO, and a warning when its progress bars are off (the CLI has
    # its own); `rag -v` shows rag's logging, not these.
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    try:
        yield
    finally:
        ray.shutdown()


def _unreachable(address: str, exc: BaseException) -> ConfigError:
    return ConfigError(
        f"cannot reach the Ray cluster at {address!r} ({exc}); start one (`ray start --head` on "
        "the head node), set RAG_RAY_ADDRESS / --ray to its address, or use `--ray local` for a "
        "private one on this machine"
    )


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes: Ray retries an address that does not answer for ~5 min."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=5):
            pass
    except ValueError as exc:
        raise ConfigError(
            f"RAG_RAY_ADDRESS / --ray {address!r} is not auto, local, host:port or "
            "ray://host:port; give the head node's address"
        ) from exc
    except OSError as exc:
        raise _unreachable(address, exc) from exc


def worker_settings(settings: Settings) -> dict[str, Any]:
    """What a worker needs to build the driver's encoder (no keys, hosts or paths)."""
    return {name: getattr(settings, name) for name in EMBED_FIELDS}


class EncodeBatch:
    """The Ray Data callable class: one encoder per worker, loaded once, fingerprint checked."""

    def __init__(self, embed: dict[str, Any], fingerprint: str, threads: int = 1) -> None:
        from rag.embeddings import get_embedder

        # One encoder thread per CPU the worker was given (ONNX would otherwise take every core
        # of the node, once per worker).
        settings = Settings(_env_file=None, embed_threads=threads, **embed)  # type: ignore[call-arg]
        self.embedder = get_embedder(settings)
        found = str(getattr(self.embedder, "fingerprint", ""))
        if found != fingerprint:
            raise EmbeddingError(
                f"this Ray worker encodes with {found!r} but the ingest writes vectors of "
                f"{fingerprint!r}; install the same rag and model on every node and give the "
                "workers the driver's RAG_EMBED_DEVICE (a GPU worker makes fp32 vectors, a CPU "
                "one int8)"
            )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from rag.embeddings import encode

        vectors = encode(self.embedder, [str(t) for t in batch["text"]])
        return {"row": batch["row"], "vector": np.asarray(vectors, dtype=np.float32)}


class RayEncodeStage:
    """The ingest's encode stage on Ray Data: batches of texts in, their vectors out, in order."""

    def __init__(
        self,
        settings: Settings,
        embedder: Any,
        *,
        address: str = "auto",
        window: int | None = None,
        encoder: type | None = None,
    ) -> None:
        self.embed = worker_settings(settings)
        self.gpu = settings.embed_device == "cuda"
        self.fingerprint = str(getattr(embedder, "fingerprint", ""))
        self.dim = int(getattr(embedder, "dim", 0))
        if not self.fingerprint or not self.dim:
            raise ConfigError(
                "`--ray` encodes with rag's own encoders (RAG_EMBED_MODEL / RAG_EMBED_BACKEND); "
                "an injected embedder cannot be shipped to the workers: drop --ray for it"
            )
        self.window = window or WINDOW
        self.encoder = encoder or EncodeBatch
        self.address = address
        self._session: contextlib.ExitStack | None = None

    def close(self) -> None:
        """Leave the Ray session this stage opened (a `local` instance is stopped)."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def _connect(self) -> Any:
        """Ray, connected on the first chunk to encode: a rerun with nothing new starts none."""
        if self._session is None:
            session = contextlib.ExitStack()
            session.enter_context(ray_session(self.address))
            self._session = session
        return _ray()

    def __call__(self, batches: Iterable[list[str]]) -> Iterator[np.ndarray]:
        window: list[list[str]] = []
        size = 0
        for texts in batches:
            window.append(texts)
            size += len(texts)
            if size >= self.window:
                yield from self._encode(window)
                window, size = [], 0
        if window:
            yield from self._encode(window)

    def _encode(self, window: list[list[str]]) -> Iterator[np.ndarray]:
        flat = [text for texts in window for text in texts]
        vectors = self.encode_all(flat) if flat else np.zeros((0, self.dim), np.float32)
        start = 0
        for texts in window:
            yield vectors[start : start + len(texts)]
            start += len(texts)

    def encode_all(self, texts: list[str]) -> np.ndarray:
        """Vectors of `texts`, in order, from one Ray Data job over the cluster's workers."""
        ray = self._connect()
        from ray.data import ActorPoolStrategy, DataContext

        context = DataContext.get_current()
        context.enable_progress_bars = False  # the CLI shows its own
        resource = "GPU" if self.gpu else "CPU"
        workers = max(1, int(ray.cluster_resources().get(resource, 1)))
        if self.gpu and not ray.cluster_resources().get("GPU"):
            raise ConfigError(
                "RAG_EMBED_DEVICE=cuda but the Ray cluster has no GPU; add GPU nodes, or set "
                "RAG_EMBED_DEVICE=cpu (or auto) to encode on its CPUs"
            )
        rows = [{"row": i, "text": text} for i, text in enumerate(texts)]
        dataset = ray.data.from_items(
            rows, override_num_blocks=max(1, min(len(rows) // ROWS_PER_CALL, workers * 4))
        )
        encoded = dataset.map_batches(
            self.encoder,
            fn_constructor_kwargs={"embed": self.embed, "fingerprint": self.fingerprint},
            batch_size=ROWS_PER_CALL,
            batch_format="numpy",
            compute=ActorPoolStrategy(min_size=1, max_size=min(workers, len(rows))),
            **({"num_gpus": 1} if self.gpu else {"num_cpus": 1}),
        )
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        filled = np.zeros(len(texts), dtype=bool)
        try:
            for batch in encoded.iter_batches(batch_size=None, batch_format="numpy"):
                out[batch["row"]] = batch["vector"]
                filled[batch["row"]] = True
        except Exception as exc:
            cause = _user_error(exc)
            if cause is not None:
                raise cause from exc
            raise EmbeddingError(
                f"encoding on Ray failed ({type(exc).__name__}: {exc}); check the workers' logs "
                "(`ray logs`), then rerun `rag ingest`: what was written is kept"
            ) from exc
        if not filled.all():  # a bug in Ray or here: never write zeros as vectors
            raise EmbeddingError(
                f"Ray returned {int(filled.sum())} of {len(texts)} vectors; rerun `rag ingest` "
                "(what was written is kept)"
            )
        return out


def _user_error(exc: BaseException) -> BaseException | None:
    """A RagError a worker raised (a wrong fingerprint, no GPU), unwrapped from Ray's errors."""
    from rag.errors import RagError

    seen: BaseException | None = exc
    while seen is not None:
        inner = getattr(seen, "cause", None)  # Ray's task errors keep the worker's error here
        if isinstance(inner, BaseException) and inner is not seen:
            seen = inner
        elif isinstance(seen, RagError):
            return seen
        else:
            seen = seen.__cause__
    return None
