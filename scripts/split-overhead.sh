#!/usr/bin/env bash
# What a 2-device layer split costs in decode speed (tg128), in interleaved
# rounds on this machine:
#
#   scripts/split-overhead.sh [-k ROUNDS] [MODEL ...]
#
# - one device, 2 threads, against `--cpu-devices 2:shared -sm layer` (two
#   devices on the same 2 threads): the cost of crossing devices itself
#   (the copies, the hand-over between segments);
# - one device, 1 thread, against `--cpu-devices 2 -sm layer` (two devices
#   of 1 thread each, disjoint cores): devices take turns within a step,
#   so a split over disjoint cores runs at one device's speed at best.
# Prints each round and the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3
while getopts "k:" o; do
  case $o in
    k) rounds=$OPTARG ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(SmolLM2-135M-Instruct.Q4_1.gguf gemma-3-270m-q4_k_m.gguf)
cargo build --release --bin tessera -q
tg() {
  target/release/tessera bench -m "$1" -p 0 -n 128 -r 3 "${@:2}" --json |
    python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)[0]["avg_ts"])'
}
echo "| model | one device, 2 threads | 2 devices, shared 2 threads | ratio | one device, 1 thread | 2 devices, 1 thread each | ratio |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for m in "${models[@]}"; do
  a=() b=() c=() d=()
  for _ in $(seq "$rounds"); do
    a+=("$(tg "$m" -t 2)")
    b+=("$(tg "$m" -t 2 --cpu-devices 2:shared -sm layer)")
    c+=("$(tg "$m" -t 1)")
    d+=("$(tg "$m" -t 2 --cpu-devices 2 -sm layer)")
  done
  python3 - "$m" "${a[*]}" "${b[*]}" "${c[*]}" "${d[*]}" <<'PY'
import statistics as st, sys
m, *cols = sys.argv[1:]
a, b, c, d = ([float(x) for x in col.split()] for col in cols)
med = st.median
print(f"| {m} | {med(a):.1f} | {med(b):.1f} | {med(b)/med(a):.2f} | {med(c):.1f} | {med(d):.1f} | {med(d)/med(c):.2f} |")
print(f"<!-- rounds: {a} {b} {c} {d} -->", file=sys.stderr)
PY
done
