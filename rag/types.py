"""Typed records that cross module boundaries: papers in, chunks stored, sources and answers out."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class Paper(BaseModel):
    """One abstract, normalised from any corpus format."""

    id: str = Field(description="arXiv id when known, else 't-' + hash of the normalised title.")
    title: str
    abstract: str
    authors: list[str] = Field(default_factory=list)
    n_authors: int | None = None
    published: dt.date | None = Field(
        None, description="First publication: an arXiv record's first version, not update_date."
    )
    updated: dt.date | None = Field(None, description="Last update (arXiv `update_date`).")
    categories: list[str] = Field(default_factory=list, description="e.g. ['cs.CL', 'cs.LG'].")
    doi: str | None = None
    source: str = Field("", description="File the record came from.")
    line: int = Field(0, description="1-based line of the record in that file.")


class Chunk(BaseModel):
    """A piece of one abstract, sized for the embedding model. `text` is what gets embedded."""

    id: str
    paper_id: str
    position: int
    text: str
    body: str = Field(description="The abstract text of this chunk, without the title prefix.")


class IngestFailure(BaseModel):
    file: str
    line: int | None = None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.reason}"


class PaperReplacement(BaseModel):
    """A stored paper whose title or abstract an ingest replaced: the same id, other text."""

    paper_id: str
    old_title: str
    new_title: str
    file: str = Field("", description="Where the new version came from.")
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: " if self.file and self.line else ""
        if self.old_title == self.new_title:
            return f"{where}'{self.paper_id}' '{self.new_title}': abstract replaced"
        return f"{where}'{self.paper_id}' was '{self.old_title}', now '{self.new_title}'"


class IngestReport(BaseModel):
    """What one ingest did. `ok` is False when some records failed (a partial ingest)."""

    added: int = 0
    updated: int = 0
    skipped: int = 0
    duplicates: int = 0
    chunks_written: int = 0
    chunks_relabelled: int = Field(
        0, description="Stored chunks whose text was unchanged: new metadata, vector kept."
    )
    failed: list[IngestFailure] = Field(default_factory=list)
    replaced: list[PaperReplacement] = Field(
        default_factory=list,
        description="Updated papers whose title or abstract changed (not only metadata), with "
        "the stored title and the new one: a different paper behind a known id shows here.",
    )
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def chunk_counts(self) -> str:
        """'644 chunks written' (', 12 relabelled' when some were), as the CLI and UI say it."""
        relabelled = f", {self.chunks_relabelled} relabelled" if self.chunks_relabelled else ""
        return f"{self.chunks_written} chunks written{relabelled}"


class Source(BaseModel):
    """A numbered source shown with an answer."""

    number: int
    paper_id: str
    title: str
    published: dt.date | None = None
    authors: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)
    doi: str | None = None
    url: str | None = Field(None, description="https://arxiv.org/abs/<id>, else the DOI's page.")
    snippet: str = Field(description="The best-matching chunk of the abstract.")
    text: str = Field("", description="The whole abstract (used for answering and verification).")
    score: float = Field(description="Cosine similarity of the best chunk to the question (0–1).")


class Sentence(BaseModel):
    """One sentence of an answer with its citations and the verifier's verdict."""

    text: str
    citations: list[int] = Field(default_factory=list)
    supported: bool = True
    support: str | None = Field(None, description="The source sentence that supports it.")
    support_source: int | None = None
    score: float = 0.0


class Answer(BaseModel):
    """A verified answer. `text` carries [n] markers that refer to `sources`."""

    question: str
    text: str
    sources: list[Source] = Field(default_factory=list)
    sentences: list[Sentence] = Field(default_factory=list)
    abstained: bool = False
    backend: str = "extractive"
    notice: str | None = Field(None, description="E.g. why an LLM failure fell back to extractive.")
    standalone_question: str | None = None
    filters: dict[str, str] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds per stage.")
