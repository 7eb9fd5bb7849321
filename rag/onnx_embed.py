"""The bundled sentence-transformers model on ONNX Runtime: exported once, int8, ~2x torch.

    model dir ─► torch.onnx export (eager attention) ─► ORT BERT fusions ─► dynamic int8
              ─► ~/.cache/rag/onnx/<model hash>-<recipe>/model.onnx   (built once, shared)

`OnnxEmbedding` has the surface of `rag.embeddings.SentenceEmbedding` (encode, count_tokens,
max_tokens, dim, fingerprint, tokenizer) and reproduces sentence-transformers' pipeline: the same
word pieces (the model's own tokenizer.json, truncated at max_seq_length), mean pooling over the
attention mask, L2 normalisation. Texts are sorted by length before batching so little padding is
computed.

Quantisation recipe (measured on every chunk of the bundled corpus, see docs/performance.md):
weights int8 per output channel, activations uint8 per batch, on every MatMul except the second
feed-forward layer of each block, whose GELU outputs have outliers that per-tensor int8 cannot
hold (keeping those six in fp32 lifts the mean cosine to fp32 torch from 0.995 to 0.998). The
fused attention stays fp32. The int8 vectors are close to, not equal to, the torch ones, so the
fingerprint differs and a store built with one backend refuses the other until rebuilt;
`quantize="none"` gives fp32 ONNX whose vectors *are* interchangeable with torch.

The export needs torch and transformers (only the first time); afterwards a process loads the
cached file with onnxruntime and tokenizers alone, in well under a second.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from rag.embeddings import resolve_model_path
from rag.errors import EmbeddingError
from rag.settings import BUNDLED_MODEL

log = logging.getLogger(__name__)

Quantize = Literal["int8", "int8-all", "none"]
_PIECES_KEPT = 8192  # counted texts whose word pieces `encode` may reuse (~3 ingest batches)

# Bump when the export / fusion / quantisation steps change: it names the cache entry and the
# fingerprint stored with every collection.
RECIPE = {"int8": "int8-pc-ffn2fp32-v1", "int8-all": "int8-pc-all-v1", "none": "fp32-fused-v1"}
EXPORT_OPSET = 17


def cache_root() -> Path:
    """Where built models live: $XDG_CACHE_HOME/rag/onnx (platformdirs' user cache on others)."""
    from platformdirs import user_cache_path

    return user_cache_path("rag", appauthor=False) / "onnx"


def model_hash(model_dir: Path) -> str:
    """A content key of the model folder (configs, tokenizer, and the weights' size and ends)."""
    digest = hashlib.sha256()
    for name in (
        "config.json",
        "tokenizer.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ):
        path = model_dir / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    weights = _weights_file(model_dir)
    size = weights.stat().st_size
    digest.update(f"{weights.name}:{size}".encode())
    with open(weights, "rb") as handle:  # hashing all ~90 MB costs ~0.2 s at every start
        digest.update(handle.read(1 << 20))
        handle.seek(max(0, size - (1 << 20)))
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


def _weights_file(model_dir: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (model_dir / name).is_file():
            return model_dir / name
    raise EmbeddingError(
        f"no model.safetensors or pytorch_model.bin in {model_dir}; point RAG_EMBED_MODEL at a "
        "sentence-transformers model folder"
    )


@contextlib.contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """Two processes starting together build the model once; the second waits for the first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_model(model_dir: Path, quantize: Quantize = "int8", root: Path | None = None) -> Path:
    """The cached ONNX file for `model_dir`, building it (export, fuse, quantise) if missing."""
    root = root or cache_root()
    target = root / f"{model_hash(model_dir)}-{RECIPE[quantize]}"
    model = target / "model.onnx"
    if model.is_file():
        return model
    with _build_lock(root / f"{target.name}.lock"):
        if model.is_file():  # built by another process while we waited
            return model
        log.info("building the ONNX embedding model in %s (once; ~30 s)", target)
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
        try:
            meta = _build(model_dir, tmp, quantize)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
            os.replace(tmp, target)  # atomic: readers see a complete folder or none
        except EmbeddingError:
            raise
        except Exception as exc:
            raise EmbeddingError(
                f"cannot build the ONNX embedding model from {model_dir} ({type(exc).__name__}: "
                f"{exc}); set RAG_EMBED_BACKEND=torch, or delete {root} and retry"
            ) from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return model


def _build(model_dir: Path, out: Path, quantize: Quantize) -> dict[str, Any]:
    config = json.loads((model_dir / "config.json").read_text())
    exported = out / "export.onnx"
    with warnings.catch_warnings():  # the tracer's warnings are about code paths we do not take
        warnings.simplefilter("ignore")
        _export(model_dir, exported)
        fused = out / "fused.onnx"
        fusions = _fuse(exported, fused, config)
        source = fused if fusions else exported
        _check_export(model_dir, source)
        final = out / "model.onnx"
        excluded: list[str] = []
        if quantize != "none":
            excluded = _quantize(source, final, config, keep_ffn2=quantize == "int8")
        else:
            shutil.copyfile(source, final)
    for path in out.iterdir():
        if path.name != "model.onnx":
            path.unlink()
    return {
        "recipe": RECIPE[quantize],
        "source": str(model_dir),
        "fusions": fusions,
        "fp32_nodes": excluded,
    }


def _export(model_dir: Path, path: Path) -> None:
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()

    class Encoder(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    dummy = (
        torch.ones(2, 16, dtype=torch.long),
        torch.ones(2, 16, dtype=torch.long),
        torch.zeros(2, 16, dtype=torch.long),
    )
    # The TorchScript exporter: its graph is the one ORT's BERT fusions recognise.
    with torch.no_grad():
        torch.onnx.export(
            Encoder(model),
            dummy,
            str(path),
            input_names=names,
            output_names=["hidden"],
            dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "hidden"]},
            opset_version=EXPORT_OPSET,
            dynamo=False,
        )


def _fuse(src: Path, dst: Path, config: dict[str, Any]) -> dict[str, int]:
    """ORT's transformer fusions (attention, skip-layernorm, bias-gelu); none for non-BERT models."""
    if config.get("model_type") != "bert":
        return {}
    from onnxruntime.transformers import optimizer

    fused = optimizer.optimize_model(
        str(src),
        model_type="bert",
        num_heads=int(config["num_attention_heads"]),
        hidden_size=int(config["hidden_size"]),
        opt_level=1,
    )
    fused.save_model_to_file(str(dst))
    return {k: int(v) for k, v in fused.get_fused_operator_statistics().items() if v}


def _quantize(src: Path, dst: Path, config: dict[str, Any], *, keep_ffn2: bool) -> list[str]:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(src), load_external_data=False).graph
    shapes = {init.name: tuple(init.dims) for init in graph.initializer}
    ffn2 = (int(config["intermediate_size"]), int(config["hidden_size"]))
    keep_fp32 = [
        node.name
        for node in graph.node
        if keep_ffn2 and node.op_type == "MatMul" and any(shapes.get(i) == ffn2 for i in node.input)
    ]
    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=keep_fp32,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return keep_fp32


def _check_export(model_dir: Path, path: Path) -> None:
    """The exported graph must reproduce torch before it is quantised (padding, odd lengths)."""
    import torch
    from transformers import AutoModel

    texts = ["a", "Long Range Arena covers sequences from 1K to 16K tokens. " * 12]
    tokenizer = _tokenizer(model_dir, 256)
    ids, mask = _pad([e.ids for e in tokenizer.encode_batch(texts)])
    model = AutoModel.from_pretrained(str(model_dir)).eval()
    with torch.no_grad():
        ref = model(
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            token_type_ids=torch.zeros_like(torch.from_numpy(ids)),
        ).last_hidden_state.numpy()
    got = _session(path, 1).run(None, _feed(ids, mask))[0]
    a, b = _mean_pool(ref, mask), _mean_pool(got, mask)
    if float((a * b).sum(axis=1).min()) < 0.9999:
        raise EmbeddingError(
            f"the ONNX export of {model_dir} does not reproduce torch; set RAG_EMBED_BACKEND=torch"
        )


def _tokenizer(model_dir: Path, max_tokens: int | None) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    # tokenizer.json ships its own truncation/padding (128 for MiniLM); sentence-transformers
    # truncates at max_seq_length instead and pads per batch, so do exactly that.
    if max_tokens:
        tok.enable_truncation(max_tokens)
    else:
        tok.no_truncation()
    tok.no_padding()
    return tok


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    # ORT_DISABLE_TELEMETRY=1 (set on import, rag/embeddings.py) is what stops ONNX Runtime's
    # 1DS uploads; tests/test_offline.py caught them in `rag ingest`. This covers runtime events.
    ort.disable_telemetry_events()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle worker threads sleep instead of spinning: on a shared 2-core machine spinning took
    # CPU from everything else and made single queries slower, not faster (see docs).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _pad(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


def _feed(ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    return summed / np.maximum(np.linalg.norm(summed, axis=1, keepdims=True), 1e-12)


class OnnxEmbedding(BaseEmbedding):
    """A sentence-transformers model on ONNX Runtime (int8 by default), normalised vectors."""

    max_tokens: int = 256
    dim: int = 384
    fingerprint: str = ""
    onnx_path: str = ""
    workers: int = 1
    _session: Any = PrivateAttr(default=None)
    _pool: Any = PrivateAttr(default=None)
    _pool_lock: Any = PrivateAttr(default_factory=threading.Lock)
    _tokenizer: Any = PrivateAttr(default=None)
    _pieces: dict[str, list[int]] = PrivateAttr(default_factory=dict)
    _counter: Any = PrivateAttr(default=None)
    _pooling: str = PrivateAttr(default="mean")

    def __init__(
        self,
        model: str = BUNDLED_MODEL,
        batch_size: int = 1,  # see rag.embeddings.BEST_BATCH
        *,
        quantize: Quantize = "int8",
        workers: int | None = None,
        cache_dir: Path | None = None,
        **kwargs: Any,
    ) -> None:
        model_dir = resolve_model_path(model)
        pooling = _pooling_mode(model_dir)
        st_config = model_dir / "sentence_bert_config.json"
        max_tokens = (
            int(json.loads(st_config.read_text()).get("max_seq_length", 256))
            if st_config.is_file()
            else 256
        )
        dim = int(json.loads((model_dir / "config.json").read_text())["hidden_size"])
        path = ensure_model(model_dir, quantize, cache_dir)
        try:
            session = _session(path, 1)
        except Exception as exc:
            raise EmbeddingError(
                f"cannot load the ONNX model {path} ({exc}); delete {path.parent} so it is rebuilt"
            ) from exc
        # fp32 ONNX reproduces torch, so it shares torch's fingerprint (and stores).
        suffix = "" if quantize == "none" else f":onnx-{RECIPE[quantize]}"
        super().__init__(
            model_name=model,
            embed_batch_size=batch_size,
            max_tokens=max_tokens,
            dim=dim,
            fingerprint=f"{model}:{dim}{suffix}",
            onnx_path=str(path),
            workers=workers or len(os.sched_getaffinity(0)),
            **kwargs,
        )
        self._session = session
        self._tokenizer = _tokenizer(model_dir, max_tokens)
        self._counter = _tokenizer(model_dir, None)
        self._pooling = pooling

    @classmethod
    def class_name(cls) -> str:
        return "RagOnnxEmbedding"

    @property
    def tokenizer(self) -> Any:
        """The model's `tokenizers.Tokenizer` (truncating at `max_tokens`)."""
        return self._tokenizer

    def count_tokens(self, text: str) -> int:
        """Word pieces the model sees for `text`, special tokens included, before truncation.

        Chunking counts every chunk it makes, and those chunks are encoded next: their word
        pieces are kept (a bounded memo) so `encode` does not tokenise them a second time."""
        ids = self._counter.encode(text).ids
        if len(ids) <= self.max_tokens:  # what the truncating tokenizer would give too
            if len(self._pieces) >= _PIECES_KEPT:
                self._pieces.clear()
            self._pieces[text] = ids
        return len(ids)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalised float32 vectors, one row per text.

        Batches (one text each by default) run `workers` at a time, each on one core: ORT
        releases the GIL, and separate runs use two cores better than one run split across
        them (10.2 s vs 11.6 s for the bundled chunks on two cores). A text's vector does not
        depend on which worker ran it.
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        rows: list[Any] = [self._pieces.pop(t, None) for t in texts]
        todo = [i for i, row in enumerate(rows) if row is None]
        if todo:
            for i, enc in zip(
                todo, self._tokenizer.encode_batch([texts[i] for i in todo]), strict=True
            ):
                rows[i] = enc.ids
        # Longest first: similar lengths share a batch, and the last runs are the short ones.
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]), reverse=True)
        step = self.embed_batch_size
        batches = [order[start : start + step] for start in range(0, len(order), step)]

        def run(idx: list[int]) -> None:
            ids, mask = _pad([rows[i] for i in idx])
            hidden = self._session.run(None, _feed(ids, mask))[0]
            if self._pooling == "cls":
                pooled = hidden[:, 0]
                out[idx] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            else:
                out[idx] = _mean_pool(hidden, mask)

        if len(batches) == 1 or self.workers == 1:
            for idx in batches:
                run(idx)
        else:
            for _ in self._executor().map(run, batches):
                pass  # map re-raises a worker's error here
        return out

    def _executor(self) -> Any:
        with self._pool_lock:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="rag-encode")
            return self._pool

    def _get_query_embedding(self, query: str) -> list[float]:
        return self.encode([query])[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.encode([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self.encode(texts).tolist()


def _pooling_mode(model_dir: Path) -> str:
    config = model_dir / "1_Pooling" / "config.json"
    if not config.is_file():
        return "mean"
    modes = json.loads(config.read_text())
    if modes.get("pooling_mode_mean_tokens"):
        return "mean"
    if modes.get("pooling_mode_cls_token"):
        return "cls"
    raise EmbeddingError(
        f"{model_dir} uses a pooling the ONNX backend does not implement (only mean and CLS); "
        "set RAG_EMBED_BACKEND=torch"
    )
