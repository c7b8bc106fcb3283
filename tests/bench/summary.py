"""Reads tests/bench/run's rows (stdin) and prints issue 12's figures against its targets:
medians of the 1,000-job/200-in-flight runs with their min-max spread, CPU flatness from 100 to
10,000 jobs at 1,000 in flight (the median of each size's runs: a 100-job run is a tenth of a
second of CPU, too short to judge alone), and the 100,000-job run's resident set. Standard
library only."""
import statistics
import sys

COLS = ["jobs", "in_flight", "follow", "wall", "cpu", "cpu_ms", "rss", "heap", "req", "fds",
        "dirs", "p50", "p95", "rss10", "rss_end", "open", "failed"]


def num(s):
    try:
        return float(s)
    except ValueError:
        return None


rows = []
for line in sys.stdin:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == len(COLS) and cells[0].isdigit():
        rows.append(dict(zip(COLS, [num(c) if i != 2 else c for i, c in enumerate(cells)])))


def spread(key, sel):
    vals = [r[key] for r in sel if r[key] is not None]
    if not vals:
        return "n/a"
    return "%.3g (%.3g-%.3g, %d runs)" % (statistics.median(vals), min(vals), max(vals), len(vals))


def verdict(ok):
    return "met" if ok else "NOT met"


small = [r for r in rows if r["jobs"] == 1000 and r["in_flight"] == 200]
flat = {}  # jobs -> the runs of that size at 1,000 in flight
for r in rows:
    if r["in_flight"] == 1000 and r["p50"] is not None:
        flat.setdefault(int(r["jobs"]), []).append(r)
big = [r for r in rows if r["jobs"] == 100000]
print("| figure | target | measured (median, min-max) | |")
print("|---|---|---|---|")
if small:
    def med(k):
        vals = [r[k] for r in small if r[k] is not None]
        return statistics.median(vals) if vals else float("nan")
    print("| CPU ms per job, 1k jobs / 200 in flight | <= 0.5 | %s | %s |" % (spread("cpu_ms", small), verdict(med("cpu_ms") <= 0.5)))
    print("| result lag p50 ms | <= 10 | %s | %s |" % (spread("p50", small), verdict(med("p50") <= 10)))
    print("| result lag p95 ms | <= 30 | %s | %s |" % (spread("p95", small), verdict(med("p95") <= 30)))
    print("| peak RSS MB, 1k / 200 | (reported) | %s | |" % spread("rss", small))
    print("| fdatasyncs per job (group commit) | (reported) | %s | |" % spread("fds", small))
if 10000 in flat:
    peak = max(r["rss"] for r in flat[10000])
    print("| peak RSS MB, 10k jobs / 1,000 in flight | < 64 | %.1f | %s |" % (peak, verdict(peak < 64)))
if len(flat) >= 2:
    cpu = {k: statistics.median(v) for k, runs in flat.items()
           for v in [[r["cpu_ms"] for r in runs if r["cpu_ms"] is not None]] if v}
    top = max(cpu) if cpu else None
    if top is not None and cpu[top] > 0:
        parts = ", ".join("%d: %s" % (k, spread("cpu_ms", flat[k])) for k in sorted(flat))
        worst = max(abs(cpu[k] / cpu[top] - 1) for k in cpu)
        print("| CPU ms per job flat from 100 to 10k jobs (1,000 in flight) | within +-20%% | %s (widest median %.0f%% from the %d-job runs') | %s |" % (parts, worst * 100, top, verdict(worst <= 0.2)))
if big:
    r = big[0]
    grown = r["rss_end"] - r["rss10"]
    per_job = grown * 1048576 / (r["jobs"] * 0.9)
    print("| 100k jobs: RSS MB after 10k jobs -> at the end | flat (within 5%%) | %.1f -> %.1f (%+.0f B per job after the first 10k), peak %.1f, %d failed | %s |" % (
        r["rss10"], r["rss_end"], per_job, r["rss"], r["failed"] or 0,
        verdict(r["failed"] == 0 and r["rss_end"] <= r["rss10"] * 1.05)))
    print("| 100k jobs: CPU ms per job | (reported) | %.3f | |" % r["cpu_ms"])
