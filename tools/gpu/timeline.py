#!/usr/bin/env python3
"""Where a GPU program's time goes, from a trace of tools/gpu/cupti_trace.c (standard library only).

  python3 tools/gpu/timeline.py TRACE [--marker arg_reduce_merge] [--top 25] [--from-step K]

Splits the kernels into steps that each end with a marker kernel (the sampled token's argmax
merge by default) and reports, over the steps (from --from-step on): the step's wall time on
the device (first kernel start to the marker's end), the device's busy time, its idle time, and
how the idle time splits into gaps while the next kernel had not even been launched yet (the
host's launch was late: launch-bound) and gaps while it had (a dependency or a wait on the
device). Then the largest idle gaps with the kernels around them and the host calls launched in
them; mean in-place kernel times by name; the wall time each kernel adds (its end past the
latest end before it: what overlapped, programmatically dependent launches do not count twice); the host's runtime calls (count and time per name);
and unified-memory page faults and migrations per step.
"""

import argparse
import bisect
import collections
import re
import statistics
import sys


def short(name, width=60):
    # A readable kernel name: for an Itanium-mangled one, its innermost identifier (no namespace,
    # template or parameter list); anything else as it is.
    if not name.startswith("_Z"):
        return name[:width]
    rest = name[2:]
    if rest.startswith("N"):
        rest = rest[1:]
    last = None
    while True:
        m = re.match(r"(\d+)", rest)
        if not m:
            break
        n = int(m.group(1))
        last = rest[len(m.group(1)):len(m.group(1)) + n]
        rest = rest[len(m.group(1)) + n:]
    return (last or name)[:width]


