#!/usr/bin/env bash
# `tessera plan`'s predicted decode speed beside `tessera bench`'s measured
# tg128, for each placement of the placement tests, on this machine:
#
#   scripts/plan-vs-bench.sh [-t THREADS] [-r REPS] [MODEL ...]
#
# Prints a markdown table: placement, predicted t/s, measured t/s and
# predicted / measured. Run it on an idle machine (the probe figures plan
# predicts from are cached per CPU in ~/.cache/tessera/probe.tsv; delete
# the file to measure again). A placement that moves experts is skipped
# for models without experts.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=2 reps=3
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
cargo build --release --bin tessera -q
tessera=target/release/tessera

echo "threads $threads, tg128 with $reps repetitions; $(date -u +%F)"
echo
echo "| model | placement | plan t/s | bench t/s | plan / bench |"
echo "|---|---|---:|---:|---:|"
for m in "${models[@]}"; do
  path=$m
  [ -f "$path" ] || path=$cache/$m
  read -r experts budget < <("$tessera" plan -m "$path" -c 1024 --json | python3 -c '
import json, sys
p = json.load(sys.stdin)
experts = any(g["role"] == "experts" for g in p["groups"])
# cpu:0 may hold everything but half of the layers (and the KV cache at
# -c 1024): the fitter moves the rest to cpu:1.
total = sum(d["weight_bytes"] + d["kv_bytes"] for d in p["devices"])
layers = sum(g["bytes"] for g in p["groups"] if g["role"] not in ("embedding", "output"))
print(experts, total - layers // 2)')
  while IFS='|' read -r label flags; do
    [[ $label == *experts* && $experts != True ]] && continue
    # shellcheck disable=SC2086
    plan=$("$tessera" plan -m "$path" -t "$threads" $flags --json |
      python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["decode_tps"])')
    # shellcheck disable=SC2086
    bench=$("$tessera" bench -m "$path" -t "$threads" -p 0 -n 128 -r "$reps" $flags --json |
      python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)[0]["avg_ts"])')
    ratio=$(python3 -c "print('%.2f' % ($plan / $bench))")
    echo "| $(basename "$path") | $label | $plan | $bench | $ratio |"
  done <<EOF
one device|
experts on cpu:1|--cpu-devices 2 -ot exps=cpu:1
layers 50/50|--cpu-devices 2 -sm layer
attention cpu:0, ffn + output cpu:1|--cpu-devices 2 -ot ffn_=cpu:1,^output=cpu:1
row split 1/1|--cpu-devices 2 -sm row
cpu:0 budget forces a spill|--cpu-devices 2 --device-memory cpu:0=$budget -c 1024
layers 50/50, shared threads|--cpu-devices 2:shared -sm layer
row split 1/1, shared threads|--cpu-devices 2:shared -sm row
EOF
done
