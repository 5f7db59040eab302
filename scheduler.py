"""Scheduler daemon: ``python scheduler.py``.

Runs :func:`core.scheduling.tick` every ``SCHEDULER_TICK_SECONDS`` (APScheduler,
never two at once), and in a job of its own, on the same interval,
:func:`core.webhook_delivery.deliver_due`: events out to the businesses' endpoints,
so a receiver that is slow or never answers never holds up sending.  Any number of
these processes may run against one PostgreSQL database.  SIGTERM / SIGINT stop it
cleanly: sends already under way finish and are recorded, everything else this
process had claimed is released for the others.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from datetime import datetime
from types import FrameType

from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler

from core.channels import channel_modes
from core.claims import release_worker
from core.config import ConfigurationError, get_settings
from core.customers_sync import refresh_scores
from core.db import session_factory, utcnow
from core.dispatch import Dispatcher, default_worker
from core.logs import configure_logging
from core.scheduling import settle_tick, tick
from core.webhook_delivery import deliver_due, release_deliveries

log = logging.getLogger("scheduler")


class _SkipNotice(logging.Filter):
    """A tick that is still running when the next one is due is expected: no warning for it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


def main() -> None:
    configure_logging("scheduler")
    try:
        get_settings().require_secret_key()
    except ConfigurationError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None
    # APScheduler would log every tick; our own lines say what each tick did
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLogger().level))
    logging.getLogger("apscheduler.scheduler").addFilter(_SkipNotice())
    settings = get_settings()
    factory = session_factory()
    worker = default_worker()
    stop = threading.Event()
    # a tick keeps sending while there is work, up to this long, then lets events and other ticks in
    budget = max(10.0, 2 * settings.scheduler_tick_seconds)

    scheduler = BlockingScheduler(timezone="UTC")

    def stop_scheduler() -> None:
        # the signal handler and a tick starting as the signal comes may both get here: a second
        # shutdown would raise in the main thread and skip the release below
        with contextlib.suppress(SchedulerNotRunningError):
            scheduler.shutdown(wait=False)

    def run_tick() -> None:
        if stop.is_set():  # a signal that came before the scheduler was running
            stop_scheduler()
            return
        try:
            tick(factory, worker=worker, settings=settings, stop=stop, budget=budget, settle=False)
        except Exception:
            log.exception("tick failed; the next tick tries again")

    scheduler.add_job(run_tick, "interval", seconds=settings.scheduler_tick_seconds, id="tick", coalesce=True,
                      max_instances=1, next_run_time=datetime.now().astimezone(), misfire_grace_time=None)

    def run_settle() -> None:
        # settling asks providers about tries whose outcome was never recorded: in its own job, so a
        # provider that is slow to answer never holds up sending
        if stop.is_set():
            return
        try:
            settled, closed = settle_tick(Dispatcher(factory, worker=worker, settings=settings, stop=stop))
            if settled or closed:
                log.info("settle: %d tries settled, %d calls closed", settled, closed)
        except Exception:
            log.exception("settling failed; the next run tries again")

    scheduler.add_job(run_settle, "interval", seconds=settings.scheduler_tick_seconds, id="settle", coalesce=True,
                      max_instances=1, next_run_time=datetime.now().astimezone(), misfire_grace_time=None)

    def run_scores() -> None:
        # a customer's re-engagement score depends on how long ago they were in touch: it changes with time alone
        if stop.is_set():
            return
        try:
            with factory() as session, session.begin():
                refreshed = refresh_scores(session, now=utcnow())
            log.info("scores: %d customers' re-engagement scores refreshed", refreshed)
        except Exception:
            log.exception("refreshing the scores failed; the next run tries again")

    scheduler.add_job(run_scores, "interval", hours=24, id="scores", coalesce=True, max_instances=1,
                      next_run_time=datetime.now().astimezone(), misfire_grace_time=None)

    def run_deliveries() -> None:
        if stop.is_set():
            return
        try:
            deliver_due(factory, worker=worker, settings=settings, stop=stop, budget=budget)
        except Exception:
            log.exception("event delivery failed; the next run tries again")

    scheduler.add_job(run_deliveries, "interval", seconds=settings.scheduler_tick_seconds, id="deliveries",
                      coalesce=True, max_instances=1, next_run_time=datetime.now().astimezone(),
                      misfire_grace_time=None)

    def shutdown(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: finishing sends under way, releasing the rest", signal.Signals(signum).name)
        stop.set()
        stop_scheduler()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    modes = ", ".join(f"{ch} {mode}" for ch, mode in channel_modes(settings).items())
    log.info("scheduler %s started: tick every %ss, channels: %s", worker, settings.scheduler_tick_seconds, modes)
    scheduler.start()
    # the job thread may still be finishing its sends: wait for it, then hand back what is left
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    with factory() as session, session.begin():
        released = release_worker(session, worker=worker, now=utcnow())
        released += release_deliveries(session, worker=worker)
    log.info("scheduler %s stopped (%d claims released)", worker, released)


if __name__ == "__main__":
    main()
