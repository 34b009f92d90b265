#!/usr/bin/env bash
# Makes the Python environment the tests use to cross-check tessera against
# gguf-py (the `gguf` package of llama.cpp). Prints the interpreter's path.
#   Env: TESSERA_VENV (default ~/.cache/tessera/venv)
set -euo pipefail
venv=${TESSERA_VENV:-$HOME/.cache/tessera/venv}
if ! "$venv/bin/python" -c "import gguf, numpy" 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q "gguf==0.19.0" numpy >&2
fi
echo "$venv/bin/python"
