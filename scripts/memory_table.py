"""Rule memory_table: every model's memory trend and largest batch as CSV, Markdown, LaTeX and HTML."""
from equivox.logs import run_logged
from equivox.memory_probe import build_memory_table
from equivox.tables import write_table


def main(summaries, outputs):
    numbers, shown = build_memory_table(summaries)
    write_table(numbers, shown, outputs.csv, outputs.md, outputs.tex, outputs.html)


if "snakemake" in globals():
    run_logged(main, snakemake.log[0], summaries=snakemake.input.summaries, outputs=snakemake.output)
