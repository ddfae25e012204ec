"""The supervisor of a training run: the trainer runs as a child process, so that every
way it can end leaves a status in ``status.json``.

- The trainer records its own ending (``complete``, ``interrupted``, ``error``, ...)
  and exits with the code of that status (:data:`equivox.run_record.EXIT_CODES`).
- When it could not (killed by a signal; a full disk failed the status write too), the
  supervisor removes the temporary files it left and records the status the exit code
  names: ``killed`` for a signal, the coded status otherwise, ``crashed`` for an exit
  code nobody assigned.
- SIGTERM, SIGUSR1 and SIGINT are forwarded to the trainer, which checkpoints and
  exits with 75 (``interrupted``).

No torch here: the supervisor is the rule's script process and starts in milliseconds.
"""
from __future__ import annotations

import logging
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .atomic import remove_stray_tmp
from .run_record import EXIT_CODES, newest_checkpoint_step, read_status, set_status
from .status import ProgressFollower

if TYPE_CHECKING:  # the trainer runs as a child process (python -m equivox.train_process);
    from . import train_process  # noqa: F401  this import puts its code in the rule's code fingerprint

log = logging.getLogger("equivox.train")

STATUS_OF_CODE = {code: status for status, code in EXIT_CODES.items()}


def record_ending(run_dir: Path, code: int) -> dict:
    """Make ``status.json`` say how the trainer ended when the trainer could not."""
    run_dir = Path(run_dir)
    for path in remove_stray_tmp(run_dir):  # a full disk needs the space back first
        log.warning("removed %s, left by the trainer", path)
    status = read_status(run_dir)
    if code == 0 or status.get("status") not in ("running", "not started", "unreadable"):
        return status
    if code < 0:
        name = signal.Signals(-code).name
        hint = " (host out-of-memory killer, scancel, or node failure)" if name == "SIGKILL" else ""
        new, message = "killed", f"training process killed by {name}{hint}"
    else:
        new = STATUS_OF_CODE.get(code, "crashed")
        message = (f"trainer exited with code {code} without recording its status (its status "
                   f"write failed); recorded by the supervisor; the rule log has the traceback")
    try:
        set_status(run_dir, new, message, step=status.get("step", 0), recorded_by="supervisor")
    except OSError as err:
        log.error("could not record status %s in %s/status.json either: %s", new, run_dir, err)
    return read_status(run_dir)


def supervise(run_dir: str | Path, settings_path: str | Path, progress: TextIO | None = None,
              poll_s: float = 2.0) -> int:
    """Run training in a child process; record a status even if it is killed.

    Forwards SIGTERM/SIGUSR1/SIGINT to the child. ``progress``: a stream (the Snakemake
    console) that gets one line per logging window (:class:`equivox.status.ProgressFollower`,
    checked every ``poll_s`` seconds). Returns the child's exit code (negative: the
    signal that killed it).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    # so that a trainer dying before it writes anything is not reported by a stale status
    set_status(run_dir, "running", "trainer starting", step=newest_checkpoint_step(run_dir) or 0)
    child = subprocess.Popen([sys.executable, "-m", "equivox.train_process", "--run-dir", str(run_dir),
                              "--settings", str(settings_path), "--progress", "log"])
    previous = {sig: signal.signal(sig, lambda signum, frame: child.send_signal(signum))
                for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)}
    follower = ProgressFollower(run_dir, progress) if progress is not None else None
    try:
        while True:
            try:
                code = child.wait(timeout=poll_s if follower else None)
                break
            except subprocess.TimeoutExpired:
                follower.poll()
        if follower:
            follower.poll()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    record_ending(run_dir, code)
    return code
