"""Bounded time windows and quantile summaries.

Everything here has a fixed size whatever the number of events: a ring of time buckets
keeps the last ``retention_s`` seconds, and each bucket holds counters or a
log-bucketed quantile sketch (the DDSketch scheme: relative-error guarantee, mergeable).
A query merges at most ``retention_s / bucket_s`` buckets, so it costs the same after a
million events as after ten thousand.  See docs/decisions.md for why the sketch is ours.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import accumulate
from typing import Generic, TypeVar

__all__ = [
    "RELATIVE_ACCURACY",
    "QuantileSketch",
    "Ring",
    "Summary",
    "merge_sketches",
]

#: Relative accuracy of every quantile: a reported quantile is within this fraction of
#: the exact (lower nearest-rank) quantile of the same samples.  The spec asks for 1%;
#: 0.95% leaves room for floating-point rounding while keeping the bins (and so the cost
#: of merging windows) half of what 0.5% would need.
RELATIVE_ACCURACY = 0.0095
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_INV_LOG_GAMMA = 1.0 / math.log(_GAMMA)
_BIN_VALUE_FACTOR = 2.0 / (_GAMMA + 1.0)
#: Values below this (seconds) are counted as zero: a fake clock yields exact zeros.
MIN_POSITIVE = 1e-9
#: Cached window merges kept per ring (a few windows, each sketch field).
_MERGE_CACHE_SIZE = 16
_ceil = math.ceil
_log = math.log


class QuantileSketch:
    """A mergeable log-bucketed histogram with bounded relative error.

    A positive value ``v`` lands in bin ``ceil(log_gamma(v))``; the bin's representative
    value is within ``RELATIVE_ACCURACY`` of every value in it.  The number of bins is
    bounded by the value range (about 2,500 bins from a nanosecond to a day), not by the
    number of samples.
    """

    __slots__ = ("bins", "count", "max", "min", "sum", "zeros")

    def __init__(self) -> None:
        self.bins: dict[int, int] = {}
        self.zeros = 0
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, value: float) -> None:
        """Record one sample (negative values are treated as zero)."""
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if value > MIN_POSITIVE:
            key = _ceil(_log(value) * _INV_LOG_GAMMA)
            bins = self.bins
            bins[key] = bins.get(key, 0) + 1
        else:
            self.zeros += 1

    def copy(self) -> QuantileSketch:
        """An independent copy."""
        new = QuantileSketch()
        new.bins = dict(self.bins)
        new.zeros = self.zeros
        new.count = self.count
        new.sum = self.sum
        new.min = self.min
        new.max = self.max
        return new

    def merge(self, other: QuantileSketch) -> None:
        """Add every sample of ``other`` into this sketch."""
        if other.count == 0:
            return
        bins = self.bins
        for key, n in other.bins.items():
            bins[key] = bins.get(key, 0) + n
        self.zeros += other.zeros
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def count_le(self, bounds: tuple[float, ...]) -> list[int]:
        """Cumulative sample counts at each (ascending, positive) bound, as a histogram's.

        A sample shares its bin with values up to ``2 * RELATIVE_ACCURACY`` above it, so a
        sample that close above a bound may be counted at that bound.
        """
        bins = self.bins
        keys = sorted(bins)
        cumulative = list(accumulate([bins[k] for k in keys], initial=self.zeros))
        out: list[int] = []
        for bound in bounds:
            if bound <= MIN_POSITIVE:
                out.append(self.zeros)
            else:
                key = _ceil(_log(bound) * _INV_LOG_GAMMA)
                out.append(cumulative[bisect_right(keys, key)])
        return out

    def quantiles(self, qs: tuple[float, ...]) -> list[float | None]:
        """Return the lower nearest-rank quantile for each q in ``qs`` (ascending).

        The exact counterpart is ``sorted(samples)[floor(q * (n - 1))]``; each result is
        within ``RELATIVE_ACCURACY`` of it, and clamped to the samples' [min, max].
        """
        n = self.count
        if n == 0:
            return [None for _ in qs]
        bins = self.bins
        keys = sorted(bins)
        cumulative = list(accumulate([bins[k] for k in keys], initial=self.zeros))
        out: list[float | None] = []
        for q in qs:
            rank = math.floor(q * (n - 1))
            # the first bin whose cumulative count passes the rank holds the sample
            i = bisect_right(cumulative, rank)
            value = 0.0 if i == 0 else _BIN_VALUE_FACTOR * _GAMMA ** keys[i - 1]
            out.append(min(max(value, self.min), self.max))
        return out


def merge_sketches(sketches: Iterator[QuantileSketch] | list[QuantileSketch]) -> QuantileSketch:
    """Return a new sketch holding the samples of all ``sketches``."""
    total = QuantileSketch()
    for sketch in sketches:
        total.merge(sketch)
    return total


@dataclass(frozen=True, slots=True)
class Summary:
    """A latency summary: count, mean, p50, p90, p95, p99, max (None when empty)."""

    count: int
    mean: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, sketch: QuantileSketch) -> Summary:
        """Summarise a sketch."""
        if sketch.count == 0:
            return cls(0, None, None, None, None, None, None)
        p50, p90, p95, p99 = sketch.quantiles((0.5, 0.9, 0.95, 0.99))
        mean = min(max(sketch.sum / sketch.count, sketch.min), sketch.max)
        return cls(sketch.count, mean, p50, p90, p95, p99, sketch.max)

    def as_dict(self) -> dict[str, float | int | None]:
        """The summary as the JSON-ready mapping ``Q`` of the reports."""
        return {
            "count": self.count,
            "mean": self.mean,
            "p50": self.p50,
            "p90": self.p90,
            "p95": self.p95,
            "p99": self.p99,
            "max": self.max,
        }


B = TypeVar("B")


class Ring(Generic[B]):
    """The last ``slots`` time buckets of ``bucket_s`` seconds each.

    ``at(now)`` returns the bucket for time ``now`` (creating it, and so forgetting the
    bucket that held the same slot ``slots`` buckets ago).  Writes older than the ring
    go to a scratch bucket that no query reads.
    """

    __slots__ = (
        "_cache",
        "_cur",
        "_cur_idx",
        "_factory",
        "_idx",
        "_scratch",
        "_slots",
        "bucket_s",
        "n",
        "on_advance",
        "version",
    )

    def __init__(self, bucket_s: float, slots: int, factory: Callable[[], B]) -> None:
        self.bucket_s = bucket_s
        self.n = slots
        self._factory = factory
        self._slots: list[B | None] = [None] * slots
        self._idx: list[int] = [-1] * slots
        self._cur_idx = -(2**62)
        self._cur: B = factory()
        self._scratch: B = self._cur
        #: bumped whenever a bucket older than the newest is handed out for writing, so
        #: that merges of complete buckets can be cached until then
        self.version = 0
        self._cache: dict[tuple[str, int, int, int], QuantileSketch] = {}
        #: called with the new index before the ring moves forward to it (and so before
        #: the slot it reuses is forgotten)
        self.on_advance: list[Callable[[int], None]] = []

    def at(self, now: float) -> B:
        """The bucket that holds time ``now``."""
        idx = int(now // self.bucket_s)
        if idx == self._cur_idx:
            return self._cur
        return self._rotate(idx)

    def _rotate(self, idx: int) -> B:
        if idx <= self._cur_idx - self.n:
            self._scratch = self._factory()
            return self._scratch
        if idx < self._cur_idx:
            self.version += 1
        else:
            for callback in self.on_advance:
                callback(idx)
        slot = idx % self.n
        bucket = self._slots[slot]
        if bucket is None or self._idx[slot] != idx:
            bucket = self._factory()
            self._slots[slot] = bucket
            self._idx[slot] = idx
        if idx > self._cur_idx:
            self._cur_idx = idx
            self._cur = bucket
        return bucket

    def current_start(self) -> float:
        """Start time of the newest bucket."""
        return self._cur_idx * self.bucket_s

    def window(self, now: float, window_s: float) -> Iterator[tuple[int, B]]:
        """Yield ``(index, bucket)`` for every stored bucket overlapping [now - window_s, now]."""
        hi = min(int(now // self.bucket_s), self._cur_idx)
        lo = max(int((now - window_s) // self.bucket_s), hi - self.n + 1)
        n = self.n
        indexes = self._idx
        slots = self._slots
        for idx in range(lo, hi + 1):
            slot = idx % n
            if indexes[slot] == idx:
                bucket = slots[slot]
                if bucket is not None:
                    yield idx, bucket

    @property
    def newest_index(self) -> int:
        """Index of the newest bucket (very negative before the first write)."""
        return self._cur_idx

    def between(self, lo: int, hi: int) -> Iterator[tuple[int, B]]:
        """Yield ``(index, bucket)`` for the stored buckets with lo <= index <= hi."""
        if hi < lo:
            return
        if hi - lo + 1 >= self.n:
            pairs = sorted(zip(self._idx, self._slots, strict=True), key=lambda p: p[0])
            for idx, bucket in pairs:
                if lo <= idx <= hi and bucket is not None:
                    yield idx, bucket
            return
        for idx in range(lo, hi + 1):
            slot = idx % self.n
            bucket = self._slots[slot]
            if bucket is not None and self._idx[slot] == idx:
                yield idx, bucket

    def merged(self, now: float, window_s: float, field: str) -> QuantileSketch:
        """The merge of the sketches named ``field`` of every bucket in the window.

        The complete (older) buckets' merge is cached until the window moves or an older
        bucket is written again, so a dashboard polling the same window merges one
        bucket per query, not the whole window.
        """
        hi = min(int(now // self.bucket_s), self._cur_idx)
        lo = max(int((now - window_s) // self.bucket_s), hi - self.n + 1)
        if hi < lo:
            return QuantileSketch()
        key = (field, lo, hi, self.version)
        base = self._cache.get(key)
        if base is None:
            base = QuantileSketch()
            for idx, bucket in self.window(now, window_s):
                if idx < hi:
                    base.merge(getattr(bucket, field))
            if len(self._cache) >= _MERGE_CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = base
        result = base.copy()
        slot = hi % self.n
        newest = self._slots[slot]
        if newest is not None and self._idx[slot] == hi:
            result.merge(getattr(newest, field))
        return result

    def window_start(self, now: float, window_s: float) -> float:
        """The start time of the oldest bucket ``window`` would read."""
        hi = int(now // self.bucket_s)
        lo = max(int((now - window_s) // self.bucket_s), hi - self.n + 1)
        return lo * self.bucket_s

    def add_interval(self, start: float, end: float, add: Callable[[B, float], None]) -> None:
        """Spread the duration of [start, end] over the buckets it crosses."""
        if end <= start:
            return
        g = self.bucket_s
        first = int(start // g)
        last = int(end // g)
        first = max(first, last - self.n + 1)
        for idx in range(first, last + 1):
            lo = max(start, idx * g)
            hi = min(end, (idx + 1) * g)
            if hi > lo:
                add(self.at(idx * g), hi - lo)
