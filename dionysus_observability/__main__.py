"""Command line: ``python -m dionysus_observability rules [--output FILE] ...``.

``rules`` writes a Prometheus rules file whose alerting rules mirror the built-in ones
(same names and severities, thresholds from ``Thresholds``), for a fleet to evaluate in
Prometheus over every process's ``/prometheus`` exposition::

    python -m dionysus_observability rules --output /etc/prometheus/rules/dionysus.yml \\
        --threshold agent_memory_warning=0.8 --for 2m --for isolation_breach=0s
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from .alerts import Thresholds
from .exceptions import InvalidValueError
from .prometheus import EXPORTED_RULES, parse_duration, render_rules

__all__ = ["main"]

#: Exit status for bad arguments (argparse uses the same).
EXIT_USAGE = 2


def _thresholds(pairs: Sequence[str]) -> Thresholds:
    types = {f.name: f.type for f in dataclasses.fields(Thresholds)}
    values: dict[str, float | int] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or name not in types:
            raise InvalidValueError(
                f"--threshold takes FIELD=VALUE with FIELD one of {', '.join(types)}; "
                f"got {pair!r}", value=pair)
        try:
            values[name] = int(raw) if types[name] in ("int", int) else float(raw)
        except ValueError:
            raise InvalidValueError(f"--threshold {name}: not a number: {raw!r}",
                                    value=raw) from None
    return Thresholds(**values)  # type: ignore[arg-type]


def _fors(items: Sequence[str]) -> dict[str, float]:
    fors: dict[str, float] = {}
    for item in items:
        name, sep, raw = item.rpartition("=")
        if not sep:
            fors.update(dict.fromkeys(EXPORTED_RULES, parse_duration(item)))
        elif name not in EXPORTED_RULES:
            raise InvalidValueError(f"--for: unknown rule {name!r}; exported rules: "
                                    f"{', '.join(EXPORTED_RULES)}", value=name)
        else:
            fors[name] = parse_duration(raw)
    return fors


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dionysus_observability",
        description="dionysus_observability command line tools.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    rules = commands.add_parser(
        "rules", help="write a Prometheus rules file equivalent to the built-in alert rules",
        description="Write a Prometheus rules file whose alerting rules mirror the built-in "
                    "ones (same names, thresholds from Thresholds).")
    rules.add_argument("-o", "--output", metavar="FILE",
                       help="write here instead of standard output")
    rules.add_argument("--for", dest="fors", action="append", default=[],
                       metavar="[RULE=]DURATION",
                       help="how long a condition must hold before firing (30s, 5m, 0s): for "
                            "every rule, or for one rule; repeatable, later wins (default: "
                            "the Thresholds <rule>_for_s fields)")
    rules.add_argument("--threshold", action="append", default=[], metavar="FIELD=VALUE",
                       help="override a Thresholds field (agent_memory_warning=0.8, "
                            "window_s=600, queue_buildup_for_s=120); repeatable")
    rules.add_argument("--interval", metavar="DURATION",
                       help="the rule group's evaluation interval (default: Prometheus')")
    rules.add_argument("--group", default="dionysus_observability",
                       help="the rule group's name")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        thresholds = _thresholds(args.threshold)
        text = render_rules(
            thresholds,
            for_s=_fors(args.fors),
            interval_s=parse_duration(args.interval) if args.interval else None,
            group=args.group,
        )
    except (InvalidValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.output:
        path = Path(args.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
