"""Where the encoder runs: RAG_EMBED_DEVICE=auto|cpu|cuda, resolved once per embedder.

    RAG_EMBED_DEVICE ─► resolve_device(requested, backend) ─► "cpu" | "cuda"
        onnx  : CUDA when onnxruntime lists CUDAExecutionProvider (the onnxruntime-gpu wheel)
        torch : CUDA when torch.cuda.is_available() (a CUDA build of torch and a GPU)
    auto falls back to the CPU; cuda without a usable GPU is a ConfigError that says the fix.

On a GPU the ONNX encoder runs fp32, not int8: dynamic int8 scales activations over the whole
batch (so a text's vector would depend on its batch mates at the batch sizes a GPU wants), and
ONNX Runtime's integer kernels are CPU ones. fp32 ONNX reproduces torch, so a store encoded on a
GPU carries torch's fingerprint (`all-MiniLM-L6-v2:384`) whichever backend made it.

The probes are plain functions so tests can fake a GPU on a machine without one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

from rag.errors import ConfigError

log = logging.getLogger(__name__)

Device = Literal["cpu", "cuda"]

# Texts per encoder batch when RAG_EMBED_BATCH_SIZE is empty. ONNX int8 on the CPU runs one
# text at a time (rag.embeddings explains why); on a GPU a batch must be large to keep it busy,
# and fp32 vectors do not depend on their batch mates (only padding, which pooling masks out).
BEST_BATCH: dict[tuple[str, Device], int] = {
    ("onnx", "cpu"): 1,
    ("torch", "cpu"): 64,
    ("onnx", "cuda"): 256,
    ("torch", "cuda"): 256,
}

ONNX_CUDA = "CUDAExecutionProvider"


def onnx_cuda_available() -> bool:
    """onnxruntime can run on CUDA (the onnxruntime-gpu wheel; its session still needs a GPU)."""
    import onnxruntime as ort

    return ONNX_CUDA in ort.get_available_providers()


def torch_cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


PROBES: dict[str, Callable[[], bool]] = {"onnx": onnx_cuda_available, "torch": torch_cuda_available}

_FIX = {
    "onnx": "install the `onnxruntime-gpu` wheel in place of `onnxruntime` (with a CUDA driver "
    "and a GPU) or RAG_EMBED_BACKEND=torch with a CUDA build of torch",
    "torch": "install a CUDA build of torch (with a CUDA driver and a GPU)",
}


def cuda_missing(backend: str, detail: str = "") -> ConfigError:
    why = f" ({detail})" if detail else ""
    return ConfigError(
        f"RAG_EMBED_DEVICE=cuda but the {backend} encoder cannot use a CUDA GPU here{why}; "
        f"{_FIX.get(backend, 'install a CUDA runtime for it')}, or set RAG_EMBED_DEVICE=auto "
        "(the GPU when there is one, else the CPU) or cpu"
    )


def resolve_device(requested: str, backend: str, probe: Callable[[], bool] | None = None) -> Device:
    """The device an encoder of `backend` runs on for RAG_EMBED_DEVICE=`requested`."""
    if requested == "cpu":
        return "cpu"
    if requested not in ("auto", "cuda"):
        raise ConfigError(f"RAG_EMBED_DEVICE={requested!r} is not auto, cpu or cuda; pick one")
    check = probe or PROBES[backend]
    try:
        available = check()
    except Exception as exc:  # a broken CUDA install must not stop a CPU ingest under auto
        if requested == "cuda":
            raise cuda_missing(backend, f"{type(exc).__name__}: {exc}") from exc
        log.warning("checking for a CUDA GPU failed (%s); encoding on the CPU", exc)
        return "cpu"
    if available:
        return "cuda"
    if requested == "cuda":
        raise cuda_missing(backend)
    return "cpu"


def best_batch(backend: str, device: Device) -> int:
    return BEST_BATCH[(backend, device)]
