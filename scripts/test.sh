#!/usr/bin/env bash
# Runs tessera's whole test suite with every prerequisite in place:
#   - the real test models (scripts/fetch-models.sh, ~350 MB, cached),
#   - gguf-py for the cross-checks (scripts/py-env.sh, a venv, cached),
#   - the reference llama.cpp (../shared/tools/llama-ref.sh; the first build
#     takes ~20 min on 2 cores, then it is cached),
#   - a Vulkan device for the wgpu backend (lavapipe on machines without a GPU),
#   - NVRTC and ptxas from pip wheels (scripts/cuda-env.sh, a venv, cached),
#     which compile and assemble every CUDA kernel (no GPU needed).
# With TESSERA_STRICT=1 a test whose prerequisite is missing fails instead of
# skipping, so a green run means every check ran.
#
#   scripts/test.sh                 # all of it
#   scripts/test.sh -p tessera-gguf # extra args go to cargo test
set -euo pipefail
cd "$(dirname "$0")/.."

export TESSERA_STRICT=1
# The wgpu backend's tests need a Vulkan device (lavapipe: `apt-get install
# mesa-vulkan-drivers libvulkan1`); without one they fail here instead of
# skipping.
export TESSERA_REQUIRE_WGPU=${TESSERA_REQUIRE_WGPU:-1}
# Greedy steps of the wgpu end-to-end tests (32 by default; on lavapipe each
# costs seconds per model, so CI takes 12).
export TESSERA_WGPU_E2E_STEPS=${TESSERA_WGPU_E2E_STEPS:-12}
export TESSERA_MODELS=${TESSERA_MODELS:-$HOME/.cache/tessera/models}
scripts/fetch-models.sh >/dev/null
TESSERA_PYTHON=$(scripts/py-env.sh)
export TESSERA_PYTHON
eval "$(scripts/cuda-env.sh)"
if [ -z "${LLAMA_BIN:-}" ]; then
  ref=../shared/tools/llama-ref.sh
  [ -x "$ref" ] || ref=$(dirname "$0")/../../shared/tools/llama-ref.sh
  LLAMA_BIN=$(bash "$ref")
  export LLAMA_BIN
fi

cargo test --workspace --release "$@"
