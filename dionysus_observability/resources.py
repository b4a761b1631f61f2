"""Process CPU and memory from psutil, sampled so that no request waits on it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psutil

__all__ = ["ResourceSample", "ResourceSampler", "StaticResources"]

#: A report reuses a sample younger than this rather than read /proc again.
MIN_SAMPLE_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class ResourceSample:
    """One reading of the process: CPU percent of one core, RSS, and machine memory."""

    cpu_percent: float
    rss_bytes: int
    total_memory_bytes: int

    @property
    def memory_ratio(self) -> float:
        """RSS as a fraction of the machine's memory."""
        return self.rss_bytes / self.total_memory_bytes if self.total_memory_bytes else 0.0


class ResourceSampler:
    """Reads this process with psutil, at most once per ``min_interval_s``.

    ``cpu_percent`` is measured between two samples without blocking (psutil's
    ``interval=None``), so a report never sleeps for it.  Subclass or replace
    ``sample`` to feed fixed values in tests.
    """

    def __init__(self, min_interval_s: float = MIN_SAMPLE_INTERVAL_S) -> None:
        self.min_interval_s = min_interval_s
        self._process = psutil.Process()
        self._process.cpu_percent(interval=None)
        self._lock = threading.Lock()
        self._last: ResourceSample | None = None
        self._last_at = 0.0
        self._total = psutil.virtual_memory().total

    def sample(self) -> ResourceSample:
        """The latest sample, refreshed when older than ``min_interval_s``."""
        now = time.monotonic()
        last = self._last
        if last is not None and now - self._last_at < self.min_interval_s:
            return last
        with self._lock:
            if self._last is None or now - self._last_at >= self.min_interval_s:
                try:
                    cpu = self._process.cpu_percent(interval=None)
                    rss = self._process.memory_info().rss
                except psutil.Error:
                    cpu, rss = 0.0, 0
                self._last = ResourceSample(float(cpu), int(rss), int(self._total))
                self._last_at = now
            return self._last


class StaticResources(ResourceSampler):
    """A sampler that always returns the given values (for tests and demos)."""

    def __init__(self, cpu_percent: float = 0.0, rss_bytes: int = 0,
                 total_memory_bytes: int = 1 << 34) -> None:
        self.value = ResourceSample(cpu_percent, rss_bytes, total_memory_bytes)

    def sample(self) -> ResourceSample:
        """The fixed sample."""
        return self.value
