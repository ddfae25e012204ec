from dataclasses import replace

import h5py
import numpy as np
import pytest

from equivox.atoms import load_structure, nonbiological_residues, read_structure, write_structure
from equivox.origins import biological_mask, choose_origins
from tests.defaults import ORIGIN_PARAMS


@pytest.fixture(scope="module")
def atoms_3kpr(mda_data, tmp_path_factory):
    """A real structure with waters, several chains and partial occupancies."""
    path = tmp_path_factory.mktemp("atoms") / "a.h5"
    table = read_structure(mda_data / "mmcif/3KPR.cif.gz")
    with h5py.File(path, "w") as h5:
        write_structure(h5, "3kpr_C", "3kpr", "C", table, "3kpr.cif.gz", nonbiological_residues())
        return load_structure(h5, "3kpr_C")


def brute_force(atoms, params):
    bio = biological_mask(atoms, params.exclude_hydrogens)
    cand = atoms["coords_A"][bio & atoms["is_pisces_chain"]].astype(np.float64)
    env = atoms["coords_A"][bio].astype(np.float64)
    occ = atoms["occupancy"][bio].astype(np.float64)
    dist = np.linalg.norm(cand[:, None, :] - env[None, :, :], axis=-1)
    counts = (dist <= params.radius_A) @ occ
    return cand[counts >= params.min_nearby_atoms - 1e-4], len(cand)


@pytest.mark.parametrize("radius_A, min_nearby", [(5.0, 25), (4.0, 15), (6.0, 40)])
def test_origins_match_brute_force_recount(atoms_3kpr, radius_A, min_nearby):
    params = replace(ORIGIN_PARAMS, radius_A=radius_A, min_nearby_atoms=min_nearby)
    coords, n_candidates = choose_origins(atoms_3kpr, params)
    expected, n_expected = brute_force(atoms_3kpr, params)
    assert n_candidates == n_expected
    np.testing.assert_allclose(coords, expected.astype(np.float32))
    assert 0 < len(coords) < n_candidates  # the criterion really selects


def test_waters_never_count(atoms_3kpr):
    params = ORIGIN_PARAMS
    base, _ = choose_origins(atoms_3kpr, params)
    flooded = dict(atoms_3kpr)
    # turn every water into a very dense cloud on the chain: must change nothing
    water = atoms_3kpr["residue_name"] == b"HOH"
    assert water.any()
    coords = atoms_3kpr["coords_A"].copy()
    chain_atoms = np.flatnonzero(atoms_3kpr["is_pisces_chain"] & ~water)
    coords[water] = coords[chain_atoms[0]]
    flooded["coords_A"] = coords
    np.testing.assert_array_equal(choose_origins(flooded, params)[0], base)


def test_occupancy_weights_the_count():
    # one candidate at the origin, 30 neighbours at 1 A with occupancy 0.5 -> 1 + 15 = 16
    n = 31
    coords = np.zeros((n, 3), dtype=np.float32)
    coords[1:, 0] = 1.0
    atoms = {"coords_A": coords, "occupancy": np.r_[1.0, np.full(30, 0.5)].astype(np.float32),
             "is_nonbiological": np.zeros(n, bool), "is_hydrogen": np.zeros(n, bool),
             "is_pisces_chain": np.r_[True, np.zeros(30, bool)]}
    assert len(choose_origins(atoms, replace(ORIGIN_PARAMS, min_nearby_atoms=16))[0]) == 1
    assert len(choose_origins(atoms, replace(ORIGIN_PARAMS, min_nearby_atoms=16.5))[0]) == 0


def test_params_are_checked():
    with pytest.raises(ValueError, match="radius_A"):
        replace(ORIGIN_PARAMS, radius_A=0)
