"""The Prometheus edge: the registry rendered by prometheus_client, and rule export.

``RegistryCollector`` is a prometheus_client custom collector.  Each ``collect`` reads the
registry once under its lock into plain data (the same view that ``/metrics`` returns,
plus the since-start latency histograms) and translates it into metric families; the
text and OpenMetrics formats are prometheus_client's own.  Nothing here aggregates: every
number is one the registry keeps.

``rules`` builds a Prometheus rules file whose alerting rules mirror the built-in ones
(same names, thresholds from ``Thresholds``) over the exposed series, so that a fleet
evaluates the same alerts in Prometheus across all its processes.  Each exported rule
keeps the series' ``instance`` and ``job`` labels: it fires per process, as the built-in
rule does.  See docs/scaling.md.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from . import views
from ._enums import AlertState, PipelineStatus, TaskStatus
from ._state import ROLLBACK_BUCKETS_S
from .alerts import BUILTIN_RULES, Thresholds
from .exceptions import InvalidValueError

if TYPE_CHECKING:
    from .registry import Registry

__all__ = [
    "ALERT_GAUGE",
    "EXPORTED_RULES",
    "NAMESPACE",
    "ExportedRule",
    "RegistryCollector",
    "duration",
    "exported_rules",
    "exposition",
    "parse_duration",
    "render_rules",
    "rules",
]

#: Prefix of every metric name.
NAMESPACE = "dionysus"
#: The gauge of the registry's own active alerts, by rule, severity and state.  Not named
#: ``ALERTS``: Prometheus writes its rule alerts to that name, and an app series of the
#: same name would be counted with them.  The rule goes in ``alert``, not ``alertname``,
#: which a Prometheus alerting rule over this series would overwrite.
ALERT_GAUGE = f"{NAMESPACE}_alert_active"
#: OpenMetrics caps an exemplar's label set at 128 characters; ``trace_id`` takes 8.
_MAX_EXEMPLAR_TRACE_ID = 120
_ACTIVE = (AlertState.PENDING.value, AlertState.FIRING.value)
_HELD = (TaskStatus.PENDING.value, TaskStatus.IN_PROGRESS.value)
_ENDED = (TaskStatus.COMPLETED.value, TaskStatus.FAILED.value, TaskStatus.CANCELLED.value)
_FINISHED_PIPELINE = (PipelineStatus.SUCCEEDED.value, PipelineStatus.FAILED.value,
                      PipelineStatus.CANCELLED.value)


# -- exposition ------------------------------------------------------------------------


_HistSnapshot = tuple[list[tuple[float, int, tuple[str, float, float] | None]], float]


@dataclass(slots=True)
class _Snapshot:
    """What one scrape reads, copied out of the registry under its lock."""

    now: float
    started_at: float
    metrics: dict[str, Any]
    assignment: dict[str, _HistSnapshot] = field(default_factory=dict)
    duration: dict[str, _HistSnapshot] = field(default_factory=dict)
    tools: dict[str, _HistSnapshot] = field(default_factory=dict)
    rollback: _HistSnapshot | None = None
    alerts: list[tuple[str, str, str]] = field(default_factory=list)
    rss_bytes: int = 0
    memory_ratio: float = 0.0


def _read(registry: Registry) -> _Snapshot:
    """Copy the registry's state out under its lock (one short critical section)."""
    now = registry.now()
    with registry._lock:
        state = registry._state
        snap = _Snapshot(
            now=now,
            started_at=state.started_at,
            metrics=views.metrics(state, now),
        )
        for pool in state.pools.values():
            snap.assignment[pool.name] = pool.assignment_hist.snapshot()
            snap.duration[pool.name] = pool.duration_hist.snapshot()
        for tool in state.tools.values():
            snap.tools[tool.name] = tool.latency_hist.snapshot()
        snap.rollback = state.rollback_hist.snapshot()
    sample = registry.resources.sample()
    snap.rss_bytes = sample.rss_bytes
    snap.memory_ratio = sample.memory_ratio
    snap.alerts = [(a.rule, a.severity.value, a.state.value)
                   for a in registry.alerts(state="all")]
    return snap


def _le(bound: float) -> str:
    """A bucket bound as prometheus_client writes it (``0.5``, ``30.0``, ``+Inf``)."""
    return str(floatToGoString(bound))  # type: ignore[no-untyped-call]


