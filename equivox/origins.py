"""Choose origins: atoms of the PISCES chain with enough biological atoms nearby.

An origin is kept when the occupancy-weighted count of biological atoms within
``radius_A`` (distance <= radius, the candidate itself included) is at least
``min_nearby_atoms``. "Biological" excludes waters and blocklisted residues and, when
``exclude_hydrogens`` is set, hydrogens: exactly the atoms that images are made of.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class OriginParams:
    radius_A: float = 5.0
    min_nearby_atoms: float = 25.0
    exclude_hydrogens: bool = True

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
