#!/bin/bash
# Runs every test binary (build/tests/mx_test_*, nn_test_*, lm_test_*) with the GPU
# as the default device, four at a time, and prints one line per binary with
# its failed tests. Full logs go to $1 (default /tmp/core_suite).
# Usage (on the GPU machine, after `source tools/gpu/pb.sh`): bash tools/gpu/run_core_suite.sh DIR
out=${1:-/tmp/core_suite}
mkdir -p "$out"
run_one() {
  local b=$1 out=$2 n
  n=$(basename "$b")
  MLXCPP_DEFAULT_DEVICE=gpu L timeout "${PER_BINARY_TIMEOUT:-300}" "$b" --gtest_brief=1 >"$out/$n.log" 2>&1
  local rc=$?
  local failed
  failed=$(grep -E '^\[  FAILED  \] [A-Za-z]' "$out/$n.log" | grep -v ' listed below' |
    sed -E 's/^\[  FAILED  \] ([^ ,]+).*/\1/' | sort -u | tr '\n' ' ')
  echo "$n rc=$rc failed: ${failed:-none}"
}
export -f run_one
export PER_BINARY_TIMEOUT
find build/tests -maxdepth 1 -type f -perm -u+x \( -name 'mx_test_*' -o -name 'nn_test_*' -o -name 'lm_test_*' \) | xargs -P "${JOBS:-4}" -I{} bash -c 'run_one {} '"$out" | sort
