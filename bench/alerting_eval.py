"""Benchmark: rule evaluation cost — 10,000 series × 100 rules, milliseconds per evaluation cycle.

    python bench/alerting_eval.py [--series 10000] [--rules 100] [--cycles 30]

20 metrics × 500 series (50 hosts × 10 devices), 5 rules per metric (avg/max/last/p95/rate, different windows,
half of them with tag matchers, some grouped by host). Every cycle first ingests one new point per series (a 10 s
collection interval) and then evaluates every rule; both phases are timed. No alert fires (a quiet fleet, the
common case), then a second run makes 10 % of the series breach their thresholds to price the firing path.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alerting.config import parse_rule  # noqa: E402
from alerting.evaluate import Engine  # noqa: E402
from alerting.rules import build_rule  # noqa: E402
from alerting.state import AlertDB  # noqa: E402
from checks.model import Batch, Sample  # noqa: E402

AGGS = [("avg", 300), ("max", 600), ("last", 60), ("p95", 900), ("rate", 300)]


def make_rules(n_rules: int, metrics: list[str]) -> list:
    out = []
    for i in range(n_rules):
        m = metrics[i % len(metrics)]
        agg, window = AGGS[(i // len(metrics)) % len(AGGS)]
        raw = {"name": f"r{i}", "type": "threshold", "metric": m, "agg": agg, "window": window, "warning": 90.0, "critical": 95.0,
               "recovery": 85.0, "for": 60}
        if i % 2:
            raw["match"] = {"device": "~dev[0-7]"}
        if i % 3 == 0:
            raw["by"] = ["host"]
        if agg == "rate":
            raw.update(warning=1e9, critical=2e9, recovery=None)
        out.append(build_rule(parse_rule(raw, f"rules[{i}]")))
    return out


def run(n_series: int, n_rules: int, cycles: int, breach: float) -> tuple[list[float], list[float], int, int]:
    metrics = [f"bench.metric{m:02d}.value_percent" for m in range(20)]
    per_metric = n_series // len(metrics)
    hosts = [f"host{h:03d}" for h in range(max(1, per_metric // 10))]
    series = [(m, h, f"dev{d}") for m in metrics for h in hosts for d in range(10)][:n_series]
    with tempfile.TemporaryDirectory() as tmp:
        eng = Engine(AlertDB(str(Path(tmp) / "a.db")), interval=10.0)
        eng.set_rules(make_rules(n_rules, metrics))
        rnd = random.Random(1)
        t = time.time() - 3600
        # one hour of history at 10 s so every window is full
        for step in range(360):
            ts = t + step * 10
            by_host: dict[str, list[Sample]] = {}
            for m, h, d in series:
                by_host.setdefault(h, []).append(Sample(m, rnd.uniform(10, 60), ts, {"device": d}))
            for h, ss in by_host.items():
                eng.ingest(Batch(f"{h}-{step}", h, ts, ss))
            if step % 30 == 0:
                eng._drain(ts)
        eng.evaluate(t + 3600)
        ingest_ms, eval_ms = [], []
        for c in range(cycles):
            ts = t + 3600 + (c + 1) * 10
            hot = int(len(series) * breach)
            a = time.perf_counter()
            by_host = {}
            for i, (m, h, d) in enumerate(series):
                v = 99.0 if i < hot else rnd.uniform(10, 60)
                by_host.setdefault(h, []).append(Sample(m, v, ts, {"device": d}))
            for h, ss in by_host.items():
                eng.ingest(Batch(f"{h}-c{c}", h, ts, ss))
            eng._drain(ts)
            b = time.perf_counter()
            eng.evaluate(ts)
            e = time.perf_counter()
            ingest_ms.append((b - a) * 1000)
            eval_ms.append((e - b) * 1000)
        firing = sum(1 for x in eng.alerts.values() if x.state == "firing")
        return ingest_ms, eval_ms, eng.cache.series_count(), firing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--rules", type=int, default=100)
    ap.add_argument("--cycles", type=int, default=30)
    a = ap.parse_args()
    for label, breach in (("quiet fleet", 0.0), ("10% of series breaching", 0.10)):
        ing, ev, n, firing = run(a.series, a.rules, a.cycles, breach)
        print(f"{label}: {n} series x {a.rules} rules, {a.cycles} cycles")
        print(f"  evaluate: median {statistics.median(ev):.1f} ms, p95 {sorted(ev)[int(len(ev) * 0.95) - 1]:.1f} ms, max {max(ev):.1f} ms per cycle")
        print(f"  ingest one point per series: median {statistics.median(ing):.1f} ms per cycle")
        print(f"  alerts firing at the end: {firing}")


if __name__ == "__main__":
    main()
