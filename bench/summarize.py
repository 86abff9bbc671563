#!/usr/bin/env python3
"""Summarize bench/compare.sh results as a markdown table: median seconds per case, phase and
tool, and the median of the per-round ratios rbuild/docker and rbuild/buildah (rounds are
interleaved, so ratios are robust to the machine's noise); rbuild's peak RSS per case.
usage: summarize.py RESULTS.tsv [MORE.tsv ...]"""
import csv
import statistics
import sys
from collections import defaultdict

GOALS = {  # rbuild/docker goals from the builder issue
    ("small", "cold"): 0.5, ("small", "warm"): 0.3,
    ("many-files", "cold"): 0.3, ("many-files", "warm"): 0.2,
    ("big-file", "cold"): 0.25, ("multistage", "cold"): 0.6,
    ("rebuild-one-change", "change"): 0.4, ("noop-rebuild", "warm"): 0.2,
}

rows = []
for i, path in enumerate(sys.argv[1:]):
    for r in csv.DictReader(open(path), delimiter="\t"):
        r["round"] = f"{i}.{r['round']}"
        rows.append(r)
if not rows:
    sys.exit("no rows")
times = defaultdict(list)
per_round = defaultdict(dict)
rss = defaultdict(list)
loads = []
for r in rows:
    s = float(r["seconds"])
    times[(r["case"], r["phase"], r["tool"])].append(s)
    per_round[(r["case"], r["phase"], r["round"])][r["tool"]] = s
    if r["tool"] == "rbuild" and int(r.get("rss_kib") or 0):
        rss[r["case"]].append(int(r["rss_kib"]))
    loads.append(float(r["load1"]))

def med(xs):
    return statistics.median(xs) if xs else None

def ratio(case, phase, other):
    rs = [v["rbuild"] / v[other] for (c, p, _), v in per_round.items()
          if c == case and p == phase and "rbuild" in v and other in v and v[other] > 0]
    return med(rs)

cells = sorted({(r["case"], r["phase"]) for r in rows}, key=lambda k: (k[0], ["cold", "warm", "change"].index(k[1])))
print("| case | phase | rbuild s | docker s | buildah s | rbuild/docker | goal | rbuild/buildah |")
print("|---|---|---|---|---|---|---|---|")
for case, phase in cells:
    def t(tool):
        m = med(times.get((case, phase, tool), []))
        return f"{m:.2f}" if m is not None else "–"
    rd, rb = ratio(case, phase, "docker"), ratio(case, phase, "buildah")
    goal = GOALS.get((case, phase))
    mark = "" if rd is None or goal is None else (" ✓" if rd <= goal else " ✗")
    print(f"| {case} | {phase} | {t('rbuild')} | {t('docker')} | {t('buildah')} | "
          f"{'–' if rd is None else f'{rd:.2f}'}{mark} | {'' if goal is None else f'≤ {goal}'} | "
          f"{'–' if rb is None else f'{rb:.2f}'} |")
print()
for case, values in sorted(rss.items()):
    print(f"- rbuild peak RSS, {case}: {max(values) / 1024:.0f} MiB")
print(f"- 1-minute load average during the runs: median {statistics.median(loads):.2f}, max {max(loads):.2f}")
print(f"- rounds: {len({r['round'] for r in rows})}")
