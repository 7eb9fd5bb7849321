"""Chunks fit the embedding model: measured with the model's own tokenizer, not an estimate."""

from __future__ import annotations

import random
import re

import pytest
from conftest import CORPUS

from rag.chunking import Chunker, chunk_id
from rag.corpus import load_corpus
from rag.embeddings import SentenceEmbedding
from rag.errors import CorpusError
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


# --------------------------------------------------------- issue 16 item 5: chunking always ends
def fake_counter(text: str) -> int:
    """Word pieces as a BERT tokenizer splits punctuation: one per word and per punctuation
    mark, plus [CLS] and [SEP] (the same count as the tests' fake embedder)."""
    return len(re.findall(r"\w+|[^\w\s]", text)) + 2


ABSTRACT = load_corpus([CORPUS]).papers[0].abstract


@pytest.mark.timeout(120)  # a safety net for the loop this guards against, not a timing check
@pytest.mark.parametrize(
    ("title", "abstract"),
    [
        ("." * 260, ABSTRACT),  # ~17 tiktoken tokens, 262 word pieces: it looped forever
        ("." * 5_000, ABSTRACT),
        ("?!" * 400 + " Long Range Arena", ABSTRACT),
        ("Dots", "." * 20_000),
        ("Commas", ", " * 9_000),
        ("One word", "x" * 19_000),
        ("Mixed", " ".join(["." * 300, "word", "-" * 700, "(", ")" * 50] * 20)),
    ],
    ids=["260-dots", "5000-dots", "punctuation-title", "dots", "commas", "one-word", "mixed"],
)
def test_any_title_and_abstract_end_in_chunks_that_fit(title: str, abstract: str) -> None:
    chunker = Chunker(180, 24, count_model_tokens=fake_counter, max_model_tokens=256)
    paper = Paper(id="p", title=title, abstract=abstract, source="f.jsonl", line=3)
    chunks = chunker.chunk(paper)
    assert chunks and all(fake_counter(c.text) <= 256 for c in chunks)
    head = chunker.chunk_title(paper)
    assert head and title.startswith(head) and fake_counter(head + "\n") <= 256 // 3
    assert all(c.text.startswith(head + "\n") for c in chunks)
    # Nothing of the abstract is lost: its characters are all in the chunks, in order.
    assert "".join("".join(c.body.split()) for c in chunks).count("x") >= abstract.count("x")
    assert (
        "".join(c.body for c in chunks).replace(" ", "").startswith(abstract[:50].replace(" ", ""))
    )


@pytest.mark.timeout(120)
def test_text_that_can_never_fit_is_rejected_with_its_file_and_line() -> None:
    """A counter for which one character is over the limit: no split can help; the record is
    refused, naming where it came from, instead of splitting forever."""

    def counter(text: str) -> int:
        return 10_000 if "\u2603" in text else fake_counter(text)

    chunker = Chunker(180, 24, count_model_tokens=counter, max_model_tokens=256)
    paper = Paper(id="p", title="Snow", abstract=ABSTRACT + " \u2603", source="f.jsonl", line=7)
    with pytest.raises(CorpusError) as caught:
        chunker.chunk(paper)
    assert caught.value.file == "f.jsonl" and caught.value.line == 7
    assert "cannot be cut into chunks of at most 256 word pieces" in str(caught.value)
    assert str(caught.value).startswith("f.jsonl:7: ")

    title_only = Paper(id="q", title="\u2603 storm", abstract=ABSTRACT, source="g.csv", line=2)
    with pytest.raises(CorpusError, match=r"^g\.csv:2: .*not even the title's first character"):
        chunker.chunk(title_only)


@pytest.mark.timeout(300)
def test_random_punctuation_and_tight_limits_always_end() -> None:
    """Property check over 200 seeded random texts and limits as tight as 24 word pieces: every
    record either chunks within the limit or is refused with its line; none loops."""
    rng = random.Random(16)
    alphabet = [".", ",", "-", "(", ")", " ", "a", "1", "é", "\u2603", "word", "x" * 40]
    for case in range(200):
        limit = rng.choice([24, 40, 64, 256])
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3_000))).strip() or "a"
        title = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 400))).strip() or "t"
        chunker = Chunker(
            rng.choice([32, 120, 180]), 24, count_model_tokens=fake_counter, max_model_tokens=limit
        )
        paper = Paper(id="p", title=title, abstract=text, source="r.jsonl", line=case + 1)
        try:
            chunks = chunker.chunk(paper)
        except CorpusError as exc:
            assert exc.line == case + 1
            continue
        assert all(fake_counter(c.text) <= limit for c in chunks)
