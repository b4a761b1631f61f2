"""The FastAPI edge: parse the query, call the view, return the model.

Every response, errors included, carries ``X-Trace-Id``: the caller's (validated), the
trace id of a W3C ``traceparent``, the one bound by ``TraceMiddleware``, or a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.params import Depends
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from ._context import current_trace_id, new_trace_id, parse_traceparent, trace, valid_trace_id
from ._log import logger
from .alerts import AlertStateFilter, SeverityFilter
from .exceptions import UnknownEntityError
from .prometheus import exposition
from .registry import MAX_WINDOW_S, Registry, get_registry
from .reports import AlertsReport, MetricsReport, PerformanceReport, TraceReport

__all__ = ["DEFAULT_PREFIX", "TRACE_HEADER", "create_monitoring_router", "monitoring_router",
           "resolve_trace_id"]

DEFAULT_PREFIX = "/api/v1/monitoring"
TRACE_HEADER = "X-Trace-Id"
_SCOPE_KEY = "dionysus.trace_id"


def resolve_trace_id(headers: Any) -> str:
    """The trace id for a request: a valid ``X-Trace-Id``, else ``traceparent``, else new.

    An invalid ``X-Trace-Id`` (too long, unsafe characters) is replaced by a fresh id and
    logged as a warning.
    """
    bound = current_trace_id()
    if bound is not None:
        return bound
    given = headers.get(TRACE_HEADER)
    if given is not None:
        if valid_trace_id(given):
            return str(given)
        logger.warning("trace_id.invalid_header", header=TRACE_HEADER, value=given[:64])
    parent = parse_traceparent(headers.get("traceparent"))
    if parent is not None:
        return parent
    return new_trace_id()


class TracedRoute(APIRoute):
    """An APIRoute that binds the request's trace id and sets ``X-Trace-Id`` on replies."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The route's handler, wrapped to bind the trace id and answer errors with it.

        A 422 or an ``HTTPException`` (a 404, a dependency's 401) becomes a JSON body
        with ``detail``, ``trace_id`` and ``generated_at``, like every report.  Any other
        exception is logged with the trace id and answered 500 the same way, so that
        every response of the monitoring API carries ``X-Trace-Id``.
        """
        handler = super().get_route_handler()

        async def traced(request: Request) -> Response:
            tid = resolve_trace_id(request.headers)
            request.scope[_SCOPE_KEY] = tid
            with trace(tid):
                try:
                    response = await handler(request)
                except RequestValidationError as exc:
                    response = _error(422, jsonable_encoder(exc.errors()), tid)
                except HTTPException as exc:
                    response = _error(exc.status_code, exc.detail, tid, exc.headers)
                except Exception:
                    logger.exception("monitoring.request_failed", path=request.url.path)
                    response = _error(500, "internal error in the monitoring API", tid)
            response.headers[TRACE_HEADER] = tid
            return response

        return traced


def _error(
    status: int, detail: Any, tid: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """An error answer shaped like the reports: detail, trace_id, generated_at."""
    return JSONResponse(
        status_code=status,
        content={"detail": detail, "trace_id": tid, "generated_at": _now_iso()},
        headers=dict(headers or {}),
    )


def _now_iso() -> str:
    """The current UTC time, ISO-8601 as the reports write it, for error bodies."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _tid(request: Request) -> str:
    return str(request.scope.get(_SCOPE_KEY) or current_trace_id() or new_trace_id())


def create_monitoring_router(
    registry: Registry | Callable[[], Registry] | None = None,
    *,
    prefix: str = DEFAULT_PREFIX,
    dependencies: Sequence[Depends] | None = None,
    tags: list[str] | None = None,
) -> APIRouter:
    """A router serving ``registry``'s reports under ``prefix``.

    Args:
        registry: the registry to read, or a zero-argument callable returning it (read on
            every request); the process default (``get_registry``) when None.
        prefix: the URL prefix, ``/api/v1/monitoring`` by default.
        dependencies: FastAPI dependencies applied to every route (authentication).
        tags: OpenAPI tags.
    """
    if registry is None:
        source: Callable[[], Registry] = get_registry
    elif isinstance(registry, Registry):
        bound = registry

        def source() -> Registry:
            return bound
    else:
        source = registry

    router = APIRouter(
        prefix=prefix,
        dependencies=list(dependencies or []),
        tags=list(tags or ["monitoring"]),
        route_class=TracedRoute,
    )

    @router.get("/metrics", response_model=MetricsReport, summary="Unified health metrics")
    async def get_metrics(request: Request) -> MetricsReport:
        """Active pipelines, pools and their queues, agents, rollback statistics, tools."""
        return source().metrics(trace_id=_tid(request))

    @router.get(
        "/performance", response_model=PerformanceReport, summary="Performance over a window"
    )
    async def get_performance(
        request: Request,
        window: Annotated[
            float,
            Query(ge=1, le=MAX_WINDOW_S, description="Window length in seconds (1..86400)."),
        ] = 300,
    ) -> PerformanceReport:
        """Throughput, latency percentiles, error rates, utilization and resources."""
        return source().performance(window, trace_id=_tid(request))

    @router.get("/alerts", response_model=AlertsReport, summary="Alerts and their lifecycle")
    async def get_alerts(
        request: Request,
        state: Annotated[
            AlertStateFilter,
            Query(description="active (pending and firing), firing, pending, resolved or all."),
        ] = "active",
        severity: Annotated[
            SeverityFilter | None,
            Query(description="Only alerts of this severity: critical, warning or info."),
        ] = None,
    ) -> AlertsReport:
        """Alerts evaluated now, with onset, affected entities and trace ids; counts per
        severity of the alerts returned."""
        return source().alerts_report(state, severity, trace_id=_tid(request))

    @router.get(
        "/traces/{trace_id}",
        response_model=TraceReport,
        summary="Recorded events of one trace",
        responses={404: {"description": "No retained event carries this trace id."}},
    )
    async def get_trace(trace_id: str) -> TraceReport:
        """Every retained event (tasks, pipelines, rollbacks, tool calls) of the trace."""
        try:
            return source().trace(trace_id)
        except UnknownEntityError as exc:
            raise HTTPException(status_code=404, detail=exc.message) from None

    @router.get(
        "/prometheus",
        response_class=Response,
        summary="Prometheus exposition",
        responses={200: {"content": {"text/plain": {}, "application/openmetrics-text": {}},
                         "description": "Text format 0.0.4, or OpenMetrics when accepted."}},
    )
    async def get_prometheus(request: Request) -> Response:
        """The registry rendered by prometheus_client (OpenMetrics when the scraper asks)."""
        body, content_type = exposition(source(), request.headers.get("accept"))
        return Response(content=body, media_type=content_type)

    return router


#: The router bound to the process-wide default registry (read per request).
monitoring_router = create_monitoring_router()
