#!/bin/sh
# Gemma 3 decode and prefill on this CPU against the memory-bandwidth floor
# (issue 4): random bf16 checkpoints with the published shapes, RUNS runs of
# `mlxcpp benchmark` each, the floor measured inside every run. Prints each
# run and the medians. Usage: bench/gemma3_cpu.sh [path/to/mlxcpp]
# Env: MODELS (default "gemma3-270m gemma3-1b"; NAME-q4 for a 4-bit conversion, e.g.
# gemma3-1b-q4), RUNS (3), DIR (/tmp/mlxcpp-bench).
set -eu
BIN=${1:-build/src/mlxcpp}
DIR=${DIR:-/tmp/mlxcpp-bench}
RUNS=${RUNS:-3}
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
for cfg in ${MODELS:-gemma3-270m gemma3-1b}; do
  # NAME-q4: NAME's random checkpoint converted to 4 bits (mlxcpp convert -q).
  base=${cfg%-q4}
  if [ ! -f "$DIR/$base/config.json" ]; then
    "$BIN" random-model --config "$base" --dtype bf16 --out "$DIR/$base" >/dev/null
  fi
  if [ "$base" != "$cfg" ] && [ ! -f "$DIR/$cfg/config.json" ]; then
    "$BIN" convert --hf-path "$DIR/$base" --mlx-path "$DIR/$cfg" -q >/dev/null
  fi
  case $cfg in
    gemma3-270m) flags="-p 128 -g 64 -n 3" ;;
    *-q4) flags="-p 128 -g 64 -n 2" ;;
    *) flags="-p 128 -g 32 -n 2" ;;
  esac
  for _ in $(seq "$RUNS"); do
    # shellcheck disable=SC2086
    printf '%s %s\n' "$cfg" "$("$BIN" benchmark --model "$DIR/$cfg" $flags --output json | tail -n 1)" >>"$OUT"
  done
done
/usr/bin/python3 - "$OUT" <<'PY'
import json, statistics, sys

rows = {}
for line in open(sys.argv[1]):
    cfg, js = line.split(" ", 1)
    rows.setdefault(cfg, []).append(json.loads(js))
print(f"{'model':<12} {'run':>3} {'prefill tok/s':>13} {'decode tok/s':>12} {'read GB/s':>9} "
      f"{'floor tok/s':>11} {'decode/floor':>12} {'median trial/adjacent floor':>27}")
for cfg, runs in rows.items():
    for i, r in enumerate(runs, 1):
        print(f"{cfg:<12} {i:>3} {r['prompt_tps']:>13.0f} {r['generation_tps']:>12.1f} "
              f"{r['read_gbs']:>9.1f} {r['floor_tps']:>11.1f} {r['decode_floor_ratio']:>12.2f} "
              f"{r['median_trial_floor_ratio']:>27.2f}")
    med = lambda k: statistics.median(r[k] for r in runs)
    print(f"{cfg:<12} med {med('prompt_tps'):>13.0f} {med('generation_tps'):>12.1f} "
          f"{med('read_gbs'):>9.1f} {med('floor_tps'):>11.1f} {med('decode_floor_ratio'):>12.2f} "
          f"{med('median_trial_floor_ratio'):>27.2f}")
PY
