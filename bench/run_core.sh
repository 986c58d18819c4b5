#!/bin/sh
# Runs mlxcpp_bench_core and prints ours against the baseline measured in the
# same run. Usage: bench/run_core.sh [path/to/mlxcpp_bench_core] [extra benchmark flags]
set -eu
BIN=${1:-build/bench/mlxcpp_bench_core}
[ $# -gt 0 ] && shift
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
"$BIN" --benchmark_out="$OUT" --benchmark_out_format=json "$@" >/dev/null
python3 - "$OUT" <<'PY'
import json, sys

# name prefix -> (what ours and the baseline are, goal on the ratio)
GOALS = {
    "BM_AddFloat32": ("GB/s", "memcpy", ">= 0.80"),
    "BM_GemmFloat32": ("GFLOP/s", "cblas_sgemm", ">= 0.95"),
    "BM_GemvBfloat16": ("GB/s", "read-sum floor", ">= 0.97"),
    "BM_GemvFloat32": ("GB/s", "read-sum floor", ">= 0.97"),
    "BM_GemmBfloat16": ("GFLOP/s", "f32 cblas_sgemm", ">= 1.00"),
    "BM_LogProbs": ("GB/s", "composed logsumexp", ">= 2.00"),
}
# Further counters printed after the goal (name -> label).
EXTRA = {"sgemv_GBps": "sgemv GB/s", "sgemm_m1_GBps": "sgemm(M=1) GB/s",
         "avx2_GFLOPS": "AVX2 kernel GFLOP/s", "cvt_sgemm_GFLOPS": "convert+sgemm GFLOP/s",
         "us_per_matmul": "us/matmul", "ours_us": "us", "composed_us": "composed us"}
data = json.load(open(sys.argv[1]))
ctx = data["context"]
print(f"{ctx.get('host_name', '?')}: {ctx['num_cpus']} CPUs @ {ctx['mhz_per_cpu']} MHz, {ctx['date']}")
print(f"{'benchmark':<60} {'ours':>10} {'baseline':>10} {'unit':>8} {'ratio':>7}  goal")
for b in data["benchmarks"]:
    name = b["name"].replace("/real_time", "").replace("/iterations:", " it:")
    key = b["name"].split("/")[0]
    if b.get("error_occurred"):
        print(f"{name:<60} skipped: {b.get('error_message', '')}")
        continue
    if key == "BM_GraphOverhead":
        ns = b["ns_per_op"]
        print(f"{name:<60} {ns:>10.0f} {'':>10} {'ns/op':>8} {'':>7}  <= 1000 ns/op "
              f"({'met' if ns <= 1000 else 'MISSED'}; build {b['build_ns_per_op']:.0f} + eval {b['eval_ns_per_op']:.0f})")
        continue
    if key == "BM_EvalRoundTrip":
        print(f"{name:<60} {b['ns_per_eval']:>10.0f} {'':>10} {'ns/eval':>8} {'':>7}  (one tiny op per eval; no goal)")
        continue
    unit, base, goal = GOALS[key]
    ours = next(v for k, v in b.items() if k.startswith("ours_"))
    bv = next(v for k, v in b.items() if k.startswith("base_"))
    met = b["ratio"] >= float(goal.split()[1])
    extra = "; ".join(f"{label} {b[k]:.1f}" for k, label in EXTRA.items() if k in b)
    print(f"{name:<60} {ours:>10.2f} {bv:>10.2f} {unit:>8} {b['ratio']:>7.3f}  {goal} vs {base} "
          f"({'met' if met else 'MISSED'}){'  [' + extra + ']' if extra else ''}")
PY
