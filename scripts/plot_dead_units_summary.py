"""Rule plot_dead_units_summary: share of dead and dormant units per layer, all models."""
import pandas as pd

from equivox import figures
from equivox.logs import run_logged


def main(tables, svg, pdf, families, tau):
    by_model = {model: pd.read_csv(path, sep="\t") for model, path in zip(families, tables)}
    figures.save(figures.dead_units_summary_figure(by_model, families, tau), svg, pdf)


if "snakemake" in globals():
    run_logged(main, snakemake.log[0], tables=snakemake.input.tables, svg=snakemake.output.svg,
               pdf=snakemake.output.pdf, families=snakemake.params.families, tau=snakemake.params.tau)
