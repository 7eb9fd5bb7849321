"""The streamed BM25 build (rag.bm25_build, rag.bm25_matrix) saves the files bm25s's own
in-memory build saves, byte for byte, and answers every query the same."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from rag import bm25_matrix
from rag.bm25 import TOKENS, PackedIds, analyse, ids_state, import_bm25s, load_bm25
from rag.bm25_build import TokenSpill, build, token_line

TEXTS = {
    "p1#0:a": "We train a Vision Transformer (ViT) on ImageNet-21k with 86M parameters.",
    "p1#1:b": "Long Range Arena covers sequences from 1K to 16K tokens.",
    "p2#0:c": "Graph neural networks (GNN) predict molecular properties; GNN-based models win.",
    "p3#0:d": "A state-space model handles long sequences in linear time.",
    "p4#0:e": "Reinforcement learning from human feedback (RLHF) aligns language models.",
}


def _in_memory(tokens: list[list[str]], directory: Path) -> Path:
    """What rag built before: every chunk's tokens in memory, handed to bm25s at once, saved."""
    index = import_bm25s().BM25()
    index.index(tokens, show_progress=False)
    index.save(str(directory))
    return directory


def _same_files(got: Path, want: Path) -> None:
    names = sorted(p.name for p in want.iterdir())
    assert sorted(p.name for p in got.iterdir()) == names  # no scratch or stand-in file left
    for name in names:
        assert (got / name).read_bytes() == (want / name).read_bytes(), name


@pytest.mark.parametrize("pack", [list, PackedIds], ids=["list", "packed"])
def test_the_streamed_build_is_bm25s_in_memory_build(tmp_path: Path, pack: type) -> None:
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

    built = build(tmp_path, pack(ids), spill.take(), read_back, tmp_path / "index-x")
    assert asked == [[ids[1], ids[4]]] and built.read_back == 2 and built.rows == 5
    want = _in_memory([analyse(TEXTS[i])[0] for i in ids], tmp_path.parent / "want")
    _same_files(tmp_path / "index-x", want)
    bm25s = import_bm25s()
    got_index = bm25s.BM25.load(str(tmp_path / "index-x"), mmap=True)
    want_index = bm25s.BM25.load(str(want))
    assert list(got_index.vocab_dict.items()) == list(want_index.vocab_dict.items())
    for key in ("data", "indices", "indptr"):
        got, exp = got_index.scores[key], want_index.scores[key]
        assert got.dtype == exp.dtype and np.array_equal(got, exp)
    acronyms: dict[str, str] = {}
    for cid in ids:  # later rows win, as before
        acronyms.update(analyse(TEXTS[cid])[1])
    assert built.acronyms == acronyms and acronyms["vit"] == "Vision Transformer"
    # The cache now holds exactly the store's chunks, in row order, as rag always wrote it.
    assert (tmp_path / TOKENS).read_bytes() == b"".join(
        token_line(i, *analyse(TEXTS[i])) for i in ids
    )
    # No spill or temp file left: the cache and the index.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index-x", TOKENS]


def test_packed_ids_are_the_sorted_ids() -> None:
    """The store's ids as the index build holds them: pages sorted, packed and merged."""
    rng = random.Random(5)
    letters = "ab#:0é€😀z"  # UTF-8 of one to four bytes: byte order is code point order
    for _ in range(200):
        ids = list({"".join(rng.choices(letters, k=rng.randint(1, 8))) for _ in range(40)})
        rng.shuffle(ids)
        size = rng.randint(1, 9)
        packed = PackedIds.sorted_from(ids[i : i + size] for i in range(0, len(ids), size))
        ids.sort()
        assert len(packed) == len(ids) and list(packed) == ids
        assert [packed[i] for i in range(-len(ids), len(ids))] == ids + ids
        assert ids_state(packed) == ids_state(ids)
        for cid in ids + ["".join(rng.choices(letters, k=3)) for _ in range(20)]:
            assert packed.find(cid) == (ids.index(cid) if cid in ids else None)
    assert list(PackedIds.sorted_from([[]])) == [] and PackedIds([]).find("x") is None


def test_a_chunk_whose_tokens_cannot_be_found_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="p9#0"):
        build(tmp_path, ["p9#0:x"], None, lambda missing: iter(()), tmp_path / "index")


def test_no_chunks_no_index(tmp_path: Path) -> None:
    built = build(tmp_path, [], None, lambda missing: iter(()), tmp_path / "index")
    assert built.rows == 0 and built.acronyms == {} and (tmp_path / TOKENS).read_bytes() == b""
    assert not (tmp_path / "index").exists()


