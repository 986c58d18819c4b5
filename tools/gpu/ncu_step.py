#!/usr/bin/env python3
"""Per-kernel device time of one decode step from Nsight Compute's CSV (Python standard library).

Profile a window of launches that spans a few decode steps, e.g.

  ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv \\
      --print-units base --launch-skip 10000 --launch-count 1500 \\
      build/src/mlxcpp benchmark --model M -p 64 -g 32 -b 64 -n 1 > step.csv

(or `--export R` and `ncu -i R.ncu-rep --csv --print-units base > step.csv`; on a running server,
tools/gpu/ncu_server.sh), then

  python3 tools/gpu/ncu_step.py step.csv [--step K] [--marker arg_reduce_merge] [--top N]

A step is the kernels after one marker kernel up to and including the next (the marker ends each
step: the argmax merge of the sampled token by default). Prints the step's kernel count and summed
duration, then its kernels grouped by name, grid and block: calls, total µs and mean µs.
Durations are of kernels serialized by the profiler: each carries its own launch and drain.
"""

import argparse
import collections
import csv
import re
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv")
    ap.add_argument("--step", type=int, default=0, help="which complete step of the window (0: first)")
    ap.add_argument("--marker", default="arg_reduce_merge", help="kernel name that ends a step")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    rows = []
    header = None
    with open(args.csv, newline="") as f:
        for r in csv.reader(f):
            if r and r[0] == "ID":
                header = r
                continue
            if header and len(r) == len(header):
                d = dict(zip(header, r))
                if d.get("Metric Name", "gpu__time_duration.sum") == "gpu__time_duration.sum":
                    rows.append(d)
    if not rows:
        sys.exit(f"ncu_step: no kernel rows with gpu__time_duration.sum in {args.csv}")
    ends = [i for i, d in enumerate(rows) if args.marker in d["Kernel Name"]]
    if len(ends) < args.step + 2:
        sys.exit(f"ncu_step: {len(ends)} '{args.marker}' kernels in the window: step {args.step} "
                 "is not complete (profile more launches, or choose another --marker)")
    step = rows[ends[args.step] + 1:ends[args.step + 1] + 1]
    groups = collections.OrderedDict()
    total = 0.0
    for d in step:
        name = re.sub(r"\(.*", "", d["Kernel Name"]).replace("void ", "")
        name = name.replace("(anonymous namespace)::", "").replace("<unnamed>::", "")[:80]
        key = f"{name} grid{d['Grid Size']} block{d['Block Size']}"
        us = float(d["Metric Value"].replace(",", "")) / 1000.0
        g = groups.setdefault(key, [0, 0.0])
        g[0] += 1
        g[1] += us
        total += us
    print(f"step {args.step}: {len(step)} kernels, {total:.1f} us summed")
    print(f"{'calls':>5} {'total us':>10} {'mean us':>9}  kernel")
    for key, (n, us) in sorted(groups.items(), key=lambda kv: -kv[1][1])[:args.top]:
        print(f"{n:5d} {us:10.1f} {us / n:9.2f}  {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
