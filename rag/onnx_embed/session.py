"""Running the ONNX model: the tokenizer, the ORT session, padding and pooling.

    texts ─► load_tokenizer (truncating as sentence-transformers does) ─► pad (per batch)
          ─► open_session(path).run(feed(ids, mask)) ─► mean_pool (or CLS) ─► L2-normalised

Shared by the encoder (rag.onnx_embed.encoder) and by the build's check that an export
reproduces torch (rag.onnx_embed.build).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def load_tokenizer(model_dir: Path, max_tokens: int | None) -> Any:
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


def open_session(path: Path, threads: int, device: str = "cpu") -> Any:
    """An ORT session on the CPU, or on CUDA (an error naming the fix if CUDA is not used)."""
    import onnxruntime as ort

    # ORT_DISABLE_TELEMETRY=1 (set on import, rag/embed_base.py) is what stops ONNX Runtime's
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
    if device != "cuda":
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    from rag.device import ONNX_CUDA, cuda_missing

    check_cuda()
    session = ort.InferenceSession(
        str(path), options, providers=[ONNX_CUDA, "CPUExecutionProvider"]
    )
    # ORT falls back to the CPU silently when the CUDA provider cannot start (no GPU, no driver).
    if ONNX_CUDA not in session.get_providers():
        raise cuda_missing("onnx", "onnxruntime's CUDA provider found no usable GPU")
    return session


def check_cuda() -> None:
    """A ConfigError naming the fix unless onnxruntime has its CUDA provider (without it, ORT
    would only warn and run on the CPU)."""
    import onnxruntime as ort

    from rag.device import ONNX_CUDA, cuda_missing

    if ONNX_CUDA not in ort.get_available_providers():
        raise cuda_missing("onnx", "onnxruntime lists no CUDA provider: it is the CPU-only wheel")


def pad(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


def feed(ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    return summed / np.maximum(np.linalg.norm(summed, axis=1, keepdims=True), 1e-12)
