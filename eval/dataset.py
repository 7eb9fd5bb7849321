"""The grounding-eval question set: load `questions.jsonl`, validate every row, map gold titles to ids.

    rows = load_questions(path)                 # DatasetError("file:line: ...") on a bad row
    rows = select(rows, split="dev", limit=10)  # filter by split, then take the first N
    gold = gold_ids(rows, known_ids)            # {question id: [paper id, ...]}; fails on unknown titles

Gold papers are named by exact corpus title; the paper id is `rag.corpus.title_id(title)`, the same
id the store gives a paper without an arXiv id (`Source.paper_id`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from rag.corpus import title_id
from rag.errors import CorpusError

DEFAULT_DATASET = Path(__file__).resolve().parent / "data" / "questions.jsonl"
TYPES = ("factoid", "explain", "multi", "unanswerable")
# holdout: eval/data/holdout.jsonl, frozen; train: eval/data/train.jsonl, only ever fitted on
SPLITS = ("dev", "test", "holdout", "train")


class DatasetError(CorpusError):
    """A row of the question set is malformed; the message names file:line and the fix."""


class Question(BaseModel):
    id: str
    question: str
    type: Literal["factoid", "explain", "multi", "unanswerable"]
    gold_titles: list[str]
    must_contain: list[str]
    evidence: list[str] = []
    split: Literal["dev", "test", "holdout", "train"]
    paraphrased: bool = False
    note: str = ""
    line: int = 0

    @property
    def answerable(self) -> bool:
        return self.type != "unanswerable"


def _row_problem(q: Question) -> str | None:
    """What is wrong with a parsed row beyond its types (None = fine)."""
    if not q.id.strip():
        return "'id' is empty; give every question an id such as q001"
    if not q.question.strip():
        return "'question' is empty; write the question"
    if any(not t.strip() for t in q.gold_titles):
        return "'gold_titles' holds an empty title; remove it"
    if any(not m.strip() or any(not alt.strip() for alt in m.split("|")) for m in q.must_contain):
        return "'must_contain' holds an empty string or an empty '|' alternative; remove it"
    if q.type == "unanswerable":
        if q.gold_titles or q.must_contain:
            return "an unanswerable question must have empty 'gold_titles' and 'must_contain'"
    else:
        if not q.gold_titles:
            return f"a {q.type} question needs at least one gold title (or type 'unanswerable')"
        if q.type == "multi" and len(set(q.gold_titles)) < 2:
            return "a multi question needs at least two gold titles (or type factoid/explain)"
    return None


def load_questions(path: Path | str | None = None) -> list[Question]:
    """Parse and validate the JSONL question set; the first bad row raises `DatasetError`."""
    path = Path(path) if path is not None else DEFAULT_DATASET
    if not path.is_file():
        raise DatasetError(
            "question set not found; pass --dataset PATH to a questions JSONL file", file=str(path)
        )
    rows: list[Question] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise DatasetError(
                    f"not valid JSON ({exc.msg} at column {exc.colno}); one object per line",
                    file=str(path),
                    line=number,
                ) from None
            if not isinstance(data, dict):
                raise DatasetError("expected a JSON object", file=str(path), line=number)
            try:
                q = Question.model_validate({**data, "line": number})
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "row"
                raise DatasetError(
                    f"'{where}': {first['msg']}; fix the field (keys: id, question, type "
                    f"{'|'.join(TYPES)}, gold_titles, must_contain, evidence, split dev|test|holdout)",
                    file=str(path),
                    line=number,
                ) from None
            problem = _row_problem(q)
            if problem:
                raise DatasetError(problem, file=str(path), line=number)
            if q.id in seen:
                raise DatasetError(
                    f"id '{q.id}' already used on line {seen[q.id]}; ids must be unique",
                    file=str(path),
                    line=number,
                )
            seen[q.id] = number
            rows.append(q)
    if not rows:
        raise DatasetError(
            "the question set is empty; add one JSON object per line", file=str(path)
        )
    return rows


def select(
    rows: Iterable[Question], split: str | None = None, limit: int | None = None
) -> list[Question]:
    """Keep one split (dev | test | holdout | all/None), then the first `limit` rows."""
    split = (split or "all").lower()
    if split not in (*SPLITS, "all"):
        raise DatasetError(f"unknown split '{split}'; use dev, test, holdout or all")
    if limit is not None and limit < 1:
        raise DatasetError(f"--limit must be at least 1 (got {limit})")
    chosen = [q for q in rows if split == "all" or q.split == split]
    return chosen[:limit] if limit is not None else chosen


def gold_ids(
    rows: Iterable[Question], known_ids: Collection[str] | None = None, *, file: str = ""
) -> dict[str, list[str]]:
    """Gold paper ids per question id; a title that is not in `known_ids` is an error."""
    out: dict[str, list[str]] = {}
    for q in rows:
        ids: list[str] = []
        for title in q.gold_titles:
            pid = title_id(title)
            if known_ids is not None and pid not in known_ids:
                raise DatasetError(
                    f"question {q.id}: gold title {title!r} is not in the corpus (id {pid}); "
                    "use the exact corpus title, or ingest the bundled corpus (`rag ingest`)",
                    file=file or None,
                    line=q.line or None,
                )
            if pid not in ids:
                ids.append(pid)
        out[q.id] = ids
    return out
