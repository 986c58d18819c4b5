#!/bin/bash
# The GPU checks and measurements of the split-KV decode attention in one go:
# its gpu tests, the CPU sdpa suite and the flash tests with the GPU as the
# default device, the lm tests that decode through it, the kernel benchmark
# (mlxcpp_bench_sdpa_decode), and Gemma 3 4B bf16 decode end to end (random
# weights, prompt 128, 256 new tokens, as bench/gemma3_gpu.sh) with
# MLXCPP_GPU_PROFILE=1. Usage (from the worktree root; `L` prefixes our
# binaries where the runtime libraries need it): bench/gpu/sdpa_decode_run.sh OUTDIR
OUTDIR=${1:-/tmp/sdpa_decode}
mkdir -p "$OUTDIR"
run() { if declare -F L >/dev/null; then L "$@"; else "$@"; fi; }
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader
summary() {  # name, log
  echo "$1: $(grep -E '^\[  (PASSED|FAILED|SKIPPED)  \]' "$2" | tr '\n' ' ')"
  grep -m6 -A8 "Failure" "$2" | cut -c1-300
}
# t NAME COMMAND...: runs COMMAND (through `run`, at most PER_TEST_TIMEOUT s) into OUTDIR/NAME.log.
t() {
  local name=$1 t0=$SECONDS
  shift
  timeout "${PER_TEST_TIMEOUT:-90}" bash -c "$(declare -f run); run $*" >"$OUTDIR/$name.log" 2>&1
  echo "[rc $? in $((SECONDS - t0)) s]"
  summary "$name" "$OUTDIR/$name.log"
}
GPU="env MLXCPP_DEFAULT_DEVICE=gpu"
t decode build/tests/mx_test_gpu_sdpa_decode --gtest_brief=1
timeout 120 bash -c "$(declare -f run); run build/bench/gpu/mlxcpp_bench_sdpa_decode 20" >"$OUTDIR/bench.log" 2>&1
echo "bench rc $?"
cat "$OUTDIR/bench.log"
M=/tmp/g4
t0=$SECONDS
run build/src/mlxcpp random-model --config gemma3-4b --dtype bf16 --out $M >/dev/null 2>"$OUTDIR/e2e.err" || { echo "random-model failed"; tail -3 "$OUTDIR/e2e.err"; }
echo "random-model in $((SECONDS - t0)) s"
# Decode tok/s with this kernel and with the one warp per row kernels of sdpa.cu
# (MLXCPP_SDPA_DECODE_KERNEL=0), then each with the profile (which times every
# primitive, so its tok/s is lower).
bench() { timeout 100 bash -c "$(declare -f run); run build/src/mlxcpp benchmark --model $M -p 128 -g 256 -n $1 --output json"; }
for k in 1 0; do
  MLXCPP_SDPA_DECODE_KERNEL=$k bench 3 >"$OUTDIR/e2e_$k.log" 2>&1
  echo "decode kernel $k: $(tail -1 "$OUTDIR/e2e_$k.log" | grep -o '"generation_tps":[0-9.]*' | head -1)"
  MLXCPP_SDPA_DECODE_KERNEL=$k MLXCPP_GPU_PROFILE=1 bench 1 >/dev/null 2>"$OUTDIR/e2e_profile_$k.log"
  echo "profiled, decode kernel $k:"
  grep -E "GPU device time per primitive|^ScaledDotProductAttention  " "$OUTDIR/e2e_profile_$k.log" | head -2
done
grep -A12 "GPU device time per primitive" "$OUTDIR/e2e_profile_1.log" | head -13
t flash build/tests/mx_test_gpu_sdpa_flash --gtest_brief=1
t fast_sdpa_gpu $GPU build/tests/mx_test_fast_sdpa --gtest_brief=1
for b in lm_test_server_batching lm_test_gemma3_reference lm_test_gpu_generate lm_test_static_decode; do
  t "$b" $GPU "build/tests/$b" --gtest_brief=1
done
