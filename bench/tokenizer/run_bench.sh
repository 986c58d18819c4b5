#!/bin/bash
# Side-by-side tokenizer benchmark: mlxcpp (C++) vs HF tokenizers (Rust), one thread each,
# same corpus, same machine. Usage: bench/tokenizer/run_bench.sh BENCH_BINARY OUT_DIR
# Needs python3 with `tokenizers`, and xz. Writes OUT_DIR/results.jsonl (large inputs go to a
# temporary folder).
set -euo pipefail
BIN=$1
OUT=$2
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d)
mkdir -p "$OUT"
python3 "$ROOT/bench/tokenizer/make_corpus.py" "$WORK/corpus.txt" 12
: > "$OUT/results.jsonl"
for fam in llama3 qwen3 gemma3; do
  xz -dc "$ROOT/tests/data/tokenizers/$fam/tokenizer.json.xz" > "$WORK/$fam.json"
  for impl in cpp hf; do
    if [ $impl = cpp ]; then
      line=$(taskset -c 2 "$BIN" "$WORK/$fam.json" "$WORK/corpus.txt" 3)
    else
      line=$(taskset -c 2 python3 "$ROOT/bench/tokenizer/bench_hf.py" "$WORK/$fam.json" "$WORK/corpus.txt" 3)
    fi
    echo "{\"family\": \"$fam\", \"result\": $line}" | tee -a "$OUT/results.jsonl"
  done
done
lscpu | grep 'Model name' > "$OUT/cpu.txt" || true
