"""Rule describe_run: the report's run description page (what was run, on which data,
with which config and commit)."""
from pathlib import Path

from equivox.logs import run_logged
from equivox.run_description import run_description


def main(config, repo, summary, runs, html):
    Path(html).parent.mkdir(parents=True, exist_ok=True)
    Path(html).write_text(run_description(config, repo, summary, runs))


if "snakemake" in globals():
    run_logged(main, snakemake.log[0], config=snakemake.params.config, repo=snakemake.params.repo,
               summary=snakemake.input.summary, runs=snakemake.input.runs, html=snakemake.output.html)
