"""Rule paper_figures: copy the paper's figures and tables into results/paper/."""
import logging
import shutil

from equivox.logs import run_logged


def main(sources, destinations):
    for source, destination in zip(sources, destinations, strict=True):
        shutil.copyfile(source, destination)
    logging.getLogger("equivox").info("copied %d files into results/paper/", len(sources))


if "snakemake" in globals():
    run_logged(main, snakemake.log[0], sources=list(snakemake.input), destinations=list(snakemake.output))
