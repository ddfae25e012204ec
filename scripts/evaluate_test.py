"""Rule evaluate_test: test-set loss and accuracy of one trained model, with intervals."""
import json
import logging
from pathlib import Path

import torch

from equivox.evaluate import evaluate_test
from equivox.logs import run_logged


def main(weights, views, result, threads, **settings):
    torch.set_num_threads(threads)
    record = evaluate_test(weights, views, **settings)
    Path(result).write_text(json.dumps(record, indent=2))
    logging.getLogger("equivox").info(
        "%s: test accuracy %.3f [%.3f, %.3f], loss %.3f [%.3f, %.3f] nats on %d pairs", record["arch"],
        record["accuracy"], record["accuracy_ci_low"], record["accuracy_ci_high"], record["loss"],
        record["loss_ci_low"], record["loss_ci_high"], record["n_examples"])


if "snakemake" in globals():
    run_logged(main, snakemake.log[0], weights=snakemake.input.weights, views=snakemake.input.views,
               result=snakemake.output.result, threads=snakemake.threads,
               n_examples=snakemake.params.n_examples, batch_size=snakemake.params.batch_size,
               confidence=snakemake.params.confidence, device=snakemake.params.device)
