"""Fit the offline claim judge (rag/judge.py) on the dev half of eval/data/claims.jsonl.

    python -m eval.fit_judge [--no-write] [--ablation] [--cache FILE] [--threshold T]
                             [--kind monotone|logistic]

A logistic regression over the general signals of `rag.judge.SIGNALS`, trained on the dev pairs
that no grounding veto decides, each coefficient held to the sign `rag.judge.SIGNS` gives it
(`--kind monotone`, the default: the labelled claims were written as near-copies with one thing
changed and as true paraphrases, so an unconstrained fit learns that copied wording and matching
bigrams count *against* a claim, and rejects a model's near-verbatim sentence). The decision
threshold is the lowest one whose precision of "supported", by repeated 5-fold cross-validation
on dev (vetoes included), reaches 0.95, unless `--threshold` fixes one. Prints the dev
cross-validated and the held-out (test) precision/recall, and writes rag/data/judge.json.
`--ablation` also refits without each signal group and without each veto (same procedure) and
prints the table in docs/verification.md. The test split is only scored, in aggregate, never
fitted or tuned on. Needs scikit-learn (the `dev` extra); the shipped judge does not.
"""

from __future__ import annotations

import argparse
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.corpus import normalize_title
from rag.judge import MODEL_PATH, SIGNALS, SIGNS, VETOES, Features, JudgeModel, veto

from .claims_eval import load_claims, sources_by_title

TARGET_PRECISION = 0.95
FOLDS, REPEATS, SEED, C = 5, 20, 0, 1.0  # C from 0.1 to 10: within noise on dev CV
THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.01), 2)
GROUPS = {  # signal groups for the ablation
    "embedding (cos)": ("cos",),
    "lexical overlap (overlap, overlap_full, novel, bigrams)": (
        "overlap",
        "overlap_full",
        "novel",
        "bigrams",
    ),
    "numbers and names matched": ("numbers", "names"),
    "negation mismatch": ("negation",),
    "opposites": ("opposites",),
}


def compute_features(cache: Path | None = None) -> tuple[list[dict[str, Any]], list[Features]]:
    """Every labelled pair's features with the configured encoder (as answers use), ~1 min."""
    rows = load_claims()
    if cache and cache.exists():
        return rows, pickle.loads(cache.read_bytes())
    from rag.embeddings import get_embedder
    from rag.settings import Settings
    from rag.verify import Verifier

    placeholder = JudgeModel(
        SIGNALS, (0.0,) * len(SIGNALS), (1.0,) * len(SIGNALS), (0.0,) * len(SIGNALS), 0.0, 0.5
    )
    verifier = Verifier(get_embedder(Settings()), model=placeholder)
    sources = sources_by_title()
    feats = [
        verifier.features(r["claim"], sources[normalize_title(r["source_title"])], shortcut=False)
        for r in rows
    ]
    if cache:
        cache.write_bytes(pickle.dumps(feats))
    return rows, feats


def fit(x: np.ndarray, y: np.ndarray, names: Sequence[str], kind: str = "logistic") -> Any:
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(axis=0)
    scale = np.where(x.std(axis=0) > 1e-9, x.std(axis=0), 1.0)
    if kind == "boosting":
        from sklearn.ensemble import GradientBoostingClassifier

        gb = GradientBoostingClassifier(n_estimators=100, max_depth=2, random_state=SEED)
        gb.fit(x, y)
        return gb
    z = (x - mean) / scale
    if kind == "monotone":
        coef, intercept = fit_signed(z, y, [SIGNS[n] for n in names])
    else:
        lr = LogisticRegression(C=C, max_iter=1000).fit(z, y)
        coef, intercept = lr.coef_[0], float(lr.intercept_[0])
    return JudgeModel(
        features=tuple(names),
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        coef=tuple(float(v) for v in coef),
        intercept=float(intercept),
        threshold=0.5,
    )


