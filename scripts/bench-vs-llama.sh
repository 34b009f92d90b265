#!/usr/bin/env bash
# tessera bench beside llama-bench, same machine, same run, same threads:
# pp512 and tg128 for each model, and the ratio tessera / llama.cpp.
#
#   scripts/bench-vs-llama.sh [-t THREADS] [-r REPS] [MODEL ...]
#
# Models are paths or names in the model cache (default: both test models).
# Prints a markdown table (the one in docs/PERFORMANCE.md). Run it on an idle
# machine: the two tools take turns per model, so load changes hit both.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=2 reps=5
while getopts "t:r:" o; do
  case $o in
    t) threads=$OPTARG ;;
    r) reps=$OPTARG ;;
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

echo "llama.cpp: ${version:-unknown} ($bin); threads $threads, $reps repetitions; $(date -u +%F)"
echo
echo "| model | test | llama.cpp t/s | tessera t/s | tessera / llama.cpp |"
echo "|---|---|---:|---:|---:|"
for m in "${models[@]}"; do
  path=$m
  [ -f "$path" ] || path=$cache/$m
  l=$(LD_LIBRARY_PATH=$bin "$bin/llama-bench" -m "$path" -p 512 -n 128 -t "$threads" -r "$reps" -o json 2>/dev/null)
  t=$("$tessera" bench -m "$path" -p 512 -n 128 -t "$threads" -r "$reps" --json 2>/dev/null)
  for test in "512 0 pp512" "0 128 tg128"; do
    set -- $test
    lv=$(ts "$1" "$2" <<<"$l"); ls=$(sd "$1" "$2" <<<"$l")
    tv=$(ts "$1" "$2" <<<"$t"); tsd=$(sd "$1" "$2" <<<"$t")
    printf "| %s | %s | %.2f ± %.2f | %.2f ± %.2f | %.2f |\n" "$(basename "$path")" "$3" "$lv" "$ls" "$tv" "$tsd" \
      "$(python3 -c "print($tv/$lv)")"
  done
done
