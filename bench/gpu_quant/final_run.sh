#!/bin/bash
# One GPU-machine run of the quantized decode work: the kernel benchmark, the
# 4- and 8-bit Gemma 3 4B decode (bench/gpu_quant/decode_run.sh) and the gpu
# tests of the quantized ops. Usage: bench/gpu_quant/final_run.sh OUTDIR
# (from the worktree root; RUN=L where the runtime libraries need a prefix).
OUTDIR=${1:-/tmp/gpuq}
mkdir -p "$OUTDIR"
RUN=${RUN:-} PARTS="bench model profile" bench/gpu_quant/decode_run.sh "$OUTDIR"
grep -A14 "primitive \[inputs" "$OUTDIR/profile_q4.log" | cut -c1-104,105-140
t() {
  local name=$1 env=$2; shift 2
  timeout 200 bash -c "$env $RUN $*" >"$OUTDIR/$name.log" 2>&1
  echo "$name rc $? $(grep -E '^\[  (PASSED|FAILED)' "$OUTDIR/$name.log" | tr '\n' ' ')"
  grep -m8 -B2 -A8 "Failure" "$OUTDIR/$name.log" | cut -c1-220 | head -40
}
t gpu_qgemv "" build/tests/mx_test_gpu_qgemv --gtest_brief=1
t gpu_quantized "" build/tests/mx_test_gpu_quantized --gtest_brief=1
t quantized_on_gpu MLXCPP_DEFAULT_DEVICE=gpu build/tests/mx_test_quantized --gtest_brief=1
t nn_quantized_on_gpu MLXCPP_DEFAULT_DEVICE=gpu build/tests/nn_test_quantized_layers --gtest_brief=1
t lm_quantized_on_gpu MLXCPP_DEFAULT_DEVICE=gpu build/tests/lm_test_quantized_model --gtest_brief=1
