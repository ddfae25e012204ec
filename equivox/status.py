"""Where every training run stands, one line each, from its run directory alone.

    python -m equivox.status [results]

prints, for every ``results/runs/<arch>/``, its status, step of the step budget, the
last logging window's training loss and accuracy, the last validation accuracy, an
estimate of the time left while it runs, and the status message. It reads the files
the trainer writes (``status.json``, ``settings.yaml``, ``metrics.csv``;
docs/training.md), so it works while the workflow runs, on the login node of a cluster
too, e.g. ``watch -n 60 python -m equivox.status``.

The same line is what a training job prints on the Snakemake console after each
logging window (:class:`ProgressFollower`, run by :func:`equivox.supervise.supervise`).
Torch-free.
"""
from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path
from typing import TextIO

import yaml

from .run_record import METRIC_COLUMNS, read_metrics, read_status

log = logging.getLogger("equivox.train")


def _duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def read_budget(run_dir: Path) -> dict:
    """``max_steps`` and ``max_compute_h`` of the run's ``settings.yaml`` (None when
    absent or unset)."""
    path = Path(run_dir) / "settings.yaml"
    settings = yaml.safe_load(path.read_text()) if path.exists() else {}
    return {key: (settings or {}).get(key) for key in ("max_steps", "max_compute_h")}


def time_left(step: int, compute_s: float, budget: dict, model_s: float | None = None) -> float | None:
    """Compute seconds left to the end of the budget at the run's mean pace so far (the
    sooner of the step and the compute budget); None before the first step. The compute
    budget counts model time (``model_s``: compute less data waits; docs/training.md),
    so what is left of it is stretched by the run's compute per model second."""
    if step <= 0 or compute_s <= 0:
        return None
    left = []
    if budget.get("max_steps"):
        left.append(max(budget["max_steps"] - step, 0) * compute_s / step)
    if budget.get("max_compute_h"):
        model_s = compute_s if not model_s or model_s <= 0 else model_s
        left.append(max(budget["max_compute_h"] * 3600 - model_s, 0) * compute_s / model_s)
    return min(left) if left else None


def progress_text(rows: list[dict], budget: dict, eta: bool = True) -> str:
    """``step 120/600 (20%), loss 1.523, acc 0.412, val acc 0.380 at step 100, ~6 min
    left`` from a run's metrics rows; empty before the first row."""
    train = [row for row in rows if row["kind"] == "train"]
    val = [row for row in rows if row["kind"] == "val" and row["val_accuracy"]]
    if not rows:
        return ""
    last = rows[-1]
    step = int(last["step"])
    parts = [f"step {step}"]
    if budget.get("max_steps"):
        parts[0] += f"/{budget['max_steps']} ({100 * step / budget['max_steps']:.0f}%)"
    if train:
        parts.append(f"loss {float(train[-1]['train_loss']):.3f}, acc {float(train[-1]['train_accuracy']):.3f}")
    if val:
        parts.append(f"val acc {float(val[-1]['val_accuracy']):.3f} at step {val[-1]['step']}")
    left = time_left(step, float(last["compute_s"] or 0), budget,
                     float(last.get("model_s") or 0)) if eta else None
    if left is not None:
        parts.append(f"~{_duration(left)} left")
    return ", ".join(parts)


def run_line(run_dir: Path) -> str:
    """One line on a run: name, status, progress (time left only while it runs), message."""
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    try:
        rows = read_metrics(run_dir / "metrics.csv")
    except ValueError as err:  # a metrics file this version cannot read
        rows, status = [], {**status, "message": f"{status.get('message', '')} ({err})".strip()}
    progress = progress_text(rows, read_budget(run_dir), eta=status["status"] == "running")
    message = status.get("message", "")
    return "  ".join(part for part in (f"{run_dir.name:<24}", f"{status['status']:<11}", progress,
                                       message[:100]) if part).rstrip()


def run_dirs(results: Path) -> list[Path]:
    """The run directories under ``results/runs/``, by name."""
    return sorted(path.parent for path in Path(results, "runs").glob("*/status.json"))


class ProgressFollower:
    """Prints a run's progress line to ``stream`` after each new logging window of its
    ``metrics.csv``: call :meth:`poll` now and then while the trainer runs. Each poll
    reads only the lines appended since the last one (a long run's file is never read
    whole again), and keeps only the rows a progress line needs."""

    def __init__(self, run_dir: Path, stream: TextIO):
        self.run_dir, self.stream = Path(run_dir), stream
        self.budget = read_budget(run_dir)
        self.offset = 0          # bytes of metrics.csv read, up to a line end
        self.context = []        # the last validation with an accuracy, and the last row
        self.inode = None

    def _new_rows(self) -> list[dict]:
        path = self.run_dir / "metrics.csv"
        try:
            stat = path.stat()
            size = stat.st_size
            if size < self.offset or stat.st_ino != self.inode:
                # another file: a fresh lineage, or a rewrite that repaired a torn row
                self.offset, self.context, self.inode = 0, [], stat.st_ino
            if size == self.offset:
                return []
            with open(path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read(size - self.offset)
        except OSError as err:  # progress must never stop a training job
            log.debug("progress: %s", err)
            return []
        complete = data[:data.rfind(b"\n") + 1]  # a row still being written waits
        lines = complete.decode(errors="replace").splitlines()
        if self.offset == 0 and lines:
            if lines[0].split(",") != list(METRIC_COLUMNS):
                log.debug("progress: %s has no metrics header", path)
                return []
            lines = lines[1:]
        self.offset += len(complete)
        return [dict(zip(METRIC_COLUMNS, values)) for values in csv.reader(lines)
                if len(values) == len(METRIC_COLUMNS)]

    def poll(self) -> None:
        rows = self._new_rows()
        windows = [index for index, row in enumerate(rows) if row["kind"] == "train"]
        if self.context == [] and windows:  # the first look: the newest window only
            windows = windows[-1:]
        ends = dict(zip(windows, [*windows[1:], len(rows)]))
        for index in windows:  # each window with the validation that followed it, if any yet
            text = progress_text(self.context + rows[:ends[index]], self.budget)
            print(f"equivox train {self.run_dir.name}: {text}", file=self.stream, flush=True)
        if rows:
            seen = self.context + rows
            val = [row for row in seen if row["kind"] == "val" and row["val_accuracy"]]
            self.context = val[-1:] + seen[-1:]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m equivox.status", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="?", default="results",
                        help="the workflow's results directory (default: results)")
    args = parser.parse_args(argv)
    dirs = run_dirs(Path(args.results))
    if not dirs:
        print(f"no training runs under {Path(args.results, 'runs')}")
    for run_dir in dirs:
        print(run_line(run_dir))


if __name__ == "__main__":
    main()
