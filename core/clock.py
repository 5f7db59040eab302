"""The dispatcher's one clock: real in production, moved by the test in tests — the same code path.

The engine asks the clock what time it is and waits on it: :meth:`Clock.sleep_until`
returns when the moment comes (or at once when a cancel event is set).
:class:`SystemClock` is the wall clock.  :class:`ManualClock` only moves when somebody
waits on it or calls :meth:`ManualClock.advance`: waiting until a moment *is* reaching it,
so a dispatch pass under a manual clock runs exactly as in production, only without the
waiting.  Each clock keeps the pacer of the sends started under it
(:class:`core.ratelimit.Pacer`), so simulated and real time never share one.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

from core.ratelimit import Pacer


class Clock(Protocol):
    """What the engine needs to know about time."""

    pacer: Pacer

    def now(self) -> datetime:
        """The current time (aware, UTC)."""
        ...

    def time(self) -> float:
        """The current time in epoch seconds."""
        ...

    def sleep_until(self, moment: float, cancel: threading.Event | None = None) -> bool:
        """Wait until ``moment`` (epoch seconds); ``True`` when ``cancel`` was set first."""
        ...


class SystemClock:
    """The wall clock."""

    def __init__(self) -> None:
        self.pacer = Pacer()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def time(self) -> float:
        return time.time()

    def sleep_until(self, moment: float, cancel: threading.Event | None = None) -> bool:
        while (delay := moment - time.time()) > 0:
            if cancel is not None:
                if cancel.wait(min(delay, 0.2)):
                    return True
            else:
                time.sleep(min(delay, 0.2))
        return bool(cancel is not None and cancel.is_set())


class ManualClock:
    """A clock that moves only when waited on or advanced (tests, simulations)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("a clock needs an aware time")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()
        self.pacer = Pacer()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def time(self) -> float:
        return self.now().timestamp()

    def advance(self, seconds: float = 0.0, **delta: float) -> datetime:
        """Move the clock forward (never back); returns the new time."""
        with self._lock:
            self._now += timedelta(seconds=seconds, **delta)
            return self._now

    def set(self, moment: datetime) -> None:
        """Move the clock to ``moment`` if that is later."""
        with self._lock:
            self._now = max(self._now, moment.astimezone(UTC))

    def sleep_until(self, moment: float, cancel: threading.Event | None = None) -> bool:
        if cancel is not None and cancel.is_set():
            return True
        with self._lock:
            target = datetime.fromtimestamp(moment, UTC)
            if target > self._now:
                self._now = target
        return False


SYSTEM = SystemClock()
