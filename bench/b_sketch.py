"""SKETCH: our ``windows.QuantileSketch`` vs ``ddsketch.DDSketch`` at the same relative accuracy.

The project keeps its own log-bucketed sketch (the DDSketch scheme) instead of the
``ddsketch`` package because the hooks add a sample on every task; this benchmark is the
evidence recorded in docs/decisions.md.  Both sketches get the same ``SAMPLES``
log-normal latencies (fixed seed) and then answer the report's four quantiles (p50, p90,
p95, p99); the figure is our time over theirs, alternating, best of ``REPETITIONS``.
The detail adds the per-sample cost, the cost of merging a 300-second window
(``WINDOW_SKETCHES`` sketches of 10 s) and the worst relative error of each against the
exact lower nearest-rank quantile, which must stay within 1% (BENCH.md).
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

from ddsketch import DDSketch

from dionysus_observability.windows import RELATIVE_ACCURACY, QuantileSketch, merge_sketches

from . import interleaved, meets, result, scaled

SAMPLES = 200_000
REPETITIONS = 5
QUANTILES = (0.5, 0.9, 0.95, 0.99)
#: Sketches one 300 s performance query merges (one per 10 s bucket).
WINDOW_SKETCHES = 30
#: Log-normal latencies: median (s) and sigma, spanning milliseconds to minutes.
MEDIAN_S = 0.2
SIGMA = 1.5
SEED = 7
#: The accuracy BENCH.md requires of every reported percentile.
MAX_RELATIVE_ERROR = 0.01
TARGET = "<= 0.5"


def _ours_fill(values: list[float]) -> QuantileSketch:
    sketch = QuantileSketch()
    add = sketch.add
    for v in values:
        add(v)
    return sketch


def _dd_fill(values: list[float]) -> DDSketch:
    sketch = DDSketch(relative_accuracy=RELATIVE_ACCURACY)
    add = sketch.add
    for v in values:
        add(v)
    return sketch


def _ours(values: list[float]) -> float:
    t0 = time.perf_counter()
    _ours_fill(values).quantiles(QUANTILES)
    return time.perf_counter() - t0


def _dd(values: list[float]) -> float:
    t0 = time.perf_counter()
    sketch = _dd_fill(values)
    for q in QUANTILES:
        sketch.get_quantile_value(q)
    return time.perf_counter() - t0


def _worst_error(answers: list[float | None], exact: list[float]) -> float:
    return max(abs(a - e) / e if a is not None else math.inf
               for a, e in zip(answers, exact, strict=True))


def _merge_times(values: list[float]) -> tuple[float, float]:
    """Best time to merge ``WINDOW_SKETCHES`` sketches into one, ours then ddsketch."""
    chunk = max(1, len(values) // WINDOW_SKETCHES)
    parts = [values[i:i + chunk] for i in range(0, chunk * WINDOW_SKETCHES, chunk)]
    ours_parts = [_ours_fill(p) for p in parts]
    dd_parts = [_dd_fill(p) for p in parts]

    def ours() -> float:
        t0 = time.perf_counter()
        merge_sketches(ours_parts).quantiles(QUANTILES)
        return time.perf_counter() - t0

    def dd() -> float:
        t0 = time.perf_counter()
        total = DDSketch(relative_accuracy=RELATIVE_ACCURACY)
        for part in dd_parts:
            total.merge(part)
        for q in QUANTILES:
            total.get_quantile_value(q)
        return time.perf_counter() - t0

    times = interleaved({"ours": ours, "dd": dd}, 20)
    return min(times["ours"]), min(times["dd"])


def run() -> dict[str, Any]:
    """Measure SKETCH and return its row."""
    n = scaled(SAMPLES, minimum=2_000)
    rng = random.Random(SEED)
    values = [MEDIAN_S * rng.lognormvariate(0.0, SIGMA) for _ in range(n)]
    ordered = sorted(values)
    exact = [ordered[math.floor(q * (n - 1))] for q in QUANTILES]
    ours_err = _worst_error(_ours_fill(values).quantiles(QUANTILES), exact)
    dd_sketch = _dd_fill(values)
    dd_err = _worst_error([dd_sketch.get_quantile_value(q) for q in QUANTILES], exact)

    times = interleaved({"ours": lambda: _ours(values), "dd": lambda: _dd(values)},
                        REPETITIONS)
    ours, dd = min(times["ours"]), min(times["dd"])
    merge_ours, merge_dd = _merge_times(values)
    accurate = ours_err <= MAX_RELATIVE_ERROR and dd_err <= MAX_RELATIVE_ERROR
    ratio = ours / dd
    return result(
        "SKETCH",
        f"QuantileSketch / ddsketch: {n:,} adds + 4 quantiles (alpha {RELATIVE_ACCURACY:g})",
        ratio,
        TARGET,
        f"ours {ours / n * 1e9:.0f} ns/sample, ddsketch {dd / n * 1e9:.0f} ns; merging "
        f"{WINDOW_SKETCHES} sketches + 4 quantiles: ours {merge_ours * 1e6:.0f} us, ddsketch "
        f"{merge_dd * 1e6:.0f} us; worst relative error vs exact: ours {ours_err:.4f}, "
        f"ddsketch {dd_err:.4f} (limit {MAX_RELATIVE_ERROR}); best of {REPETITIONS}, "
        "alternating",
        met=accurate and meets(ratio, TARGET),
    )
