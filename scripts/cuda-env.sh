#!/usr/bin/env bash
# Makes NVRTC and ptxas available without a CUDA toolkit or GPU, for the
# CUDA backend's kernel check (crates/tessera-cuda/tests/nvrtc_compile.rs):
# installs the nvidia-cuda-nvrtc-cu12 (libnvrtc) and nvidia-cuda-nvcc-cu12
# (ptxas) wheels into a venv (~330 MB, cached; ~25 s the first time) and
# prints the exports to eval:
#   eval "$(scripts/cuda-env.sh)"   # sets LD_LIBRARY_PATH and TESSERA_PTXAS
#   Env: TESSERA_CUDA_VENV (default ~/.cache/tessera/cuda-venv)
set -euo pipefail
venv=${TESSERA_CUDA_VENV:-$HOME/.cache/tessera/cuda-venv}
version=12.9.86
find_in() { find "$venv" -path "*/nvidia/$1" -print -quit 2>/dev/null; }
if [ -z "$(find_in cuda_nvrtc/lib/libnvrtc.so.12)" ] || [ -z "$(find_in cuda_nvcc/bin/ptxas)" ]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q "nvidia-cuda-nvrtc-cu12==$version" "nvidia-cuda-nvcc-cu12==$version" >&2
fi
lib=$(dirname "$(find_in cuda_nvrtc/lib/libnvrtc.so.12)")
ptxas=$(find_in cuda_nvcc/bin/ptxas)
echo "export LD_LIBRARY_PATH=$lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
echo "export TESSERA_PTXAS=$ptxas"
