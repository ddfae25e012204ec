"""Logging for rule scripts: everything a script says, and any traceback, goes to its log.

equivox's own loggers log at INFO; third-party libraries only at WARNING (matplotlib's
PDF and SVG backends, for one, have fontTools log every font subset at INFO).
"""
from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(handlers: list[logging.Handler], level: int = logging.INFO) -> None:
    """Send every log record to ``handlers``: the ``equivox`` loggers' from ``level``,
    every other library's from WARNING (the root logger's level)."""
    logging.basicConfig(level=logging.WARNING, handlers=handlers, force=True, format=LOG_FORMAT)
    logging.getLogger("equivox").setLevel(level)


def setup_logging(log_path: str | Path | None, level: int = logging.INFO) -> logging.Logger:
    """Log to ``log_path`` (created; appended to, so a rerun keeps the earlier sessions'
    lines) and to stderr; returns the 'equivox' logger, which has logged a session header
    (UTC start, host, pid, command)."""
    import os
    import socket
    from datetime import datetime, timezone

    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="a"))
    configure_logging(handlers, level)
    log = logging.getLogger("equivox")
    log.info("=== session start %s on %s, pid %d: %s", datetime.now(timezone.utc).isoformat(timespec="seconds"),
             socket.gethostname(), os.getpid(), " ".join(sys.argv[:3]))
    return log


def run_logged(main, log_path, **kwargs):
    """Call ``main(**kwargs)`` with logging set up; a crash is logged before re-raising."""
    log = setup_logging(log_path)
    try:
        return main(**kwargs)
    except Exception:
        log.error("failed:\n%s", traceback.format_exc())
        raise
