#!/usr/bin/env bash
# Encoding throughput of tessera's tokenizer next to llama.cpp's llama-tokenize
# on the same 1 MB text, for SmolLM2 (gpt2/smollm) and Gemma 3 (llama/SPM).
#
#   scripts/bench-tokenizer.sh [TEXT_FILE]
#
# Without TEXT_FILE, the text is this repository's own Markdown, Rust, Python
# and shell sources followed by the tokenizer test corpus, repeated up to
# exactly 1,000,000 bytes (cut at a character boundary).
# Both tools read the file verbatim (-f, --no-escape), add BOS as the model
# wants and parse special tokens (llama-tokenize's defaults); the two id lists
# are compared. Wall times include loading the vocabulary; encode_bench also
# reports tessera's load and encode times separately.
set -euo pipefail
cd "$(dirname "$0")/.."

MODELS=${TESSERA_MODELS:-$HOME/.cache/tessera/models}
LLAMA_BIN=${LLAMA_BIN:-$HOME/.cache/tessera-ref/llama-cpp-python-0.3.36/build/bin}
TARGET=${CARGO_TARGET_DIR:-target}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

text=${1:-$tmp/bench-1mb.txt}
if [ -z "${1:-}" ]; then
  python3 - "$text" <<'PY'
import glob, json, sys
parts = []
for pat in ["*.md", "docs/*.md", "crates/*/src/**/*.rs", "crates/*/tests/*.rs", "scripts/*.py", "scripts/*.sh"]:
    for f in sorted(glob.glob(pat, recursive=True)):
        parts.append(open(f, encoding="utf-8").read())
corpus = json.load(open("crates/tessera-tokenizer/tests/fixtures/corpus.json", encoding="utf-8"))
parts.append("\n".join(s["text"] for s in corpus["strings"]))
t = "".join(parts).encode()
while len(t) < 1_000_000:
    t += t
t = t[:1_000_000].decode("utf-8", errors="ignore").encode()
open(sys.argv[1], "wb").write(t)
PY
fi
echo "text: $text ($(wc -c <"$text") bytes)"

cargo build -q --release -p tessera-cli -p tessera-tokenizer --example encode_bench
tessera=$TARGET/release/tessera
bench=$TARGET/release/examples/encode_bench

for model in SmolLM2-135M-Instruct.Q4_1.gguf gemma-3-270m-q4_k_m.gguf; do
  m=$MODELS/$model
  echo "== $model"
  s=$(date +%s.%N)
  "$LLAMA_BIN/llama-tokenize" -m "$m" -f "$text" --ids --no-escape --log-disable >"$tmp/llama.ids"
  e=$(date +%s.%N)
  printf x >"$tmp/one.txt"
  s1=$(date +%s.%N)
  "$LLAMA_BIN/llama-tokenize" -m "$m" -f "$tmp/one.txt" --ids --no-escape --log-disable >/dev/null
  e1=$(date +%s.%N)
  echo "llama-tokenize: $(python3 -c "print(f'{$e-$s:.3f}')") s wall, $(tail -1 "$tmp/llama.ids" | tr ',' '\n' | wc -l) tokens;" \
    "on a 1-byte text $(python3 -c "print(f'{$e1-$s1:.3f}')") s (load), so encoding ~$(python3 -c "print(f'{($e-$s)-($e1-$s1):.3f}')") s"
  s=$(date +%s.%N)
  "$tessera" tokenize -m "$m" -f "$text" --ids --no-escape >"$tmp/tessera.ids"
  e=$(date +%s.%N)
  echo "tessera tokenize: $(python3 -c "print(f'{$e-$s:.3f}')") s wall (load + encode + print)"
  if cmp -s <(tail -1 "$tmp/llama.ids") "$tmp/tessera.ids"; then
    echo "ids: identical"
  else
    echo "ids: DIFFERENT"
  fi
  echo "tessera encode_bench: $("$bench" "$m" "$text" 3)"
done
