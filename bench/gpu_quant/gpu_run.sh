#!/bin/bash
# The GPU checks and measurements of the quantized kernels in one go (what
# bench/RESULTS.md's GPU quantization numbers came from): the gpu tests, the
# CPU quantization suite with the GPU as default device, the kernel benchmark,
# and Gemma 3 4B at 4 bits end to end (random weights, converted with -q).
# Usage: bench/gpu_quant/gpu_run.sh OUTDIR   (run from the worktree root;
# `L` prefixes binaries with the runtime libraries where needed, else nothing).
OUTDIR=${1:-/tmp/gpuq}
mkdir -p "$OUTDIR"
run() { if declare -F L >/dev/null; then L "$@"; else "$@"; fi; }
export -f run
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader
timeout 100 bash -c 'run build/tests/mx_test_gpu_quantized --gtest_brief=1' >"$OUTDIR/gpu_quantized.log" 2>&1
echo "mx_test_gpu_quantized rc $?"
grep -E "^\[  (PASSED|FAILED|SKIPPED)|tests? from .* ran" "$OUTDIR/gpu_quantized.log" | tail -12
grep -m10 -A6 "Failure" "$OUTDIR/gpu_quantized.log" | cut -c1-250
MLXCPP_DEFAULT_DEVICE=gpu timeout 50 bash -c 'run build/tests/mx_test_quantized --gtest_brief=1' >"$OUTDIR/quantized_on_gpu.log" 2>&1
echo "mx_test_quantized on the GPU rc $?"
grep -E "^\[  (PASSED|FAILED)|tests? from .* ran" "$OUTDIR/quantized_on_gpu.log" | tail -16
grep -m6 -A6 "Failure" "$OUTDIR/quantized_on_gpu.log" | cut -c1-250
timeout 60 bash -c 'run build/bench/gpu_quant/mlxcpp_bench_gpu_quant 20' >"$OUTDIR/bench.log" 2>&1
echo "bench rc $?"
cat "$OUTDIR/bench.log"
BIN=$PWD/build/src/mlxcpp
export BIN
(
  cd /tmp || exit 1
  timeout 40 bash -c 'run $BIN random-model --config gemma3-4b --dtype bf16 --out /tmp/g4' >/dev/null 2>"$OUTDIR/e2e.err" || { echo "random-model failed"; tail -3 "$OUTDIR/e2e.err"; exit 0; }
  MLXCPP_DEFAULT_DEVICE=gpu timeout 60 bash -c 'run $BIN convert --hf-path /tmp/g4 --mlx-path /tmp/g4q -q' >/dev/null 2>>"$OUTDIR/e2e.err" || { echo "convert failed"; tail -3 "$OUTDIR/e2e.err"; exit 0; }
  du -sh /tmp/g4 /tmp/g4q
  MLXCPP_DEFAULT_DEVICE=gpu timeout 90 bash -c 'run $BIN benchmark --model /tmp/g4q -p 2048 -g 16 -n 1' >"$OUTDIR/e2e.log" 2>&1
  echo "gemma3-4b 4-bit benchmark rc $?"
  tail -8 "$OUTDIR/e2e.log"
)
