"""One scheduler process of the state-cap race (``tests/channels/test_state_caps.py``): it waits for the
start signal, then dispatches one campaign at a fixed moment (the scheduler's own dispatch pass), live
against the fake Vapi, and exits.

``python -m tests.channels.cap_racer DATABASE_URL VAPI_URL START_FILE MOMENT WORKER PROFILE_ID CAMPAIGN_ID``
"""

from __future__ import annotations

import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import sessionmaker

from core.clock import ManualClock
from core.db import make_engine
from core.dispatch import run_campaign_pass
from tests.channels.helpers import live_settings


class _At:
    """What :func:`live_settings` needs of a fake: its address."""

    def __init__(self, url: str) -> None:
        self.url = url


def main(db_url: str, vapi_url: str, start_file: str, moment: str, worker: str, profile_id: str,
         campaign_id: str) -> None:
    engine = make_engine(db_url)
    factory = sessionmaker(engine, expire_on_commit=False)
    settings = live_settings(vapi=_At(vapi_url), database_url=db_url,  # type: ignore[arg-type]
                             scheduler_batch_size=4, vapi_max_concurrent_calls=1000)
    signal = Path(start_file)
    while not signal.exists():
        time.sleep(0.001)
    run_campaign_pass(factory, profile_id=uuid.UUID(profile_id), campaign_id=uuid.UUID(campaign_id),
                      clock=ManualClock(datetime.fromisoformat(moment)), worker=worker, settings=settings,
                      budget_seconds=30.0)
    engine.dispose()
    print(f"{worker} done", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:8])
