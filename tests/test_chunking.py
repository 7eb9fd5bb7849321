"""Chunks fit the embedding model: measured with the model's own tokenizer, not an estimate."""

from __future__ import annotations

from conftest import CORPUS

from rag.chunking import Chunker, chunk_id
from rag.corpus import load_corpus
from rag.embeddings import SentenceEmbedding
from rag.types import Paper


def test_no_chunk_exceeds_the_model_limit_on_the_bundled_corpus() -> None:
    model = SentenceEmbedding()
    chunker = Chunker(
        180, 24, count_model_tokens=model.count_tokens, max_model_tokens=model.max_tokens
    )
    papers = load_corpus([CORPUS]).papers
    chunks = [c for p in papers for c in chunker.chunk(p)]
    assert len(chunks) >= len(papers)
    lengths = [model.count_tokens(c.text) for c in chunks]
    assert max(lengths) <= 256
    # Every chunk carries its paper's title, and chunks cover the whole abstract.
    by_paper: dict[str, list] = {}
    for c in chunks:
        by_paper.setdefault(c.paper_id, []).append(c)
    for paper in papers:
        mine = by_paper[paper.id]
        assert all(c.text.startswith(paper.title[:40]) for c in mine)
        assert paper.abstract.split()[-1] in mine[-1].body


def test_pathological_text_is_split_until_it_fits() -> None:
    model = SentenceEmbedding()
    chunker = Chunker(
        200, 20, count_model_tokens=model.count_tokens, max_model_tokens=model.max_tokens
    )
    weird = "x" * 3000 + " " + " ".join(f"{i}.{i}e-{i}%" for i in range(400))
    paper = Paper(id="p1", title="Numbers " * 30, abstract=weird)
    chunks = chunker.chunk(paper)
    assert len(chunks) > 2
    assert all(model.count_tokens(c.text) <= 256 for c in chunks)


def test_chunk_ids_are_deterministic_and_content_addressed() -> None:
    paper = Paper(id="p1", title="T", abstract="One sentence here. " * 200)
    first = Chunker(100, 10).chunk(paper)
    again = Chunker(100, 10).chunk(paper)
    assert [c.id for c in first] == [c.id for c in again]
    assert first[0].id == chunk_id("p1", 0, first[0].text)
    changed = Chunker(100, 10).chunk(
        paper.model_copy(update={"abstract": "Other. " + paper.abstract})
    )
    assert changed[0].id != first[0].id
