"""`rag ingest --ray`: the encode stage on Ray Data against a local Ray instance on 127.0.0.1 and a
real `chroma run` server, compared with a local ingest of the same abstracts.

Needs the optional `ray` extra (`pip install -e '.[ray]'`; CI installs it). The Ray instance has
two CPUs, no dashboard and no usage statistics, and is stopped at the end of the module.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import CORPUS

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ray's single-machine mode: every Ray server listens on 127.0.0.1 only (rag.ray_ingest).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip(
    "ray", reason="the optional `ray` extra is not installed (pip install -e '.[ray]')"
)
pytest.importorskip("ray.data", reason="the `ray` extra's Ray Data is not installed")

from rag import Assistant, Settings  # noqa: E402
from rag.corpus import iter_corpus  # noqa: E402
from rag.embeddings import get_embedder  # noqa: E402
from rag.errors import ConfigError, EmbeddingError  # noqa: E402
from rag.ray_ingest import EncodeBatch, RayEncodeStage  # noqa: E402
from rag.types import Paper  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

N_PAPERS = 6


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """A private Ray instance on 127.0.0.1 (the ingest reuses a session already open)."""
    ray.init(
        address="local",
        include_dashboard=False,
        num_cpus=2,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first abstracts of the bundled corpus, as arXiv-style JSON lines."""
    papers = []
    for item in iter_corpus([CORPUS]):
        if isinstance(item, Paper):
            papers.append(item)
        if len(papers) == N_PAPERS:
            break
    path = tmp_path_factory.mktemp("ray-corpus") / "papers.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "id": p.id,
                    "title": p.title,
                    "abstract": p.abstract,
                    "authors": ", ".join(p.authors),
                    "published": p.published.isoformat() if p.published else None,
                }
            )
            + "\n"
            for p in papers
        )
    )
    return path


