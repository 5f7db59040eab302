"""Scheduler daemon: ``python scheduler.py``.

Runs :func:`core.scheduling.tick` every ``SCHEDULER_TICK_SECONDS`` (APScheduler,
one job, never two at once).  Any number of these processes may run against
one PostgreSQL database.  SIGTERM / SIGINT stop it cleanly: sends already under
way finish and are recorded, everything else this process had claimed is
released for the others.
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
from core.db import session_factory, utcnow
from core.dispatch import default_worker
from core.logs import configure_logging
from core.scheduling import tick

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
            tick(factory, worker=worker, settings=settings, stop=stop, budget=budget)
        except Exception:
            log.exception("tick failed; the next tick tries again")

    scheduler.add_job(run_tick, "interval", seconds=settings.scheduler_tick_seconds, id="tick", coalesce=True,
                      max_instances=1, next_run_time=datetime.now().astimezone(), misfire_grace_time=None)

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
    log.info("scheduler %s stopped (%d claims released)", worker, released)


if __name__ == "__main__":
    main()
