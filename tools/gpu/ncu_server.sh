#!/bin/bash
# `mlxcpp server` under Nsight Compute, for bench/server_gpu.sh (MLXCPP_BIN=tools/gpu/ncu_server.sh):
# the kernel durations of NCU_COUNT launches after the first NCU_SKIP (a c = 64 burst of
# 64 + 64 tokens after the warm-up request starts near 40 000 launches for gemma3-4b) go to
# NCU_REPORT.ncu-rep (default /tmp/mlxcpp-server). A TERM for this script stops the server itself
# and waits, so that ncu writes its report. Then:
#   ncu -i /tmp/mlxcpp-server.ncu-rep --csv --print-units base > server.csv
#   python3 tools/gpu/ncu_step.py server.csv
BIN=${NCU_MLXCPP:-$(cd "$(dirname "$0")/../.." && pwd)/build/src/mlxcpp}
ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum \
  --launch-skip "${NCU_SKIP:-45000}" --launch-count "${NCU_COUNT:-1500}" \
  --export "${NCU_REPORT:-/tmp/mlxcpp-server}" --force-overwrite "$BIN" "$@" &
pid=$!
trap 'pkill -TERM -f "^$BIN server"; wait $pid; exit 0' TERM INT
wait $pid
