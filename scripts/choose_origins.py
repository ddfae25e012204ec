"""Rule choose_origins: origins of every structure in one atom-store shard."""
import logging

import h5py
from tqdm import tqdm

from equivox.atoms import atomic_write_h5, list_structures, load_structure
from equivox.logs import run_logged
from equivox.origins import OriginParams, choose_origins


def main(atoms_path, origins_path, params):
    log = logging.getLogger("equivox")
    params = OriginParams(**params)
    total = 0
    with h5py.File(atoms_path, "r") as atoms, atomic_write_h5(origins_path) as out:
        out.attrs.update(radius_A=params.radius_A, min_nearby_atoms=params.min_nearby_atoms,
                         exclude_hydrogens=params.exclude_hydrogens)
        for key in tqdm(list_structures(atoms), desc=f"choose_origins {atoms_path}",
                        unit="chain", mininterval=5):
            coords, n_candidates = choose_origins(load_structure(atoms, key), params)
            g = out.create_group(f"structures/{key}")
            g.create_dataset("coords_A", data=coords, compression="gzip", shuffle=True)
            g.attrs["n_candidates"] = n_candidates
            total += len(coords)
    log.info("%s: %d origins", origins_path, total)


if "snakemake" in globals():
    run_logged(main, snakemake.log[0], atoms_path=snakemake.input.atoms,
               origins_path=snakemake.output.origins, params=snakemake.params.origins)