def load(path):
    kernels, copies, sets, api, syncs, um = [], [], [], [], [], []
    with open(path, errors="replace") as f:
        for line in f:
            p = line.rstrip("\n").split(" ", 5)
            t = p[0]
            if t == "K":
                kernels.append((int(p[1]), int(p[2]), int(p[3]), int(p[4]), p[5]))
            elif t == "C":
                q = line.split()
                copies.append((int(q[1]), int(q[2]), int(q[3]), int(q[4]), int(q[5]), int(q[6])))
            elif t == "S":
                q = line.split()
                sets.append((int(q[1]), int(q[2]), int(q[3]), int(q[4]), int(q[5])))
            elif t == "A" or t == "D":
                api.append((int(p[1]), int(p[2]), int(p[3]), int(p[4]), t + " " + p[5]))
            elif t == "Y":
                q = line.split()
                syncs.append((int(q[1]), int(q[2]), int(q[3]), int(q[4])))
            elif t == "U":
                q = line.split()
                um.append((int(q[1]), int(q[2]), int(q[3]), int(q[4])))
    return kernels, copies, sets, api, syncs, um


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trace")
    ap.add_argument("--marker", default="arg_reduce_merge", help="kernel name that ends a step")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--from-step", type=int, default=0)
    ap.add_argument("--min-kernels", type=int, default=50, help="shorter steps are not counted")
    ap.add_argument("--positions", type=str, default="",
                    help="FIRST:COUNT: for the counted steps of the most common length, the median "
                         "in-place time, wall time added and start after the previous end of the "
                         "operations at positions FIRST .. FIRST+COUNT-1 of a step (one layer's "
                         "sequence, say)")
    args = ap.parse_args()
    kernels, copies, sets, api, syncs, um = load(args.trace)
    # Device work: kernels, copies and memsets, as (start, end, corr, label).
    work = [(k[0], k[1], k[3], short(k[4])) for k in kernels]
    work += [(c[0], c[1], c[3], "memcpy kind %d %d B" % (c[5], c[4])) for c in copies]
    work += [(s[0], s[1], s[3], "memset %d B" % s[4]) for s in sets]
    work.sort()
    if not work:
        sys.exit("timeline: no device work in the trace")
    # When the host's call that queued each operation returned (runtime or driver call: the
    # later of the two, as a runtime launch wraps a driver one with the same correlation id).
    launch_end = {}
    for a in api:
        if "aunch" in a[4] or "emcpy" in a[4] or "emset" in a[4] or "Memset" in a[4]:
            launch_end[a[3]] = max(launch_end.get(a[3], 0), a[1])
    t0 = work[0][0]
    # Steps: work up to and including each marker kernel.
    steps, cur = [], []
    for w in work:
        cur.append(w)
        if args.marker in w[3]:
            steps.append(cur)
            cur = []
    print(f"trace: {len(kernels)} kernels, {len(copies)} copies, {len(sets)} memsets, {len(api)} runtime calls, "
          f"{len(um)} unified-memory records; span {(work[-1][1] - t0) / 1e6:.1f} ms; {len(steps)} steps")
    good = [s for s in steps[args.from_step:] if len(s) >= args.min_kernels]
    rows = []
    gaps = []  # (gap ns, step index, prev label, next label, late launch?)
    by_name = collections.defaultdict(list)
    added_by_name = collections.Counter()  # wall time each kernel adds past those before it
    prev_end_of_step = None
    for si, s in enumerate(good):
        start = s[0][0]
        end = max(w[1] for w in s)
        busy = 0
        idle_late = 0
        idle_dep = 0
        frontier = start
        prev = None
        for w in s:
            if w[0] > frontier:
                g = w[0] - frontier
                le = launch_end.get(w[2])
                late = le is not None and le > frontier
                if late:
                    idle_late += g
                else:
                    idle_dep += g
                gaps.append((g, si, prev[3] if prev else "-", w[3], late, frontier, w[0]))
            busy += max(0, w[1] - max(w[0], frontier))
            added_by_name[w[3]] += max(0, w[1] - frontier)
            frontier = max(frontier, w[1])
            by_name[w[3]].append(w[1] - w[0])
            prev = w
        before = start - prev_end_of_step if prev_end_of_step is not None else 0
        prev_end_of_step = end
        rows.append((end - start, busy, idle_late, idle_dep, len(s), before))
    if rows:
        n = len(rows)
        med = lambda i: statistics.median(r[i] for r in rows) / 1e3
        print(f"steps counted: {n} (of >= {args.min_kernels} device operations, from step {args.from_step})")
        print(f"  median per step: wall {med(0):.0f} us, busy {med(1):.0f} us, idle with the next launch late "
              f"{med(2):.0f} us, idle otherwise {med(3):.0f} us, operations {statistics.median(r[4] for r in rows):.0f}, "
              f"device idle before the step {med(5):.0f} us")
        tot = [sum(r[i] for r in rows) / 1e6 for i in range(6)]
        print(f"  total: wall {tot[0]:.1f} ms, busy {tot[1]:.1f}, idle late-launch {tot[2]:.1f}, idle other {tot[3]:.1f}, "
              f"between steps {tot[5]:.1f}")
        print("  per step (wall/busy/late/other/ops/before, us): " + "; ".join(
            f"{r[0]/1e3:.0f}/{r[1]/1e3:.0f}/{r[2]/1e3:.0f}/{r[3]/1e3:.0f}/{r[4]}/{r[5]/1e3:.0f}" for r in rows[:80]))
    print(f"\nlargest idle gaps inside steps (top {args.top}), with the host calls made during each:")
    api_by_start = sorted(api)
    api_starts = [a[0] for a in api_by_start]
    for g, si, a, b, late, lo, hi in sorted(gaps, reverse=True)[:args.top]:
        print(f"  {g/1e3:9.1f} us  step {si:4d}  after {a:40s} before {b:40s} {'launch late' if late else ''}")
        during = collections.defaultdict(lambda: [0, 0])
        i = bisect.bisect_left(api_starts, lo)
        while i < len(api_by_start) and api_by_start[i][0] < hi:
            c = api_by_start[i]
            during[c[4]][0] += 1
            during[c[4]][1] += min(c[1], hi) - c[0]
            i += 1
        top = sorted(during.items(), key=lambda kv: -kv[1][1])[:5]
        print("      host: " + (", ".join(f"{n} x{c} {t/1e3:.0f} us" for n, (c, t) in top) or "no CUDA calls"))
    # Gap totals by the kernel that waited.
    late_by = collections.Counter()
    for g, si, a, b, late, lo, hi in gaps:
        late_by[(b, late)] += g
    print("\nidle time by the operation that waited (top):")
    for (b, late), g in late_by.most_common(args.top):
        print(f"  {g/1e6:9.2f} ms  before {b:40s} {'launch late' if late else 'launched'}")
    print("\nin-place device time by kernel (counted steps):")
    tot_all = sum(sum(v) for v in by_name.values())
    for name, v in sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:args.top]:
        print(f"  {sum(v)/1e6:9.2f} ms {len(v):7d} x {statistics.mean(v)/1e3:8.1f} us  {name}")
    print(f"  (all: {tot_all/1e6:.1f} ms)")
    # A kernel launched as a programmatic dependent starts while the one before it runs, so its
    # in-place time overlaps; what it adds to the step is how far its end lies past the ends of
    # the operations before it (gaps before it included).
    print("\nwall time added by kernel (its end past the latest end before it; counted steps):")
    for name, t in added_by_name.most_common(args.top):
        n = len(by_name[name])
        print(f"  {t/1e6:9.2f} ms {n:7d} x {t/max(n, 1)/1e3:8.1f} us  {name}")
    if args.positions and good:
        first, count = (int(v) for v in args.positions.split(":"))
        common = collections.Counter(len(st) for st in good).most_common(1)[0][0]
        same = [st for st in good if len(st) == common]
        print(f"\nby position in the {len(same)} steps of {common} operations (median us: in place, "
              "wall added, start minus the previous operation's end):")
        for i in range(first, min(first + count, common)):
            dur, add, lead = [], [], []
            for st in same:
                front = max(w[1] for w in st[:i]) if i > 0 else st[0][0]
                w = st[i]
                dur.append(w[1] - w[0])
                add.append(max(0, w[1] - front))
                lead.append(w[0] - (st[i - 1][1] if i > 0 else w[0]))
            md = lambda v: statistics.median(v) / 1e3
            print(f"  {i:4d} {md(dur):8.1f} {md(add):8.1f} {md(lead):8.1f}  {same[0][i][3]}")
    print("\nhost runtime (A) and driver (D) calls, all threads (a runtime call's time includes its driver calls):")
    calls = collections.defaultdict(list)
    for a in api:
        calls[a[4]].append(a[1] - a[0])
    for name, v in sorted(calls.items(), key=lambda kv: -sum(kv[1]))[:args.top]:
        print(f"  {sum(v)/1e6:9.2f} ms {len(v):8d} x {statistics.mean(v)/1e3:8.2f} us  {name}")
    threads = collections.Counter(a[2] for a in api)
    print("  calls per thread: " + ", ".join(f"{t}: {c}" for t, c in threads.most_common(8)))
    if um:
        names = {1: "HtoD bytes", 2: "DtoH bytes", 3: "CPU page faults", 4: "GPU page faults"}
        agg = collections.Counter()
        cnt = collections.Counter()
        for kind, s, e, v in um:
            agg[kind] += v
            cnt[kind] += 1
        print("\nunified memory: " + ", ".join(f"{names.get(k, k)} {agg[k]} in {cnt[k]} records" for k in sorted(agg)))
        if good:
            bounds = [(s[0][0], max(w[1] for w in s)) for s in good]
            starts = [b[0] for b in bounds]
            per = collections.Counter()
            for kind, s, e, v in um:
                i = bisect.bisect_right(starts, s) - 1
                if 0 <= i < len(bounds) and s <= bounds[i][1]:
                    per[(kind)] += v
            print("  inside counted steps: " + ", ".join(f"{names.get(k, k)} {per[k]}" for k in sorted(per)))


if __name__ == "__main__":
    main()
