"""The summary the workflow prints when it ends (the Snakefile's ``onsuccess`` and
``onerror``), from the files in ``results/`` and Snakemake's own log:

- downloads: counts per status, and the command that retries the failed entries;
- the origin database's splits;
- every training run's status and progress (:func:`equivox.status.run_line`);
- each model's test accuracy with its interval, beside chance and the best
  structure-blind baseline;
- every job that failed, with its log;
- where the figures, tables and paper copies are, and the command that builds the report.

Torch-free: it runs in the Snakemake process.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from .download import fetch_summary
from .status import run_dirs, run_line
from .tables import best_baseline

REPORT_COMMAND = "snakemake --report report.html"


def origin_lines(results: Path) -> list[str]:
    path = results / "origins.summary.tsv"
    if not path.exists():
        return []
    with open(path) as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [f"equivox: origin database {(results / 'origins.sqlite').resolve()}",
            *(f"  {row['split']:>5}: {row['structures']:>6} structures {row['origins']:>9} origins"
              for row in rows)]


def run_lines(results: Path) -> list[str]:
    dirs = run_dirs(results)
    return ["equivox: training runs", *(f"  {run_line(path)}" for path in dirs)] if dirs else []


def test_lines(results: Path, models: list[str]) -> list[str]:
    """Each model's test accuracy [interval] beside chance and the best baseline."""
    analysis = results / "analysis"
    baselines_path = analysis / "baselines" / "test.json"
    baseline = best_baseline(json.loads(baselines_path.read_text()), "test") if baselines_path.exists() else None
    tests = {model: analysis / "test" / f"{model}.json" for model in models}
    if baseline is None and not any(path.exists() for path in tests.values()):
        return []
    lines = ["equivox: test accuracy"]
    chance = None
    for model, path in tests.items():
        if not path.exists():
            lines.append(f"  {model:<24}  not evaluated ({path} missing)")
            continue
        test = json.loads(path.read_text())
        chance = test["chance_accuracy"]
        level = f"{100 * test['confidence']:.0f}%"
        lines.append(f"  {model:<24}  {test['accuracy']:.3f} [{test['accuracy_ci_low']:.3f}, "
                     f"{test['accuracy_ci_high']:.3f}] ({level} interval, {test['n_examples']} pairs)")
    if chance is not None:
        lines.append(f"  {'chance':<24}  {chance:.3f}")
    if baseline is not None:
        lines.append(f"  {'best baseline':<24}  {baseline[1]:.3f} ({baseline[0]}, chosen on val)")
    else:
        lines.append(f"  {'best baseline':<24}  not computed ({baselines_path} missing)")
    return lines


FAILED_JOB = re.compile(r"^Error in rule (\S+):\n((?:[ \t]+.*\n?)*)", re.M)


def failed_jobs(snakemake_logs: list[str | Path]) -> list[str]:
    """``rule <name>: <output> (log: <log>)`` for every ``Error in rule`` block of
    Snakemake's log files."""
    failures = []
    for path in snakemake_logs:
        path = Path(path)
        if not path.exists():
            continue
        for rule, body in FAILED_JOB.findall(path.read_text()):
            fields = dict(re.findall(r"^\s+(\w+): (.*)$", body, re.M))
            output = fields.get("output", "")
            log = fields.get("log", "").replace(" (check log file(s) for error details)", "")
            failures.append(f"rule {rule}: {output or '(no output)'}" + (f" (log: {log})" if log else ""))
    return failures


def output_lines(results: Path) -> list[str]:
    places = [("figures (SVG, PDF)", results / "figures"), ("tables (CSV, Markdown, LaTeX, HTML)", results / "tables"),
              ("paper copies", results / "paper")]
    lines = ["equivox: outputs"]
    for what, path in places:
        state = "" if path.is_dir() else " (not made yet)"
        lines.append(f"  {what + ':':<38} {path}/{state}")
    lines.append(f"  {'report (all figures and tables):':<38} {REPORT_COMMAND}")
    return lines


def workflow_summary(results: str | Path, models: list[str], snakemake_logs: list[str | Path] = (),
                     failed: bool = False) -> str:
    """The end-of-run summary: the sections of this module's docstring, those that have
    anything to say. ``models``: the configured architectures; ``snakemake_logs``: the
    ``log`` of ``onerror`` (its failed jobs are listed); ``failed``: the run failed."""
    results = Path(results)
    sections = [fetch_summary(results / "structures" / "manifests"), origin_lines(results),
                run_lines(results), test_lines(results, models)]
    if failed:
        failures = failed_jobs(snakemake_logs)
        sections.append(["equivox: failed jobs", *(f"  {line}" for line in failures)] if failures else
                        ["equivox: the run failed; Snakemake's messages above say where"])
    sections.append(output_lines(results))
    return "\n\n".join("\n".join(lines) for lines in sections if lines)
