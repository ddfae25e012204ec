"""Rule equivariance_table: the measured equivariance of every model as CSV, Markdown, LaTeX and HTML."""
from equivox.logs import run_logged
from equivox.tables import build_equivariance_table, write_table


def main(summaries, outputs):
    numbers, shown = build_equivariance_table(summaries)
    write_table(numbers, shown, outputs.csv, outputs.md, outputs.tex, outputs.html)


if "snakemake" in globals():
    run_logged(main, snakemake.log[0], summaries=snakemake.input.summaries, outputs=snakemake.output)