@pytest.fixture(scope="module")
def local(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    """The reference: the same abstracts ingested in this process into an embedded store."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("local"), _env_file=None)
    assistant = Assistant(settings, embedder=get_embedder(Settings(_env_file=None)))
    assert assistant.ingest([corpus]).added == N_PAPERS
    return assistant


def _server_assistant(data_dir: Path, server: tuple[str, int], collection: str) -> Assistant:
    host, port = server
    settings = Settings(
        data_dir=data_dir,
        chroma_host=host,
        chroma_port=port,
        collection=collection,
        ray_address="local",  # the module's instance is already open, so it is used
        _env_file=None,
    )
    return Assistant(settings, embedder=get_embedder(Settings(_env_file=None)))


def _rows(assistant: Assistant) -> dict[str, Any]:
    # Chroma's own get: a few chunks, and Store.get pages documents and metadata, not vectors.
    got = assistant.store.collection.get(include=["embeddings", "metadatas"])
    return {
        cid: (np.asarray(vec, dtype=np.float32), meta)
        for cid, vec, meta in zip(got["ids"], got["embeddings"], got["metadatas"], strict=True)
    }


def _same_store(ray_side: Assistant, local: Assistant) -> None:
    ours, theirs = _rows(ray_side), _rows(local)
    assert sorted(ours) == sorted(theirs)  # same chunk ids
    for cid, (vector, meta) in ours.items():
        assert float(vector @ theirs[cid][0]) > 0.9999, cid  # same vectors
        assert meta == theirs[cid][1]  # same text and metadata
    assert ray_side.store.count() == len(ours)  # no duplicates
    ray_side.retriever.refresh()  # the index as it stands on disk (a no-op when current)
    for question in ("Long Range Arena sequence lengths", "attention transformer benchmark"):
        assert ray_side.retriever.bm25_scores(question, 20) == local.retriever.bm25_scores(
            question, 20
        )  # same BM25 index


def test_ray_ingest_into_a_chroma_server_makes_the_local_store_and_is_idempotent(
    ray_local: None,
    chroma_server: tuple[str, int],
    corpus: Path,
    local: Assistant,
    tmp_path: Path,
) -> None:
    assistant = _server_assistant(tmp_path, chroma_server, "ray-e2e")
    report = assistant.ingest([corpus])
    assert (report.added, report.failed) == (N_PAPERS, [])
    assert report.chunks_written == local.store.count()
    _same_store(assistant, local)

    again = _server_assistant(tmp_path, chroma_server, "ray-e2e").ingest([corpus])
    assert (again.added, again.skipped, again.chunks_written) == (0, N_PAPERS, 0)
    _same_store(assistant, local)


class DiesOnce(EncodeBatch):
    """A worker whose process dies on its first batch (once in the whole run: a marker file)."""

    marker = ""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        flag = Path(self.marker)
        if not flag.exists():
            flag.write_text(str(os.getpid()))
            os._exit(1)  # the worker process is gone, mid-task
        return super().__call__(batch)


def test_a_worker_that_dies_is_restarted_and_its_task_retried_without_duplicates(
    monkeypatch: pytest.MonkeyPatch,
    ray_local: None,
    chroma_server: tuple[str, int],
    corpus: Path,
    local: Assistant,
    tmp_path: Path,
) -> None:
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    DiesOnce.marker = str(tmp_path / "died")
    assistant = _server_assistant(tmp_path / "data", chroma_server, "ray-retry")
    stage = RayEncodeStage(assistant.settings, assistant.embedder, encoder=DiesOnce)
    vectors = stage.encode_all(["Long Range Arena", "a", "attention"] * 30)
    assert (tmp_path / "died").exists()  # a worker did die
    assert vectors.shape == (90, 384) and np.all(np.linalg.norm(vectors, axis=1) > 0.99)
    reference = get_embedder(Settings(_env_file=None)).encode(
        ["Long Range Arena", "a", "attention"]
    )
    assert np.allclose(vectors[:3], reference, atol=1e-5) and np.allclose(
        vectors[3:6], reference, atol=1e-5
    )

    (tmp_path / "died").unlink()  # a death during a whole ingest, through the Assistant
    monkeypatch.setattr("rag.ray_ingest.EncodeBatch", DiesOnce)
    report = assistant.ingest([corpus])
    assert (tmp_path / "died").exists()
    assert (report.added, report.chunks_written) == (N_PAPERS, local.store.count())
    _same_store(assistant, local)


class FailsOnTitle(EncodeBatch):
    """An encoder that fails (a worker error, not retried) on one paper's chunks while armed."""

    title = ""
    armed = ""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if Path(self.armed).exists() and any(str(t).startswith(self.title) for t in batch["text"]):
            raise EmbeddingError(f"test: refusing {self.title!r}")
        return super().__call__(batch)


def test_a_failed_ray_ingest_is_resumed_by_running_it_again(
    monkeypatch: pytest.MonkeyPatch,
    ray_local: None,
    chroma_server: tuple[str, int],
    corpus: Path,
    local: Assistant,
    tmp_path: Path,
) -> None:
    """One Ray Data job per planned batch (a window of one chunk); the job holding the last paper
    fails. What the earlier jobs encoded is in the store, and a rerun adds only the rest."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    last = json.loads(corpus.read_text().splitlines()[-1])
    FailsOnTitle.title, FailsOnTitle.armed = last["title"], str(tmp_path / "armed")
    (tmp_path / "armed").touch()
    monkeypatch.setattr("rag.ray_ingest.EncodeBatch", FailsOnTitle)
    monkeypatch.setattr("rag.ray_ingest.WINDOW", 1)
    assistant = _server_assistant(tmp_path / "data", chroma_server, "ray-resume")
    with pytest.raises(EmbeddingError, match="test: refusing"):
        assistant.ingest([corpus])
    stored = {str(m["paper_id"]) for m in assistant.store.get(include=["metadatas"])["metadatas"]}
    assert 0 < len(stored) < N_PAPERS and last["id"] not in stored

    (tmp_path / "armed").unlink()
    rerun = _server_assistant(tmp_path / "data", chroma_server, "ray-resume")
    again = rerun.ingest([corpus])
    assert (again.skipped, again.added) == (len(stored), N_PAPERS - len(stored))
    _same_store(rerun, local)
    _same_store(assistant, local)  # the first process's view catches up with the rerun


def test_workers_refuse_an_encoder_other_than_the_stores(ray_local: None) -> None:
    """A worker whose settings give other vectors than the driver's (e.g. a GPU node's fp32
    against a CPU driver's int8) stops the ingest with the fix instead of mixing them."""
    embedder = get_embedder(Settings(_env_file=None))

    class Impostor:
        fingerprint = "all-MiniLM-L6-v2:384"  # the fp32 (GPU / torch) fingerprint
        dim = 384

    stage = RayEncodeStage(Settings(_env_file=None), Impostor())
    with pytest.raises(Exception, match="RAG_EMBED_DEVICE") as err:
        stage.encode_all(["Long Range Arena"])
    assert embedder.fingerprint in str(err.value)


def test_an_injected_embedder_cannot_go_to_ray() -> None:
    class Anonymous:
        dim = 64

    with pytest.raises(ConfigError, match="drop --ray"):
        RayEncodeStage(Settings(_env_file=None), Anonymous())


def test_without_the_extra_ray_is_an_error_that_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.ray_ingest import ray_session

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails, as without the extra
    with pytest.raises(ConfigError, match=r"pip install 'rag\[ray\]'"), ray_session("auto"):
        pass


def test_an_address_that_does_not_answer_fails_at_once() -> None:
    """Checked before ray.init, which retries a silent address for minutes."""
    from rag.ray_ingest import _check_reachable

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConfigError, match="ray start --head"):
        _check_reachable(f"127.0.0.1:{port}")
    with pytest.raises(ConfigError, match="host:port"):
        _check_reachable("head-without-port")


def _rag(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    rag = str(Path(sys.executable).with_name("rag"))
    env = {**os.environ, "RAG_DATA_DIR": str(data_dir)}
    return subprocess.run([rag, *args], capture_output=True, text=True, env=env, timeout=600)


def test_the_cli_flag_ingests_through_a_private_ray_and_says_when_a_cluster_is_unreachable(
    corpus: Path, local: Assistant, tmp_path: Path
) -> None:
    """`rag ingest --ray local` as a user runs it: its own Ray on 127.0.0.1, stopped after."""
    result = _rag("ingest", str(corpus), "--ray", "local", "--json", data_dir=tmp_path / "cli")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["chunks_written"] == local.store.count()
    ingested = Assistant(
        Settings(data_dir=tmp_path / "cli", _env_file=None), embedder=local.embedder
    )
    assert sorted(ingested.store.get(include=[])["ids"]) == sorted(
        local.store.get(include=[])["ids"]
    )

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = _rag("ingest", str(corpus), "--ray", f"127.0.0.1:{port}", data_dir=tmp_path / "no")
    assert result.returncode == 1
    assert "cannot reach the Ray cluster" in result.stderr and "Traceback" not in result.stderr
