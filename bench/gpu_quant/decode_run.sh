#!/bin/bash
# Gemma 3 4B quantized decode on the GPU machine in one go: a random bf16
# checkpoint, `mlxcpp convert -q` at 4 and 8 bits, `mlxcpp benchmark` of each
# (prompt 128, 128 new tokens), a device-time profile of the 4-bit step
# (MLXCPP_GPU_PROFILE=1), the card's copy bandwidth and the quantized kernel
# benchmark. Usage (from the worktree root): bench/gpu_quant/decode_run.sh OUTDIR
# Env: PARTS ("bench model profile"), RUN (prefix of our binaries, e.g. L).
OUTDIR=${1:-/tmp/gpuq}
PARTS=${PARTS:-bench model profile}
RUN=${RUN:-}
B=$PWD/build
M=/tmp/qdec
mkdir -p "$OUTDIR" $M
has() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader
if has bench; then
  $RUN "$B/bench/gpu_quant/mlxcpp_bench_gpu_quant" 20 >"$OUTDIR/qbench.log" 2>&1
  echo "qgemv bench rc $?"; cat "$OUTDIR/qbench.log"
fi
if has model; then
  t0=$(date +%s)
  [ -f $M/bf16/config.json ] || $RUN "$B/src/mlxcpp" random-model --config gemma3-4b --dtype bf16 --out $M/bf16 >/dev/null 2>"$OUTDIR/model.err"
  for bits in 4 8; do
    [ -f $M/q$bits/config.json ] || $RUN "$B/src/mlxcpp" convert --hf-path $M/bf16 --mlx-path $M/q$bits -q --q-bits $bits >/dev/null 2>>"$OUTDIR/model.err"
  done
  echo "models ready in $(($(date +%s) - t0)) s"; du -sh $M/*
  for bits in 4 8; do
    r=$($RUN "$B/src/mlxcpp" benchmark --model $M/q$bits -p 128 -g 128 -n 2 --output json 2>>"$OUTDIR/model.err" | tail -n 1)
    echo "q$bits decode: $r"
  done
fi
if has profile; then
  MLXCPP_GPU_PROFILE=1 $RUN "$B/src/mlxcpp" benchmark --model $M/q4 -p 128 -g 64 -n 1 >"$OUTDIR/profile_q4.log" 2>&1
  echo "profile rc $?"
  grep -v "^ *$" "$OUTDIR/profile_q4.log" | sort -t'|' -k3 -gr 2>/dev/null | head -5 >/dev/null
  head -c 6000 "$OUTDIR/profile_q4.log"
fi
