"""RAG_EMBED_DEVICE: which device the encoder runs on, on a machine without a GPU.

The selection logic runs against faked availability (a GPU that is "there", one whose runtime is
installed but answers nothing, a probe that crashes); the real probes must find no GPU here, so
auto falls back to the CPU and cuda is an error that names the fix. The GPU path's model (fp32
ONNX) is checked against torch on the CPU provider: the vectors a GPU would make.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag import Assistant, Settings
from rag import device as device_mod
from rag.device import BEST_BATCH, best_batch, resolve_device
from rag.embeddings import get_embedder
from rag.errors import ConfigError


def _boom() -> bool:
    raise RuntimeError("libcudart.so.12: cannot open shared object file")


def _never() -> bool:
    raise AssertionError("cpu must not probe for a GPU")


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_auto_picks_the_gpu_when_the_backend_has_one(backend: str) -> None:
    assert resolve_device("auto", backend, probe=lambda: True) == "cuda"
    assert resolve_device("cuda", backend, probe=lambda: True) == "cuda"


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_auto_falls_back_to_the_cpu_without_a_gpu(backend: str) -> None:
    assert resolve_device("auto", backend, probe=lambda: False) == "cpu"
    assert resolve_device("auto", backend, probe=_boom) == "cpu"  # a broken CUDA install
    assert resolve_device("cpu", backend, probe=_never) == "cpu"


def test_cuda_without_a_gpu_is_an_error_that_names_the_fix() -> None:
    with pytest.raises(ConfigError) as err:
        resolve_device("cuda", "onnx", probe=lambda: False)
    message = str(err.value)
    assert "RAG_EMBED_DEVICE=cuda" in message
    assert "onnxruntime-gpu" in message and "RAG_EMBED_DEVICE=auto" in message
    with pytest.raises(ConfigError, match="CUDA build of torch") as err:
        resolve_device("cuda", "torch", probe=_boom)
    assert "libcudart" in str(err.value)  # the cause is kept


def test_batches_suit_the_device() -> None:
    assert best_batch("onnx", "cpu") == 1  # int8: a text's vector never depends on batch mates
    assert best_batch("torch", "cpu") == 64
    assert best_batch("onnx", "cuda") >= 128 and best_batch("torch", "cuda") >= 128
    assert set(BEST_BATCH) == {(b, d) for b in ("onnx", "torch") for d in ("cpu", "cuda")}


def test_settings_take_the_device_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).embed_device == "auto"
    monkeypatch.setenv("RAG_EMBED_DEVICE", "cuda")
    assert Settings(_env_file=None).embed_device == "cuda"
    monkeypatch.setenv("RAG_EMBED_DEVICE", "gpu")
    with pytest.raises(ValueError, match="auto"):
        Settings(_env_file=None)


def test_this_machine_has_no_gpu_so_auto_encodes_on_the_cpu() -> None:
    if device_mod.onnx_cuda_available():
        pytest.skip("onnxruntime here has a CUDA provider: this test is for CPU-only machines")
    embedder = get_embedder(Settings(_env_file=None, embed_device="auto"))
    assert embedder.device == "cpu"
    assert embedder.embed_batch_size == 1
    assert embedder.fingerprint.endswith(":onnx-int8-pc-ffn2fp32-v1")  # the CPU's int8 build
    assert embedder is get_embedder(Settings(_env_file=None, embed_device="cpu"))


def test_cuda_on_this_machine_fails_before_anything_is_built(tmp_path: Path) -> None:
    if device_mod.onnx_cuda_available():
        pytest.skip("onnxruntime here has a CUDA provider: this test is for CPU-only machines")
    settings = Settings(_env_file=None, data_dir=tmp_path / "store", embed_device="cuda")
    with pytest.raises(ConfigError, match=r"RAG_EMBED_DEVICE=cuda.*onnxruntime-gpu"):
        Assistant(settings).ingest()
    assert not (tmp_path / "store").exists()  # refused before a store was opened


def test_a_runtime_without_a_gpu_falls_back_under_auto_and_fails_under_cuda(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The probe says CUDA is there but the real session cannot use it (onnxruntime-gpu on a
    machine without a GPU): auto still encodes on the CPU; cuda says what to fix."""
    if device_mod.onnx_cuda_available():
        pytest.skip("onnxruntime here has a CUDA provider: this test is for CPU-only machines")
    monkeypatch.setitem(device_mod.PROBES, "onnx", lambda: True)
    embedder = get_embedder(Settings(_env_file=None, embed_device="auto"))
    assert embedder.device == "cpu"
    with pytest.raises(ConfigError, match="no CUDA provider"):
        get_embedder(Settings(_env_file=None, embed_device="cuda"))


@pytest.mark.e2e
def test_the_gpu_encoder_is_fp32_batched_and_matches_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a GPU faked (the session opened on the CPU provider instead), cuda builds the fp32
    ONNX encoder with GPU batches; its batched vectors are torch's (the CPU path's bound is a
    cosine of 0.995 to fp32; fp32 is the reference itself)."""
    from rag.onnx_embed import encoder as encoder_mod
    from rag.onnx_embed import session as session_mod

    opened: list[str] = []

    def fake_session(path: Path, threads: int, device: str = "cpu") -> object:
        opened.append(device)
        return session_mod.open_session(path, threads, "cpu")

    monkeypatch.setattr("rag.embeddings._CACHE", {})  # the faked GPU encoder stays here
    monkeypatch.setitem(device_mod.PROBES, "onnx", lambda: True)
    monkeypatch.setattr(encoder_mod, "check_cuda", lambda: None)
    monkeypatch.setattr(encoder_mod, "open_session", fake_session)
    gpu = get_embedder(Settings(_env_file=None, embed_device="cuda"))
    assert opened == ["cuda"]
    assert gpu.device == "cuda" and gpu.workers == 1
    assert gpu.embed_batch_size == BEST_BATCH[("onnx", "cuda")]
    assert gpu.fingerprint == "all-MiniLM-L6-v2:384"  # fp32: torch's fingerprint

    from rag.embeddings import SentenceEmbedding

    texts = [
        "Long Range Arena covers sequences from 1K to 16K tokens.",
        "a",
        "Transformers based solely on attention mechanisms, dispensing with recurrence. " * 6,
    ]
    torch_vectors = SentenceEmbedding(batch_size=64).encode(texts)
    cosine = (gpu.encode(texts) * torch_vectors).sum(axis=1)
    assert float(np.min(cosine)) > 0.9999


@pytest.mark.e2e
def test_the_cli_says_the_fix_in_one_line(tmp_path: Path) -> None:
    if device_mod.onnx_cuda_available():
        pytest.skip("onnxruntime here has a CUDA provider: this test is for CPU-only machines")
    rag = str(Path(sys.executable).with_name("rag"))
    env = {**os.environ, "RAG_DATA_DIR": str(tmp_path), "RAG_EMBED_DEVICE": "cuda"}
    result = subprocess.run([rag, "ingest"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 1
    assert "RAG_EMBED_DEVICE=cuda" in result.stderr and "onnxruntime-gpu" in result.stderr
    assert "Traceback" not in result.stderr
