"""B2: the overhead of an ``@observe_tool`` call against an OpenTelemetry SDK span.

Ours: a function wrapped by ``observe_tool`` (registry given, no run in progress, no
argument recording: the default), so each call reads the clock twice and records the
call, its latency and its outcome in the registry.  OpenTelemetry: the same function
called inside ``tracer.start_as_current_span(...)`` of an SDK ``TracerProvider`` whose
spans go through a ``SimpleSpanProcessor`` to an exporter that drops them (every span is
created, made current, ended and handed to an exporter, as in production minus the I/O).
Each side's figure is its time minus a bare call of the same function; B2 is the ratio of
the two overheads.  The detail also gives the figure against a provider with no span
processor at all (spans created and ended, never exported): the strictest reading.

All sides run in this process, alternating, best of ``REPETITIONS``; the GC stays on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from dionysus_observability import Registry
from dionysus_observability.smolagents import observe_tool

from . import interleaved, quiet_logs, result, scaled

CALLS = 100_000
REPETITIONS = 5
TARGET = "<= 0.1"
TOOL = "discover_components"


class _DropExporter(SpanExporter):  # type: ignore[misc]
    """An exporter that accepts every span and sends it nowhere."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def discover_components(depth: int) -> int:
    """The measured tool body: as small as a call gets, so the overhead dominates."""
    return depth + 1


def _loop(fn: Callable[[int], int], n: int) -> Callable[[], float]:
    def timed_loop() -> float:
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        return time.perf_counter() - t0

    return timed_loop


def _otel(provider: TracerProvider) -> Callable[[int], int]:
    tracer = provider.get_tracer("bench.b2")

    def traced(depth: int) -> int:
        with tracer.start_as_current_span(TOOL):
            return discover_components(depth)

    return traced


def run() -> dict[str, Any]:
    """Measure B2 and return its row."""
    quiet_logs()
    n = scaled(CALLS, minimum=5_000)
    registry = Registry()
    observed = observe_tool(name=TOOL, registry=registry)(discover_components)
    exported = TracerProvider()
    exported.add_span_processor(SimpleSpanProcessor(_DropExporter()))
    unexported = TracerProvider()

    times = interleaved(
        {
            "bare": _loop(discover_components, n),
            "ours": _loop(observed, n),
            "otel": _loop(_otel(exported), n),
            "otel_unexported": _loop(_otel(unexported), n),
        },
        REPETITIONS,
    )
    exported.shutdown()
    unexported.shutdown()
    calls = registry.metrics().tools[0].calls
    if calls != n * REPETITIONS:  # the wrapper must really have recorded every call
        raise RuntimeError(f"recorded {calls} of {n * REPETITIONS} calls")

    bare, ours, otel, plain = (min(times[k]) for k in ("bare", "ours", "otel",
                                                        "otel_unexported"))
    per = 1e6 / n
    ours_over, otel_over, plain_over = ours - bare, otel - bare, plain - bare
    return result(
        "B2",
        f"{n:,} @observe_tool calls minus bare / OpenTelemetry span minus bare",
        ours_over / otel_over,
        TARGET,
        f"overhead per call: ours {ours_over * per:.2f} us, OpenTelemetry span "
        f"{otel_over * per:.2f} us (SimpleSpanProcessor, dropping exporter); against a "
        f"provider without processors ({plain_over * per:.2f} us) the ratio is "
        f"{ours_over / plain_over:.3f}; bare call {bare * per:.3f} us; best of "
        f"{REPETITIONS}, alternating",
    )
