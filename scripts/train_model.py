"""Rule train_model: write the run's settings, then train in a supervised child process.

The rule log is append-only: every session (first start, resubmission, requeue) adds a
header line and its own lines after those of the sessions before it.
"""
import logging
import os
import sys
from pathlib import Path

from equivox.logs import configure_logging
from equivox.run_record import EXIT_INTERRUPTED, OPERATIONAL_SETTINGS, read_status, session_header, write_settings
from equivox.supervise import supervise


def main(run_dir, settings, threads, log_path):
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    # the Snakemake console keeps one progress line per logging window (equivox.status)
    console = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
    # O_APPEND, shared with the trainer through stdout/stderr: no process overwrites
    # another's lines, and a new session never truncates the previous one
    with open(log_path, "a") as handle:
        handle.write(session_header(run_dir) + "\n")
        handle.flush()
        os.dup2(handle.fileno(), sys.stdout.fileno())
        os.dup2(handle.fileno(), sys.stderr.fileno())
    configure_logging([logging.StreamHandler(sys.stderr)])
    log = logging.getLogger("equivox")
    path = run_dir / "settings.yaml"
    write_settings(path, settings)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    code = supervise(run_dir, path, progress=console)
    status = read_status(run_dir)
    if code == 0:
        log.info("training %s complete", run_dir.name)
        return 0
    what = "interrupted; rerun to continue" if code == EXIT_INTERRUPTED else status.get("status")
    log.error("training %s ended: %s (%s)", run_dir.name, what, status.get("message", ""))
    # 75 stays 75 (EX_TEMPFAIL, a resubmission continues); a signal becomes 128 + its number
    return code if code > 0 else 128 - code


if "snakemake" in globals():
    # loader workers, kept checkpoints and TensorBoard files change no result, so they are
    # not params (a changed param retrains the model): they come from the config of this run
    operational = {key: snakemake.config["train"][key] for key in OPERATIONAL_SETTINGS}
    sys.exit(main(snakemake.params.run_dir, {**snakemake.params.settings, **operational},
                  snakemake.threads, snakemake.log[0]))
