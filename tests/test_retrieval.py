"""Retrieval: hybrid BM25 + dense, acronyms, typos, filters from the question and from the API."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import pytest

from rag import Assistant, Filters
from rag.hybrid import HybridRetriever, find_acronyms
from rag.query import parse_filters
from rag.store import Hit

TODAY = dt.date(2026, 11, 22)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Which papers from 2023 study vision transformers?", {"years": "2023–2023"}),
        ("What has been proposed since 2021 for long sequences?", {"years": "2021–…"}),
        ("Papers published between 2022 and 2020 on pruning", {"years": "2020–2022"}),
        ("Work on distillation before 2022", {"years": "…–2021"}),
        ("What are recent approaches to KV-cache compression?", {"years": "2024–…"}),
        ("Which papers by Tay study efficient transformers?", {"author": "Tay"}),
        ("How does DeiT-LT do on iNaturalist-2018?", {}),  # a dataset name is not a filter
        ("What accuracy is reported on ImageNet 2012?", {}),
        ("How is attention used by Transformers?", {}),
    ],
)
def test_parse_filters(question: str, expected: dict[str, str]) -> None:
    assert parse_filters(question, today=TODAY).describe() == expected


def test_acronyms_are_learnt_from_definitions() -> None:
    text = "Vision Transformer (ViT) works. Neural architecture search (NAS) is slow. Long Range Arena (LRA)."
    assert find_acronyms(text) == {
        "vit": "Vision Transformer",
        "nas": "Neural architecture search",
        "lra": "Long Range Arena",
    }


@pytest.mark.e2e
def test_hybrid_finds_exact_terms_typos_and_acronyms(real_assistant: Assistant) -> None:
    assistant = Assistant(
        real_assistant.settings.with_overrides(retrieval="hybrid"),
        embedder=real_assistant.embedder,
        store=real_assistant.store,
    )
    retriever = assistant.retriever
    assert isinstance(retriever, HybridRetriever)
    top = assistant.retrieve("Which method reaches 7.988x compression?", top_k=5)
    assert top[0].title.startswith("Blockwise Compression")
    typo = assistant.retrieve(
        "distilation token for long-taled datasets with vision transformrs", top_k=5
    )
    assert any(s.title.startswith("DeiT-LT") for s in typo[:3])
    assert (
        "vision transformer"
        in retriever.expand("Which ViT paper handles long-tailed data?").lower()
    )
    sources = assistant.retrieve("vision transformer", top_k=5)
    assert len({s.paper_id for s in sources}) == 5


@pytest.mark.e2e
def test_hybrid_index_updates_incrementally_on_ingest(
    real_assistant: Assistant, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assistant = Assistant(
        real_assistant.settings.with_overrides(retrieval="hybrid"),
        embedder=real_assistant.embedder,
        store=real_assistant.store,
    )
    assistant.retrieve("warm up the index")
    path = tmp_path / "new.jsonl"
    abstract = "We introduce Zorblax, a tokenizer-free quokka encoder. Zorblax reaches 91.3% on QuokkaBench."
    path.write_text(
        json.dumps({"id": "2501.00001", "title": "Zorblax Encoders", "abstract": abstract}) + "\n"
    )
    assistant.ingest([path])
    cache = (assistant.settings.data_dir / "bm25" / "papers" / "tokens.jsonl").read_text()
    assert "zorblax" in cache
    # Tokenised while the ingest ran, not read back from the store afterwards.
    assert assistant.retriever.read_back == 0
    # bm25s's own debug lines ("Building index from tokens") stay out of the user's console.
    assert not [r for r in caplog.records if r.name == "bm25s" and r.levelno < logging.WARNING]
    assert (
        assistant.retrieve("What does Zorblax reach on QuokkaBench?", top_k=3)[0].title
        == "Zorblax Encoders"
    )
    # A fresh retriever loads the persisted index instead of re-tokenising.
    fresh = HybridRetriever(assistant.store, assistant.embedder, assistant.settings)
    fresh.refresh()
    assert "zorblax" in fresh._vocab


@pytest.mark.e2e
def test_year_filter_and_parsed_filter_is_shown(real_assistant: Assistant) -> None:
    sources = real_assistant.retrieve(
        "transformers", top_k=5, filters=Filters(year_from=2023, year_to=2023)
    )
    assert sources and all(s.published and s.published.year == 2023 for s in sources)
    answer = real_assistant.ask("Which papers from 2021 propose vision transformer architectures?")
    assert answer.filters == {"years": "2021–2021"}
    assert all(s.published and s.published.year == 2021 for s in answer.sources)


@pytest.mark.e2e
def test_parsed_filter_matching_nothing_falls_back_with_notice(real_assistant: Assistant) -> None:
    answer = real_assistant.ask(
        "What range of sequence lengths does the Long Range Arena benchmark cover in 1999?"
    )
    assert answer.filters == {}
    assert answer.notice and "1999" in answer.notice
    assert "16K" in answer.text


def test_pick_keeps_one_chunk_per_paper_from_the_chunk_ids() -> None:
    from rag.chunking import paper_of
    from rag.retrieve import pick

    ranked = ["2101.1#1:aa", "2101.1#0:bb", "w/2#0:cc", "2101.3#2:dd", "w/2#1:ee"]
    assert paper_of("w/2#1:ee") == "w/2"
    assert pick(ranked, 3) == ["2101.1#1:aa", "w/2#0:cc", "2101.3#2:dd"]
    assert pick(ranked, 2, per_paper=False) == ranked[:2]


FUSION_QUESTIONS = [
    "Which method reaches 7.988x compression?",
    "What range of sequence lengths does the Long Range Arena benchmark cover?",
    "distilation token for long-taled datasets with vision transformrs",
    "How do sparse attention patterns reduce the quadratic cost of self-attention?",
    "Which papers study KV cache compression for long context inference?",
    "What datasets are used to evaluate retrieval-augmented generation?",
    "How is knowledge distillation applied to vision transformers?",
    "Which tokenizer-free models operate on bytes?",
]


@pytest.mark.e2e
def test_pruned_fusion_ranks_like_reading_every_bm25_hit(
    real_assistant: Assistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Skipping BM25-only chunks that cannot reach the top k must not change any ranking."""
    import rag.hybrid as hybrid

    retriever = real_assistant.retriever
    assert isinstance(retriever, HybridRetriever)
    cases = [(q, None) for q in FUSION_QUESTIONS] + [
        (FUSION_QUESTIONS[3], Filters(year_from=2023)),
        (FUSION_QUESTIONS[6], Filters(author="a")),
    ]
    reads: list[int] = []
    get = real_assistant.store.get

    def counting_get(*args: object, **kwargs: object) -> dict[str, list[object]]:
        reads.append(len(kwargs.get("ids") or []))  # type: ignore[arg-type]
        return get(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(real_assistant.store, "get", counting_get)
    pruned = [
        [(s.paper_id, s.snippet, s.score) for s in retriever.search(q, 5, f)] for q, f in cases
    ]
    pruned_reads = sum(reads)
    reads.clear()
    monkeypatch.setattr(hybrid, "_kth_score", lambda *a, **k: float("-inf"))
    full = [[(s.paper_id, s.snippet, s.score) for s in retriever.search(q, 5, f)] for q, f in cases]
    assert pruned == full
    assert all(len(r) == 5 for r in full[: len(FUSION_QUESTIONS)])
    assert pruned_reads < sum(reads)  # and it did skip some


@pytest.mark.e2e
def test_sources_get_the_whole_abstract_by_primary_key(
    real_assistant: Assistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = real_assistant.store
    later = store.get(where={"position": 1}, include=["documents", "metadatas"], limit=3)
    assert later["ids"], "the bundled corpus has papers of more than one chunk"
    hits = [
        Hit(cid, doc, meta, 0.1)
        for cid, doc, meta in zip(later["ids"], later["documents"], later["metadatas"], strict=True)
    ]
    assert all(h.metadata["first"].startswith(h.metadata["paper_id"] + "#0:") for h in hits)
    wheres: list[object] = []
    get = store.collection.get

    def spy(*args: object, **kwargs: object) -> object:
        wheres.append(kwargs.get("where"))
        return get(*args, **kwargs)

    monkeypatch.setattr(store.collection, "get", spy)
    firsts = store.first_chunks(hits)
    assert wheres == [None]  # one read by id, no metadata scan
    for hit in hits:
        pid = hit.metadata["paper_id"]
        assert firsts[pid]["position"] == 0
        assert hit.metadata["body"] in firsts[pid]["abstract"]
    # A store ingested before chunks named their first chunk still works (by a scan).
    old = [
        Hit(h.id, h.document, {k: v for k, v in h.metadata.items() if k != "first"}, 0.1)
        for h in hits
    ]
    assert store.first_chunks(old) == firsts
    assert wheres[-1] == {"paper_id": {"$in": [h.metadata["paper_id"] for h in hits]}}


@pytest.mark.e2e
def test_bm25_rebuild_never_rewrites_a_mapped_index(
    real_assistant: Assistant, tmp_path: Path
) -> None:
    """Another process may have the index memory-mapped: a rebuild writes a new directory."""
    assistant = Assistant(
        real_assistant.settings, embedder=real_assistant.embedder, store=real_assistant.store
    )
    assistant.retrieve("warm up the index")
    root = assistant.settings.data_dir / "bm25" / "papers"
    before = json.loads((root / "manifest.json").read_text())["index"]
    reader = HybridRetriever(assistant.store, assistant.embedder, assistant.settings)
    reader.refresh()  # maps `before`, like a server process would
    scores = reader.bm25_scores("Long Range Arena sequence lengths", 10)
    path = tmp_path / "new.jsonl"
    path.write_text(
        json.dumps({"id": "2501.00002", "title": "Quokka Arenas", "abstract": "Quokka arenas."})
        + "\n"
    )
    assistant.ingest([path])
    assistant.retrieve("Quokka arenas")
    after = json.loads((root / "manifest.json").read_text())["index"]
    assert after != before
    assert sorted(p.name for p in root.glob("index*")) == [after]
    assert reader.bm25_scores("Long Range Arena sequence lengths", 10) == scores


@pytest.mark.e2e
def test_bm25_ids_are_mapped_and_an_older_index_is_migrated(
    real_assistant: Assistant,
) -> None:
    """Chunk ids live beside the index, memory-mapped (not a list in the manifest, ~8 MB per
    100k chunks held by every process), each as long as it is (not a fixed-width array padded
    to the longest id). Indexes as earlier versions wrote them (ids listed in the manifest, or
    a fixed-width ids.npy) are read without a rebuild, with the same scores, and converted once."""
    import numpy as np

    from rag.hybrid import IDS, LEGACY_IDS, OFFSETS, IdColumn, load_ids

    assistant = Assistant(
        real_assistant.settings, embedder=real_assistant.embedder, store=real_assistant.store
    )
    assistant.retrieve("warm up the index")
    root = assistant.settings.data_dir / "bm25" / "papers"
    manifest = json.loads((root / "manifest.json").read_text())
    assert "ids" not in manifest and "vocab" not in manifest
    index = root / manifest["index"]
    ids = list(load_ids(index))
    assert sorted(ids) == sorted(assistant.store.get(include=[])["ids"])
    assert (index / IDS).stat().st_size == sum(len(i.encode()) for i in ids)  # no padding
    fresh = HybridRetriever(assistant.store, assistant.embedder, assistant.settings)
    fresh.refresh()
    assert isinstance(fresh._ids, IdColumn)
    question = "Long Range Arena sequence lengths"
    scores = fresh.bm25_scores(question, 10)
    assert scores and all(isinstance(cid, str) for cid in scores)
    built = (index / "data.csc.index.npy").stat().st_ino

    # The earliest format: ids and vocabulary in the manifest, nothing beside the index.
    (root / "manifest.json").write_text(json.dumps({**manifest, "ids": ids, "vocab": ["x"]}))
    (index / IDS).unlink()
    (index / OFFSETS).unlink()
    reader = HybridRetriever(assistant.store, assistant.embedder, assistant.settings)
    reader.refresh()
    assert (index / "data.csc.index.npy").stat().st_ino == built  # loaded, not rebuilt
    assert reader.bm25_scores(question, 10) == scores
    assert json.loads((root / "manifest.json").read_text()) == manifest
    assert list(load_ids(index)) == ids

    # The next format: a fixed-width array of UTF-8 ids.
    (index / IDS).unlink()
    (index / OFFSETS).unlink()
    np.save(index / LEGACY_IDS, np.array([i.encode() for i in ids]))
    reader = HybridRetriever(assistant.store, assistant.embedder, assistant.settings)
    reader.refresh()
    assert (index / "data.csc.index.npy").stat().st_ino == built
    assert reader.bm25_scores(question, 10) == scores
    assert list(load_ids(index)) == ids and not (index / LEGACY_IDS).exists()


@pytest.mark.e2e
def test_default_encoder_gives_a_text_the_same_vector_in_any_batch() -> None:
    """int8 activations are scaled per batch: batched, a chunk's vector would depend on its
    batch mates, and a re-ingest could reorder near-tied sources."""
    import numpy as np

    from rag import Settings
    from rag.embeddings import get_embedder

    embedder = get_embedder(Settings(_env_file=None))
    texts = [
        "Long Range Arena covers sequences from 1K to 16K tokens.",
        "A much longer text about vision transformers, distillation tokens and long-tailed "
        "datasets such as iNaturalist-2018, with a few numbers like 7.988x thrown in. " * 3,
        "Short.",
    ]
    alone = np.stack([embedder.encode([t])[0] for t in texts])
    assert np.array_equal(embedder.encode(texts), alone)
    assert np.array_equal(embedder.encode(texts[::-1])[::-1], alone)


def test_bm25s_is_loaded_without_scipy() -> None:
    """bm25s imports scipy.sparse only for a backend rag does not use; rag keeps it out (~10 MB
    per process) and leaves scipy importable for anyone else."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from rag.hybrid import _bm25s\n"
        "bm25s = _bm25s()\n"
        "assert 'scipy.sparse' not in sys.modules, 'scipy was loaded'\n"
        "index = bm25s.BM25()\n"
        "index.index([['quokka', 'arena'], ['long', 'range', 'arena']], show_progress=False)\n"
        "print(sorted(index.get_scores(['arena']).round(3).tolist()))\n"
        "import scipy.sparse\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    low, high = json.loads(out)
    assert 0 < low < high  # the shorter document scores higher for the shared term
