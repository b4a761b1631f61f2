"""``python -m bench``: run every benchmark module and print one table against BENCH.md.

Each module runs in a fresh interpreter (``python -m bench --worker bench.b1_lifecycle``),
one after the other, and hands its rows back as JSON on a marked stdout line.  The table
is Markdown, ready to quote in an issue's closing note.  The exit status is 0 even when
a target is missed: benchmarks are not tests.  It is 1 only when a module crashed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import QUICK_ENV

#: Prefix of the stdout line on which a worker reports its rows.
MARKER = "@@BENCH-ROWS@@ "
#: Longest a single module may run before it is reported as crashed.
MODULE_TIMEOUT_S = 900.0
_MODULE = re.compile(r"^b(\d*)_\w+\.py$")
_KEYS = ("id", "what", "value", "target", "met", "detail")


def discover(only: set[str] | None = None) -> list[str]:
    """Module names of ``bench/b<N>_*.py`` (by N) then ``bench/b_*.py`` (by name)."""
    found: list[tuple[int, str, str]] = []
    for path in Path(__file__).parent.iterdir():
        match = _MODULE.match(path.name)
        if match is None:
            continue
        number = int(match.group(1)) if match.group(1) else 1_000_000
        found.append((number, path.stem, f"bench.{path.stem}"))
    found.sort()
    names = [name for _, _, name in found]
    if only:
        names = [n for n in names
                 if _module_id(n) in only or n.split(".")[-1].upper() in only]
    return names


def _module_id(module: str) -> str:
    """``bench.b1_lifecycle`` -> ``B1``; ``bench.b_sketch`` -> ``SKETCH``."""
    stem = module.split(".")[-1]
    head, _, tail = stem.partition("_")
    return head.upper() if head != "b" else tail.upper()


def _rows(raw: Any) -> list[dict[str, Any]]:
    rows = [raw] if isinstance(raw, dict) else list(raw)
    for row in rows:
        missing = [k for k in _KEYS if k not in row]
        if missing:
            raise ValueError(f"row {row!r:.200} lacks {missing}")
    return rows


def worker(module: str) -> int:
    """Run one module's ``run()`` in this process and print its rows after ``MARKER``."""
    rows = _rows(importlib.import_module(module).run())
    sys.stdout.write(MARKER + json.dumps(rows) + "\n")
    sys.stdout.flush()
    return 0


def _crashed(module: str, why: str) -> dict[str, Any]:
    return {"id": _module_id(module), "what": module, "value": math.nan, "target": "-",
            "met": False, "detail": f"CRASHED: {why}"}


def run_module(module: str, quick: bool) -> tuple[list[dict[str, Any]], float, bool]:
    """Run ``module`` in a child interpreter; return its rows, seconds taken, and success."""
    env = dict(os.environ)
    if quick:
        env[QUICK_ENV] = "1"
    else:
        env.pop(QUICK_ENV, None)
    root = Path(__file__).resolve().parent.parent
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bench", "--worker", module],
            cwd=root, env=env, capture_output=True, text=True, timeout=MODULE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return [_crashed(module, f"timed out after {MODULE_TIMEOUT_S:g} s")], \
            time.perf_counter() - t0, False
    took = time.perf_counter() - t0
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            try:
                return _rows(json.loads(line[len(MARKER):])), took, True
            except ValueError as exc:
                return [_crashed(module, str(exc))], took, False
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    sys.stderr.write(proc.stderr)
    return [_crashed(module, f"exit {proc.returncode}: {tail}")], took, False


def figure(value: float) -> str:
    """A figure with three significant digits (``nan`` for a crashed module)."""
    if math.isnan(value):
        return "nan"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table: id | what | figure | target | met."""
    cells = [("id", "what", "figure", "target", "met")]
    cells += [(str(r["id"]), str(r["what"]), figure(float(r["value"])), str(r["target"]),
               "yes" if r["met"] else "NO") for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(5)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |"
             for line in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the modules, print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="scaled-down counts (a smoke run, figures not meaningful)")
    parser.add_argument("--only", default="",
                        help="comma-separated ids or module names, e.g. B1,B3")
    parser.add_argument("--worker", metavar="MODULE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker)

    only = {x.strip().upper() for x in args.only.split(",") if x.strip()} or None
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    timings: list[str] = []
    ok = True
    for module in discover(only):
        print(f"running {module} ...", file=sys.stderr, flush=True)
        got, took, fine = run_module(module, args.quick)
        rows += got
        ok = ok and fine
        timings.append(f"{module.split('.')[-1]} {took:.1f} s")
    total = time.perf_counter() - t0

    print(table(rows))
    print()
    for row in rows:
        print(f"- {row['id']}: {row['detail']}")
    mode = " (--quick: counts / 50, figures not meaningful)" if args.quick else ""
    print(f"\ntotal {total:.1f} s{mode}: " + ", ".join(timings))
    print(f"load average (1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, "
          f"on {os.cpu_count()} CPUs: ratios drift when other work shares the machine")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
