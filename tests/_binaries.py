"""Helpers for tests that run real Debian binaries (promtool, prometheus,
prometheus-alertmanager) or other servers on loopback.

``require_binary`` finds a binary or skips the test (fails it under ``CI=true``);
``free_port`` picks a free loopback port; ``Poller`` waits for a condition by polling
with a deadline (never a fixed sleep); ``BinaryServer`` runs a server binary on a free
port with its output in a log file, and knows when it is ready and how to stop it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

__all__ = ["BinaryServer", "Poller", "free_port", "get_json", "require_binary"]

T = TypeVar("T")

#: Seconds a server gets to exit after SIGTERM, then after SIGKILL.
TERM_TIMEOUT_S = 15.0
KILL_TIMEOUT_S = 5.0
#: How much of a dead server's log a failure message shows.
LOG_TAIL_CHARS = 2000


def require_binary(name: str, package: str = "prometheus") -> str:
    """The path of binary ``name``; skip when it is missing, except under CI where that fails.

    Args:
        name: the executable to look up on ``PATH``.
        package: the Debian package that installs it (named in the skip message).
    """
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{name} is not installed (Debian package; see .ci/run)")
        pytest.skip(f"{name} is not installed (apt-get install {package})")
    return path


def free_port() -> int:
    """A loopback port that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    """GET ``url`` and decode its JSON body."""
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


class Poller:
    """Calls a probe until it returns something truthy; fails the test at a deadline.

    An ``OSError`` from the probe (a server not listening yet) counts as "not yet".

    Args:
        deadline_s: seconds to wait before failing the test.
        interval_s: seconds between two calls of the probe.
    """

    def __init__(self, deadline_s: float, interval_s: float) -> None:
        self.deadline_s = deadline_s
        self.interval_s = interval_s

    def __call__(self, what: str, probe: Callable[[], T | None]) -> T:
        """The first truthy result of ``probe``; ``what`` names the wait in the failure."""
        end = time.monotonic() + self.deadline_s
        last: Any = None
        while time.monotonic() < end:
            try:
                result = probe()
            except OSError as exc:    # not listening yet
                last = exc
            else:
                if result:
                    return result
                last = result
            time.sleep(self.interval_s)
        pytest.fail(f"timed out after {self.deadline_s} s waiting for {what}; last: {last!r}")


class BinaryServer:
    """A server binary on a free loopback port, its output in ``<workdir>/<name>.log``.

    Subclasses write their configuration into ``workdir`` and then call ``launch``.

    Args:
        name: the server's name, for the log file and failure messages.
        workdir: a directory the server may write to.
    """

    process: subprocess.Popen[bytes]

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"{name}.log"

    def launch(self, argv: list[str]) -> None:
        """Start the process, its stdout and stderr going to the log file."""
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def ready(self) -> bool:
        """Whether ``/-/ready`` answers 200; fails the test if the process has exited."""
        if self.process.poll() is not None:
            pytest.fail(f"{self.name} exited: {self.log.read_text()[-LOG_TAIL_CHARS:]}")
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)

    def stop(self) -> None:
        """Terminate the process; kill it if it does not exit in time."""
        self.process.terminate()
        try:
            self.process.wait(TERM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(KILL_TIMEOUT_S)