def _histogram(family: HistogramMetricFamily, labels: list[str], hist: _HistSnapshot) -> None:
    buckets, total = hist
    out: list[Any] = []
    for bound, count, ex in buckets:
        le = _le(bound)
        if ex is not None and len(ex[0]) <= _MAX_EXEMPLAR_TRACE_ID:
            out.append((le, count, Exemplar({"trace_id": ex[0]}, ex[1], ex[2])))
        else:
            out.append((le, count))
    family.add_metric(labels, out, sum_value=total)


def _families(s: _Snapshot) -> Iterator[Metric]:
    m = s.metrics
    pools = m["coordination"]["pools"]
    ns = NAMESPACE

    def gauge(name: str, doc: str, labels: Sequence[str] = (), unit: str = ""
              ) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"{ns}_{name}", doc, labels=list(labels), unit=unit)

    def counter(name: str, doc: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
        return CounterMetricFamily(f"{ns}_{name}", doc, labels=list(labels))

    g = gauge("start_time_seconds", "When the registry started, in seconds since the epoch.")
    g.add_metric([], s.started_at)
    yield g

    # -- pools and tasks (Spec 020)
    size = gauge("pool_size", "Configured number of agents of the pool.", ["pool"])
    max_size = gauge("pool_max_size", "Most agents the pool may scale to.", ["pool"])
    depth = gauge("pool_queue_depth", "Tasks pending in the pool's queue.", ["pool"])
    cap = gauge("pool_queue_capacity", "Most tasks the pool's queue holds (max_queue).",
                ["pool"])
    util = gauge("pool_utilization_ratio", "Busy live agents / live agents of the pool, now.",
                 ["pool"])
    agents = gauge("agents", "Live agents by pool and state.", ["pool", "state"])
    held = gauge("tasks", "Tasks the pool holds now, by status (pending, in_progress).",
                 ["pool", "status"])
    queued = gauge("tasks_queued", "Pending tasks by pool and task type.",
                   ["pool", "task_type"])
    ended = counter("tasks_finished", "Tasks that ended, by pool and status "
                    "(completed, failed, cancelled).", ["pool", "status"])
    submitted = counter("tasks_submitted", "Tasks submitted, by pool and task type.",
                        ["pool", "task_type"])
    retries = counter("task_retries", "Failed attempts put back in the queue.", ["pool"])
    rejected = counter("tasks_rejected", "Tasks refused at the door (queue full), by type.",
                       ["pool", "task_type"])
    for p in pools:
        name = p["name"]
        size.add_metric([name], p["size"])
        max_size.add_metric([name], p["max_size"])
        depth.add_metric([name], p["queue_depth"])
        cap.add_metric([name], p["max_queue"])
        util.add_metric([name], p["utilization"])
        for state, n in p["agents_by_state"].items():
            agents.add_metric([name, state], n)
        by_status = p["tasks_by_status"]
        for status in _HELD:
            held.add_metric([name, status], by_status[status])
        for status in _ENDED:
            ended.add_metric([name, status], by_status[status])
        for ttype, n in p["pending_by_type"].items():
            queued.add_metric([name, ttype], n)
        for ttype, n in p["tasks_by_type"].items():
            submitted.add_metric([name, ttype], n)
        retries.add_metric([name], p["retries"])
        # every known type from zero, so that increase() sees a type's first rejection
        for ttype, n in {**dict.fromkeys(p["tasks_by_type"], 0),
                         **p["rejected_by_type"]}.items():
            rejected.add_metric([name, ttype], n)
    yield from (size, max_size, depth, cap, util, agents, held, queued, ended, submitted,
                retries, rejected)

    assign = HistogramMetricFamily(
        f"{ns}_task_assignment_latency_seconds",
        "Seconds from submission (or requeue) to agent pickup (Spec 020 target: 0.5 s).",
        labels=["pool"])
    for name, hist in s.assignment.items():
        _histogram(assign, [name], hist)
    yield assign
    duration = HistogramMetricFamily(
        f"{ns}_task_duration_seconds",
        "Seconds from assignment to the end of a task's last attempt.", labels=["pool"])
    for name, hist in s.duration.items():
        _histogram(duration, [name], hist)
    yield duration

    # -- agents
    state_g = gauge("agent_state", "1 for the agent's current state, 0 for the others.",
                    ["pool", "agent", "state"])
    memory = gauge("agent_memory_ratio", "Agent memory use, as a fraction of its limit.",
                   ["pool", "agent"])
    cpu = gauge("agent_cpu_ratio", "Agent CPU use, as a fraction.", ["pool", "agent"])
    isolated = gauge("agent_isolated", "1 when the agent shares no isolation id with another "
                     "live agent, else 0.", ["pool", "agent"])
    agent_tasks = counter("agent_tasks", "Task attempts the agent ended, by status "
                          "(completed, failed).", ["pool", "agent", "status"])
    switches = counter("agent_context_switches", "Times the agent moved to another task.",
                       ["pool", "agent"])
    states = list(m["agents"]["by_state"])
    for a in m["agents"]["items"]:
        labels = [a["pool"], a["id"]]
        current = str(a["state"])
        for st in states:
            state_g.add_metric([*labels, st], 1.0 if st == current else 0.0)
        if a["memory"] is not None:
            memory.add_metric(labels, a["memory"])
        if a["cpu"] is not None:
            cpu.add_metric(labels, a["cpu"])
        isolated.add_metric(labels, 1.0 if a["isolated"] else 0.0)
        agent_tasks.add_metric([*labels, TaskStatus.COMPLETED.value], a["tasks_completed"])
        agent_tasks.add_metric([*labels, TaskStatus.FAILED.value], a["tasks_failed"])
        switches.add_metric(labels, a["context_switches"])
    yield from (state_g, memory, cpu, isolated, agent_tasks, switches)

    # -- pipelines (Spec 019)
    pl = m["pipelines"]
    active = gauge("pipelines_running", "Pipeline runs running now.")
    active.add_metric([], pl["active"])
    finished = counter("pipelines_finished", "Pipeline runs that ended, by status.",
                       ["status"])
    for status in _FINISHED_PIPELINE:
        finished.add_metric([status], pl["by_status"].get(status, 0))
    items = counter("pipeline_items", "Pipeline items processed over every run, by status.",
                    ["status"])
    items.add_metric(["succeeded"], pl["items"]["succeeded"])
    items.add_metric(["failed"], pl["items"]["failed"])
    progress = gauge("pipeline_progress_ratio", "Items done / total items of a running run.",
                     ["pipeline", "kind"])
    last = gauge("pipeline_last_progress_timestamp_seconds",
                 "When a running run last reported progress or a stage.", ["pipeline", "kind"])
    for run in pl["runs"]:
        if run["status"] is not PipelineStatus.RUNNING:
            continue
        labels = [run["id"], run["kind"]]
        if run["progress"] is not None:
            progress.add_metric(labels, run["progress"])
        if run["last_progress_at"] is not None:
            last.add_metric(labels, run["last_progress_at"].timestamp())
    yield from (active, finished, items, progress, last)

    # -- checkpoints and rollbacks (Spec 021)
    rb = m["rollback"]
    cps = gauge("checkpoints", "Checkpoints by state.", ["state"])
    for st in ("active", "expired", "restored", "deleted"):
        cps.add_metric([st], rb["checkpoints"][st])
    cp_bytes = gauge("checkpoints_size_bytes", "Bytes held by active checkpoints.")
    cp_bytes.add_metric([], rb["checkpoints"]["total_bytes"])
    rollbacks = counter("rollbacks", "Rollbacks that finished, by status.", ["status"])
    rollbacks.add_metric(["succeeded"], rb["rollbacks"]["succeeded"])
    rollbacks.add_metric(["failed"], rb["rollbacks"]["failed"])
    yield from (cps, cp_bytes, rollbacks)
    rb_last = gauge("rollback_last_duration_seconds", "Duration of the latest rollback.")
    if rb["rollbacks"]["last_duration_s"] is not None:
        rb_last.add_metric([], rb["rollbacks"]["last_duration_s"])
    yield rb_last
    rb_hist = HistogramMetricFamily(
        f"{ns}_rollback_duration_seconds",
        "Seconds a rollback took (Spec 021 target: under 30 s).", labels=[])
    if s.rollback is not None:
        _histogram(rb_hist, [], s.rollback)
    yield rb_hist

    # -- tools (smolagents)
    calls = counter("tool_calls", "Tool calls, by tool.", ["tool"])
    errors = counter("tool_errors", "Tool calls that raised, by tool.", ["tool"])
    for t in m["tools"]:
        calls.add_metric([t["name"]], t["calls"])
        errors.add_metric([t["name"]], t["errors"])
    yield from (calls, errors)
    tool_hist = HistogramMetricFamily(f"{ns}_tool_call_duration_seconds",
                                      "Seconds a tool call took.", labels=["tool"])
    for name, hist in s.tools.items():
        _histogram(tool_hist, [name], hist)
    yield tool_hist

    # -- the registry itself
    dropped = counter("dropped_events", "Hook events dropped for bad input, by reason.",
                      ["reason"])
    for reason, n in m["dropped_events"].items():
        dropped.add_metric([reason], n)
    evicted = counter("evicted_records", "Old records evicted to bound memory, by kind.",
                      ["kind"])
    for kind, n in m["evicted"].items():
        evicted.add_metric([kind], n)
    rss = gauge("process_resident_memory_bytes", "Resident memory of the process.")
    rss.add_metric([], s.rss_bytes)
    mem_ratio = gauge("process_memory_ratio", "Process RSS / the machine's memory.")
    mem_ratio.add_metric([], s.memory_ratio)
    yield from (dropped, evicted, rss, mem_ratio)

    counts: dict[tuple[str, str, str], int] = {}
    for rule, severity, state in s.alerts:
        for st in _ACTIVE:
            counts.setdefault((rule, severity, st), 0)
        if state in _ACTIVE:
            counts[(rule, severity, state)] += 1
    alert_g = GaugeMetricFamily(
        ALERT_GAUGE, "Alerts of the registry's own rules that are active now, by rule, "
        "severity and state (pending, firing).", labels=["alert", "severity", "state"])
    for key in sorted(counts):
        alert_g.add_metric(list(key), counts[key])
    yield alert_g


class RegistryCollector:
    """A prometheus_client collector over one registry.

    Args:
        registry: the registry to expose.

    Register it in a ``prometheus_client.CollectorRegistry`` to serve it alongside other
    collectors, or pass it straight to ``generate_latest``.
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        """Read the registry once and yield its metric families."""
        yield from _families(_read(self.registry))


def exposition(registry: Registry, accept: str | None = None) -> tuple[bytes, str]:
    """The registry in the format the ``Accept`` header asks for: ``(body, content_type)``.

    OpenMetrics 1.0 (with exemplars carrying trace ids on the latency histograms) when
    the scraper accepts it, as Prometheus does; the text format 0.0.4 otherwise.
    """
    encoder, content_type = choose_encoder(accept or "")
    return encoder(RegistryCollector(registry)), content_type


# -- rule export -----------------------------------------------------------------------


#: The built-in rules that have a Prometheus equivalent: all of them but ``rule_error``,
#: which reports a failing Python rule inside one process.
EXPORTED_RULES: tuple[str, ...] = tuple(rule.name for rule in BUILTIN_RULES)
#: Prometheus duration units, largest first.
_UNITS = (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")


def _num(x: float) -> str:
    return repr(float(x))


def duration(seconds: float) -> str:
    """Seconds as a Prometheus duration: ``300 -> "5m"``, ``90 -> "1m30s"``, ``0 -> "0s"``."""
    ms = round(seconds * 1000)
    if ms < 0:
        raise InvalidValueError(f"a duration cannot be negative: {seconds!r}", value=seconds)
    if ms == 0:
        return "0s"
    if ms % 1000:
        return f"{ms}ms"
    rest = ms // 1000
    out = []
    for unit, size in _UNITS:
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out)


def parse_duration(text: str) -> float:
    """A Prometheus duration (``"1m30s"``, ``"500ms"``) or a number of seconds, in seconds.

    Raises:
        InvalidValueError: not a duration, or negative.
    """
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        pos = 0
        value = 0.0
        scale = {"ms": 0.001, **dict(_UNITS)}
        for match in _DURATION_PART.finditer(text):
            if match.start() != pos:
                break
            value += int(match.group(1)) * scale[match.group(2)]
            pos = match.end()
        if pos != len(text) or not text:
            raise InvalidValueError(f"not a duration: {text!r:.80} (use 30s, 5m, 1h30m or "
                                    "seconds)", value=text) from None
    if not math.isfinite(value) or value < 0:
        raise InvalidValueError(f"not a duration: {text!r:.80}", value=text)
    return value


@dataclass(frozen=True, slots=True)
class ExportedRule:
    """One Prometheus alerting rule mirroring a built-in rule at one severity.

    ``for_s`` None means the rule's ``Thresholds.<rule>_for_s``; ``labels`` are added to
    ``severity`` (to tell apart two conditions of one rule).
    """

    name: str
    severity: str
    expr: str
    summary: str
    for_s: float | None = None
    labels: tuple[tuple[str, str], ...] = ()


def exported_rules(t: Thresholds) -> list[ExportedRule]:
    """The PromQL equivalents of the built-in rules under thresholds ``t``.

    Raises:
        InvalidValueError: ``rollback_slow_s`` is not a bucket bound of the rollback
            histogram (the rule compares against that bucket).
    """
    ns = NAMESPACE
    w = duration(t.window_s)
    if t.rollback_slow_s not in ROLLBACK_BUCKETS_S:
        raise InvalidValueError(
            f"rollback_slow_s={t.rollback_slow_s!r} is not a bucket bound of "
            f"{ns}_rollback_duration_seconds; use one of {list(ROLLBACK_BUCKETS_S)}",
            value=t.rollback_slow_s)
    le = _le(t.rollback_slow_s)
    done = (f"sum without (status) (increase({ns}_tasks_finished_total"
            f"{{status=~'completed|failed'}}[{w}]))")
    failed = f"sum without (status) (increase({ns}_tasks_finished_total{{status='failed'}}[{w}]))"
    ratio = f"{ns}_pool_queue_depth / {ns}_pool_queue_capacity"
    rejecting = f"sum without (task_type) (increase({ns}_tasks_rejected_total[{w}])) > 0"
    agent = "agent {{ $labels.agent }} of pool {{ $labels.pool }}"
    rules = []
    for name, metric, what, warn, crit in (
        ("agent_high_memory", "agent_memory_ratio", "memory", t.agent_memory_warning,
         t.agent_memory_critical),
        ("agent_high_cpu", "agent_cpu_ratio", "CPU", t.agent_cpu_warning, t.agent_cpu_critical),
    ):
        summary = f"{what} of {agent} at {{{{ $value | humanizePercentage }}}}"
        rules.append(ExportedRule(name, "critical", f"{ns}_{metric} >= {_num(crit)}", summary))
        rules.append(ExportedRule(name, "warning",
                                  f"{ns}_{metric} >= {_num(warn)} < {_num(crit)}", summary))
    rules += [
        ExportedRule("agent_degraded", "warning", f"{ns}_agent_state{{state='degraded'}} == 1",
                     f"{agent} is degraded"),
        ExportedRule(
            "task_failures", "warning",
            f"({failed} / {done} >= {_num(t.task_failure_rate)}) "
            f"and ({done} >= {t.task_failure_min_tasks})",
            f"pool {{{{ $labels.pool }}}}: {{{{ $value | humanizePercentage }}}} of tasks "
            f"failed over {w}", labels=(("condition", "failure_rate"),)),
        ExportedRule(
            "task_failures", "warning", f"{failed} > 0",
            f"pool {{{{ $labels.pool }}}}: tasks ended failed in the last {w}",
            labels=(("condition", "task_failed"),)),
        ExportedRule("queue_buildup", "critical", f"({ratio}) and ({rejecting})",
                     f"pool {{{{ $labels.pool }}}} rejected tasks in the last {w}; queue at "
                     "{{ $value | humanizePercentage }} of capacity", for_s=0.0),
        ExportedRule("queue_buildup", "warning",
                     f"({ratio} >= {_num(t.queue_warning_ratio)}) unless ({rejecting})",
                     "pool {{ $labels.pool }} queue at {{ $value | humanizePercentage }} "
                     "of capacity"),
        ExportedRule(
            "assignment_latency", "warning",
            f"(histogram_quantile(0.95, rate({ns}_task_assignment_latency_seconds_bucket[{w}]))"
            f" > {_num(t.assignment_latency_p95_s)}) and "
            f"(increase({ns}_task_assignment_latency_seconds_count[{w}]) >= "
            f"{t.assignment_latency_min_samples})",
            "pool {{ $labels.pool }}: p95 assignment latency {{ $value | humanizeDuration }}"),
        ExportedRule(
            "rollback_slow", "warning",
            f"increase({ns}_rollback_duration_seconds_count[{w}]) - ignoring (le) "
            f"increase({ns}_rollback_duration_seconds_bucket{{le='{le}'}}[{w}]) > 0",
            f"a rollback took longer than {le} s in the last {w}"),
        ExportedRule("rollback_failed", "critical",
                     f"increase({ns}_rollbacks_total{{status='failed'}}[{w}]) > 0",
                     f"a rollback failed in the last {w}"),
        ExportedRule(
            "pipeline_stalled", "warning",
            f"time() - {ns}_pipeline_last_progress_timestamp_seconds >= "
            f"{_num(t.pipeline_stall_s)}",
            "pipeline {{ $labels.pipeline }} made no progress for "
            "{{ $value | humanizeDuration }}"),
        ExportedRule("pipeline_failed", "critical",
                     f"increase({ns}_pipelines_finished_total{{status='failed'}}[{w}]) > 0",
                     f"a pipeline run failed in the last {w}"),
        ExportedRule("isolation_breach", "critical", f"{ns}_agent_isolated == 0",
                     f"{agent} shares an isolation id with another agent"),
        ExportedRule("process_high_memory", "warning",
                     f"{ns}_process_memory_ratio >= {_num(t.process_memory_ratio)}",
                     "process {{ $labels.instance }} uses {{ $value | humanizePercentage }} "
                     "of the machine's memory"),
    ]
    return rules


def _with_fors(t: Thresholds, for_s: float | Mapping[str, float] | None) -> Thresholds:
    if for_s is None:
        return t
    if isinstance(for_s, int | float):
        overrides = dict.fromkeys(EXPORTED_RULES, float(for_s))
    else:
        overrides = dict(for_s)
    for name in overrides:
        if name not in EXPORTED_RULES:
            raise InvalidValueError(f"unknown rule {name!r}; exported rules: "
                                    f"{', '.join(EXPORTED_RULES)}", value=name)
    changes: dict[str, Any] = {f"{name}_for_s": float(v) for name, v in overrides.items()}
    return replace(t, **changes)


def rules(
    thresholds: Thresholds | None = None,
    *,
    for_s: float | Mapping[str, float] | None = None,
    interval_s: float | None = None,
    group: str = "dionysus_observability",
) -> dict[str, Any]:
    """A Prometheus rules file (as a mapping) mirroring the built-in alert rules.

    Args:
        thresholds: the thresholds to compare against and the rules' ``for`` durations
            (``Thresholds()`` by default).
        for_s: overrides the ``for`` durations: one value for every rule, or a mapping
            rule -> seconds.
        interval_s: the group's evaluation interval (Prometheus' global one when None).
        group: the rule group's name.

    Raises:
        InvalidValueError: a threshold cannot be expressed over the exposed series, or
            ``for_s`` names an unknown rule.
    """
    t = _with_fors(thresholds if thresholds is not None else Thresholds(), for_s)
    out: list[dict[str, Any]] = []
    for rule in exported_rules(t):
        entry: dict[str, Any] = {"alert": rule.name, "expr": rule.expr}
        hold = rule.for_s if rule.for_s is not None else t.for_s(rule.name)
        if hold > 0:
            entry["for"] = duration(hold)
        if t.keep_firing_for_s > 0:
            entry["keep_firing_for"] = duration(t.keep_firing_for_s)
        entry["labels"] = {"severity": rule.severity, **dict(rule.labels)}
        entry["annotations"] = {"summary": rule.summary}
        out.append(entry)
    body: dict[str, Any] = {"name": group}
    if interval_s is not None:
        body["interval"] = duration(interval_s)
    body["rules"] = out
    return {"groups": [body]}


def render_rules(
    thresholds: Thresholds | None = None,
    *,
    for_s: float | Mapping[str, float] | None = None,
    interval_s: float | None = None,
    group: str = "dionysus_observability",
) -> str:
    """The rules file as text: a YAML comment header, then the rules as JSON (valid YAML).

    Arguments as for ``rules``.
    """
    t = _with_fors(thresholds if thresholds is not None else Thresholds(), for_s)
    doc = rules(t, interval_s=interval_s, group=group)
    header = [
        "# Prometheus alerting rules equivalent to dionysus_observability's built-in rules,",
        "# over the series of GET /api/v1/monitoring/prometheus.  Generated by",
        "# `python -m dionysus_observability rules` (JSON is valid YAML).  Thresholds:",
        *(f"#   {f.name} = {getattr(t, f.name)!r}" for f in fields(t)),
    ]
    return "\n".join(header) + "\n" + json.dumps(doc, indent=2) + "\n"
