"""Multi-turn follow-ups: does condensing keep the entity the user was talking about?

    rows = load_followups()                      # eval/data/followups.jsonl (dev only)
    result = evaluate(rows)                      # rag.chat.condense on each conversation
    python -m eval.followups [--retrieve [-k 1]] [--json OUT]

Each row is a conversation (user turns and the assistant's cited answers, with the titles of
the sources they cited, as the API and the UI keep them), a follow-up ("What sequence length
example does it mention?"), and what its standalone question must name (`must_contain`:
case-insensitive substrings, `a|b` = either). Condensing accuracy is the share of rows whose
standalone question contains every item. With --retrieve, the standalone question is also
searched in the default store (`rag ingest` first) and hit@k of the gold paper is reported.

The rule-based rewrite is measured (no chat LLM: the default offline setup). The rows were
written from the bundled abstracts; the answers quote them verbatim.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from rag.chat import condense, normalize_history
from rag.errors import CorpusError

DEFAULT_FOLLOWUPS = Path(__file__).resolve().parent / "data" / "followups.jsonl"


class FollowUp(BaseModel):
    id: str
    split: Literal["dev"]  # the frozen test/holdout splits get no follow-ups
    turns: list[dict[str, Any]]
    follow_up: str
    must_contain: list[str]
    gold_titles: list[str]
    note: str = ""


def load_followups(path: Path | str | None = None) -> list[FollowUp]:
    path = Path(path) if path is not None else DEFAULT_FOLLOWUPS
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(FollowUp.model_validate_json(line))
        except ValidationError as exc:
            raise CorpusError(
                f"{path}:{number}: not a follow-up row ({exc.errors()[0]['msg']}); fix the line",
                file=str(path),
            ) from None
    return rows


def contains(text: str, item: str) -> bool:
    return any(alt.strip().lower() in text.lower() for alt in item.split("|"))


def evaluate(rows: list[FollowUp], retrieve: Any = None, k: int = 5) -> dict[str, Any]:
    """Condense every row; `retrieve(question, k)` (optional) returns retrieved titles."""
    records = []
    for row in rows:
        standalone = condense(normalize_history(row.turns), row.follow_up)
        record: dict[str, Any] = {
            "id": row.id,
            "follow_up": row.follow_up,
            "standalone": standalone,
            "ok": all(contains(standalone, item) for item in row.must_contain),
        }
        if retrieve is not None:
            titles = retrieve(standalone, k)
            record[f"hit@{k}"] = any(t in row.gold_titles for t in titles)
        records.append(record)
    summary: dict[str, Any] = {
        "rows": len(records),
        "condense_accuracy": round(sum(r["ok"] for r in records) / max(len(records), 1), 4),
    }
    if retrieve is not None:
        summary[f"hit@{k}"] = round(sum(r[f"hit@{k}"] for r in records) / max(len(records), 1), 4)
    return {"summary": summary, "records": records}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_FOLLOWUPS)
    parser.add_argument("--retrieve", action="store_true", help="also search the default store")
    parser.add_argument("-k", type=int, default=5, help="hit@k with --retrieve (default 5)")
    parser.add_argument("--json", type=Path, help="write the records and summary here")
    args = parser.parse_args(argv)
    rows = load_followups(args.dataset)
    retrieve = None
    if args.retrieve:
        from rag import Assistant

        assistant = Assistant()

        def retrieve(question: str, k: int) -> list[str]:
            return [s.title for s in assistant.retrieve(question, k)]

    result = evaluate(rows, retrieve, k=args.k)
    for record in result["records"]:
        mark = "ok  " if record["ok"] else "MISS"
        sys.stdout.write(f"{mark} {record['id']}  {record['standalone']}\n")
    sys.stdout.write(json.dumps(result["summary"]) + "\n")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
