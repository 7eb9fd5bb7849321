"""Building the ONNX model once: export, fuse, quantise, check, cache.

    model dir ─► torch.onnx export (eager attention) ─► ORT BERT fusions ─► check against torch
              ─► dynamic int8 ─► ~/.cache/rag/onnx/<model hash>-<recipe>/model.onnx

Built once per model and recipe, under a file lock (two processes starting together build it
once), into a temporary folder renamed into place (readers see a complete folder or none). Needs
torch and transformers; nothing here runs once the file is cached.
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
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from rag.errors import EmbeddingError
from rag.onnx_embed.session import feed, load_tokenizer, mean_pool, open_session, pad

log = logging.getLogger("rag.onnx_embed")  # the name its records had before the split

Quantize = Literal["int8", "int8-all", "none"]

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
    tokenizer = load_tokenizer(model_dir, 256)
    ids, mask = pad([e.ids for e in tokenizer.encode_batch(texts)])
    model = AutoModel.from_pretrained(str(model_dir)).eval()
    with torch.no_grad():
        ref = model(
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            token_type_ids=torch.zeros_like(torch.from_numpy(ids)),
        ).last_hidden_state.numpy()
    got = open_session(path, 1).run(None, feed(ids, mask))[0]
    a, b = mean_pool(ref, mask), mean_pool(got, mask)
    if float((a * b).sum(axis=1).min()) < 0.9999:
        raise EmbeddingError(
            f"the ONNX export of {model_dir} does not reproduce torch; set RAG_EMBED_BACKEND=torch"
        )
