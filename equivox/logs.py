"""Logging for rule scripts: everything a script says, and any traceback, goes to its log."""
from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path


def setup_logging(log_path: str | Path | None, level: int = logging.INFO) -> logging.Logger:
    """Log to ``log_path`` (created) and to stderr; returns the 'equivox' logger."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=level, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return logging.getLogger("equivox")


def run_logged(main, log_path, **kwargs):
    """Call ``main(**kwargs)`` with logging set up; a crash is logged before re-raising."""
    log = setup_logging(log_path)
    try:
        return main(**kwargs)
    except Exception:
        log.error("failed:\n%s", traceback.format_exc())
        raise
