"""Refit the extractive backend's answerability model on the dev split and print what it is worth.

    python -m eval.fit_answerable              # CV figures + ablation on dev, then writes the model
    python -m eval.fit_answerable --no-write   # figures only
    python -m eval.fit_answerable --train eval/data/train.jsonl   # fit on dev + the train split

    dev questions ─► the sources the pipeline hands the backend (real retrieval, evidence gate)
                 ─► every candidate sentence ─► rag.answer features
                 ─► label: an answerable question's gold-paper sentence holding a must_contain item
                 ─► LogisticRegression ─► answer threshold and keep ratio chosen on the same data
                 ─► rag/data/answerable.json

Only the dev split (and, with --train, the train split written to fit on) is read. Figures are
5-fold cross-validated by question (the model and both thresholds are fitted on four folds and
scored on the fifth), so they estimate unseen questions.
The ablation refits without one signal at a time; a signal that does not pay its way is dropped.
Needs scikit-learn (the `dev` extra); the runtime only reads the JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from rag.answer import (
    FEATURES,
    MODEL_FILE,
    Candidate,
    ExtractiveBackend,
    Model,
    candidates,
    pick,
    quote,
)
from rag.prompts import CANNOT_ANSWER
from rag.question import analyse
from rag.types import Source

from .dataset import DEFAULT_DATASET, Question, load_questions, select
from .metrics import contains

OUT = Path(__file__).resolve().parent.parent / "rag" / "data" / MODEL_FILE
FOLDS = 5
SEED = 0
KEEP_RATIOS = (0.2, 0.5, 0.8, 1.01)
FEATURE_INDEX = {f: i for i, f in enumerate(FEATURES)}
N = len(FEATURES)
TOP = 12  # candidates looked at per question (at most 3 are quoted)
# Feature groups the ablation removes one at a time.
GROUPS: dict[str, tuple[str, ...]] = {
    "lexical support": ("lexical", "coverage", "focus"),
    "embedding similarity": ("cosine", "relative"),
    "retrieval margin": ("margin",),
    "answer type: number": ("number_offered", "number_missing", "measured"),
    "answer type: entity": ("entity_offered",),
    "answer type: person": ("person_missing",),
    "entity agreement": ("names_source", "names_sentence"),
    "whole names": ("phrases_source",),
    "number agreement": ("numbers_agree",),
    "first sentence": ("first",),
}


@dataclass
class Item:
    q: Question
    sources: list[Source]  # what the backend is handed; [] when the evidence gate refused
    cands: list[Candidate]
    labels: list[int]
    x: np.ndarray  # candidates x FEATURES
    allowed: dict[str, np.ndarray]  # per scoping variant: candidates of the sources it keeps
    is_list: bool


class _Recorder:
    """A backend that records what the pipeline hands it and refuses (nothing to verify)."""

    name = "recorder"

    def __init__(self) -> None:
        self.sources: list[Source] = []

    def generate(self, question: str, sources: list[Source]) -> str:
        self.sources = list(sources)
        return CANNOT_ANSWER

    def stream(self, question: str, sources: list[Source]):
        yield self.generate(question, sources)


def collect(questions: list[Question]) -> list[Item]:
    """Run each question through the real pipeline up to the backend and keep its sources."""
    from rich.console import Console

    from rag.assistant import Assistant
    from rag.settings import Settings

    from .run import _ingest_bundled

    # The retrieval gate only: the answerability gate is the model being fitted here.
    assistant = Assistant(Settings(llm="extractive", answer_gate="retrieval"))
    if assistant.is_empty():
        _ingest_bundled(assistant, Console())
    backends = {  # the scoping variants the ablation compares
        "all": ExtractiveBackend(),
        "no names": ExtractiveBackend(scope=False),
        "no people": ExtractiveBackend(people=False),
    }
    items = []
    for q in questions:
        recorder = _Recorder()
        for _ in assistant.pipeline(backend=recorder).run(q.question, stream=False):
            pass
        sources = recorder.sources
        cands = candidates(q.question, sources)
        kept = {
            name: {s.number for s in b.scoped(q.question, sources)} for name, b in backends.items()
        }
        items.append(
            Item(
                q,
                sources,
                cands,
                [label(q, c) for c in cands],
                np.array([[c.features[f] for f in FEATURES] for c in cands]).reshape(-1, N),
                {
                    name: np.array([c.source.number in k for c in cands], dtype=bool)
                    for name, k in kept.items()
                },
                analyse(q.question).is_list,
            )
        )
    return items


def _norm(title: str) -> str:
    return " ".join(title.lower().split())


def label(q: Question, c: Candidate) -> int:
    """1: a sentence of a gold paper that holds one of the facts a correct answer must contain."""
    if not q.answerable:
        return 0
    gold = {_norm(t) for t in q.gold_titles}
    title = _norm(c.source.title)
    if not any(title.startswith(g) or g.startswith(title) for g in gold):
        return 0
    return int(any(contains(c.sentence, m) for m in q.must_contain))


# --------------------------------------------------------------------------------- fit + score
def fit(items: list[Item], features: tuple[str, ...]) -> tuple[tuple[float, ...], float]:
    from sklearn.linear_model import LogisticRegression

    idx = [FEATURE_INDEX[f] for f in features]
    x = np.vstack([it.x[:, idx] for it in items])
    y = np.array([lab for it in items for lab in it.labels])
    lr = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
    lr.fit(x, y)
    return tuple(float(w) for w in lr.coef_[0]), float(lr.intercept_[0])


def score(items: list[Item], model: Model, scope: str = "all") -> dict[str, float]:
    """The backend's choice (rag.answer.pick over the scoped sources) and the eval's figures."""
    idx = [FEATURE_INDEX[f] for f in model.features]
    weights = np.array(model.weights)
    mc, ans_refused, unans_refused = [], [], []
    for it in items:
        text = CANNOT_ANSWER
        mask = it.allowed[scope]
        if it.sources and mask.any():
            z = it.x[:, idx] @ weights + model.bias
            p = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
            p = np.where(mask, p, -1.0)
            order = np.argsort(-p, kind="stable")[:TOP]
            ranked = [replace(it.cands[i], probability=float(p[i])) for i in order if p[i] >= 0]
            chosen = pick(ranked, model, it.is_list)
            text = quote(chosen) if chosen else CANNOT_ANSWER
        refused = text == CANNOT_ANSWER
        if it.q.answerable:
            ans_refused.append(refused)
            found = 0.0 if refused else sum(contains(text, m) for m in it.q.must_contain)
            mc.append(found / len(it.q.must_contain) if it.q.must_contain else found)
        else:
            unans_refused.append(refused)
    return {
        "must_contain": statistics.fmean(mc) if mc else 0.0,
        "answerable_refused": statistics.fmean(ans_refused) if ans_refused else 0.0,
        "unanswerable_refused": statistics.fmean(unans_refused) if unans_refused else 0.0,
    }


def objective(m: dict[str, float]) -> float:
    """Must-contain recall plus balanced abstention accuracy (both kinds of refusal count)."""
    return m["must_contain"] + (1 - m["answerable_refused"]) + m["unanswerable_refused"]


def train(items: list[Item], features: tuple[str, ...], scope: str = "all") -> Model:
    """Fit the weights, then the two thresholds that maximise `objective` on the same items."""
    weights, bias = fit(items, features)
    base = Model(features, weights, bias, answer_threshold=0.5, keep_ratio=0.5)
    bests = sorted(
        {max((base.probability(c.features) for c in it.cands), default=0.0) for it in items}
    )
    grid = sorted({round(float(q), 4) for q in np.quantile(bests, np.linspace(0, 0.6, 25))})
    best, best_value = base, -1.0
    for threshold in grid:
        for keep in KEEP_RATIOS:
            model = replace(base, answer_threshold=threshold, keep_ratio=keep)
            value = objective(score(items, model, scope))
            if value > best_value + 1e-9:
                best, best_value = model, value
    return best


def cross_validate(
    items: list[Item], features: tuple[str, ...], scope: str = "all"
) -> dict[str, float]:
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(items))
    folds = [order[i::FOLDS] for i in range(FOLDS)]
    scored: list[dict[str, float]] = []
    weights: list[int] = []
    for fold in folds:
        held = set(fold.tolist())
        train_items = [it for i, it in enumerate(items) if i not in held]
        test_items = [items[i] for i in sorted(held)]
        model = train(train_items, features, scope)
        scored.append(score(test_items, model, scope))
        weights.append(len(test_items))
    return _pooled(scored, weights, items, folds)


def _pooled(scored, weights, items, folds) -> dict[str, float]:
    """Fold figures pooled by how many answerable / unanswerable questions each fold holds."""
    out = {}
    for key, answerable in (
        ("must_contain", True),
        ("answerable_refused", True),
        ("unanswerable_refused", False),
    ):
        n = [sum(items[i].q.answerable == answerable for i in fold) for fold in folds]
        out[key] = sum(s[key] * k for s, k in zip(scored, n, strict=True)) / max(sum(n), 1)
    return out


def _features(groups: list[str]) -> tuple[str, ...]:
    return tuple(f for f in FEATURES if any(f in GROUPS[g] for g in groups))


def eliminate(items: list[Item]) -> tuple[list[str], list[tuple[str, dict[str, float]]]]:
    """Backward elimination by group on CV figures: drop the group whose removal helps most
    (or costs nothing), until every removal costs something. Returns the groups kept and the
    steps taken."""
    kept = list(GROUPS)
    current = cross_validate(items, _features(kept))
    steps = [("all signals", current)]
    while len(kept) > 1:
        trials = {g: cross_validate(items, _features([k for k in kept if k != g])) for g in kept}
        group, best = max(trials.items(), key=lambda kv: objective(kv[1]))
        if objective(best) < objective(current) - 1e-9:
            break
        kept.remove(group)
        current = best
        steps.append((f"- {group}", best))
    return kept, steps


def _row(name: str, m: dict[str, float]) -> str:
    return (
        f"| {name} | {m['must_contain']:.3f} | {m['answerable_refused']:.3f} "
        f"| {m['unanswerable_refused']:.3f} |"
    )


HEADER = (
    "| variant | must-contain | answerable refused | unanswerable refused |\n|---|---:|---:|---:|"
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument(
        "--train",
        type=Path,
        action="append",
        default=[],
        help="also fit on this file's 'train' rows (eval/data/train.jsonl); repeatable",
    )
    parser.add_argument("--no-write", action="store_true", help="print the figures only")
    parser.add_argument(
        "--groups", help="comma-separated signal groups to use (default: backward elimination)"
    )
    args = parser.parse_args(argv)

    questions = select(load_questions(args.dataset), "dev", None)
    extra = [q for path in args.train for q in select(load_questions(path), "train", None)]
    items = collect(questions + extra)
    n_pos = sum(sum(it.labels) for it in items)
    n_cand = sum(len(it.cands) for it in items)
    fitted_on = f"{args.dataset.name} split dev ({len(questions)} questions)"
    if extra:
        names = ", ".join(path.name for path in args.train)
        fitted_on += f" + {names} split train ({len(extra)} questions)"
    print(f"fitting set: {fitted_on}; {n_cand} candidate sentences, {n_pos} positive")
    print(f"{FOLDS}-fold CV by question; objective = must-contain + balanced abstention")
    if args.groups:
        kept = [g.strip() for g in args.groups.split(",")]
    else:
        kept, steps = eliminate(items)
        print("\nbackward elimination (each step drops the group whose removal helps most)")
        print(HEADER)
        for name, m in steps:
            print(_row(name, m))
    full = _features(kept)
    print(f"\nablation of the kept signals: {', '.join(kept)}")
    print(HEADER)
    print(_row("kept signals", cross_validate(items, full)))
    for group in kept:
        print(
            _row(
                f"without {group}",
                cross_validate(items, _features([g for g in kept if g != group])),
            )
        )
    print(_row("without scoping by names", cross_validate(items, full, scope="no names")))
    print(_row("without the people rule", cross_validate(items, full, scope="no people")))
    model = train(items, full)
    fitted = score(items, model)
    print(
        f"\nfitted on the whole fitting set (in-sample): must-contain {fitted['must_contain']:.3f}, "
        f"answerable refused {fitted['answerable_refused']:.3f}, "
        f"unanswerable refused {fitted['unanswerable_refused']:.3f}; "
        f"threshold {model.answer_threshold:.4f}, keep ratio {model.keep_ratio}"
    )
    for f, w in zip(model.features, model.weights, strict=True):
        print(f"  {f:16s} {w:+.3f}")
    print(f"  {'(bias)':16s} {model.bias:+.3f}")
    if not args.no_write:
        data = {
            "about": "rag.answer extractive answerability model; refit: python -m "
            "eval.fit_answerable" + "".join(f" --train {p}" for p in args.train),
            "fitted_on": fitted_on,
            "groups": kept,
            "features": list(model.features),
            "weights": [round(w, 6) for w in model.weights],
            "bias": round(model.bias, 6),
            "answer_threshold": round(model.answer_threshold, 6),
            "keep_ratio": model.keep_ratio,
        }
        OUT.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
