"""Logging set-up, once per process — and what a log line may not carry.

SQLAlchemy's engine is made with ``hide_parameters`` (:func:`core.db.make_engine`): a failed
statement is logged without the values bound to it.  PostgreSQL adds its own ``DETAIL:`` line to
an error, which quotes the values that broke a constraint (``Key (contact)=(ann@example.com)
already exists``); :class:`Redact` keeps the column names of such a line and drops the values, in
every record of the process's handlers (ours, uvicorn's, Streamlit's).
"""

from __future__ import annotations

import logging
import re

from core.config import get_settings

# loggers that bring their own handlers (not the root's)
_OWN_HANDLERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "streamlit")
_DETAIL = re.compile(r"^(DETAIL:\s+)(.*)$", re.MULTILINE)
_KEY = re.compile(r"Key \(([^)]*)\)")


def redact(text: str) -> str:
    """``text`` with the values of PostgreSQL's ``DETAIL:`` lines hidden (the column names stay)."""

    def line(match: re.Match[str]) -> str:
        key = _KEY.match(match.group(2))
        hidden = f"Key ({key.group(1)})=(…) [values hidden]" if key else "[hidden: it may hold customer data]"
        return match.group(1) + hidden

    return _DETAIL.sub(line, text) if "DETAIL:" in text else text


class Redact(logging.Filter):
    """Hides the values a database error quotes, in the message and in the traceback of a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install_redaction() -> None:
    """Put :class:`Redact` on every handler of the root logger and of the loggers with their own."""
    for logger in (logging.getLogger(), *map(logging.getLogger, _OWN_HANDLERS)):
        for handler in logger.handlers:
            if not any(isinstance(f, Redact) for f in handler.filters):
                handler.addFilter(Redact())


def configure_logging(process: str) -> None:
    """One line per record: time, level, process name, logger, message (values of database errors hidden)."""
    logging.basicConfig(
        level=get_settings().log_level.upper(),
        format=f"%(asctime)s %(levelname)s {process} %(name)s: %(message)s",
    )
    # httpx logs every request line at INFO, the URL's query (a customer's number) included
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    install_redaction()
