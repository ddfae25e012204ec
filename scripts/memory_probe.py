"""Rule memory_probe: peak memory of one training step per batch size, its linear trend and
the largest batch that fits a GPU, for one architecture (equivox/memory_probe.py)."""
import json

from equivox.logs import run_logged
from equivox.memory_probe import probe_memory


def main(arch, spec, tsv, summary_json, views, train, settings, threads):
    table, summary = probe_memory(
        arch, spec, batch_sizes=settings["batch_sizes"], in_channels=len(views["channels"]),
        length=views["length_voxels"], head=train["head"], amp=train["amp"], device=settings["device"],
        gpu_memory_gb=settings["gpu_memory_gb"], margin_gb=settings["margin_gb"], threads=threads,
        optimizer=train)
    table.to_csv(tsv, sep="\t", index=False)
    with open(summary_json, "w") as handle:
        json.dump(summary, handle, indent=2)
        handle.write("\n")


if "snakemake" in globals():
    run_logged(main, snakemake.log[0], arch=snakemake.wildcards.arch, spec=snakemake.params.spec,
               tsv=snakemake.output.tsv, summary_json=snakemake.output.summary,
               views=snakemake.params.views, train=snakemake.params.train,
               settings=snakemake.params.settings, threads=snakemake.threads)
