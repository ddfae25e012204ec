"""Rule atom_pack: one split's image atoms, packed for the view sampler (equivox/atom_pack.py)."""
import logging

from equivox.atom_pack import build_pack, write_pack
from equivox.logs import run_logged
from equivox.views import ViewParams


def main(db, out, split, config):
    pack = build_pack(db, split, ViewParams.from_config(config), progress=True)
    write_pack(out, pack)
    logging.getLogger("equivox").info("%s: %d structures, %d atoms, %d origins", out, len(pack),
                                      len(pack.x), len(pack.origins_A))


if "snakemake" in globals():
    run_logged(main, snakemake.log[0], db=snakemake.input.db, out=snakemake.output.pack,
               split=snakemake.wildcards.split, config=snakemake.params.config)
