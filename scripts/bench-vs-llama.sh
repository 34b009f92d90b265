#!/usr/bin/env bash
# tessera bench beside llama-bench, same machine, same run, same threads:
# pp512 and tg128 for each model, and the ratio tessera / llama.cpp.
#
#   scripts/bench-vs-llama.sh [-t THREADS] [-r REPS] [-k ROUNDS] [MODEL ...]
#
# Models are paths or names in the model cache (default: both test models).
# Prints a markdown table (the one in docs/PERFORMANCE.md). Run it on an idle
# machine. On a shared host, use several rounds (-k): the tools take turns
# within each round, the one going first alternating between rounds, and
# the table gives each tool's median over the rounds and the median of the
# per-round ratios, so a burst of load from a neighbour skews one round,
# not the result. The per-round ratios are printed under the table.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=2 reps=5 rounds=1
while getopts "t:r:k:" o; do
  case $o in
    t) threads=$OPTARG ;;
    r) reps=$OPTARG ;;
    k) rounds=$OPTARG ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(SmolLM2-135M-Instruct.Q4_1.gguf gemma-3-270m-q4_k_m.gguf)
cache=${TESSERA_MODELS:-$HOME/.cache/tessera/models}
bin=$(bash ../shared/tools/llama-ref.sh | tail -1)
cargo build --release --bin tessera -q
tessera=target/release/tessera
version=$(LD_LIBRARY_PATH=$bin "$bin/llama-bench" --version 2>&1 | head -1 || true)

ts() { # the t/s mean of test $2 in llama-bench/tessera JSON on stdin
  python3 -c 'import json,sys; print(next(r["avg_ts"] for r in json.load(sys.stdin) if r["n_prompt"]==int(sys.argv[1]) and r["n_gen"]==int(sys.argv[2])))' "$1" "$2"
}
sd() {
  python3 -c 'import json,sys; print(next(r["stddev_ts"] for r in json.load(sys.stdin) if r["n_prompt"]==int(sys.argv[1]) and r["n_gen"]==int(sys.argv[2])))' "$1" "$2"
}

echo "llama.cpp: ${version:-unknown} ($bin); threads $threads, $reps repetitions, $rounds round(s); $(date -u +%F)"
echo
echo "| model | test | llama.cpp t/s | tessera t/s | tessera / llama.cpp |"
echo "|---|---|---:|---:|---:|"
notes=""
for m in "${models[@]}"; do
  path=$m
  [ -f "$path" ] || path=$cache/$m
  results=()
  for ((k = 0; k < rounds; k++)); do
    run_llama() { LD_LIBRARY_PATH=$bin "$bin/llama-bench" -m "$path" -p 512 -n 128 -t "$threads" -r "$reps" -o json 2>/dev/null; }
    run_tessera() { "$tessera" bench -m "$path" -p 512 -n 128 -t "$threads" -r "$reps" --json 2>/dev/null; }
    if ((k % 2 == 0)); then
      l=$(run_llama); t=$(run_tessera)
    else
      t=$(run_tessera); l=$(run_llama)
    fi
    for test in "512 0" "0 128"; do
      set -- $test
      results+=("$1 $2 $(ts "$1" "$2" <<<"$l") $(sd "$1" "$2" <<<"$l") $(ts "$1" "$2" <<<"$t") $(sd "$1" "$2" <<<"$t")")
    done
  done
  # One row per test: medians over the rounds (with one round: that round).
  out=$(printf "%s\n" "${results[@]}" | python3 -c '
import sys, statistics as st
rows = [l.split() for l in sys.stdin if l.strip()]
name = sys.argv[1]
for p, g, test in (("512", "0", "pp512"), ("0", "128", "tg128")):
    r = [list(map(float, x[2:])) for x in rows if x[0] == p and x[1] == g]
    lv = st.median(x[0] for x in r); tv = st.median(x[2] for x in r)
    ratios = [x[2] / x[0] for x in r]
    if len(r) == 1:
        print(f"| {name} | {test} | {r[0][0]:.2f} ± {r[0][1]:.2f} | {r[0][2]:.2f} ± {r[0][3]:.2f} | {ratios[0]:.2f} |")
    else:
        print(f"| {name} | {test} | {lv:.2f} | {tv:.2f} | {st.median(ratios):.2f} |")
        print("NOTE " + f"{name} {test}: per-round ratios " + ", ".join(f"{x:.2f}" for x in ratios), file=sys.stderr)
' "$(basename "$path")" 2>/tmp/bench-vs-llama.notes.$$)
  echo "$out"
  notes+=$(sed 's/^NOTE /- /' /tmp/bench-vs-llama.notes.$$)$'\n'
  rm -f /tmp/bench-vs-llama.notes.$$
done
if [ "$rounds" -gt 1 ]; then
  echo
  echo "Medians over $rounds rounds of $reps repetitions each."
  printf "%s" "$notes"
fi
