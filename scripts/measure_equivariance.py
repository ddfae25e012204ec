"""Rule measure_equivariance: rotation invariance/equivariance error of one trained encoder."""
import json
import logging
from pathlib import Path

import torch

from equivox.equivariance import measure_equivariance
from equivox.logs import run_logged
from equivox.views import ViewParams


def main(weights, views, origin_db, samples_path, summary_path, threads, config, **settings):
    torch.set_num_threads(threads)
    samples, summary = measure_equivariance(weights, views, origin_db, ViewParams.from_config(config),
                                            **settings)
    samples.to_csv(samples_path, sep="\t", index=False)
    Path(summary_path).write_text(json.dumps(summary, indent=2))
    kinds = summary["kinds"]
    logging.getLogger("equivox").info(
        "%s: invariant-feature change / between-example spread: cube %.2g, random rotations %.3f "
        "(floor %.2g), %d examples, %.1f s", summary["arch"], kinds["cube"]["invariant_spread"]["mean"],
        kinds["haar"]["invariant_spread"]["mean"], kinds["identity"]["invariant_spread"]["mean"],
        summary["n_examples"], summary["compute_s"])


if "snakemake" in globals():
    run_logged(main, snakemake.log[0], weights=snakemake.input.weights, views=snakemake.input.views,
               origin_db=snakemake.input.db, samples_path=snakemake.output.samples,
               summary_path=snakemake.output.summary, threads=snakemake.threads,
               config=snakemake.params.config, batch_size=snakemake.params.batch_size,
               device=snakemake.params.device, **snakemake.params.settings)
