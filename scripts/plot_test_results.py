"""Rule plot_test_results: test accuracy and loss of every model with their intervals, beside
chance and the best structure-blind baseline."""
import json
from pathlib import Path

from equivox import figures
from equivox.logs import run_logged


def main(tests, baselines, svg, pdf, families):
    records = [json.loads(Path(path).read_text()) for path in tests]
    figures.save(figures.test_results_figure(records, families, list(families),
                                             json.loads(Path(baselines).read_text())), svg, pdf)


if "snakemake" in globals():
    run_logged(main, snakemake.log[0], tests=snakemake.input.tests, baselines=snakemake.input.baselines,
               svg=snakemake.output.svg, pdf=snakemake.output.pdf, families=snakemake.params.families)
