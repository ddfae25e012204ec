"""The report's run description page: what was run, on which data, with which config and code.

One HTML page (``results/report/run_description.html``, rule ``describe_run``):

* code: the git commit of the workflow source when the page was made (and whether the
  checkout had uncommitted changes), and the package versions;
* data: the PISCES source and filters, and the structures and origins of each split
  (``results/origins.summary.tsv``);
* models: per trained model its family, parameters, steps, compute, status, the code
  fingerprint its training ran and the commit recorded when it (last) started;
* config: the whole validated config, every default filled in, as YAML.
"""
from __future__ import annotations

import csv
from datetime import datetime, timezone
from html import escape
from pathlib import Path

import pandas as pd
import yaml

from .provenance import git_state, package_versions
from .tables import html_document, read_run

STYLE = "pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; } h1 { font-size: 1.4em; } h2 { font-size: 1.15em; }"


def _commit_text(git: dict) -> str:
    if not git or not git.get("commit"):
        return "not recorded (not run from a git checkout)"
    return git["commit"] + (" with uncommitted changes" if git.get("dirty") else "")


def models_table(run_paths) -> pd.DataFrame:
    """One row per run (final/run.json): model, family, parameters, steps, compute, status,
    device, code fingerprint, commit at its last (re)start."""
    rows = []
    for path in run_paths:
        run = read_run(path)
        summary = run.summary
        sessions = summary.get("environment") or [{}]
        rows.append({"model": run.arch, "family": run.spec["family"],
                     "parameters": f"{summary['parameters']:,}", "steps": summary["steps"],
                     "compute (min)": f"{summary['compute_s'] / 60:.3g}", "status": summary["status"],
                     "device": summary["device"], "code": summary["settings"]["code"],
                     "commit": _commit_text(sessions[-1].get("git"))})
    return pd.DataFrame(rows)


def _study_section(study: dict | None) -> list[str]:
    """The study's sets (bases x grids x replicates), when the runs are a study's."""
    if not study:
        return []
    items = "".join(
        f"<li>{escape(', '.join(entry['base']))}"
        + "".join(f" × <code>{escape(key)}</code> ∈ {escape(str(values))}" for key, values in entry["grid"].items())
        + "</li>" for entry in study["sets"])
    name = f" <code>{escape(study['name'])}</code>" if study.get("name") else ""
    return ["<h2>Study</h2>",
            f"<p>Study{name}: every setting below trained {study['replicates']} time(s), with seeds "
            "train.seed, train.seed + 1, …; runs are named base__key=value…__seed=N "
            "(a group is a name without its seed).</p>", f"<ul>{items}</ul>"]


def run_description(config: dict, repo, origins_summary, run_paths) -> str:
    """The page (HTML) for ``config`` (validated), the workflow source at ``repo``, the
    origin summary TSV and the runs' final/run.json paths."""
    with open(origins_summary) as handle:
        splits = pd.DataFrame(list(csv.DictReader(handle, delimiter="\t")))
    pisces = config["pisces"]
    data = (f"PISCES source <code>{escape(pisces['source'])}</code>; resolution at most "
            f"{pisces['max_resolution_A']} Å, R-free at most {pisces['max_r_free']}, chains of at least "
            f"{pisces['min_length']} residues, methods {escape(', '.join(pisces['methods']))}. "
            f"Views: {config['views']['n_val']} validation and {config['views']['n_test']} test pairs.")
    versions = ", ".join(f"{name} {version}" for name, version in package_versions().items())
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    body = "\n".join([
        "<h1>Run description</h1>",
        f"<p>Made {now}. Workflow source: <code>{escape(str(Path(repo).resolve()))}</code>, git commit "
        f"<code>{escape(_commit_text(git_state(repo)))}</code>.</p>",
        f"<p>Packages: {escape(versions)}.</p>",
        "<h2>Data</h2>", f"<p>{data}</p>",
        splits.to_html(index=False, border=0, justify="left"),
        *_study_section(config.get("study")),
        "<h2>Models</h2>",
        "<p>Code: the fingerprint of the training code a run ran (a code edit starts a new run); "
        "commit: the git commit recorded when the run (last) started.</p>",
        models_table(run_paths).to_html(index=False, border=0, justify="left"),
        "<h2>Config</h2>", "<p>As validated: every key, defaults filled in.</p>",
        f"<pre>{escape(yaml.safe_dump(config, sort_keys=False))}</pre>",
    ])
    return html_document("run description", body, STYLE)
