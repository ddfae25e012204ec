"""Logging for rule scripts: everything a script says, and any traceback, goes to its log."""
from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path


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
    logging.basicConfig(level=level, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
