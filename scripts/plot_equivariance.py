"""Rule plot_equivariance: feature error against rotation angle, every model."""
import json
from pathlib import Path

from equivox import figures
from equivox.logs import run_logged


def main(summaries, svg, pdf, families):
    records = [json.loads(Path(path).read_text()) for path in summaries]
    figures.save(figures.equivariance_figure(records, families, list(families)), svg, pdf)


if "snakemake" in globals():
    run_logged(main, snakemake.log[0], summaries=snakemake.input.summaries, svg=snakemake.output.svg,
               pdf=snakemake.output.pdf, families=snakemake.params.families)
