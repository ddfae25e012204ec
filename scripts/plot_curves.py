"""Rule plot_curves: validation or training accuracy and loss of every run (a replicate group:
its mean and min-max band), against steps or compute."""
import json
from pathlib import Path

from equivox import figures
from equivox.logs import run_logged
from equivox.tables import read_run


def main(runs, baselines, svg, pdf, curve, x, facet, smoothing, groups=None):
    figures.save(figures.curves_figure([read_run(path) for path in runs], curve, x, facet, smoothing,
                                       json.loads(Path(baselines).read_text()), run_groups=groups), svg, pdf)


if "snakemake" in globals():
    run_logged(main, snakemake.log[0], runs=snakemake.input.runs, baselines=snakemake.input.baselines,
               svg=snakemake.output.svg, pdf=snakemake.output.pdf, curve=snakemake.wildcards.curve,
               x=snakemake.wildcards.x, facet=snakemake.params.facet, smoothing=snakemake.params.smoothing,
               groups=snakemake.params.groups)
