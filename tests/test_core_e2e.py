"""End to end on the real parts: bundled corpus, bundled MiniLM, embedded Chroma."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import LRA_TITLE

from rag import CANNOT_ANSWER, Assistant, Settings
from rag.errors import StoreError

pytestmark = pytest.mark.e2e

# (question, a title fragment of the paper that answers it, a fact the answer must quote)
QUESTIONS = [
    (
        "What range of sequence lengths does the Long Range Arena benchmark cover?",
        "Long Range Arena",
        "16K",
    ),
    (
        "Which training-free metric predicts the trained performance of an RNN architecture?",
        "Training-free Neural Architecture Search",
        "hidden covariance",
    ),
    ("How does DeiT-LT distill knowledge for tail classes?", "DeiT-LT", "DIST"),
    (
        "What compression ratio does BCT achieve without retraining?",
        "Blockwise Compression",
        "7.988x",
    ),
    (
        "Which numerical scheme does the Macaron Net replace Lie-Trotter splitting with?",
        "Multi-Particle Dynamic System",
        "Strang-Marchuk",
    ),
    ("What does FuseGPT do with pruned transformer blocks?", "FuseGPT", "recycle"),
    (
        "Which languages does the cross-lingual named entity corpus for Slavic languages annotate?",
        "Slavic",
        "Bulgarian",
    ),
    ("What is the FP8 format proposed for deep learning?", "FP8 Formats", "FP8"),
    ("Which model does Uni-SMART compare against?", "Uni-SMART", "Uni-SMART"),
    (
        "What is the hidden state representation in Codebook Features?",
        "Codebook Features",
        "codebook",
    ),
    ("How does VicaSplat estimate camera poses?", "VicaSplat", "VicaSplat"),
]


def test_ingest_twice_adds_nothing(real_assistant: Assistant) -> None:
    chunks = real_assistant.store.count()
    report = real_assistant.ingest()
    assert (report.added, report.updated, report.skipped, report.chunks_written) == (0, 0, 277, 0)
    assert real_assistant.store.count() == chunks
    info = real_assistant.info()
    assert info["papers"] == 277 and info["chunks"] == chunks


@pytest.mark.parametrize(("question", "title", "fact"), QUESTIONS)
def test_question_retrieves_and_cites_the_right_paper(
    real_assistant: Assistant, question: str, title: str, fact: str
) -> None:
    sources = real_assistant.retrieve(question, top_k=5)
    assert [s.number for s in sources] == [1, 2, 3, 4, 5]
    assert len({s.paper_id for s in sources}) == 5  # one source per paper
    hit = next(s for s in sources if title.lower() in s.title.lower())
    answer = real_assistant.ask(question)
    assert not answer.abstained, answer.text
    assert answer.backend == "extractive"
    cited = {n for s in answer.sentences for n in s.citations}
    assert hit.number in cited
    assert fact.lower() in answer.text.lower()
    assert all(s.supported for s in answer.sentences)


def test_long_range_arena_answer(real_assistant: Assistant) -> None:
    answer = real_assistant.ask(
        "What range of sequence lengths does the Long Range Arena benchmark cover?"
    )
    assert "1K to 16K tokens" in answer.text
    number = next(s.number for s in answer.sources if s.title == LRA_TITLE)
    assert f"[{number}]" in answer.text


def test_off_topic_question_abstains(real_assistant: Assistant) -> None:
    answer = real_assistant.ask("What is the best recipe for sourdough bread?")
    assert answer.abstained and answer.text == CANNOT_ANSWER


def test_changed_abstract_replaces_its_chunks(real_assistant: Assistant, tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    record = {
        "id": "9999.00001",
        "title": "Quokka Transformers",
        "abstract": "Quokka attention is fast. " * 30,
    }
    path.write_text(json.dumps(record) + "\n")
    first = real_assistant.ingest([path])
    assert first.added == 1
    before = real_assistant.store.get(where={"paper_id": "9999.00001"}, include=["metadatas"])[
        "ids"
    ]
    record["abstract"] = "Quokka attention is slow but exact. " * 10
    path.write_text(json.dumps(record) + "\n")
    second = real_assistant.ingest([path])
    assert second.updated == 1 and second.added == 0
    after = real_assistant.store.get(where={"paper_id": "9999.00001"}, include=["documents"])
    assert set(after["ids"]).isdisjoint(before)
    assert all("slow but exact" in d for d in after["documents"])


def test_store_built_with_other_chunking_is_refused(real_assistant: Assistant) -> None:
    other = Settings(data_dir=real_assistant.settings.data_dir, chunk_tokens=120, _env_file=None)
    with pytest.raises(StoreError, match="rag ingest --rebuild"):
        Assistant(other).store  # noqa: B018
    rebuilt = Assistant(other)
    report = rebuilt.ingest(rebuild=True)
    assert report.added == 277
    assert rebuilt.info()["chunking"].endswith(":120:24")