def fit_signed(z: np.ndarray, y: np.ndarray, signs: Sequence[int]) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression (scikit-learn's objective at the same C) with each
    coefficient held to its sign (`rag.judge.SIGNS`): scipy's L-BFGS-B with bounds."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    target = np.where(y, 1.0, -1.0)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        margin = target * (z @ w[:-1] + w[-1])
        value = -np.sum(log_expit(margin)) + 0.5 / C * np.dot(w[:-1], w[:-1])
        g = -target * expit(-margin)
        grad = np.append(z.T @ g + w[:-1] / C, g.sum())
        return float(value), grad

    bounds = [(0, None) if s > 0 else (None, 0) for s in signs] + [(None, None)]
    w = minimize(loss, np.zeros(z.shape[1] + 1), jac=True, method="L-BFGS-B", bounds=bounds).x
    return w[:-1], float(w[-1])


def predict(model: Any, x: np.ndarray) -> np.ndarray:
    if isinstance(model, JudgeModel):
        z = (x - np.array(model.mean)) / np.array(model.scale) @ np.array(model.coef)
        return 1.0 / (1.0 + np.exp(-(z + model.intercept)))
    return model.predict_proba(x)[:, 1]


class Judge:
    """The judge under one configuration: which signals feed the model, which vetoes apply."""

    def __init__(
        self, feats: list[Features], labels: np.ndarray, names: Sequence[str], vetoes: tuple
    ):
        self.names, self.labels = list(names), labels
        self.x = np.array([[f.signals[n] for n in self.names] for f in feats], dtype=float)
        verdicts = [veto(f, vetoes) for f in feats]
        self.free = np.array([v is None for v in verdicts])  # rows the model decides
        self.fixed = np.array([bool(v and v.supported) for v in verdicts])

    def probabilities(self, train: np.ndarray, test: np.ndarray, kind: str) -> np.ndarray:
        """P(supported) for `test` rows, fitted on the free rows of `train` (-1 where vetoed)."""
        tr = train[self.free[train]]
        model = fit(self.x[tr], self.labels[tr], self.names, kind)
        out = np.full(len(test), -1.0)
        mask = self.free[test]
        out[mask] = predict(model, self.x[test[mask]])
        return out


def precision_recall(pred: np.ndarray, gold: np.ndarray) -> tuple[float, float]:
    tp = int(np.sum(pred & gold))
    fp = int(np.sum(pred & ~gold))
    fn = int(np.sum(~pred & gold))
    return (tp / (tp + fp) if tp + fp else 1.0), (tp / (tp + fn) if tp + fn else 1.0)


def decisions(judge: Judge, rows: np.ndarray, probs: np.ndarray, threshold: float) -> np.ndarray:
    return np.where(judge.free[rows], probs >= threshold, judge.fixed[rows])


def cross_validate(
    judge: Judge,
    dev: np.ndarray,
    kind: str,
    curve: list[tuple[float, float, float]] | None = None,
    fixed: float | None = None,
) -> tuple[float, float, float]:
    """(threshold, precision, recall): the lowest threshold whose mean CV precision on dev
    reaches the target (else the most precise one), or the `fixed` one, with the mean CV figures
    there. `curve`, if given, receives (threshold, precision, recall) for every threshold tried."""
    from sklearn.model_selection import RepeatedStratifiedKFold

    cv = RepeatedStratifiedKFold(n_splits=FOLDS, n_repeats=REPEATS, random_state=SEED)
    gold = judge.labels[dev]
    oof = np.zeros((REPEATS, len(dev)))
    for i, (train, test) in enumerate(cv.split(dev, gold)):
        oof[i // FOLDS, test] = judge.probabilities(dev[train], dev[test], kind)
    table = []
    for t in THRESHOLDS:
        pr = [precision_recall(decisions(judge, dev, oof[r], t), gold) for r in range(REPEATS)]
        table.append((float(t), *np.mean(pr, axis=0)))
    if curve is not None:
        curve.extend(table)
    if fixed is not None:
        return min(table, key=lambda row: abs(row[0] - fixed))
    reaching = [row for row in table if row[1] >= TARGET_PRECISION]
    return reaching[0] if reaching else max(table, key=lambda row: (row[1], row[2]))


def run(
    feats: list[Features],
    rows: list[dict[str, Any]],
    names: Sequence[str],
    vetoes: tuple = VETOES,
    kind: str = "logistic",
    curve: list[tuple[float, float, float]] | None = None,
    fixed: float | None = None,
) -> tuple[Any, dict[str, float]]:
    labels = np.array([bool(r["label"]) for r in rows])
    judge = Judge(feats, labels, names, vetoes)
    dev = np.array([i for i, r in enumerate(rows) if r["split"] == "dev"])
    test = np.array([i for i, r in enumerate(rows) if r["split"] == "test"])
    threshold, cv_p, cv_r = cross_validate(judge, dev, kind, curve, fixed)
    free_dev = dev[judge.free[dev]]
    model = fit(judge.x[free_dev], labels[free_dev], names, kind)
    probs = np.full(len(test), -1.0)
    probs[judge.free[test]] = predict(model, judge.x[test[judge.free[test]]])
    test_p, test_r = precision_recall(decisions(judge, test, probs, threshold), labels[test])
    figures = {
        "threshold": threshold,
        "dev_cv_precision": round(float(cv_p), 3),
        "dev_cv_recall": round(float(cv_r), 3),
        "test_precision": round(test_p, 3),
        "test_recall": round(test_r, 3),
    }
    if isinstance(model, JudgeModel):
        model = JudgeModel(**{**model.__dict__, "threshold": threshold})
    return model, figures


def row(name: str, fig: dict[str, float]) -> str:
    return (
        f"| {name} | {fig['dev_cv_precision']:.3f} | {fig['dev_cv_recall']:.3f} | "
        f"{fig['test_precision']:.3f} | {fig['test_recall']:.3f} | {fig['threshold']:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-write", action="store_true", help="do not write rag/data/judge.json")
    parser.add_argument("--ablation", action="store_true", help="also print the ablation table")
    parser.add_argument("--cache", type=Path, help="pickle the computed features here and reuse")
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="ship this decision threshold (e.g. 0.5, the model's own boundary) instead of the "
        f"lowest one reaching dev-CV precision {TARGET_PRECISION}",
    )
    parser.add_argument(
        "--kind",
        choices=("monotone", "logistic"),
        default="monotone",
        help="monotone: coefficients held to rag.judge.SIGNS (default); logistic: unconstrained",
    )
    args = parser.parse_args()
    rows, feats = compute_features(args.cache)
    curve: list[tuple[float, float, float]] = []
    kind = args.kind
    model, figures = run(feats, rows, SIGNALS, kind=kind, curve=curve, fixed=args.threshold)
    print("full model:", figures)
    print("dev CV operating points (threshold: precision, recall):")
    print("  " + ", ".join(f"{t:.2f}: {p:.3f}, {r:.3f}" for t, p, r in curve[::5]))
    if not args.no_write:
        meta = {
            "fitted_on": "eval/data/claims.jsonl split=dev",
            "command": f"python -m eval.fit_judge --kind {kind}"
            + (f" --threshold {args.threshold}" if args.threshold is not None else ""),
            "kind": kind,
            "cv": f"{REPEATS}x{FOLDS}-fold stratified",
            "threshold_rule": f"fixed at {args.threshold} (--threshold)"
            if args.threshold is not None
            else f"lowest threshold with dev-CV precision >= {TARGET_PRECISION}",
            **figures,
        }
        MODEL_PATH.parent.mkdir(parents=True, exist_ok=True)
        MODEL_PATH.write_text(JudgeModel(**{**model.__dict__, "meta": meta}).to_json())
        print("wrote", MODEL_PATH)
    if not args.ablation:
        return
    print("\n| judge (dev: CV; test: fitted on all dev) | dev P | dev R | test P | test R | thr |")
    print("|---|---:|---:|---:|---:|---:|")
    print(row("full model (all signals, all vetoes)", figures))
    for group, members in GROUPS.items():
        names = [n for n in SIGNALS if n not in members]
        print(row(f"without {group}", run(feats, rows, names, kind=kind)[1]))
    for name in VETOES:
        vetoes = tuple(v for v in VETOES if v != name)
        print(row(f"without the {name} veto", run(feats, rows, SIGNALS, vetoes, kind=kind)[1]))
    other = "logistic" if kind == "monotone" else "monotone"
    print(row(f"{other} instead of {kind}", run(feats, rows, SIGNALS, kind=other)[1]))
    print(row("gradient boosting, same signals", run(feats, rows, SIGNALS, kind="boosting")[1]))


if __name__ == "__main__":
    main()
