"""Run an ASGI app under a real uvicorn server on a free loopback port, in a thread.

Usage::

    with serve(app) as server:
        httpx.get(f"{server.url}/api/v1/monitoring/metrics")

or ``server = UvicornThread(app); server.start(); ...; server.stop()``.

The socket is bound by us on port 0 before uvicorn starts, so the port is known and no
other process can take it between choosing and binding.  ``start`` waits (polling with
a deadline, not a fixed sleep) until uvicorn reports ``started``; ``stop`` asks it to
exit, joins the thread, and forces the exit if a connection keeps it alive.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

__all__ = ["ServerStartError", "UvicornThread", "serve"]

#: Seconds to wait for uvicorn to start or to stop before giving up.
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
#: Poll interval while waiting for ``server.started``.
_POLL_S = 0.01


class ServerStartError(RuntimeError):
    """uvicorn did not start within the deadline (or its thread died while starting)."""


class UvicornThread:
    """A uvicorn server serving ``app`` on 127.0.0.1 from a background thread.

    Args:
        app: the ASGI application (a FastAPI app).
        host: the loopback address to bind.
        **config: extra ``uvicorn.Config`` keyword arguments.
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", **config: Any) -> None:
        self.app = app
        self.host = host
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self.port: int = self._sock.getsockname()[1]
        options: dict[str, Any] = {"log_level": "warning", "access_log": False,
                                   "lifespan": "on", "timeout_graceful_shutdown": 2}
        options.update(config)
        self.config = uvicorn.Config(app, host=host, port=self.port, **options)
        self.server = uvicorn.Server(self.config)
        self._thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}",
                                        daemon=True)
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:40123``."""
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self._sock])
        except BaseException as exc:  # reported by start(); a thread must not die silently
            self.error = exc

    def start(self, timeout: float = START_TIMEOUT_S) -> UvicornThread:
        """Start the thread and wait until uvicorn accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive():
                self._sock.close()
                raise ServerStartError(f"uvicorn exited while starting: {self.error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerStartError(f"uvicorn did not start within {timeout} s")
            time.sleep(_POLL_S)
        return self

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Ask uvicorn to exit and join its thread; force the exit if it lingers."""
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            self.server.force_exit = True
            self._thread.join(timeout)
        self._sock.close()
        if self._thread.is_alive():
            raise RuntimeError(f"uvicorn on port {self.port} did not stop within {2 * timeout} s")

    def __enter__(self) -> UvicornThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextmanager
def serve(app: Any, **config: Any) -> Iterator[UvicornThread]:
    """Serve ``app`` for the block; yields the running ``UvicornThread``."""
    server = UvicornThread(app, **config)
    server.start()
    try:
        yield server
    finally:
        server.stop()
