"""Rule make_tables: one paper table (results, baselines, speed, dead_units, replicates or
comparison) as CSV, Markdown, LaTeX and HTML."""
from equivox.logs import run_logged
from equivox.tables import build_table, write_table


def main(table, outputs, confidence, **records):
    numbers, shown = build_table(table, confidence=confidence, **records)
    write_table(numbers, shown, outputs.csv, outputs.md, outputs.tex, outputs.html)


if "snakemake" in globals():
    run_logged(main, snakemake.log[0], table=snakemake.wildcards.table, outputs=snakemake.output,
               confidence=snakemake.params.confidence, runs=snakemake.input.runs,
               tests=snakemake.input.tests, dead_units=snakemake.input.dead_units,
               baselines=snakemake.input.baselines, examples=snakemake.input.examples,
               groups=snakemake.params.groups, compare=snakemake.params.compare,
               bootstrap=snakemake.params.bootstrap)
