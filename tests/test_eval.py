"""The grounding eval: metrics on hand-made inputs, the dataset loader, reports, compare, and `rag eval`."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from rag import Settings
from rag.answer import OpenAIBackend
from rag.corpus import title_id
from rag.errors import ConfigError
from rag.prompts import CANNOT_ANSWER
from rag.types import Answer, Source
from rag_eval import metrics as M
from rag_eval.dataset import (
    DEFAULT_DATASET,
    DatasetError,
    Question,
    gold_ids,
    load_questions,
    select,
)
from rag_eval.judges import RecordingJudge, agreement, llm_judge
from rag_eval.report import build_report, compare_runs, load_run
from rag_eval.report_files import write_report
from rag_eval.run import evaluate_question, main, public_settings

RAG = str(Path(sys.executable).with_name("rag"))
LRA = "Long Range Arena: A Benchmark for Efficient Transformers"


def src(number: int, pid: str, text: str = "", title: str = "") -> Source:
    return Source(
        number=number, paper_id=pid, title=title or pid, snippet=text[:40], text=text, score=0.5
    )


# --------------------------------------------------------------------------------- retrieval
def test_retrieval_metrics_exact() -> None:
    ranked = ["x", "g1", "y", "g2", "z"]
    gold = ["g1", "g2"]
    assert M.first_gold_rank(ranked, gold) == 2
    assert M.hit_at_k(ranked, gold, 1) == 0.0
    assert M.hit_at_k(ranked, gold, 2) == 1.0
    assert M.reciprocal_rank(ranked, gold) == 0.5
    # DCG = 1/log2(3) + 1/log2(5); ideal = 1 + 1/log2(3)
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert M.ndcg_at_k(ranked, gold, 10) == pytest.approx(expected)
    assert M.ndcg_at_k(ranked, gold, 10) == pytest.approx(0.650921, abs=1e-6)
    assert M.ndcg_at_k(ranked, gold, 3) == pytest.approx(
        (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    )
    assert M.all_gold_at_k(ranked, gold, 10) == 1.0
    assert M.all_gold_at_k(ranked, gold, 3) == 0.0
    assert M.ndcg_at_k(["g1", "x"], ["g1"]) == 1.0
    assert M.ndcg_at_k(["g1", "g1"], ["g1", "g2"]) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert M.reciprocal_rank(["x"], ["g"]) == 0.0
    assert M.first_gold_rank([], ["g"]) is None
    assert M.ndcg_at_k(["x"], []) == 0.0


# ----------------------------------------------------------------------------------- answers
def test_must_contain_is_case_insensitive_with_alternatives() -> None:
    text = "Sequences range from 1K to 16K tokens [1]."
    assert M.contains(text, "1k")
    assert M.contains(text, "32K|16k")
    assert not M.contains(text, "32K|64K")
    assert M.must_contain_recall(text, ["1K", "16K"]) == 1.0
    assert M.must_contain_recall(text, ["1K", "quantum", "tokens|words"]) == pytest.approx(2 / 3)
    assert M.must_contain_recall(text, []) is None


def test_citation_validity_and_sentences() -> None:
    assert M.citations_valid("A thing [1]. Another [2, 3].", [1, 2, 3])
    assert not M.citations_valid("A thing [1]. Another [4].", [1, 2, 3])
    assert M.citations_valid("No markers at all.", [1])
    assert M.answer_sentences("Alpha is one [1]. Beta is two [1, 2]. The corpus does not say.") == [
        ("Alpha is one.", [1]),
        ("Beta is two.", [1, 2]),
    ]


SUPPORT = {  # claim -> paper ids that support it (alone; "a+b" = only the two together)
    "Alpha fact one here.": {"a"},
    "Beta needs both sources.": {"a+b"},
    "Gamma is cited wrongly.": {"c"},
    "Delta cited twice needlessly.": {"a"},
    "Epsilon has no citation.": set(),
}


def table_judge(claim: str, source: Source) -> bool:
    return source.paper_id in SUPPORT.get(claim, set())


def test_alce_citation_recall_precision_and_faithfulness() -> None:
    sources = [src(1, "a", "A."), src(2, "b", "B."), src(3, "c", "C.")]
    text = (
        "Alpha fact one here [1]. Beta needs both sources [1, 2]. Gamma is cited wrongly [2]. "
        "Delta cited twice needlessly [1, 3]. Epsilon has no citation."
    )
    scores = M.judge_citations(text, sources, table_judge)
    by_text = {s.text: s for s in scores.sentences}
    assert [s.supported for s in scores.sentences] == [True, True, False, True, False]
    assert [s.faithful for s in scores.sentences] == [True, True, True, True, False]
    assert by_text["Beta needs both sources."].precise == [1, 2]  # each needed: jointly only
    assert by_text["Delta cited twice needlessly."].precise == [1]  # [3] is not needed
    assert by_text["Gamma is cited wrongly."].precise == []  # unsupported: no citation counts
    assert (scores.n_sentences, scores.supported, scores.faithful) == (5, 3, 4)
    assert (scores.n_citations, scores.precise) == (6, 4)


def test_citation_to_a_missing_source_is_neither_support_nor_precise() -> None:
    scores = M.judge_citations("Alpha fact one here [9].", [src(1, "a", "A.")], table_judge)
    assert (scores.supported, scores.faithful, scores.n_citations, scores.precise) == (0, 1, 1, 0)


# ------------------------------------------------------------------------------- aggregation
def test_aggregate_is_a_ratio_of_sums_with_null_for_empty() -> None:
    assert M.aggregate([(1, 2), (3, 4), (0, 0)]) == {"value": 4 / 6, "n": 2, "den": 6.0}
    assert M.aggregate([(0, 0)]) == {"value": None, "n": 0, "den": 0.0}
    assert M.aggregate([]) == {"value": None, "n": 0, "den": 0.0}
    assert M.ratio(1, 0) is None


def test_bootstrap_ci_sanity() -> None:
    assert M.bootstrap_ci([(1.0, 1.0)] * 30) == (1.0, 1.0)
    assert M.bootstrap_ci([(0.0, 0.0)] * 5) is None
    assert M.bootstrap_ci([]) is None
    half = [(1.0, 1.0)] * 50 + [(0.0, 1.0)] * 50
    lo, hi = M.bootstrap_ci(half)
    assert 0.35 < lo < 0.5 < hi < 0.65
    assert M.bootstrap_ci(half) == (lo, hi)  # fixed seed: reproducible
    lo2, hi2 = M.bootstrap_ci(half * 4)  # four times the questions: a narrower interval
    assert hi2 - lo2 < hi - lo
    # questions a metric does not apply to (0, 0) do not move it
    assert M.bootstrap_ci([(1.0, 1.0)] * 20 + [(0.0, 0.0)] * 20) == (1.0, 1.0)
    assert M.percentile([1.0, 2.0, 3.0], 50) == 2.0 and M.percentile([], 50) is None
    assert M.overlap([0.1, 0.3], [0.2, 0.4]) is True
    assert M.overlap([0.1, 0.2], [0.3, 0.4]) is False
    assert M.overlap(None, [0.3, 0.4]) is None


# ----------------------------------------------------------------------------------- dataset
ROW = {
    "id": "q1",
    "question": "What range of sequence lengths does Long Range Arena cover?",
    "type": "factoid",
    "gold_titles": [LRA],
    "must_contain": ["1K", "16K"],
    "evidence": ["sequences ranging from 1K to 16K tokens"],
    "split": "dev",
    "paraphrased": False,
    "note": "",
}
UNANSWERABLE = {
    **ROW,
    "id": "q2",
    "question": "Who wrote BERT?",
    "type": "unanswerable",
    "gold_titles": [],
    "must_contain": [],
    "evidence": [],
    "split": "test",
}


def write_rows(path: Path, rows: list[Any]) -> Path:
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n",
        encoding="utf-8",
    )
    return path


def test_loader_reads_a_valid_file(tmp_path: Path) -> None:
    rows = load_questions(write_rows(tmp_path / "q.jsonl", [ROW, "", UNANSWERABLE]))
    assert [q.id for q in rows] == ["q1", "q2"]
    assert rows[1].line == 3 and not rows[1].answerable
    assert [q.id for q in select(rows, "test")] == ["q2"]
    assert [q.id for q in select(rows, "all", limit=1)] == ["q1"]
    assert [q.id for q in select(rows, None)] == ["q1", "q2"]
    assert gold_ids(rows, {title_id(LRA)}) == {"q1": [title_id(LRA)], "q2": []}


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ("{not json", "not valid JSON"),
        ({**ROW, "id": "q9", "type": "opinion"}, "'type'"),
        ({k: v for k, v in ROW.items() if k != "question"} | {"id": "q9"}, "'question'"),
        ({**ROW, "id": "q9", "gold_titles": "LRA"}, "'gold_titles'"),
        ({**ROW, "id": "q9", "split": "validation"}, "'split'"),
        ({**UNANSWERABLE, "id": "q9", "gold_titles": [LRA]}, "unanswerable"),
        ({**ROW, "id": "q9", "type": "multi"}, "at least two gold titles"),
        ({**ROW, "id": "q9", "gold_titles": []}, "at least one gold title"),
        ({**ROW, "id": "q9", "must_contain": ["1K|"]}, "empty"),
        ({**ROW, "id": "q1"}, "already used on line 1"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_loader_errors_name_file_and_line(tmp_path: Path, bad: Any, needle: str) -> None:
    path = write_rows(tmp_path / "q.jsonl", [ROW, UNANSWERABLE, bad])
    with pytest.raises(DatasetError) as info:
        load_questions(path)
    assert str(info.value).startswith(f"{path}:3: ")
    assert needle in str(info.value)


def test_loader_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="--dataset"):
        load_questions(tmp_path / "nope.jsonl")
    with pytest.raises(DatasetError, match="empty"):
        load_questions(write_rows(tmp_path / "e.jsonl", [""]))
    rows = load_questions(write_rows(tmp_path / "q.jsonl", [ROW]))
    with pytest.raises(DatasetError, match="unknown split"):
        select(rows, "validation")
    with pytest.raises(DatasetError, match="at least 1"):
        select(rows, "dev", limit=0)


def test_unknown_gold_title_fails_loudly(tmp_path: Path) -> None:
    rows = load_questions(write_rows(tmp_path / "q.jsonl", [UNANSWERABLE, ROW]))
    with pytest.raises(DatasetError) as info:
        gold_ids(rows, {"t-something-else"}, file="q.jsonl")
    assert str(info.value).startswith("q.jsonl:2: question q1: gold title")
    assert LRA in str(info.value)


def test_bundled_question_set_is_valid_and_its_gold_is_in_the_corpus() -> None:
    from rag.corpus import bundled_corpus_dir, load_corpus

    rows = load_questions()
    ids = {p.id for p in load_corpus([bundled_corpus_dir()]).papers}
    gold = gold_ids(rows, ids)
    assert len(rows) >= 100 and {q.split for q in rows} == {"dev", "test"}
    assert all(gold[q.id] for q in rows if q.answerable)


def test_train_split_is_valid_and_apart_from_the_reported_splits() -> None:
    """eval/data/train.jsonl (fitted on, never reported): valid, gold in the corpus, and no
    question of it is also a dev/test question."""
    from rag.corpus import bundled_corpus_dir, load_corpus

    train = load_questions(DEFAULT_DATASET.with_name("train.jsonl"))
    ids = {p.id for p in load_corpus([bundled_corpus_dir()]).papers}
    gold = gold_ids(train, ids)
    assert len(train) >= 60 and {q.split for q in train} == {"train"}
    assert all(gold[q.id] for q in train if q.answerable)
    assert any(not q.answerable for q in train)
    reported = {" ".join(q.question.lower().split()) for q in load_questions()}
    assert not reported & {" ".join(q.question.lower().split()) for q in train}


# ---------------------------------------------------------------------- one question, stubbed
class StubAssistant:
    """Stands in for `rag.Assistant`: fixed retrieval and a fixed answer per question."""

    def __init__(self, ranked: dict[str, list[Source]], answers: dict[str, Answer]) -> None:
        self.ranked = ranked
        self.answers = answers

    def retrieve(self, question: str, top_k: int | None = None) -> list[Source]:
        return self.ranked[question][:top_k]

    def ask(self, question: str) -> Answer:
        return self.answers[question]

    def ask_stream(self, question: str) -> Any:
        answer = self.answers[question]
        if not answer.abstained:
            yield answer.text
        yield answer


LRA_TEXT = (
    "Our benchmark is a suite of tasks consisting of sequences ranging from 1K to 16K tokens."
)


def words_judge(claim: str, source: Source) -> bool:
    """Supported when every word of the claim is in the source text."""
    words = set(re.findall(r"\w+", claim.lower()))
    return words <= set(re.findall(r"\w+", source.text.lower()))


def make_case(
    qid: str, *, qtype: str = "factoid", rank: int = 1, text: str | None = None, split: str = "dev"
) -> tuple[Question, list[str], list[Source], Answer]:
    gold = [] if qtype == "unanswerable" else [f"g-{qid}"]
    others = [src(0, f"x{i}-{qid}", "Unrelated text about cats.") for i in range(10)]
    gold_src = src(0, f"g-{qid}", LRA_TEXT, title=LRA)
    ranked = others[:]
    if gold:
        ranked.insert(rank - 1, gold_src)
    ranked = [s.model_copy(update={"number": i}) for i, s in enumerate(ranked[:10], 1)]
    q = Question(
        id=qid,
        question=f"question {qid}",
        type=qtype,  # type: ignore[arg-type]
        gold_titles=[LRA] if gold else [],
        must_contain=["1K", "16K|16,000"] if gold else [],
        split=split,  # type: ignore[arg-type]
    )
    if text is None:
        text = "Sequences ranging from 1K to 16K tokens [1]." if gold else CANNOT_ANSWER
    sources = ranked[:5]
    answer = Answer(
        question=q.question,
        text=text,
        sources=sources,
        abstained=text == CANNOT_ANSWER,
        timings={"retrieve": 0.01, "answer": 0.02, "verify": 0.03, "total": 0.06},
    )
    return q, gold, ranked, answer


def run_case(
    case: tuple[Question, list[str], list[Source], Answer], *judges: RecordingJudge
) -> dict:
    q, gold, ranked, answer = case
    stub = StubAssistant({q.question: ranked}, {q.question: answer})
    return evaluate_question(
        stub, q, gold, list(judges) or [RecordingJudge("offline", words_judge)]
    )


def test_evaluate_question_answerable() -> None:
    rec = run_case(make_case("q1", rank=2, text="Sequences ranging from 1K to 16K tokens [2]."))
    m = rec["metrics"]
    assert (m["hit@1"], m["hit@5"], m["mrr"]) == (0.0, 1.0, 0.5)
    assert m["ndcg@10"] == pytest.approx(1 / math.log2(3))
    assert m["must_contain"] == 1.0 and rec["must_contain_found"] == [True, True]
    assert m["citation_validity"] == 1.0
    assert m["citation_recall"] == m["citation_precision"] == m["faithfulness"] == 1.0
    assert m["cites_gold"] == 1.0
    assert rec["pairs"]["abstention_precision"] == [0.0, 0.0]  # did not abstain: not counted
    assert rec["pairs"]["false_abstention"] == [0.0, 1.0]
    assert "all_gold@10" not in rec["pairs"]  # multi questions only
    assert rec["first_gold_rank"] == 2 and rec["retrieved"][1]["gold"]
    assert rec["timings"]["verify"] == 0.03 and "retrieve@10" in rec["timings"]
    json.dumps(rec, allow_nan=False)


def test_evaluate_question_wrong_citation_and_unsupported_sentence() -> None:
    text = "Sequences ranging from 1K to 16K tokens [1]. Also the moon is cheese [3]. Odd [7]."
    rec = run_case(make_case("q1", rank=1, text=text))
    m = rec["metrics"]
    assert m["citation_validity"] == 0.0  # [7] names no source
    assert m["citation_recall"] == pytest.approx(1 / 3)
    assert m["citation_precision"] == pytest.approx(1 / 3)
    assert m["faithfulness"] == pytest.approx(1 / 3)
    assert [s["supported"] for s in rec["sentences"]] == [True, False, False]


def test_evaluate_question_abstentions() -> None:
    declined = run_case(make_case("u1", qtype="unanswerable"))
    assert declined["pairs"]["abstention_precision"] == [1.0, 1.0]
    assert declined["pairs"]["abstention_recall"] == [1.0, 1.0]
    assert declined["pairs"]["false_abstention"] == [0.0, 0.0]
    assert "hit@1" not in declined["pairs"] and "must_contain" not in declined["pairs"]
    assert "citation_recall" not in declined["pairs"]  # nothing to judge in a refusal
    assert declined["score"] == 1.0
    answered = run_case(
        make_case("u2", qtype="unanswerable", text="Unrelated text about cats [1].")
    )
    assert answered["pairs"]["abstention_recall"] == [0.0, 1.0]
    assert answered["metrics"]["citation_recall"] == 1.0  # an unwanted answer is still judged
    assert answered["score"] == 0.0
    wrongly = run_case(make_case("q3", text=CANNOT_ANSWER))
    assert wrongly["pairs"]["false_abstention"] == [1.0, 1.0]
    assert wrongly["pairs"]["abstention_precision"] == [0.0, 1.0]
    assert wrongly["metrics"]["must_contain"] == 0.0 and wrongly["metrics"]["cites_gold"] == 0.0


def test_multi_question_all_gold() -> None:
    q, _, ranked, answer = make_case("m1", rank=1)
    q = q.model_copy(update={"type": "multi", "gold_titles": [LRA, "Other"]})
    gold = [ranked[0].paper_id, ranked[3].paper_id]
    rec = evaluate_question(
        StubAssistant({q.question: ranked}, {q.question: answer}),
        q,
        gold,
        [RecordingJudge("offline", words_judge)],
    )
    assert rec["metrics"]["all_gold@10"] == 1.0
    rec = evaluate_question(
        StubAssistant({q.question: ranked}, {q.question: answer}),
        q,
        [ranked[0].paper_id, "missing"],
        [RecordingJudge("offline", words_judge)],
    )
    assert rec["metrics"]["all_gold@10"] == 0.0


def test_two_judges_and_their_agreement() -> None:
    offline = RecordingJudge("offline", words_judge)
    always = RecordingJudge("llm", lambda claim, source: True)
    text = "Sequences ranging from 1K to 16K tokens [1]. Also the moon is cheese [1]."
    rec = run_case(make_case("q1", text=text), offline, always)
    m = rec["metrics"]
    assert m["citation_recall"] == 0.5 and m["citation_recall_llm"] == 1.0
    assert m["judge_agreement"] == 0.5  # the two (sentence, source [1]) pairs: agree, disagree
    assert rec["sentences"][1]["supported_llm"] is True
    assert agreement(offline, always) == (1, 2)


# ------------------------------------------------------------------------------ report, compare
def records(n_hit: int, n_miss: int, prefix: str = "q") -> list[dict[str, Any]]:
    out = [run_case(make_case(f"{prefix}{i}", rank=1)) for i in range(n_hit)]
    out += [
        run_case(make_case(f"{prefix}{n_hit + i}", rank=3, split="test")) for i in range(n_miss)
    ]
    out.append(run_case(make_case(f"{prefix}u", qtype="unanswerable")))
    return out


def fake_report(recs: list[dict[str, Any]], command: str = "rag eval") -> dict[str, Any]:
    meta = {
        "command": command,
        "dataset": "questions.jsonl",
        "split": "all",
        "questions": len(recs),
        "started_utc": "2025-01-01T00:00:00+00:00",
        "seconds": 1.0,
        "backend": "extractive",
        "judges": ["offline"],
    }
    settings = public_settings(Settings(_env_file=None, openai_api_key="sk-secret"))
    return build_report(recs, settings=settings, meta=meta, resamples=200)


def test_report_headline_tables_and_files(tmp_path: Path) -> None:
    report = fake_report(records(6, 2))
    head = report["headline"]
    assert head["hit@1"]["value"] == 0.75 and head["hit@1"]["n"] == 8
    assert head["hit@5"]["value"] == 1.0 and head["hit@5"]["ci"] == [1.0, 1.0]
    lo, hi = head["hit@1"]["ci"]
    assert lo <= 0.75 <= hi
    assert head["abstention_recall"]["value"] == 1.0 and head["abstention_recall"]["n"] == 1
    assert head["false_abstention"]["value"] == 0.0 and head["false_abstention"]["lower_is_better"]
    assert report["per_type"]["unanswerable"]["hit@1"] is None
    assert report["per_type"]["factoid"]["n"] == 8 and report["per_type"]["all"]["n"] == 9
    assert report["per_split"]["test"]["hit@1"] == 0.0
    assert report["by_wording"] == {
        "title words": {
            "n": 8,
            "hit@1": 0.75,
            "hit@5": 1.0,
            "mrr": 0.8333,  # (6 * 1 + 2 * 1/3) / 8
            "must_contain": 1.0,
            "cites_gold": 0.75,  # two answers cite [1] while the gold paper is source 3
            "false_abstention": 0.0,
        }
    }
    assert report["hit_at_k"]["1"] == 0.75 and report["hit_at_k"]["3"] == 1.0
    assert report["latency"]["verify"] == {"n": 9, "p50": 0.03, "p95": 0.03, "mean": 0.03}
    assert report["settings"]["openai_api_key"] == "<set>"
    assert "sk-secret" not in json.dumps(report)
    write_report(tmp_path, report)
    for name in ("report.json", "report.md", "metrics.png", "hit_at_k.png", "latency.png"):
        assert (tmp_path / name).stat().st_size > 0
    md = (tmp_path / "report.md").read_text()
    for heading in ("## Headline", "## By question type", "## Latency", "worst questions"):
        assert heading in md
    assert "| hit@1 | 0.750 |" in md and "Command: `rag eval`" in md
    assert json.loads((tmp_path / "report.json").read_text())["headline"]["mrr"]["n"] == 8


def test_report_with_nothing_applicable_has_nulls_not_nan(tmp_path: Path) -> None:
    report = fake_report([run_case(make_case("u1", qtype="unanswerable"))])
    assert "hit@1" not in report["headline"]  # no answerable question: no retrieval metric
    assert report["hit_at_k"]["1"] is None
    assert report["headline"]["abstention_precision"]["value"] == 1.0
    write_report(tmp_path, report)  # allow_nan=False: would raise on NaN
    assert "NaN" not in (tmp_path / "report.json").read_text()


def test_compare_marks_differences_beyond_the_intervals(tmp_path: Path) -> None:
    write_report(tmp_path / "a", fake_report(records(0, 20), "rag eval --set retrieval=dense"))
    write_report(tmp_path / "b", fake_report(records(20, 0)))
    console = Console(record=True, width=200)
    rows = {r["metric"]: r for r in compare_runs(tmp_path / "a", tmp_path / "b", console)}
    assert rows["hit@1"]["delta"] == 1.0 and rows["hit@1"]["significant"]
    assert rows["hit@1"]["better"] is True
    assert rows["hit@5"]["delta"] == 0.0 and not rows["hit@5"]["significant"]
    out = console.export_text()
    assert "+1.000" in out and "*" in out and "retrieval=dense" in out
    with pytest.raises(ConfigError, match=r"no report\.json"):
        load_run(tmp_path / "nothing")
    with pytest.raises(ConfigError, match="exactly two"):
        main(settings=Settings(_env_file=None), compare=[tmp_path / "a"], console=console)


# ------------------------------------------------------------------------------------- LLM judge
def judge_reply(messages: list[dict[str, Any]]) -> str:
    prompt = messages[-1]["content"]
    source = re.search(r"<source>\n(.*)\n</source>", prompt, re.S).group(1)  # type: ignore[union-attr]
    claim = re.search(r"Claim: (.*)\nSupported:", prompt).group(1)  # type: ignore[union-attr]
    return "Yes" if claim.rstrip(".").lower() in source.lower() else "No."


def test_llm_judge_over_http(fake_llm: Any) -> None:
    fake_llm.reply = judge_reply
    settings = Settings(_env_file=None, llm_base_url=fake_llm.base_url, llm_max_retries=0)

    class Stub:
        llm = OpenAIBackend(settings)

    judge = llm_judge(Stub())
    lra = src(1, "lra", LRA_TEXT, title=LRA)
    assert judge("sequences ranging from 1K to 16K tokens.", lra) is True
    assert judge("sequences ranging from 1K to 64K tokens.", lra) is False
    assert len(fake_llm.requests) == 2
    assert judge("sequences ranging from 1K to 16K tokens.", lra) is True  # cached
    assert len(fake_llm.requests) == 2 and judge.failures == 0
    fake_llm.fault = "500"
    assert judge("something else entirely.", lra) is False
    assert judge.failures == 1 and judge.verdicts[("something else entirely.", "lra")] is None


# ------------------------------------------------------------------------------------------ e2e
@pytest.fixture
def store_copy(real_store_dir: Path, tmp_path: Path) -> Path:
    data_dir = tmp_path / "store"
    shutil.copytree(real_store_dir, data_dir)
    return data_dir


def in_unit_interval(value: Any) -> bool:
    return value is None or (isinstance(value, float | int) and 0.0 <= value <= 1.0)


@pytest.mark.e2e
def test_rag_eval_smoke(store_copy: Path, tmp_path: Path) -> None:
    """What CI runs: the real CLI, model and store on six questions."""
    out = tmp_path / "run"
    env = {**os.environ, "RAG_DATA_DIR": str(store_copy)}
    result = subprocess.run(
        [RAG, "eval", "--limit", "6", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    assert "hit@1" in result.stdout and "report.md" in result.stdout
    for name in ("report.json", "report.md", "metrics.png", "hit_at_k.png", "latency.png"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "report.json").read_text())
    assert report["meta"]["questions"] == 6 and len(report["questions"]) == 6
    assert report["meta"]["command"] == f"rag eval --limit 6 --out {out}"
    for key, m in report["headline"].items():
        assert in_unit_interval(m["value"]), key
        assert m["ci"] is None or (in_unit_interval(m["ci"][0]) and in_unit_interval(m["ci"][1]))
    for row in report["per_type"].values():
        assert all(in_unit_interval(v) for k, v in row.items() if k != "n")
    assert report["headline"]["hit@10"]["value"] is not None
    for q in report["questions"]:
        assert all(in_unit_interval(v) for v in q["metrics"].values())
        assert q["answer"]["text"]
    assert "## Headline" in (out / "report.md").read_text()
    compare = subprocess.run(
        [RAG, "eval", "--compare", str(out), "--compare", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert compare.returncode == 0, compare.stderr
    assert "+0.000" in compare.stdout


@pytest.mark.e2e
def test_eval_with_an_llm_reports_both_judges(
    store_copy: Path, tmp_path: Path, fake_llm: Any
) -> None:
    """An OpenAI-compatible backend: answers and LLM-judge verdicts come from the fake server."""

    def reply(messages: list[dict[str, Any]]) -> str:
        prompt = messages[-1]["content"]
        if "Supported:" in prompt:
            return judge_reply(messages)
        first = re.search(r"^\[1\] [^\n]*\n([^\n]*)$", prompt, re.M)  # excerpt 1's text
        sentence = re.split(r"(?<=\.)\s", first.group(1))[0] if first else ""
        return f"{sentence} [1]" if sentence else CANNOT_ANSWER

    fake_llm.reply = reply
    settings = Settings(
        _env_file=None,
        data_dir=store_copy,
        llm="openai",
        llm_base_url=fake_llm.base_url,
        llm_max_retries=0,
    )
    dataset = write_rows(tmp_path / "q.jsonl", [ROW, UNANSWERABLE])
    out = main(
        settings=settings,
        dataset=dataset,
        out=tmp_path / "run",
        console=Console(record=True),
        resamples=100,
    )
    report = json.loads((out / "report.json").read_text())
    head = report["headline"]
    assert report["meta"]["judges"] == ["offline", "llm"]
    assert report["meta"]["backend"] == "openai"
    assert head["hit@1"]["value"] == 1.0
    assert head["citation_recall"]["value"] == 1.0  # a verbatim sentence of the cited source
    assert head["citation_recall_llm"]["value"] == 1.0
    assert head["judge_agreement"]["value"] == 1.0
    assert any("Supported:" in r["messages"][-1]["content"] for r in fake_llm.requests)


def test_unsourced_finds_numbers_and_names_no_cited_source_holds() -> None:
    lra = Source(
        number=1,
        paper_id="p1",
        title="Long Range Arena: A Benchmark for Efficient Transformers",
        snippet="",
        text="It covers sequences from 1K to 16K tokens over 1,000 tasks on ImageNet.",
        score=0.8,
    )
    assert M.unsourced("Long Range Arena covers 1K to 16K tokens", [lra]) == []
    assert M.unsourced("It spans 1000 tasks on imagenet", [lra]) == []  # separators, case
    assert M.unsourced("It reaches 77.18% on MMLU", [lra]) == ["77.18", "MMLU"]
    assert M.unsourced("Yi-34B uses ImageNet", [lra]) == ["34", "Yi-34B"]
    assert M.unsourced("ImageNet's tasks", [lra]) == []  # a possessive is the name
    assert M.unsourced("The benchmark is hard", []) == []  # no number, no name: nothing to find
    assert M.unsourced("It has 16K tokens", []) == ["16", "16K"]  # no cited source: all missing
