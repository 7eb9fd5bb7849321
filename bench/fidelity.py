"""`python -m bench fidelity`: how far the ONNX vectors are from fp32 torch, and what it costs.

Every chunk of the bundled corpus (chunked exactly as ingest does) is embedded by fp32 torch
(sentence-transformers), ONNX fp32 and ONNX int8; we report the cosine of each ONNX vector to its
torch vector (mean, 1st percentile, min), the encoder speed on the same texts (wall and CPU), and
retrieval quality with each: dense search over those chunk vectors (exact, numpy), best chunk
per paper, for the dev questions; hit@1, hit@5 and MRR of the paper that answers.
"""

from __future__ import annotations

import resource
import time
from typing import Any

import numpy as np

from bench.common import bundled_papers, questions, save, table


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _chunks(embedder: Any) -> tuple[list[str], list[str]]:
    from rag.chunking import Chunker

    chunker = Chunker(180, 24, count_model_tokens=embedder.count_tokens, max_model_tokens=256)
    texts, owners = [], []
    for paper in bundled_papers():
        for chunk in chunker.chunk(paper):
            texts.append(chunk.text)
            owners.append(paper.title)
    return texts, owners


def probes(seed: int = 11) -> tuple[list[str], list[str]]:
    """One harder query per paper: a sentence of its abstract with 40% of the words dropped and
    the rest shuffled within short windows (a stand-in paraphrase; the title is never included).
    """
    import random

    from bench.common import _SENTENCE

    rng = random.Random(seed)
    texts, targets = [], []
    for paper in bundled_papers():
        sentences = [s for s in _SENTENCE.split(paper.abstract) if len(s.split()) >= 12]
        if not sentences:
            continue
        words = [w for w in rng.choice(sentences).split() if rng.random() > 0.4]
        for i in range(0, len(words) - 2, 3):
            window = words[i : i + 3]
            rng.shuffle(window)
            words[i : i + 3] = window
        texts.append(" ".join(words))
        targets.append(paper.title)
    return texts, targets


def retrieval_quality(
    chunk_vecs: np.ndarray, owners: list[str], qvecs: np.ndarray, targets: list[str]
) -> dict[str, float]:
    titles = sorted(set(owners))
    index = {t: i for i, t in enumerate(titles)}
    owner_idx = np.array([index[o] for o in owners])
    hits1 = hits5 = 0
    rr = 0.0
    for qv, target in zip(qvecs, targets, strict=True):
        sims = chunk_vecs @ qv
        best = np.full(len(titles), -2.0, dtype=np.float32)
        np.maximum.at(best, owner_idx, sims)
        ranking = [titles[i] for i in np.argsort(-best)]
        rank = next(
            (r for r, t in enumerate(ranking, 1) if target.lower() in t.lower()), len(ranking) + 1
        )
        hits1 += rank == 1
        hits5 += rank <= 5
        rr += 1.0 / rank
    n = len(targets)
    return {"hit@1": hits1 / n, "hit@5": hits5 / n, "mrr": rr / n}


def main() -> None:
    from rag.embeddings import SentenceEmbedding
    from rag.onnx_embed import RECIPE, OnnxEmbedding

    encoders = {
        "torch fp32": SentenceEmbedding(),
        "onnx fp32": OnnxEmbedding(quantize="none"),
        "onnx int8 (all MatMuls)": OnnxEmbedding(quantize="int8-all"),
        f"onnx int8 ({RECIPE['int8']}, default)": OnnxEmbedding(),
    }
    texts, owners = _chunks(encoders["torch fp32"])
    qs, source = questions()
    qtexts = [q for q, _ in qs]
    targets = [t for _, t in qs]
    probe_texts, probe_targets = probes()
    results: dict[str, Any] = {
        "probes": len(probe_texts),
        "chunks": len(texts),
        "questions": len(qs),
        "question_set": source,
    }
    vectors: dict[str, np.ndarray] = {}
    rows = []
    ref: np.ndarray | None = None
    for name, enc in encoders.items():
        enc.encode(texts[:8])  # warm-up
        c, t = _cpu(), time.perf_counter()
        vecs = enc.encode(texts)
        wall, cpu = time.perf_counter() - t, _cpu() - c
        vectors[name] = vecs
        ref = vecs if ref is None else ref
        cos = (vecs * ref).sum(axis=1)
        quality = retrieval_quality(vecs, owners, enc.encode(qtexts), targets)
        probe = retrieval_quality(vecs, owners, enc.encode(probe_texts), probe_targets)
        quality.update({f"probe_{k}": v for k, v in probe.items()})
        # Mixed: questions by this encoder against chunks stored by torch (what happens if the
        # fingerprint check were bypassed).
        entry = {
            "fingerprint": enc.fingerprint,
            "cos_mean": float(cos.mean()),
            "cos_p1": float(np.percentile(cos, 1)),
            "cos_min": float(cos.min()),
            "chunks_per_s": len(texts) / wall,
            "cpu_ms_per_chunk": 1000 * cpu / len(texts),
            **quality,
        }
        results[name] = entry
        rows.append(
            [
                name,
                entry["cos_mean"],
                entry["cos_p1"],
                entry["cos_min"],
                entry["chunks_per_s"],
                entry["cpu_ms_per_chunk"],
                entry["hit@1"],
                entry["hit@5"],
                entry["mrr"],
                entry["probe_hit@1"],
                entry["probe_mrr"],
            ]
        )
    torch_cpu = results["torch fp32"]["cpu_ms_per_chunk"]
    for name in encoders:
        results[name]["speedup_cpu_vs_torch"] = torch_cpu / results[name]["cpu_ms_per_chunk"]
    table(
        f"encoder fidelity on {len(texts)} bundled chunks; retrieval on {source}",
        [
            "encoder",
            "cos mean",
            "cos p1",
            "cos min",
            "chunks/s",
            "CPU ms/chunk",
            "hit@1",
            "hit@5",
            "MRR",
            "probe hit@1",
            "probe MRR",
        ],
        [
            [
                f"{v:.4f}" if isinstance(v, float) and i in (1, 2, 3, 6, 7, 8, 9, 10) else v
                for i, v in enumerate(r)
            ]
            for r in rows
        ],
    )
    print(f"wrote {save('fidelity', results)}")
