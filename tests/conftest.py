import os
from pathlib import Path

import pytest

from equivox.demo_data import mdanalysis_data_dir
from tests.defaults import ORIGIN_PARAMS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mda_data() -> Path:
    """Real structures shipped by MDAnalysisTests."""
    return mdanalysis_data_dir()


@pytest.fixture(scope="session", autouse=True)
def escnn_cache(tmp_path_factory):
    """One escnn cache per test session, never inside site-packages."""
    path = tmp_path_factory.mktemp("escnn_cache")
    os.environ.setdefault("EQUIVOX_ESCNN_CACHE", str(path))
    return Path(os.environ["EQUIVOX_ESCNN_CACHE"])


def build_small_origin_db(workdir: Path, mda_data: Path) -> Path:
    """Atom store + origin DB from five real structures (train 3, val 1, test 1)."""
    import h5py

    from equivox.atoms import nonbiological_residues, read_structure, write_structure
    from equivox.origin_db import StructureRecord, build_origin_db
    from equivox.origins import choose_origins

    entries = [("1a28.pdb.gz", "1a28", "A", "train"), ("mmcif/3KPR.cif.gz", "3kpr", "A", "train"),
               ("4E43.pdb", "4e43", "A", "train"), ("19hc.pdb.gz", "19hc", "A", "val"),
               ("mmcif/1BD2.cif.gz", "1bd2", "D", "test")]
    atoms_path = workdir / "atoms.h5"
    records = []
    with h5py.File(atoms_path, "w") as h5:
        for rel, pdb, chain, _ in entries:
            key = f"{pdb}_{chain}"
            write_structure(h5, key, pdb, chain, read_structure(mda_data / rel), rel,
                            nonbiological_residues())
            from equivox.atoms import load_structure
            coords, n_cand = choose_origins(load_structure(h5, key), ORIGIN_PARAMS)
            records.append(StructureRecord(key, pdb, chain, "XRAY", 2.0, 0.25, 200,
                                           str(atoms_path), 0, n_cand, coords))
    db = workdir / "origins.sqlite"
    build_origin_db(db, records, {pdb: split for _, pdb, _, split in entries},
                    {"origin_params": {"radius_A": 5.0, "min_nearby_atoms": 25, "exclude_hydrogens": True}})
    return db


@pytest.fixture(scope="session")
def small_db(tmp_path_factory, mda_data) -> Path:
    return build_small_origin_db(tmp_path_factory.mktemp("small_db"), mda_data)
