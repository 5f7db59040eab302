"""Logging set-up, once per process."""

from __future__ import annotations

import logging

from core.config import get_settings


def configure_logging(process: str) -> None:
    """One line per record: time, level, process name, logger, message."""
    logging.basicConfig(
        level=get_settings().log_level.upper(),
        format=f"%(asctime)s %(levelname)s {process} %(name)s: %(message)s",
    )
