"""``TraceMiddleware``: a pure ASGI middleware that binds a trace id for every request.

The id is the caller's ``X-Trace-Id`` when it is valid (at most 128 safe characters),
else the trace id of a W3C ``traceparent``, else a fresh one; an invalid ``X-Trace-Id``
is replaced and logged as a warning.  The same rules as the monitoring router's routes
(``router.resolve_trace_id``), so that an app behaves the same with or without it.

The id is bound with ``trace()`` (a ``ContextVar`` reset with its token, mirrored into
``structlog.contextvars``) for the whole request, so hooks, log lines and background
tasks of the request carry it; each request runs in its own asyncio task, so
concurrent requests never see each other's id.  The response carries ``X-Trace-Id``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.datastructures import Headers, MutableHeaders

from ._context import trace
from .router import _SCOPE_KEY, TRACE_HEADER, resolve_trace_id

__all__ = ["TraceMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_TRACED_SCOPES = frozenset({"http", "websocket"})


class TraceMiddleware:
    """Bind a trace id for each HTTP and WebSocket request; echo it in ``X-Trace-Id``.

    Use ``app.add_middleware(TraceMiddleware)`` on a FastAPI or Starlette app, or wrap
    any ASGI app: ``TraceMiddleware(app)``.

    Args:
        app: the ASGI application to wrap.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in _TRACED_SCOPES:
            await self.app(scope, receive, send)
            return
        tid = resolve_trace_id(Headers(scope=scope))
        scope[_SCOPE_KEY] = tid

        async def send_with_trace_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[TRACE_HEADER] = tid
            await send(message)

        with trace(tid):
            await self.app(scope, receive, send_with_trace_id)
