"""Shared fixtures: a fake clock, registries bound to it, a clean default registry, and a
real uvicorn ``server`` of the module's ``app`` fixture with an HTTP ``client`` on it.

A module that needs its server per test (say, bound to the fake-clock ``registry``)
defines its own ``server`` fixture; ``client`` then talks to that one."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from _server import UvicornThread, serve
from fastapi import FastAPI

import dionysus_observability as obs

#: Seconds an HTTP request to a test server may take.
HTTP_TIMEOUT_S = 10.0
#: A realistic epoch second (2023-11-14), so that ISO timestamps in reports are sane.
EPOCH = 1_700_000_000.0


class FakeClock:
    """A clock that moves only when told: ``clock()`` returns the time, ``advance(s)`` moves it.

    Thread-safe enough for tests: reads and writes of a float attribute are atomic.
    """

    def __init__(self, start: float = EPOCH) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` and return the new time."""
        if seconds < 0:
            raise ValueError(f"a clock does not go backwards: {seconds!r}")
        self.now += seconds
        return self.now


@pytest.fixture(autouse=True)
def _fresh_default_registry() -> Iterator[obs.Registry]:
    """Every test starts (and leaves) with a fresh process-wide default registry."""
    registry = obs.reset_registry()
    yield registry
    obs.reset_registry()


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock starting at a fixed epoch second."""
    return FakeClock()


@pytest.fixture
def registry(clock: FakeClock) -> obs.Registry:
    """A lenient registry (the default mode) on the fake clock, with fixed resources."""
    return obs.Registry(clock=clock, resources=obs.StaticResources(cpu_percent=12.5,
                                                                   rss_bytes=50 << 20))


@pytest.fixture
def strict_registry(clock: FakeClock) -> obs.Registry:
    """A strict registry on the fake clock: bad hook input raises."""
    return obs.Registry(clock=clock, strict=True,
                        resources=obs.StaticResources(cpu_percent=12.5, rss_bytes=50 << 20))


@pytest.fixture(scope="module")
def server(app: FastAPI) -> Iterator[UvicornThread]:
    """The test module's ``app`` fixture served by uvicorn on a free loopback port."""
    with serve(app) as running:
        yield running


@pytest.fixture
def client(server: UvicornThread) -> Iterator[httpx.Client]:
    """An HTTP client on the base URL of the ``server`` fixture the test module defines."""
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT_S) as http:
        yield http
