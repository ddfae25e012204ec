"""Rule views / views_train_shard: write fixed view pairs to HDF5."""
import logging

import numpy as np

from equivox.logs import run_logged
from equivox.views import ViewPairSampler, ViewParams, write_view_set


def main(pack, out, split, n_examples, first_index, config):
    params = ViewParams.from_config(config)
    sampler = ViewPairSampler(pack, split, params, seed=config["views"]["seed"])
    write_view_set(out, sampler, n_examples, first_index=first_index,
                   image_dtype=np.dtype(config["views"]["image_dtype"]))
    logging.getLogger("equivox").info("%s: %d %s pairs from %d structures", out, n_examples,
                                      split, len(sampler.structures))


if "snakemake" in globals():
    wc = snakemake.wildcards
    split = wc.get("split", "train")
    first = int(wc["index"]) * snakemake.params.n_examples if "index" in wc.keys() else 0
    run_logged(main, snakemake.log[0], pack=snakemake.input.pack, out=snakemake.output.views,
               split=split, n_examples=snakemake.params.n_examples, first_index=first,
               config=snakemake.params.config)
