"""The streamed BM25 build (rag.bm25_build) makes bm25s's own in-memory build, byte for byte."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.bm25 import TOKENS, analyse, import_bm25s
from rag.bm25_build import TokenSpill, build, token_line

TEXTS = {
    "p1#0:a": "We train a Vision Transformer (ViT) on ImageNet-21k with 86M parameters.",
    "p1#1:b": "Long Range Arena covers sequences from 1K to 16K tokens.",
    "p2#0:c": "Graph neural networks (GNN) predict molecular properties; GNN-based models win.",
    "p3#0:d": "A state-space model handles long sequences in linear time.",
    "p4#0:e": "Reinforcement learning from human feedback (RLHF) aligns language models.",
}


def _in_memory(ids: list[str]) -> object:
    """What rag built before: every chunk's tokens in memory, handed to bm25s at once."""
    index = import_bm25s().BM25()
    index.index([analyse(TEXTS[i])[0] for i in ids], show_progress=False)
    return index


def test_the_streamed_build_is_bm25s_in_memory_build(tmp_path: Path) -> None:
    ids = sorted(TEXTS)
    # Two chunks cached by an earlier build (one a row of wrong types), two spilled by this
    # ingest, one in neither: it is read back from the store.
    cache = token_line(ids[0], *analyse(TEXTS[ids[0]])) + b'{"id": "p1#1:b", "t": [1], "a": {}}\n'
    (tmp_path / TOKENS).write_bytes(cache + token_line("gone#0:z", ["stale"], {}))
    spill = TokenSpill(tmp_path)
    spill.add([ids[3], ids[2]], [TEXTS[ids[3]], TEXTS[ids[2]]])
    asked: list[list[str]] = []

    def read_back(missing: list[str]):  # type: ignore[no-untyped-def]
        asked.append(missing)
        return ((cid, TEXTS[cid]) for cid in missing)

    built = build(tmp_path, ids, spill.take(), read_back)
    assert asked == [[ids[1], ids[4]]] and built.read_back == 2
    want = _in_memory(ids)
    assert built.index.vocab_dict == want.vocab_dict  # type: ignore[attr-defined]
    assert list(built.index.vocab_dict) == list(want.vocab_dict)  # type: ignore[attr-defined]
    for key in ("data", "indices", "indptr"):
        got, exp = built.index.scores[key], want.scores[key]  # type: ignore[attr-defined]
        assert got.dtype == exp.dtype and np.array_equal(got, exp)
    acronyms: dict[str, str] = {}
    for cid in ids:  # later rows win, as before
        acronyms.update(analyse(TEXTS[cid])[1])
    assert built.acronyms == acronyms and acronyms["vit"] == "Vision Transformer"
    # The cache now holds exactly the store's chunks, in row order, as rag always wrote it.
    assert (tmp_path / TOKENS).read_bytes() == b"".join(
        token_line(i, *analyse(TEXTS[i])) for i in ids
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [TOKENS]  # no spill or temp file left


def test_a_chunk_whose_tokens_cannot_be_found_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="p9#0"):
        build(tmp_path, ["p9#0:x"], None, lambda missing: iter(()))


def test_no_chunks_no_index(tmp_path: Path) -> None:
    built = build(tmp_path, [], None, lambda missing: iter(()))
    assert built.index is None and built.acronyms == {} and (tmp_path / TOKENS).read_bytes() == b""
