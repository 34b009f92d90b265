#!/usr/bin/env bash
# Measures how the CPU thread pool holds up when the machine is
# oversubscribed: decode-shaped GEMV throughput with 2 threads on an idle
# machine, then with a busy process pinned to one of the cores beside it.
# The same for llama.cpp's decode (llama-bench tg) on SmolLM2 when the
# reference build and the model are present.
#
#   scripts/oversubscribe.sh            # prints both tables
#
# A pool that degrades gracefully loses about the share of the core taken
# (≈50% here with 2 cores, one of them half-taken); a spinning pool that
# waits on a descheduled thread's fixed share collapses.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p tessera-quant --bin tessera-quant-bench
bench=target/release/tessera-quant-bench
busy_core=$(( $(nproc) - 1 ))

busy_start() { taskset -c "$busy_core" sh -c 'while :; do :; done' & busy=$!; sleep 0.5; }
busy_stop() { kill "$busy" 2>/dev/null || true; wait "$busy" 2>/dev/null || true; }
trap busy_stop EXIT

args=(--types q4_0,q8_0,q4_k --threads 2 --shapes 576x1536,2048x8192 --no-gemm --cold-mib 256)
echo "== tessera GEMV, 2 threads, idle"
"$bench" "${args[@]}"
echo "== tessera GEMV, 2 threads, busy loop pinned to core $busy_core"
busy_start
"$bench" "${args[@]}"
busy_stop

ref_bin=${LLAMA_BIN:-$HOME/.cache/tessera-ref/llama-cpp-python-0.3.36/build/bin}
model=${TESSERA_MODELS:-$HOME/.cache/tessera/models}/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -x "$ref_bin/llama-bench" ] && [ -f "$model" ]; then
  echo "== llama.cpp llama-bench tg32, 2 threads, idle"
  "$ref_bin/llama-bench" -m "$model" -t 2 -p 0 -n 32 -r 3
  echo "== llama.cpp llama-bench tg32, 2 threads, busy loop pinned to core $busy_core"
  busy_start
  timeout 300 "$ref_bin/llama-bench" -m "$model" -t 2 -p 0 -n 32 -r 3 || echo "(llama-bench did not finish in 300 s)"
  busy_stop
fi
