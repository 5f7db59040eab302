"""Scheduler daemon: ``python scheduler.py``.  Ticks every
``SCHEDULER_TICK_SECONDS`` and lets ``core`` do the work."""

from __future__ import annotations

import logging

from apscheduler.schedulers.blocking import BlockingScheduler

from core.config import get_settings
from core.db import session_factory
from core.logs import configure_logging
from core.scheduling import start_due_campaigns

log = logging.getLogger("scheduler")


def main() -> None:
    configure_logging("scheduler")
    settings = get_settings()
    factory = session_factory()
    scheduler = BlockingScheduler()
    scheduler.add_job(lambda: start_due_campaigns(factory), "interval", seconds=settings.scheduler_tick_seconds,
                      id="tick", coalesce=True, max_instances=1)
    log.info("scheduler started, ticking every %ss", settings.scheduler_tick_seconds)
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        log.info("scheduler stopped")


if __name__ == "__main__":
    main()
