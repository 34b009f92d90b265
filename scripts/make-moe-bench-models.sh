#!/usr/bin/env bash
# Writes the MoE speed-test model and its dense twin into the model cache:
#
#   synth-moe-bench-q4_k_m.gguf    qwen3moe, 8 layers, n_embd 2048, 32 heads × 128
#                                  (4 KV heads), 64 experts of width 768, top-8:
#                                  Qwen3-30B-A3B's shapes with fewer layers and
#                                  experts; ~1.13 GB of Q4_K expert weights
#                                  (+ 0.33 GB Q6_K ffn_down_exps), 1.55 GB in all
#   synth-dense-bench-q4_k_m.gguf  qwen3 with the same attention and a dense FFN
#                                  of width 8 × 768 = 6144, so a token reads the
#                                  same expert/FFN bytes as the MoE model
#
# Both are random-weight synthetic models (tessera-synth, seed 1, builtin
# 323-token vocabulary), written as F16 and quantized the way users get
# their files: llama-quantize F16 -> Q4_K_M. The F16 intermediates (5.1 GB and
# 1.2 GB) are deleted. Takes ~5 minutes on 2 cores (llama-quantize is most of
# it), < 1 GB of memory, ~7 GB of free disk while it runs.
#
#   scripts/make-moe-bench-models.sh [--force] [--bench]
#
#   --force   rebuild files that already exist
#   --bench   then run llama-bench -p 64 -n 16 -t $THREADS -r 1 on both
#
# Env: TESSERA_MODELS (default ~/.cache/tessera/models), LLAMA_REF_BIN (the
# reference llama.cpp bin dir; default from /work/shared/tools/llama-ref.sh),
# CARGO_TARGET_DIR, THREADS (default: nproc).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
models=${TESSERA_MODELS:-$HOME/.cache/tessera/models}
threads=${THREADS:-$(nproc)}
force=0
bench=0
for arg in "$@"; do
    case $arg in
        --force) force=1 ;;
        --bench) bench=1 ;;
        *) echo "usage: $0 [--force] [--bench]" >&2; exit 2 ;;
    esac
done

if [[ -z ${LLAMA_REF_BIN:-} ]]; then
    LLAMA_REF_BIN=$(bash /work/shared/tools/llama-ref.sh | tail -1)
fi
export LD_LIBRARY_PATH=$LLAMA_REF_BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export OMP_WAIT_POLICY=PASSIVE

target=${CARGO_TARGET_DIR:-$root/target}
(cd "$root" && CARGO_TARGET_DIR=$target cargo build --release -q -p tessera-testkit --bin tessera-synth)
synth=$target/release/tessera-synth

# Shared by both models: Qwen3-30B-A3B's attention and widths.
common=(--seed 1 --dtype f16 --vocab builtin
    --set n_layer=8 --set n_embd=2048 --set n_head=32 --set n_head_kv=4 --set head_dim=128
    --set context_length=4096)
moe=(--arch qwen3moe "${common[@]}" --set n_ff=6144 --set n_expert=64 --set n_expert_used=8
    --set n_ff_exp=768)
dense=(--arch qwen3 "${common[@]}" --set n_ff=6144)

mkdir -p "$models"
tmp=$(mktemp -d "$models/.bench-tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

make_model() { # NAME ARGS...
    local name=$1
    shift
    local out=$models/$name-q4_k_m.gguf
    if [[ -f $out && $force == 0 ]]; then
        echo "$out exists (--force rebuilds it)"
        return
    fi
    echo "== $name: tessera-synth $*"
    "$synth" "$@" -o "$tmp/$name-f16.gguf"
    echo "== $name: llama-quantize Q4_K_M ($threads threads)"
    "$LLAMA_REF_BIN/llama-quantize" "$tmp/$name-f16.gguf" "$tmp/$name-q4_k_m.gguf" Q4_K_M "$threads" \
        >"$tmp/$name-quantize.log" 2>&1 || { tail -20 "$tmp/$name-quantize.log"; exit 1; }
    rm "$tmp/$name-f16.gguf"
    mv "$tmp/$name-q4_k_m.gguf" "$out"
}

make_model synth-moe-bench "${moe[@]}"
make_model synth-dense-bench "${dense[@]}"
python3 "$root/scripts/gguf_header.py" "$models/synth-moe-bench-q4_k_m.gguf" \
    "$models/synth-dense-bench-q4_k_m.gguf"

if [[ $bench == 1 ]]; then
    for name in synth-moe-bench synth-dense-bench; do
        "$LLAMA_REF_BIN/llama-bench" -m "$models/$name-q4_k_m.gguf" -p 64 -n 16 -t "$threads" -r 1
    done
fi
