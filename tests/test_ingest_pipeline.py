"""Ingest internals that make it fast without changing what it stores: sentence breaks without
nltk, the acronym finder, chunk text in metadata, in-place re-chunking, the three-stage pipeline
and the parallel encoder."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import CORPUS, HashEmbedding

from rag import Assistant, Settings
from rag.chunking import Chunker, only_version_differs
from rag.corpus import iter_corpus
from rag.errors import StoreError
from rag.hybrid import find_acronyms
from rag.ingest import paper_hash
from rag.text import sentence_pieces, split_sentences
from rag.types import Paper


def _papers(limit: int | None = None) -> list[Paper]:
    papers = [p for p in iter_corpus([CORPUS], max_chars=20_000) if isinstance(p, Paper)]
    return papers[:limit] if limit else papers


def _write_corpus(path: Path, n: int) -> Path:
    """The first `n` bundled papers as JSON Lines (id, title, abstract)."""
    path.write_text(
        "".join(
            json.dumps({"id": p.id, "title": p.title, "abstract": p.abstract}) + "\n"
            for p in _papers(n)
        )
    )
    return path


def test_sentence_pieces_lose_nothing_and_respect_abbreviations() -> None:
    text = "We compare A vs. B, e.g. on LRA.  It covers 1K to 16K tokens (Tay et al. 2020). Done!"
    pieces = sentence_pieces(text)
    assert "".join(pieces) == text
    assert [p.strip() for p in pieces] == [
        "We compare A vs. B, e.g. on LRA.",
        "It covers 1K to 16K tokens (Tay et al. 2020).",
        "Done!",
    ]
    for paper in _papers():  # the same breaks as the answer side's splitter
        pieces = sentence_pieces(paper.abstract)
        assert "".join(pieces) == paper.abstract
        if "[" not in paper.abstract:  # split_sentences also moves "[n]" to the sentence before
            sentences = split_sentences(paper.abstract)
            assert len(sentences) == len(pieces)
            for piece, sentence in zip(pieces, sentences, strict=True):
                # split_sentences leaves closing quotes or brackets after a full stop out
                assert piece.strip().startswith(sentence)
                assert set(piece.strip()[len(sentence) :]) <= set("\"')]")


def test_chunking_imports_no_nltk() -> None:
    """llama-index's default sentence tokenizer (punkt) pulls in nltk and scipy (~2 s)."""
    import subprocess
    import sys

    code = (
        "import sys; from rag.chunking import Chunker; from rag.types import Paper; "
        "Chunker().chunk(Paper(id='x', title='T', abstract='One. Two vs. three. ' * 50)); "
        "print('nltk' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# The acronym pattern as it was, matched forwards: slow (it backtracks at every word) but plain.
_FORWARD = re.compile(r"((?:[\w\-]+\s+){1,7}?[\w\-]+)\s*\(([A-Z][A-Za-z0-9\-+]{1,12})\)")


def _forward_acronyms(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for long_form, short in _FORWARD.findall(text):
        words = long_form.split()
        letters = re.sub(r"[^A-Za-z]", "", short).lower()
        caps = re.sub(r"[^A-Z]", "", short).lower()
        for n in {len(letters), len(caps)}:
            if 2 <= n <= len(words) and "".join(w[0] for w in words[-n:]).lower() in (
                letters,
                caps,
            ):
                found[short.lower()] = " ".join(words[-n:])
                break
    return found


def test_acronym_finder_agrees_with_the_forward_pattern() -> None:
    texts = [p.abstract for p in _papers()]
    assert sum(len(find_acronyms(t)) for t in texts) > 100
    assert [find_acronyms(t) for t in texts] == [_forward_acronyms(t) for t in texts]
    rng = random.Random(7)
    words = ["Vision", "Transformer", "(ViT)", "(VT)", "long-range", "arena", "(LRA)", "a", "\n"]
    words += ["x" * 300, "foo.bar", "(AB)", "Attention-Based", "(LR-A)", ")", "(", "  "]
    for _ in range(3000):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 30)))
        assert find_acronyms(text) == _forward_acronyms(text), text


