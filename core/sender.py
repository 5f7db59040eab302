"""Handing messages to providers: the sending threads, pacing, deadlines and the last check.

A wave's messages were checked, given rate-limit permits (a moment each) and
recorded before anything is sent.  :class:`Sender` sends them on a few threads,
each message at its moment: it waits on the dispatcher's clock (paced so that
sends under one provider account start at least an interval apart even when a
thread picks its message up late), and right before the provider is called it
checks once more, at that very moment:

- the campaign was not paused or stopped meanwhile, and the process is not
  shutting down;
- the scheduler's lease on the recipient will outlive the provider's answer
  (``deadline``) and the permit is still good (a send may start at most
  :data:`core.ratelimit.LATE_TOLERANCE` after its moment, so the campaign's
  per-minute ceiling holds at the provider too);
- for calls and texts, :func:`core.eligibility.still_allowed` with fresh opt-out,
  do-not-call and consent facts, the window and the state's calling hours *now*
  (a batch may take a while to go out; a call is never placed at 21:00:05).

For a provider that cannot be asked afterwards whether a message went out (SMTP,
SNS), the moment a try is handed over is recorded first: after a crash, a try
never handed over is sent again, and only one that was is "outcome unknown".

Whatever does not go is recorded as not sent, with the reason, and comes back later.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from core import ratelimit
from core.channels.base import ChannelError
from core.clock import Clock
from core.eligibility import Decision
from core.outbound import with_metadata
from core.outcome_mapping import CampaignRun, Send
from core.windows import QUIET_CHANNELS

log = logging.getLogger("core.dispatch")

# the last check of a call or text: the recipient's facts read again, then the rules at this moment
Recheck = Callable[[Send, CampaignRun, datetime], Decision | None]
# records that a try is being handed to a provider that cannot be asked afterwards
MarkHanded = Callable[[Send, datetime], None]


@dataclass
class Batch:
    """One wave of one campaign, being sent."""

    run: CampaignRun
    sends: list[Send]
    deadline: float  # epoch seconds: no send starts after this (the lease must outlive it)
    cancel: threading.Event = field(default_factory=threading.Event)
    futures: list[Future[None]] = field(default_factory=list)

    def finished(self) -> bool:
        return all(f.done() for f in self.futures)


class Sender:
    """Sends batches on ``concurrency`` threads (in line when 1), on ``clock``."""

    def __init__(self, *, clock: Clock, stop: threading.Event, concurrency: int, recheck: Recheck,
                 mark_handed: MarkHanded) -> None:
        self.clock = clock
        self.stop = stop
        self.concurrency = concurrency
        self.recheck = recheck
        self.mark_handed = mark_handed
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, batch: Batch) -> None:
        if self.concurrency <= 1:
            for send in batch.sends:
                self.send(send, batch)
            done: Future[None] = Future()
            done.set_result(None)
            batch.futures = [done]
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="send")
        batch.futures = [self._pool.submit(self.send, send, batch) for send in batch.sends]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _start_at(self, send: Send, batch: Batch) -> float:
        provider = batch.run.provider_rates.get(send.step.channel)
        if provider is None:
            return send.at
        return self.clock.pacer.turn(provider, send.at, self.clock.time())

    def send(self, send: Send, batch: Batch) -> None:
        """Send one message at its moment, unless something at that moment says no."""
        try:
            self.clock.sleep_until(self._start_at(send, batch), batch.cancel)
            if batch.cancel.is_set():
                send.not_sent = "the campaign was paused or stopped"
                return
            if self.stop.is_set():
                send.not_sent = "the scheduler is shutting down"
                return
            moment = self.clock.time()
            if moment > batch.deadline:
                send.not_sent = "its lease would run out before the provider answers"
                return
            if send.at and moment > send.at + ratelimit.LATE_TOLERANCE:
                send.not_sent = "its moment under the campaign's rate limit passed"
                return
            now = datetime.fromtimestamp(moment, UTC)
            if send.step.channel in QUIET_CHANNELS:
                try:
                    refused = self.recheck(send, batch.run, now)
                except Exception as exc:  # nothing was sent: it comes back later
                    send.not_sent = f"the last check before sending could not be made ({type(exc).__name__})"
                    log.warning("campaign %s recipient %s: %s", batch.run.id, send.row.id, send.not_sent)
                    return
                if refused is not None:
                    send.refused = refused
                    return
            if getattr(send.adapter, "handoff_marked", False):
                # the provider cannot be asked afterwards: what was never handed over is known not to be sent
                try:
                    self.mark_handed(send, now)
                except Exception as exc:
                    send.not_sent = f"the hand-over to the provider could not be recorded ({type(exc).__name__})"
                    return
            send.result = send.adapter.send(with_metadata(send.message, clock=now.isoformat()))
        except ChannelError as exc:
            send.error = exc
        except Exception as exc:
            send.crashed = exc
            log.exception("campaign %s recipient %s: the %s adapter failed unexpectedly", batch.run.id,
                          send.row.id, send.step.channel)
