"""An optional Alertmanager notifier: the registry's alerts posted to API v2.

Off by default.  When started (from the app's lifespan) it runs one asyncio task that,
every ``evaluate_interval_s``:

1. reads ``registry.alerts(state="all")`` in a worker thread (the registry lock is never
   taken on the event loop);
2. queues each firing alert that is new, or was last sent ``resend_interval_s`` ago, with
   ``endsAt`` a few resend intervals ahead (as Prometheus does: if this process dies,
   Alertmanager resolves its alerts by itself), and each alert it sent before that is no
   longer firing with ``endsAt`` = when it resolved;
3. POSTs the queue to ``/api/v2/alerts`` in a worker thread (urllib; no HTTP client
   dependency), never on the event loop.

While Alertmanager is down the queue stays bounded (one entry per alert label set, the
latest state winning; the oldest dropped beyond ``max_queue``) and every entry is retried
at most ``max_retries`` times, one POST per interval.  Hooks and requests never wait for
any of it.  Pending alerts are not sent: Alertmanager receives firing ones only, as from
Prometheus.

Labels: ``alertname`` (the rule), ``severity``, one label per affected entity kind
(``agent="a1"``; several ids of one kind are joined with commas) and any static labels
given.  Annotations: ``summary``, ``value``, ``threshold``, ``alert_id``, ``trace_ids``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ._enums import AlertState, EntityKind
from ._log import logger
from .exceptions import InvalidValueError

if TYPE_CHECKING:
    from .registry import Registry
    from .reports import Alert

__all__ = [
    "ALERTS_PATH",
    "ENV_URL",
    "AlertmanagerNotifier",
    "alertmanager_lifespan",
]

#: Environment variable read by ``alertmanager_lifespan`` when no URL is given.
ENV_URL = "DIONYSUS_ALERTMANAGER_URL"
#: Alertmanager's API v2 endpoint for posting alerts.
ALERTS_PATH = "/api/v2/alerts"
#: How often the registry's alerts are read.
DEFAULT_EVALUATE_INTERVAL_S = 5.0
#: Firing alerts are re-sent this often (Prometheus' ``--rules.alert.resend-delay``).
DEFAULT_RESEND_INTERVAL_S = 60.0
#: A firing alert's ``endsAt`` is this many resend intervals ahead (Prometheus uses 4).
ENDS_AT_RESENDS = 4
DEFAULT_TIMEOUT_S = 5.0
#: Most alerts waiting to be posted; beyond it the oldest are dropped.
DEFAULT_MAX_QUEUE = 1000
#: Failed POSTs an alert survives before it is dropped.
DEFAULT_MAX_RETRIES = 3
#: Most trace ids copied into the ``trace_ids`` annotation.
MAX_TRACE_IDS = 10

def _iso(t: float | datetime) -> str:
    dt = t if isinstance(t, datetime) else datetime.fromtimestamp(t, UTC)
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class _Entry:
    """One alert waiting to be posted."""

    payload: dict[str, Any]
    firing: bool
    attempts: int = 0


class AlertmanagerNotifier:
    """Posts a registry's firing and resolved alerts to an Alertmanager.

    Args:
        url: the Alertmanager base URL (``http://alertmanager:9093``); a URL already
            ending in ``/api/v2/alerts`` is used as is.
        registry: the registry to read, or a zero-argument callable returning it; the
            process default (``get_registry``) when None.
        evaluate_interval_s: how often alerts are read and the queue posted.
        resend_interval_s: how often a firing alert is sent again.
        timeout_s: HTTP timeout of one POST.
        max_queue: most alerts waiting to be posted.
        max_retries: failed POSTs an alert survives before it is dropped.
        static_labels: labels added to every alert (``{"service": "daedalus"}``).
        generator_url: sent as ``generatorURL`` (a link back to this service).

    Use it as an async context manager inside the app's lifespan, or call ``start`` and
    ``stop``.  ``evaluations``, ``sent``, ``failed_posts`` and ``dropped`` count what
    happened; ``last_error`` keeps the latest POST failure.
    """

    def __init__(
        self,
        url: str,
        *,
        registry: Registry | Callable[[], Registry] | None = None,
        evaluate_interval_s: float = DEFAULT_EVALUATE_INTERVAL_S,
        resend_interval_s: float = DEFAULT_RESEND_INTERVAL_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_retries: int = DEFAULT_MAX_RETRIES,
        static_labels: Mapping[str, str] | None = None,
        generator_url: str | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidValueError(f"Alertmanager url must be http(s)://..., got {url!r:.80}",
                                    value=url)
        for name, value in (("evaluate_interval_s", evaluate_interval_s),
                            ("resend_interval_s", resend_interval_s),
                            ("timeout_s", timeout_s)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise InvalidValueError(f"{name} must be a positive number of seconds, "
                                        f"got {value!r:.80}", value=value)
        for name, count in (("max_queue", max_queue), ("max_retries", max_retries)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise InvalidValueError(f"{name} must be an int >= 1, got {count!r:.80}",
                                        value=count)
        base = url.rstrip("/")
        self.url = base if base.endswith(ALERTS_PATH) else base + ALERTS_PATH
        self._source = registry
        self.evaluate_interval_s = float(evaluate_interval_s)
        self.resend_interval_s = float(resend_interval_s)
        self.timeout_s = float(timeout_s)
        self.max_queue = max_queue
        self.max_retries = max_retries
        self.static_labels = dict(static_labels or {})
        self.generator_url = generator_url
        #: label-set key -> (payload last queued while firing, when, its start time)
        self._firing: dict[tuple[tuple[str, str], ...], tuple[dict[str, Any], float, float]] = {}
        self._queue: OrderedDict[tuple[tuple[str, str], ...], _Entry] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._down = False
        self.evaluations = 0
        self.sent = 0
        self.failed_posts = 0
        self.dropped = 0
        self.last_error: str | None = None

    def __repr__(self) -> str:
        return f"<AlertmanagerNotifier {self.url} queued={len(self._queue)} sent={self.sent}>"

    @property
    def queued(self) -> int:
        """Alerts waiting to be posted."""
        return len(self._queue)

    def _registry(self) -> Registry:
        source = self._source
        if source is None:
            from .registry import get_registry

            return get_registry()
        return source() if callable(source) else source

    # -- what to send ------------------------------------------------------------------

    def _payload(self, alert: Alert, ends_at: float) -> dict[str, Any]:
        labels: dict[str, str] = dict(self.static_labels)
        labels["alertname"] = alert.rule
        labels["severity"] = str(alert.severity)
        ids: dict[str, list[str]] = {}
        for entity in alert.affected:
            ids.setdefault(str(entity.kind), []).append(entity.id)
        # Labels are the alert's identity in Alertmanager, so they hold only entities that
        # stay put while the alert lasts; the tasks an alert lists (the latest failures)
        # change under the same alert id and go to the annotations instead.
        tasks = ids.pop(str(EntityKind.TASK), None)
        for kind, values in ids.items():
            labels[kind] = ",".join(values)
        annotations = {"summary": alert.summary, "alert_id": alert.id}
        if tasks:
            annotations["tasks"] = ",".join(tasks)
        if alert.value is not None:
            annotations["value"] = f"{alert.value:g}"
        if alert.threshold is not None:
            annotations["threshold"] = f"{alert.threshold:g}"
        if alert.trace_ids:
            annotations["trace_ids"] = ",".join(alert.trace_ids[:MAX_TRACE_IDS])
        payload: dict[str, Any] = {
            "labels": labels,
            "annotations": annotations,
            "startsAt": _iso(alert.started_at),
            "endsAt": _iso(ends_at),
        }
        if self.generator_url:
            payload["generatorURL"] = self.generator_url
        return payload

    def evaluate(self) -> int:
        """Read the registry's alerts and queue what is due; returns how many were queued.

        Blocking (it takes the registry lock): the background task runs it in a thread.
        """
        registry = self._registry()
        now = registry.now()
        alerts: list[Alert] = registry.alerts(state="all")
        self.evaluations += 1
        firing: dict[tuple[tuple[str, str], ...], Alert] = {}
        resolved_at: dict[tuple[tuple[str, str], ...], float] = {}
        for alert in alerts:
            payload = self._payload(alert, now)
            key = tuple(sorted(payload["labels"].items()))
            if alert.state is AlertState.FIRING:
                firing[key] = alert
            elif alert.state is AlertState.RESOLVED and alert.resolved_at is not None:
                resolved_at[key] = alert.resolved_at.timestamp()
        queued = 0
        ends = now + ENDS_AT_RESENDS * self.resend_interval_s
        for key, alert in firing.items():
            last = self._firing.get(key)
            if last is None or now - last[1] >= self.resend_interval_s:
                payload = self._payload(alert, ends)
                self._firing[key] = (payload, now, alert.started_at.timestamp())
                self._enqueue(key, _Entry(payload, firing=True))
                queued += 1
        for key in [k for k in self._firing if k not in firing]:
            payload, _, started = self._firing.pop(key)
            end = max(resolved_at.get(key, now), started)
            self._enqueue(key, _Entry({**payload, "endsAt": _iso(end)}, firing=False))
            queued += 1
        return queued

    def _enqueue(self, key: tuple[tuple[str, str], ...], entry: _Entry) -> None:
        queue = self._queue
        old = queue.pop(key, None)
        if old is not None:
            entry.attempts = old.attempts
        queue[key] = entry
        while len(queue) > self.max_queue:
            queue.popitem(last=False)
            self.dropped += 1

    # -- how it is sent ----------------------------------------------------------------

    def _post(self, body: bytes) -> None:
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            response.read()

    async def flush(self) -> bool:
        """POST every queued alert in one request (in a thread); True when it succeeded."""
        if not self._queue:
            return True
        batch = list(self._queue.items())
        body = json.dumps([entry.payload for _, entry in batch]).encode()
        try:
            await asyncio.to_thread(self._post, body)
        except (OSError, urllib.error.URLError, ValueError) as exc:
            self.failed_posts += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            for key, entry in batch:
                entry.attempts += 1
                if entry.attempts >= self.max_retries and self._queue.get(key) is entry:
                    del self._queue[key]
                    self.dropped += 1
            if not self._down:
                logger.warning("alertmanager.unreachable", url=self.url, error=self.last_error,
                               queued=len(self._queue))
            self._down = True
            return False
        for key, entry in batch:
            if self._queue.get(key) is entry:
                del self._queue[key]
        self.sent += len(batch)
        if self._down:
            logger.info("alertmanager.reachable", url=self.url)
        self._down = False
        return True

    async def run_once(self) -> None:
        """One cycle: evaluate (in a thread), then flush."""
        try:
            await asyncio.to_thread(self.evaluate)
        except Exception as exc:  # a notifier must outlive a bad evaluation
            logger.exception("alertmanager.evaluate_failed", error=repr(exc))
        await self.flush()

    async def _run(self) -> None:
        while not self._stop.is_set():
            await self.run_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.evaluate_interval_s)
        await self.flush()

    async def start(self) -> None:
        """Start the background task on the running loop."""
        if self._task is None or self._task.done():
            self._stop = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="dionysus-alertmanager")
            logger.info("alertmanager.started", url=self.url)

    async def stop(self) -> None:
        """Stop the task and make one last attempt to post what is queued."""
        task = self._task
        if task is None:
            return
        self._stop.set()
        try:
            await asyncio.wait_for(task, self.timeout_s + self.evaluate_interval_s)
        except TimeoutError:
            task.cancel()
        self._task = None

    async def __aenter__(self) -> AlertmanagerNotifier:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """A FastAPI ``lifespan``: ``FastAPI(lifespan=notifier.lifespan)``."""
        async with self:
            yield


@contextlib.asynccontextmanager
async def alertmanager_lifespan(
    app: Any = None,
    *,
    url: str | None = None,
    **options: Any,
) -> AsyncIterator[AlertmanagerNotifier | None]:
    """Run a notifier for the block when a URL is configured; do nothing otherwise.

    The URL is ``url`` or the ``DIONYSUS_ALERTMANAGER_URL`` environment variable; with
    neither, the block runs without a notifier (the default: off).  ``options`` go to
    ``AlertmanagerNotifier``.  Use it inside the app's lifespan::

        @asynccontextmanager
        async def lifespan(app):
            async with alertmanager_lifespan(app):
                yield
    """
    target = url or os.environ.get(ENV_URL) or None
    if target is None:
        yield None
        return
    notifier = AlertmanagerNotifier(target, **options)
    async with notifier:
        yield notifier
