"""Rule baselines: structure-blind baselines on the fixed validation set (baselines/val.json)
or on validation and test (baselines/test.json)."""
import json
import logging
from pathlib import Path

import torch

from equivox.baselines import compute_baselines, training_features
from equivox.logs import run_logged
from equivox.views import ViewPairSampler, ViewParams


def main(pack, view_sets, result, threads, config, n_train, confidence):
    torch.set_num_threads(threads)
    sampler = ViewPairSampler(pack, "train", ViewParams.from_config(config), seed=config["views"]["seed"])
    record = compute_baselines(view_sets, training_features(sampler, n_train), confidence)
    Path(result).write_text(json.dumps(record))
    log = logging.getLogger("equivox")
    for split, data in record["sets"].items():
        log.info("%s: %s", split, ", ".join(f"{r['baseline']} {r['accuracy']:.3f}" for r in data["rows"]))
    log.info("best baseline (chosen on val): %s", record["best"])


if "snakemake" in globals():
    run_logged(main, snakemake.log[0], pack=snakemake.input.pack,
               view_sets={split: snakemake.input[split] for split in ("val", "test") if split in snakemake.input.keys()},
               result=snakemake.output.result, threads=snakemake.threads,
               config=snakemake.params.config, n_train=snakemake.params.n_train,
               confidence=snakemake.params.confidence)