def test_chunk_text_is_kept_in_metadata_and_old_stores_read_the_same(
    fake_assistant: Assistant, tmp_path: Path
) -> None:
    path = tmp_path / "two.jsonl"
    records = [
        {"id": "1111.00001", "title": "Quokka Nets", "abstract": "Quokka nets are small. " * 5},
        {"id": "1111.00002", "title": "Wombat Nets", "abstract": "Wombat nets are large. " * 5},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    fake_assistant.ingest([path])
    store = fake_assistant.store
    raw = store.collection.get(include=["documents", "metadatas"])
    assert raw["documents"] == [None, None]  # no full-text index to feed
    assert all(m["text"].startswith(("Quokka Nets\n", "Wombat Nets\n")) for m in raw["metadatas"])
    # A chunk written the old way (document + body), beside the new ones.
    meta = dict(raw["metadatas"][0])
    text = meta.pop("text")
    store.collection.upsert(
        ids=["old#0:x"],
        embeddings=[[1.0] + [0.0] * 63],
        documents=[text],
        metadatas=[{**meta, "paper_id": "old", "first": "old#0:x", "body": "kept body"}],
    )
    got = store.get(include=["documents", "metadatas"])
    by_id = dict(zip(got["ids"], zip(got["documents"], got["metadatas"], strict=True), strict=True))
    assert by_id["old#0:x"] == (
        text,
        {**meta, "paper_id": "old", "first": "old#0:x", "body": "kept body"},
    )
    for cid, (doc, m) in by_id.items():
        assert doc == f"{m['title']}\n{m['body']}" or cid == "old#0:x"
        assert "text" not in m
    assert not store.get(include=["documents"]).get("metadatas")
    assert not store.get(ids=["old#0:x"], include=["documents"]).get("metadatas")
    # Vectors read back whole (Chroma hands them over as a numpy array, not a list).
    vectors = store.get(include=["embeddings"])
    assert len(vectors["embeddings"]) == len(vectors["ids"]) == 3
    assert list(vectors["embeddings"][vectors["ids"].index("old#0:x")]) == [1.0] + [0.0] * 63
    sources = fake_assistant.retrieve("quokka nets small")
    assert sources[0].title == "Quokka Nets" and "Quokka nets are small." in sources[0].snippet


class CountingEmbedding(HashEmbedding):
    texts: int = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.texts += len(texts)
        return super().encode(texts)


def test_older_chunking_is_redone_in_place_embedding_only_changed_text(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunker upgrade (v1 -> v2) must not make users rebuild: the store is still served, and
    the next ingest re-chunks each paper, re-embedding only chunks whose text changed."""
    import rag.assistant

    corpus = _write_corpus(tmp_path / "corpus.jsonl", 40)
    current = rag.assistant.chunking_fingerprint(settings.chunk_tokens, settings.chunk_overlap)
    older = current.replace(":v2:", ":v1:")
    assert only_version_differs(older, current) and not only_version_differs(
        older, current.replace(":180:", ":120:")
    )
    papers = _papers(40)
    changed = papers[0].id

    class OlderChunker(Chunker):  # v1 cut one paper differently; its text must be re-embedded
        def chunk(self, paper: Paper) -> list[Any]:
            if paper.id == changed:
                paper = paper.model_copy(update={"abstract": paper.abstract + " Old tail."})
            return super().chunk(paper)

    monkeypatch.setattr(rag.assistant, "chunking_fingerprint", lambda *_: older)
    monkeypatch.setattr(rag.assistant, "Chunker", OlderChunker)
    first = CountingEmbedding(model_name="hash-test")
    Assistant(settings, embedder=first).ingest([corpus])
    monkeypatch.undo()

    second = CountingEmbedding(model_name="hash-test")
    assistant = Assistant(settings, embedder=second)
    assert assistant.store.outdated_chunking == older
    assert assistant.retrieve("long range arena")  # still served before re-chunking
    second.texts = 0
    report = assistant.ingest([corpus])
    assert report.updated == 40 and report.added == 0 and report.chunks_relabelled > 40
    new_chunks = Chunker().chunk(papers[0])
    # Only the chunks whose text changed are embedded again; every other vector stands.
    assert 0 < second.texts <= len(new_chunks)
    meta = assistant.store.collection.metadata
    assert meta["rag:chunking"] == current
    assert assistant.store.collection.configuration["hnsw"]["space"] == "cosine"
    hashes = {m["paper_hash"] for m in assistant.store.get(include=["metadatas"])["metadatas"]}
    # every chunk is labelled with its paper's new hash, the relabelled ones included
    written = [p for p in iter_corpus([corpus], max_chars=20_000) if isinstance(p, Paper)]
    assert hashes == {paper_hash(p, current) for p in written}
    second.texts = 0
    assert Assistant(settings, embedder=second).ingest([corpus]).skipped == 40
    assert second.texts == 0


def test_a_failed_write_stops_the_ingest_and_a_rerun_completes(
    fake_assistant: Assistant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = _write_corpus(tmp_path / "corpus.jsonl", 60)
    store = fake_assistant.store
    real_upsert = store.upsert
    calls: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise StoreError("disk full; free some space and run `rag ingest` again")
        real_upsert(*args, **kwargs)

    monkeypatch.setattr(store, "upsert", flaky)
    with pytest.raises(StoreError, match="disk full"):
        fake_assistant.ingest([corpus])
    kept = store.paper_count()
    assert 0 < kept < 60  # the first batch landed, the run stopped at the failure
    monkeypatch.setattr(store, "upsert", real_upsert)
    report = fake_assistant.ingest([corpus])
    assert report.skipped == kept and report.added == 60 - kept
    assert store.paper_count() == 60


@pytest.mark.e2e
def test_parallel_encoder_gives_exactly_the_one_worker_vectors() -> None:
    from rag.onnx_embed import OnnxEmbedding

    texts = [c.text for p in _papers(30) for c in Chunker().chunk(p)]
    one = OnnxEmbedding(workers=1).encode(texts)
    two = OnnxEmbedding(workers=2)
    assert two.workers == 2
    assert np.array_equal(two.encode(texts), one)
    assert np.array_equal(two.encode(texts[::-1])[::-1], one)


def test_a_new_store_is_opened_while_encoding_and_looked_up_only_once_it_exists(
    settings: Settings,
    fake_embedder: HashEmbedding,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rag.store import Store

    corpus = _write_corpus(tmp_path / "corpus.jsonl", 30)
    lookups: list[int] = []
    real_state = Store.paper_state

    def counted(self: Store, ids: Any) -> Any:
        lookups.append(len(ids))
        return real_state(self, ids)

    monkeypatch.setattr(Store, "paper_state", counted)
    first = Assistant(settings, embedder=fake_embedder).ingest([corpus])
    assert (first.added, lookups) == (30, [])  # nothing can be in a store that did not exist
    again = Assistant(settings, embedder=fake_embedder).ingest([corpus])
    assert again.skipped == 30 and sum(lookups) == 30
