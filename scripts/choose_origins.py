"""Rule choose_origins: origins of every structure in one atom-store shard."""
import logging

from equivox.logs import run_logged
from equivox.origins import OriginParams, write_origin_shard


def main(atoms_path, origins_path, params):
    total = write_origin_shard(atoms_path, origins_path, OriginParams(**params))
    logging.getLogger("equivox").info("%s: %d origins", origins_path, total)


if "snakemake" in globals():
    run_logged(main, snakemake.log[0], atoms_path=snakemake.input.atoms,
               origins_path=snakemake.output.origins, params=snakemake.params.origins)
