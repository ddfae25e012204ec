"""Rule evaluate_test: test-set loss and accuracy of one run's final and best-validation
weights, with intervals, and the per-pair results (examples.npz) the paired comparisons read."""
import json
import logging
from pathlib import Path

import numpy as np
import torch

from equivox.evaluate import evaluate_test
from equivox.logs import run_logged


def main(weights, best_weights, views, result, examples, threads, **settings):
    torch.set_num_threads(threads)
    record, arrays = evaluate_test(weights, best_weights, views, **settings)
    Path(result).write_text(json.dumps(record, indent=2))
    with open(examples, "wb") as handle:  # the name as given (np.savez would add .npz)
        np.savez(handle, **arrays)
    for name, test in (("final", record), ("best", record["best"])):
        logging.getLogger("equivox").info(
            "%s (%s weights): test accuracy %.3f [%.3f, %.3f], loss %.3f [%.3f, %.3f] nats on %d pairs",
            test["arch"], name, test["accuracy"], test["accuracy_ci_low"], test["accuracy_ci_high"],
            test["loss"], test["loss_ci_low"], test["loss_ci_high"], test["n_examples"])


if "snakemake" in globals():
    run_logged(main, snakemake.log[0], weights=snakemake.input.weights,
               best_weights=snakemake.input.best_weights, views=snakemake.input.views,
               result=snakemake.output.result, examples=snakemake.output.examples, threads=snakemake.threads,
               n_examples=snakemake.params.n_examples, batch_size=snakemake.params.batch_size,
               confidence=snakemake.params.confidence, device=snakemake.params.device)
