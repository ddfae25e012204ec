"""Choose origins: atoms of the PISCES chain with enough biological atoms nearby.

An origin is kept when the occupancy-weighted count of biological atoms within
``radius_A`` (distance <= radius, the candidate itself included) is at least
``min_nearby_atoms``. "Biological" excludes waters and blocklisted residues and, when
``exclude_hydrogens`` is set, hydrogens: exactly the atoms that images are made of.

An origin shard (``results/origins/<shard>.h5``, written by :func:`write_origin_shard`
and read by :func:`read_origin_shard`, nowhere else)::

    attrs: radius_A, min_nearby_atoms, exclude_hydrogens
    structures/<chain_key>/coords_A   (M, 3) float32, Å; attrs: n_candidates
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class OriginParams:
    """Config ``origins`` (the schema holds the defaults): ``OriginParams(**config["origins"])``."""
    radius_A: float
    min_nearby_atoms: float
    exclude_hydrogens: bool

    def __post_init__(self):
        if not self.radius_A > 0:
            raise ValueError(f"OriginParams.radius_A must be > 0, got {self.radius_A}")
        if self.min_nearby_atoms < 0:
            raise ValueError(f"OriginParams.min_nearby_atoms must be >= 0, got {self.min_nearby_atoms}")


def biological_mask(atoms: dict[str, np.ndarray], exclude_hydrogens: bool) -> np.ndarray:
    """Atoms that count as protein environment (and are drawn into images)."""
    mask = ~atoms["is_nonbiological"]
    if exclude_hydrogens:
        mask &= ~atoms["is_hydrogen"]
    return mask


def weighted_neighbour_counts(points_A: np.ndarray, coords_A: np.ndarray,
                              weights: np.ndarray, radius_A: float) -> np.ndarray:
    """For each point (M, 3): sum of ``weights`` of atoms (N, 3) within ``radius_A``."""
    if len(points_A) == 0 or len(coords_A) == 0:
        return np.zeros(len(points_A))
    pairs = cKDTree(points_A).sparse_distance_matrix(
        cKDTree(coords_A), radius_A, output_type="ndarray")
    return np.bincount(pairs["i"], weights=weights[pairs["j"]], minlength=len(points_A))


def choose_origins(atoms: dict[str, np.ndarray], params: OriginParams):
    """Origins of one structure from its atom-store columns.

    Returns (coords_A (M, 3) float32, n_candidates). Candidates are biological atoms
    of the PISCES chain; every alt-loc conformer is a candidate of its own.
    """
    bio = biological_mask(atoms, params.exclude_hydrogens)
    candidates = bio & atoms["is_pisces_chain"]
    points = atoms["coords_A"][candidates].astype(np.float64)
    counts = weighted_neighbour_counts(points, atoms["coords_A"][bio].astype(np.float64),
                                       atoms["occupancy"][bio].astype(np.float64), params.radius_A)
    # tolerance: occupancies are float32 sums (e.g. 0.33 + 0.67)
    keep = counts >= params.min_nearby_atoms - 1e-4
    return points[keep].astype(np.float32), int(candidates.sum())


def write_origin_shard(atoms_path: str | Path, origins_path: str | Path, params: OriginParams,
                       progress: bool = True) -> int:
    """Choose the origins of every structure in an atom-store shard and write the origin
    shard atomically. Returns the number of origins."""
    from tqdm import tqdm

    from .atomic import atomic_write_h5
    from .atoms import list_structures, load_structure

    total = 0
    with h5py.File(atoms_path, "r") as atoms, atomic_write_h5(origins_path) as out:
        out.attrs.update(radius_A=params.radius_A, min_nearby_atoms=params.min_nearby_atoms,
                         exclude_hydrogens=params.exclude_hydrogens)
        for key in tqdm(list_structures(atoms), desc=f"choose_origins {atoms_path}", unit="chain",
                        mininterval=5, disable=not progress):
            coords, n_candidates = choose_origins(load_structure(atoms, key), params)
            group = out.create_group(f"structures/{key}")
            group.create_dataset("coords_A", data=coords, compression="gzip", shuffle=True)
            group.attrs["n_candidates"] = n_candidates
            total += len(coords)
    return total


def read_origin_shard(path: str | Path) -> Iterator[tuple[str, np.ndarray, int]]:
    """``(chain_key, coords_A (M, 3) float32, n_candidates)`` of every structure of an
    origin shard, by chain key."""
    with h5py.File(path, "r") as shard:
        for key in sorted(shard["structures"].keys()) if "structures" in shard else []:
            yield key, shard[f"structures/{key}/coords_A"][()], int(shard[f"structures/{key}"].attrs["n_candidates"])
