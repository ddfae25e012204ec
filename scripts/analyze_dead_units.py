"""Rule analyze_dead_units: dead and dormant units per nonlinearity of one trained model,
for its final weights and for its best weights (lowest validation loss)."""
import torch

from equivox.dead_units import analyze_dead_units
from equivox.logs import run_logged


def main(weights, views, table, threads, best_weights=None, best_table=None, **settings):
    torch.set_num_threads(threads)
    analyze_dead_units(weights, views, **settings).to_csv(table, sep="\t", index=False)
    if best_weights is not None:
        analyze_dead_units(best_weights, views, **settings).to_csv(best_table, sep="\t", index=False)


if "snakemake" in globals():
    run_logged(main, snakemake.log[0], weights=snakemake.input.weights, views=snakemake.input.views,
               table=snakemake.output.table, best_weights=snakemake.input.best_weights,
               best_table=snakemake.output.best_table, threads=snakemake.threads,
               n_examples=snakemake.params.n_examples, tau=snakemake.params.tau,
               open_fraction=snakemake.params.open_fraction,
               batch_size=snakemake.params.batch_size, device=snakemake.params.device)
