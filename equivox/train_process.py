"""The trainer process (``python -m equivox.train_process``): :func:`equivox.train.train`
with every ending recorded.

Each way a run can end gets a status in ``status.json`` (:func:`classify_failure`) and
an exit code (:data:`equivox.run_record.EXIT_CODES`), so that the supervisor
(:mod:`equivox.supervise`, the rule's process) can record the status when the trainer
could not. The process ends at once (:func:`_exit_now`): no loader worker can keep a
failed job alive.
"""
from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import signal
import sys
import traceback
from pathlib import Path

import torch

from .logs import configure_logging
from .run_record import EXIT_CODES, TrainSettings, read_settings, set_status
from .train import train

log = logging.getLogger("equivox.train")

WORKER_DEATH = re.compile(r"DataLoader worker \(pids?(?:\(s\))? ([\d, ]+)\) (exited unexpectedly|is killed by signal: ?([^.]*))")


def classify_failure(exc: BaseException, state: dict | None = None) -> tuple[str, str]:
    """(status, message) for an exception that ended a run; the message names the
    loader worker (index and pid) when one died."""
    text = f"{type(exc).__name__}: {str(exc)[:2000]}"
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return "cuda_oom", text
    death = WORKER_DEATH.search(str(exc))
    if death:
        pids = [int(p) for p in re.findall(r"\d+", death.group(1))]
        known = (state or {}).get("worker_pids", [])
        who = ", ".join(f"worker {known.index(p)} of {len(known)} (pid {p})" if p in known else f"pid {p}"
                        for p in pids)
        how = f"killed by signal {death.group(3).strip()}" if death.group(3) else "exited unexpectedly"
        hint = " (host out-of-memory killer?)" if "Killed" in (death.group(3) or "") else ""
        return "worker_died", f"DataLoader {who} {how}{hint}: {text}"
    dead = dead_workers(state)
    if dead:
        # the worker died while handing a batch over: the trainer sees a broken
        # connection (ConnectionResetError, EOFError) before torch's own report
        known = (state or {}).get("worker_pids", [])
        who = ", ".join(f"worker {index} of {len(known)} (pid {pid})" for index, pid in dead)
        return "worker_died", f"DataLoader {who} ended unexpectedly (host out-of-memory killer?): {text}"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk_full", text
    if isinstance(exc, MemoryError) or "DefaultCPUAllocator" in text or "not enough memory" in text:
        return "oom", text
    return "error", text


def dead_workers(state: dict | None) -> list[tuple[int, int]]:
    """(index, pid) of the loader workers in ``state["worker_pids"]`` that have ended."""
    import psutil

    dead = []
    for index, pid in enumerate((state or {}).get("worker_pids", [])):
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            pass
        dead.append((index, pid))
    return dead


def _quiet_worker_signals() -> None:
    """torch's SIGCHLD handler raises in the main thread whenever a loader worker ends;
    once the run is failing, that would interrupt the recording of how it ended."""
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    except (ValueError, OSError):  # not the main thread
        pass


def run_training(run_dir: Path, settings: TrainSettings, progress: bool | None = None) -> dict:
    """train() with the outcome written to status.json before any exception propagates.

    The exception gets an attribute ``equivox_status``. When the status itself cannot
    be written (a full disk), that is logged and the trainer's exit code
    (:data:`EXIT_CODES`) tells the supervisor, which records it.
    """
    state: dict = {}
    try:
        return train(run_dir, settings, progress=progress, state=state)
    except SystemExit:
        raise
    except BaseException as exc:
        _quiet_worker_signals()
        status, message = classify_failure(exc, state)
        exc.equivox_status = status
        log.error("%s: %s at step %s: %s\n%s", settings.arch, status, state.get("step", 0), message,
                  traceback.format_exc())
        try:
            set_status(run_dir, status, message, step=state.get("step", 0))
        except BaseException as err:
            log.error("could not write %s/status.json (%s: %s); the supervisor records the status",
                      run_dir, type(err).__name__, err)
        raise


def _exit_now(code: int) -> None:
    """End the trainer at once: loader workers (which ignore SIGTERM) are killed rather
    than joined, so no failure can leave the job hanging at interpreter exit."""
    import psutil
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        for child in psutil.Process().children(recursive=True):
            try:
                child.kill()
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    os._exit(code)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m equivox.train_process", description=__doc__.split("\n\n")[0],
        epilog="The settings file is written by the train_model rule (results/runs/<arch>/settings.yaml).")
    parser.add_argument("--run-dir", required=True, help="the run directory (created or resumed)")
    parser.add_argument("--settings", required=True, help="YAML file with TrainSettings fields")
    parser.add_argument("--progress", choices=["auto", "bar", "log"], default="auto",
                        help="progress bar, log lines, or bar only when attached to a terminal")
    args = parser.parse_args(argv)
    configure_logging([logging.StreamHandler(sys.stderr)])
    progress = {"auto": None, "bar": True, "log": False}[args.progress]
    code = 0
    try:
        run_training(Path(args.run_dir), read_settings(args.settings), progress=progress)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:
        code = EXIT_CODES.get(getattr(exc, "equivox_status", "error"), 1)
        if not hasattr(exc, "equivox_status"):  # failed before training began (settings file)
            log.error("failed before training:\n%s", traceback.format_exc())
    _exit_now(code)


if __name__ == "__main__":
    main()
