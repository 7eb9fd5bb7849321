"""Retrieval: hybrid BM25 + dense, acronyms, typos, filters from the question and from the API."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from rag import Assistant, Filters
from rag.hybrid import HybridRetriever, find_acronyms
from rag.query import parse_filters

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
    real_assistant: Assistant, tmp_path: Path
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
