"""The exported Prometheus rules: the CLI writes them, promtool checks them, and promtool
unit tests show every rule firing for its condition and silent otherwise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from _binaries import require_binary

import dionysus_observability as obs
from dionysus_observability.__main__ import main
from dionysus_observability.alerts import BUILTIN_RULES
from dionysus_observability.prometheus import (
    EXPORTED_RULES,
    duration,
    parse_duration,
    render_rules,
    rules,
)

APP1 = 'instance="app:1",job="app"'         # the labels Prometheus adds to scraped series
APP2 = 'instance="app:2",job="app"'
BASE = {"instance": "app:1", "job": "app"}


def alert(severity: str, summary: str, **labels: str) -> dict[str, Any]:
    return {"exp_labels": {**BASE, "severity": severity, **labels},
            "exp_annotations": {"summary": summary}}


def hist(name: str, labels: str, buckets: dict[str, str]) -> list[dict[str, str]]:
    return [{"series": f'{name}_bucket{{{labels},le="{le}"}}', "values": values}
            for le, values in buckets.items()]


#: rule -> (input series, [(eval time, expected firing alerts)]).  Each rule has a time
#: before its condition holds (silent), a time when it fires, and series that never
#: meet the condition (near misses at the threshold) and so never appear.
CASES: dict[str, tuple[list[dict[str, Any]], list[tuple[str, list[dict[str, Any]]]]]] = {
    "agent_high_memory": (
        [
            {"series": f'dionysus_agent_memory_ratio{{{APP1},pool="p",agent="hot"}}',
             "values": "0.5 0.97 0.97 0.97"},
            {"series": f'dionysus_agent_memory_ratio{{{APP1},pool="p",agent="at-critical"}}',
             "values": "0.5 0.95 0.95 0.95"},
            {"series": f'dionysus_agent_memory_ratio{{{APP1},pool="p",agent="at-warning"}}',
             "values": "0.5 0.85 0.85 0.85"},
            {"series": f'dionysus_agent_memory_ratio{{{APP1},pool="p",agent="below"}}',
             "values": "0.84 0.84 0.84 0.84"},
        ],
        [
            ("1m", []),        # pending for its 1m `for`
            ("2m", [alert("critical", "memory of agent hot of pool p at 97%",
                          pool="p", agent="hot"),
                    alert("critical", "memory of agent at-critical of pool p at 95%",
                          pool="p", agent="at-critical"),
                    alert("warning", "memory of agent at-warning of pool p at 85%",
                          pool="p", agent="at-warning")]),
        ],
    ),
    "agent_high_cpu": (
        [
            {"series": f'dionysus_agent_cpu_ratio{{{APP1},pool="p",agent="busy"}}',
             "values": "0.1 0.99 0.99 0.99 0.99"},
            {"series": f'dionysus_agent_cpu_ratio{{{APP1},pool="p",agent="warm"}}',
             "values": "0.1 0.9 0.9 0.9 0.9"},
            {"series": f'dionysus_agent_cpu_ratio{{{APP1},pool="p",agent="below"}}',
             "values": "0.89 0.89 0.89 0.89 0.89"},
        ],
        [
            ("2m", []),        # pending for its 2m `for`
            ("3m", [alert("critical", "CPU of agent busy of pool p at 99%",
                          pool="p", agent="busy"),
                    alert("warning", "CPU of agent warm of pool p at 90%",
                          pool="p", agent="warm")]),
        ],
    ),
    "agent_degraded": (
        [
            {"series": f'dionysus_agent_state{{{APP1},pool="p",agent="sick",state="degraded"}}',
             "values": "0 1 1 1"},
            {"series": f'dionysus_agent_state{{{APP1},pool="p",agent="fine",state="degraded"}}',
             "values": "0 0 0 0"},
            {"series": f'dionysus_agent_state{{{APP1},pool="p",agent="fine",state="idle"}}',
             "values": "1 1 1 1"},
        ],
        [
            ("1m", []),
            ("2m", [alert("warning", "agent sick of pool p is degraded",
                          pool="p", agent="sick", state="degraded")]),
        ],
    ),
    "task_failures": (
        [
            # pool p: 3 of 10 tasks failed; q: 1 of 10; r: 2 of 3 (too few); s: none failed
            *[{"series": f'dionysus_tasks_finished_total{{{APP1},pool="{pool}",status="{st}"}}',
               "values": f"0 0 0 0 0 0 {n} {n} {n}"}
              for pool, st, n in (("p", "failed", 3), ("p", "completed", 7),
                                  ("p", "cancelled", 9), ("q", "failed", 1),
                                  ("q", "completed", 9), ("r", "failed", 2),
                                  ("r", "completed", 1), ("s", "failed", 0),
                                  ("s", "completed", 10))],
        ],
        [
            ("5m", []),
            ("7m", [alert("warning", "pool p: 30% of tasks failed over 5m", pool="p",
                          condition="failure_rate"),
                    *[alert("warning", f"pool {pool}: tasks ended failed in the last 5m",
                            pool=pool, condition="task_failed") for pool in "pqr"]]),
        ],
    ),
    "queue_buildup": (
        [
            # p: at the 80 % ratio; q: full and rejecting; s: rejecting with a short queue;
            # r: just under the ratio
            {"series": f'dionysus_pool_queue_depth{{{APP1},pool="p"}}', "values": "0 80 80 80"},
            {"series": f'dionysus_pool_queue_depth{{{APP1},pool="q"}}', "values": "0 100 100 100"},
            {"series": f'dionysus_pool_queue_depth{{{APP1},pool="s"}}', "values": "0 10 10 10"},
            {"series": f'dionysus_pool_queue_depth{{{APP1},pool="r"}}', "values": "0 79 79 79"},
            *[{"series": f'dionysus_pool_queue_capacity{{{APP1},pool="{pool}"}}',
               "values": "100x3"} for pool in "pqsr"],
            {"series": f'dionysus_tasks_rejected_total{{{APP1},pool="q",task_type="discovery"}}',
             "values": "0 1 2 3"},
            {"series": f'dionysus_tasks_rejected_total{{{APP1},pool="s",task_type="ingest"}}',
             "values": "0 1 1 1"},
            {"series": f'dionysus_tasks_rejected_total{{{APP1},pool="r",task_type="ingest"}}',
             "values": "0 0 0 0"},
        ],
        [
            ("0m", []),
            ("1m", [alert("critical", "pool q rejected tasks in the last 5m; queue at 100% "
                          "of capacity", pool="q"),
                    alert("critical", "pool s rejected tasks in the last 5m; queue at 10% "
                          "of capacity", pool="s")]),
            ("2m", [alert("warning", "pool p queue at 80% of capacity", pool="p"),
                    alert("critical", "pool q rejected tasks in the last 5m; queue at 100% "
                          "of capacity", pool="q"),
                    alert("critical", "pool s rejected tasks in the last 5m; queue at 10% "
                          "of capacity", pool="s")]),
        ],
    ),
    "assignment_latency": (
        [
            *hist("dionysus_task_assignment_latency_seconds", f'{APP1},pool="slow"',
                  {"0.25": "0x10", "0.5": "0x10", "1.0": "0+10x10", "+Inf": "0+10x10"}),
            {"series": f'dionysus_task_assignment_latency_seconds_count{{{APP1},pool="slow"}}',
             "values": "0+10x10"},
            *hist("dionysus_task_assignment_latency_seconds", f'{APP1},pool="fast"',
                  {"0.25": "0+10x10", "0.5": "0+10x10", "1.0": "0+10x10",
                   "+Inf": "0+10x10"}),
            {"series": f'dionysus_task_assignment_latency_seconds_count{{{APP1},pool="fast"}}',
             "values": "0+10x10"},
            # slow, but too few assignments to judge
            *hist("dionysus_task_assignment_latency_seconds", f'{APP1},pool="few"',
                  {"0.25": "0x10", "0.5": "0x10", "1.0": "0 2x9", "+Inf": "0 2x9"}),
            {"series": f'dionysus_task_assignment_latency_seconds_count{{{APP1},pool="few"}}',
             "values": "0 2x9"},
        ],
        [
            ("0m", []),
            ("3m", [alert("warning", "pool slow: p95 assignment latency 975ms",
                          pool="slow")]),
        ],
    ),
    "rollback_slow": (
        [
            {"series": f"dionysus_rollback_duration_seconds_count{{{APP1}}}",
             "values": "0 0 1 1 1"},
            {"series": f'dionysus_rollback_duration_seconds_bucket{{{APP1},le="30.0"}}',
             "values": "0 0 0 0 0"},
            {"series": f"dionysus_rollback_duration_seconds_count{{{APP2}}}",
             "values": "0 0 1 1 1"},
            {"series": f'dionysus_rollback_duration_seconds_bucket{{{APP2},le="30.0"}}',
             "values": "0 0 1 1 1"},
        ],
        [
            ("1m", []),
            ("3m", [alert("warning", "a rollback took longer than 30.0 s in the last 5m")]),
        ],
    ),
    "rollback_failed": (
        [
            {"series": f'dionysus_rollbacks_total{{{APP1},status="failed"}}', "values": "0 0 1 1"},
            {"series": f'dionysus_rollbacks_total{{{APP2},status="failed"}}', "values": "0 0 0 0"},
            {"series": f'dionysus_rollbacks_total{{{APP2},status="succeeded"}}',
             "values": "0 1 2 3"},
        ],
        [
            ("1m", []),
            ("3m", [alert("critical", "a rollback failed in the last 5m", status="failed")]),
        ],
    ),
    "pipeline_stalled": (
        [
            {"series": f'dionysus_pipeline_last_progress_timestamp_seconds'
                       f'{{{APP1},pipeline="mig-1",kind="migration"}}', "values": "0x20"},
            {"series": f'dionysus_pipeline_last_progress_timestamp_seconds'
                       f'{{{APP1},pipeline="mig-2",kind="migration"}}', "values": "0+60x20"},
        ],
        [
            ("9m", []),
            ("10m", [alert("warning", "pipeline mig-1 made no progress for 10m 0s",
                           pipeline="mig-1", kind="migration")]),
        ],
    ),
    "pipeline_failed": (
        [
            {"series": f'dionysus_pipelines_finished_total{{{APP1},status="failed"}}',
             "values": "0 0 1 1"},
            {"series": f'dionysus_pipelines_finished_total{{{APP1},status="succeeded"}}',
             "values": "0 1 2 3"},
        ],
        [
            ("1m", []),
            ("3m", [alert("critical", "a pipeline run failed in the last 5m",
                          status="failed")]),
        ],
    ),
    "isolation_breach": (
        [
            {"series": f'dionysus_agent_isolated{{{APP1},pool="p",agent="x"}}', "values": "1 0 0"},
            {"series": f'dionysus_agent_isolated{{{APP1},pool="p",agent="y"}}', "values": "1 1 1"},
        ],
        [
            ("0m", []),
            ("1m", [alert("critical", "agent x of pool p shares an isolation id with another "
                          "agent", pool="p", agent="x")]),
        ],
    ),
    "process_high_memory": (
        [
            {"series": f"dionysus_process_memory_ratio{{{APP1}}}", "values": "0.5 0.9 0.9 0.9"},
            {"series": f"dionysus_process_memory_ratio{{{APP2}}}",
             "values": "0.89 0.89 0.89 0.89"},
        ],
        [
            ("1m", []),
            ("2m", [alert("warning", "process app:1 uses 90% of the machine's memory")]),
        ],
    ),
}


def unit_tests(rule_file: str, cases: dict[str, Any]) -> dict[str, Any]:
    """A promtool unit-test file: one test group per rule."""
    return {
        "rule_files": [rule_file],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": rule,
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": at, "alertname": rule, "exp_alerts": expected}
                    for at, expected in checks
                ],
            }
            for rule, (series, checks) in cases.items()
        ],
    }


def promtool_test(tmp_path: Path, rules_text: str, cases: dict[str, Any]) -> Any:
    promtool = require_binary("promtool")
    (tmp_path / "rules.yml").write_text(rules_text)
    (tmp_path / "tests.yml").write_text(json.dumps(unit_tests("rules.yml", cases), indent=1))
    return subprocess.run([promtool, "test", "rules", str(tmp_path / "tests.yml")],
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli_writes_a_rules_file_that_promtool_accepts(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    out = tmp_path / "rules" / "dionysus.yml"

    cli = subprocess.run([sys.executable, "-m", "dionysus_observability", "rules",
                          "--output", str(out)], capture_output=True, text=True, timeout=60,
                         check=False)
    check = subprocess.run([promtool, "check", "rules", str(out)], capture_output=True,
                           text=True, timeout=60, check=False)

    assert cli.returncode == 0, cli.stderr
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 16 rules found" in check.stdout


def test_every_exported_rule_fires_for_its_condition_and_stays_silent_otherwise(
    tmp_path: Path,
) -> None:
    result = promtool_test(tmp_path, render_rules(), CASES)

    assert result.returncode == 0, result.stdout + result.stderr
    assert set(CASES) == set(EXPORTED_RULES)


def test_a_wrong_expectation_fails_promtool_so_the_rule_tests_can_fail(tmp_path: Path) -> None:
    series, _ = CASES["agent_high_memory"]
    wrong = {"agent_high_memory": (series, [("2m", [])])}

    result = promtool_test(tmp_path, render_rules(), wrong)

    assert result.returncode != 0
    assert "agent_high_memory" in result.stdout + result.stderr


def test_thresholds_and_for_given_on_the_command_line_reach_the_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["rules", "--threshold", "agent_memory_warning=0.7", "--for", "0s",
                   "--for", "agent_high_cpu=2m", "--interval", "15s"])
    text = capsys.readouterr().out
    cases = {"agent_high_memory": (
        [{"series": f'dionysus_agent_memory_ratio{{{APP1},pool="p",agent="a"}}',
          "values": "0.75 0.75"}],
        [("0m", [alert("warning", "memory of agent a of pool p at 75%", pool="p",
                       agent="a")])],
    )}

    result = promtool_test(tmp_path, text, cases)

    assert status == 0
    assert result.returncode == 0, result.stdout + result.stderr
    group = yaml.safe_load(text)["groups"][0]
    assert group["interval"] == "15s"
    fors = {r["alert"]: r.get("for") for r in group["rules"]}
    assert fors["agent_high_cpu"] == "2m"
    assert fors["agent_high_memory"] is None


def test_rules_carry_the_built_in_names_severities_thresholds_and_for_durations() -> None:
    t = obs.Thresholds(agent_memory_warning=0.81, task_failure_rate=0.33, window_s=600,
                       queue_buildup_for_s=90)
    (group,) = rules(t)["groups"]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for rule in group["rules"]:
        by_name.setdefault(rule["alert"], []).append(rule)

    built_in = {rule.name for rule in BUILTIN_RULES}
    assert set(by_name) == set(EXPORTED_RULES) == built_in
    severities = {name: sorted(r["labels"]["severity"] for r in rs)
                  for name, rs in by_name.items()}
    for name in ("agent_high_memory", "agent_high_cpu", "queue_buildup"):
        assert severities[name] == ["critical", "warning"]
    for name in ("rollback_failed", "pipeline_failed", "isolation_breach"):
        assert severities[name] == ["critical"]
    for name in ("agent_degraded", "assignment_latency", "rollback_slow", "pipeline_stalled",
                 "process_high_memory"):
        assert severities[name] == ["warning"]
    assert severities["task_failures"] == ["warning", "warning"]
    assert ">= 0.81 < 0.95" in by_name["agent_high_memory"][1]["expr"]
    assert ">= 0.33" in by_name["task_failures"][0]["expr"]
    assert "[10m]" in by_name["task_failures"][0]["expr"]
    for name, rs in by_name.items():
        for rule in rs:
            expected = t.for_s(name)
            if name == "queue_buildup" and rule["labels"]["severity"] == "critical":
                expected = 0.0      # rejecting fires at once, as the built-in rule does
            assert parse_duration(rule.get("for", "0s")) == expected <= 300
    assert by_name["queue_buildup"][1]["for"] == "1m30s"
    assert "keep_firing_for" not in by_name["agent_degraded"][0]


def test_keep_firing_for_and_for_overrides_reach_every_rule() -> None:
    t = obs.Thresholds(keep_firing_for_s=120)
    (group,) = rules(t, for_s={"isolation_breach": 30})["groups"]

    assert {r["keep_firing_for"] for r in group["rules"]} == {"2m"}
    assert [r["for"] for r in group["rules"] if r["alert"] == "isolation_breach"] == ["30s"]
    with pytest.raises(obs.InvalidValueError, match="unknown rule"):
        rules(for_s={"rule_error": 1})


def test_a_rollback_threshold_off_the_bucket_bounds_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(obs.InvalidValueError, match="bucket bound"):
        rules(obs.Thresholds(rollback_slow_s=31.0))
    assert main(["rules", "--threshold", "rollback_slow_s=31"]) == 2
    assert "bucket bound" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["rules", "--for", "nope=1m"], "unknown rule"),
    (["rules", "--for", "5 minutes"], "not a duration"),
    (["rules", "--threshold", "agent_memory_warning"], "FIELD=VALUE"),
    (["rules", "--threshold", "window_s=abc"], "not a number"),
])
def test_bad_command_line_arguments_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (30, "30s"), (300, "5m"), (90, "1m30s"), (3600, "1h"), (0.5, "500ms"),
    (86_400 * 8, "1w1d"),
])
def test_durations_round_trip_through_the_prometheus_syntax(seconds: float, text: str) -> None:
    assert duration(seconds) == text
    assert parse_duration(text) == seconds
