"""The registry lock: yield the GIL a few times before sleeping on a taken lock."""

from __future__ import annotations

import threading
import time
from types import TracebackType

__all__ = ["SPINS", "YieldingLock", "acquire_contended"]

#: Times a thread that finds the lock taken yields the GIL and retries before it sleeps.
SPINS = 20


class YieldingLock:
    """A mutex for critical sections of a microsecond, taken by many threads under the GIL.

    With a plain ``threading.Lock``, a thread switched out while inside a hook's critical
    section makes every other hook thread sleep on the lock and wake again, and the
    threads fall into a convoy: eight threads recorded tasks at a fifth of one thread's
    rate (B5).  A per-task hook that finds this lock taken by another per-task hook first
    gives the GIL back (``time.sleep(0)``) up to ``SPINS`` times, so that the holder can
    finish its few bytecodes, and only then sleeps on the lock.  When a ``with`` block (a
    report, which holds it for a millisecond) has it, waiters sleep at once.
    """

    __slots__ = ("long_hold", "mutex")

    def __init__(self) -> None:
        #: the underlying lock; the per-task hooks take it directly (``acquire(False)``,
        #: then ``acquire_contended``) to save the cost of a Python-level ``with``
        self.mutex = threading.Lock()
        #: True while a ``with`` block (a report, a rarer hook) holds the lock: yielding
        #: to such a holder would only steal its GIL time, so waiters sleep at once
        self.long_hold = False

    def __enter__(self) -> YieldingLock:
        self.mutex.acquire()
        self.long_hold = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.long_hold = False
        self.mutex.release()

    def locked(self) -> bool:
        """Whether some thread holds the lock."""
        return self.mutex.locked()


def acquire_contended(lock: YieldingLock) -> None:
    """Take ``lock.mutex``, just found taken: yield the GIL and retry while the holder is
    a short per-task hook, then sleep on it."""
    mutex = lock.mutex
    for _ in range(SPINS):
        if lock.long_hold:
            break
        time.sleep(0)
        if mutex.acquire(False):
            return
    mutex.acquire()
