"""Errors in a user's inputs that a rule reports in one line, without a traceback.

A :class:`ReportedError` message is the whole report: it names the file (and line or
key) and says what was expected. :func:`run_script` runs a rule script's ``main``
like :func:`equivox.logs.run_logged`, but turns a ReportedError into one ``ERROR``
line in the log and on stderr and exit status 1, so Snakemake shows the cause
rather than a Python traceback. Any other exception keeps its traceback (a bug).
"""
from __future__ import annotations

import logging

from .logs import run_logged


class ReportedError(ValueError):
    """An input problem whose message names file/line/key and what was expected."""


def run_script(main, log_path, **kwargs):
    """``run_logged(main, log_path, **kwargs)``; a ReportedError exits 1 with one line."""
    def guarded(**kw):
        try:
            return main(**kw)
        except ReportedError as err:
            logging.getLogger("equivox").error("%s", err)
            raise SystemExit(1) from None
    return run_logged(guarded, log_path, **kwargs)
