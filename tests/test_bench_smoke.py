"""Smoke test of ``python -m bench --quick``: every benchmark runs and reports a figure.

Benchmarks are not tests: nothing here looks at a timing or at whether a target is met,
only that each benchmark of BENCH.md ran and printed a numeric figure in the one table.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import QUICK_ENV, meets, result

ROOT = Path(__file__).resolve().parent.parent
EXPECTED_IDS = {"B1", "B3", "B4", "B5", "B6.metrics", "B6.performance", "SKETCH"}
QUICK_RUN_TIMEOUT_S = 120


def _table(stdout: str) -> dict[str, list[str]]:
    """Rows of the printed Markdown table by id: [what, figure, target, met]."""
    rows: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        if not line.startswith("|") or set(line) <= {"|", "-"}:
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == "id":
            assert cells == ["id", "what", "figure", "target", "met"]
            continue
        rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture(scope="module")
def quick_run() -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != QUICK_ENV}
    return subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=QUICK_RUN_TIMEOUT_S,
        check=False,
    )


@pytest.mark.e2e
def test_quick_bench_prints_one_table_with_a_numeric_figure_for_every_benchmark(
    quick_run: subprocess.CompletedProcess[str],
) -> None:
    assert quick_run.returncode == 0, quick_run.stderr[-2000:]
    rows = _table(quick_run.stdout)
    expected = set(EXPECTED_IDS)
    if list((ROOT / "bench").glob("b2_*.py")):
        expected.add("B2")
    assert expected <= set(rows), f"missing {expected - set(rows)} in\n{quick_run.stdout}"
    for row_id, (what, figure, target, met) in rows.items():
        assert what, row_id
        assert math.isfinite(float(figure.replace(",", ""))), (row_id, figure)
        assert re.fullmatch(r"(<=|>=|<|>|==) [-+0-9.eE]+", target), (row_id, target)
        assert met in ("yes", "NO"), (row_id, met)


@pytest.mark.e2e
def test_quick_bench_explains_each_figure_below_the_table(
    quick_run: subprocess.CompletedProcess[str],
) -> None:
    rows = _table(quick_run.stdout)
    for row_id in rows:
        assert re.search(rf"^- {re.escape(row_id)}: \S", quick_run.stdout, re.M), row_id
    assert "CRASHED" not in quick_run.stdout


@pytest.mark.parametrize(
    ("value", "target", "expected"),
    [(0.4, "<= 0.5", True), (0.5, "<= 0.5", True), (0.51, "<= 0.5", False),
     (0.7, ">= 0.7", True), (0.69, ">= 0.7", False), (math.nan, "<= 3", False)],
)
def test_a_row_is_met_exactly_when_its_figure_satisfies_the_target(
    value: float, target: str, expected: bool
) -> None:
    assert meets(value, target) is expected
    assert result("X", "x", value, target, "d")["met"] is expected


def test_a_target_that_is_not_a_comparison_is_refused() -> None:
    with pytest.raises(ValueError, match=re.escape("<= 0.5")):
        meets(1.0, "about 0.5")
