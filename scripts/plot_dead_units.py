"""Rule plot_dead_units: one model's dead and dormant units, and fraction-active histograms, per layer."""
import pandas as pd

from equivox import figures
from equivox.logs import run_logged


def main(table, svg, pdf, model, tau):
    figures.save(figures.dead_units_figure(pd.read_csv(table, sep="\t"), model, tau), svg, pdf)


if "snakemake" in globals():
    run_logged(main, snakemake.log[0], table=snakemake.input.table, svg=snakemake.output.svg,
               pdf=snakemake.output.pdf, model=snakemake.wildcards.arch, tau=snakemake.params.tau)
