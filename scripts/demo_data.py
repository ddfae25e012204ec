"""Rule demo_data: arrange the MDAnalysisTests structures as a mirror + PISCES list."""
import logging

from equivox.demo_data import build_demo_mirror
from equivox.logs import run_logged


def main(pisces_path, mirror_dir, max_structures):
    chains = build_demo_mirror(mirror_dir, pisces_path, max_structures=max_structures)
    logging.getLogger("equivox").info("demo mirror %s: %d entries, list %s",
                                      mirror_dir, len(chains), pisces_path)


if "snakemake" in globals():
    run_logged(main, snakemake.log[0], pisces_path=snakemake.output.pisces,
               mirror_dir=snakemake.params.mirror, max_structures=snakemake.params.max_structures)
