"""Rule train_model: write the run's settings, then train in a supervised child process."""
import logging
import os
import sys
from pathlib import Path

import yaml

from equivox.logs import setup_logging
from equivox.train import EXIT_INTERRUPTED, OPERATIONAL_SETTINGS, read_status, supervise


def main(run_dir, settings, threads, log_path):
    log = setup_logging(log_path)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "settings.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    # the child's output goes to this rule's log
    with open(log_path, "a") as handle:
        os.dup2(handle.fileno(), sys.stdout.fileno())
        os.dup2(handle.fileno(), sys.stderr.fileno())
    code = supervise(run_dir, path)
    status = read_status(run_dir)
    if code != 0:
        what = "interrupted; rerun to continue" if code == EXIT_INTERRUPTED else status.get("status")
        log.error("training %s ended: %s (%s)", run_dir.name, what, status.get("message", ""))
        raise SystemExit(f"train_model {run_dir.name}: {status.get('status')}: {status.get('message', '')}")
    logging.getLogger("equivox").info("training %s complete", run_dir.name)


if "snakemake" in globals():
    # loader workers and kept checkpoints change no result, so they are not params (a
    # changed param retrains the model): they come from the config of this run
    operational = {key: snakemake.config["train"][key] for key in OPERATIONAL_SETTINGS}
    main(snakemake.params.run_dir, {**snakemake.params.settings, **operational}, snakemake.threads,
         snakemake.log[0])