def _zipf_corpus(rows: int, seed: int) -> list[list[str]]:
    """Chunks of 0-120 words drawn from a Zipf-like vocabulary: a few words in most chunks (each
    a column past the block size), a long tail, repeats within a chunk, and empty chunks."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(3000)]
    weights = [1 / (i + 1) for i in range(len(words))]
    return [rng.choices(words, weights, k=rng.choice([0, 3, 40, 120])) for _ in range(rows)]


@pytest.mark.parametrize(("block", "flush"), [(64, 16), (1000, 333), (1 << 20, 1 << 17)])
def test_the_matrix_built_in_blocks_is_bm25s_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int, flush: int
) -> None:
    """Blocks far smaller than the matrix (single-column blocks included, and buffers flushed
    mid-chunk-run), and one block for everything: the same files, the same scores and top hits
    for every query as bm25s's in-memory build."""
    monkeypatch.setattr(bm25_matrix, "BLOCK", block)
    monkeypatch.setattr(bm25_matrix, "_FLUSH", flush)
    corpus = _zipf_corpus(1500, seed=block)
    (tmp_path / "spilled").write_bytes(
        b"".join(token_line(f"c{i:05d}", toks, {}) for i, toks in enumerate(corpus))
    )
    ids = [f"c{i:05d}" for i in range(len(corpus))]
    with (tmp_path / "spilled").open("rb") as spill:
        build(tmp_path, ids, spill, lambda missing: iter(()), tmp_path / "got")
    want = _in_memory(corpus, tmp_path / "want")
    _same_files(tmp_path / "got", want)

    bm25s = import_bm25s()
    got, exp = bm25s.BM25.load(str(tmp_path / "got"), mmap=True), bm25s.BM25.load(str(want))
    rng = random.Random(7)
    queries = [rng.sample(list(exp.vocab_dict), rng.randint(1, 6)) for _ in range(200)]
    queries += [["w0"], ["w0", "w1", "w2"], ["w2999", "nothere"]]
    for query in queries:
        ids_got = got.get_tokens_ids(query)
        assert ids_got == exp.get_tokens_ids(query)
        assert np.array_equal(got.get_scores_from_ids(ids_got), exp.get_scores_from_ids(ids_got))
        found = [q for q in query if q in exp.vocab_dict]
        if found:
            docs_got, scores_got = got.retrieve([found], k=10, show_progress=False)
            docs_exp, scores_exp = exp.retrieve([found], k=10, show_progress=False)
            assert np.array_equal(docs_got, docs_exp) and np.array_equal(scores_got, scores_exp)


def test_load_bm25_is_bm25s_load_without_the_id_set(tmp_path: Path) -> None:
    """rag's load of a saved index (rag.bm25.load_bm25) gives bm25s's own vocabulary, in its
    order, and the same answers, queries by token id included; the set of column numbers bm25s
    keeps is a range (every build's columns are 0..n-1), or a set when they are not."""
    corpus = _zipf_corpus(400, seed=11)
    want = _in_memory(corpus, tmp_path / "want")
    exp = import_bm25s().BM25.load(str(want), mmap=True)
    got = load_bm25(want)
    assert list(got.vocab_dict.items()) == list(exp.vocab_dict.items())
    assert isinstance(got.unique_token_ids_set, range)
    n = len(exp.vocab_dict)
    for col in [-1, 0, n // 2, n - 1, n, n + 5]:
        assert (col in got.unique_token_ids_set) == (col in exp.unique_token_ids_set)
    for query in (["w0", "w7"], ["w2999", "nothere"], ["w11"]):
        ids = got.get_tokens_ids(query)
        assert np.array_equal(got.get_scores(query), exp.get_scores(query))
        docs_got, scores_got = got.retrieve([[*ids, n + 5]], k=5, show_progress=False)
        docs_exp, scores_exp = exp.retrieve([[*ids, n + 5]], k=5, show_progress=False)
        assert np.array_equal(docs_got, docs_exp) and np.array_equal(scores_got, scores_exp)
    # A vocabulary whose columns are not 0..n-1 (not one rag writes): a set of them, as bm25s.
    vocab = json.loads((want / "vocab.index.json").read_text())
    (want / "vocab.index.json").write_text(json.dumps({k: v * 2 for k, v in vocab.items()}))
    assert load_bm25(want).unique_token_ids_set == {v * 2 for v in vocab.values()}
