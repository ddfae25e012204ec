"""How invariant and how equivariant a trained encoder's features are, measured.

The escnn encoders are built from SO(3)-steerable layers, but they act on a voxel grid:
only the 24 rotations of the cube map the grid onto itself, and only for those are the
convolutions, the Fourier nonlinearities (sampled on a grid closed under the cube's
rotations) and the pools exact. Any other rotation of a structure changes which voxels its
atoms fill, so equivariance to it is approximate. This module measures both, per model.

Data. View A of the first ``n_examples`` pairs of a fixed view set (``results/views/val.h5``):
its atoms are cropped again from the atom store at the stored centre and frame
(:meth:`equivox.views.StructureAtoms.crop`), so that they can be rotated about the view
centre and voxelized again. ``x`` is that fresh (float32) voxelization.

Transforms ``kind`` (a rotation ``R`` moves an atom at ``p`` in the view frame to ``R p``):

* ``identity``: ``x`` against the stored float16 view the models were validated on, the
  floor set by storage rounding (``R = I``);
* ``cube``: the 23 non-identity rotations of the cube applied to the voxels of ``x``
  exactly (axis permutations and flips, :func:`rotate_voxels`); the identity is left out
  because it scores exactly 0;
* ``haar``: ``n_rotations`` Haar-uniform random rotations of the atoms, re-voxelized;
* ``angle``: for each angle of ``angles_deg``, ``n_axes`` rotations by that angle about
  uniformly random axes, re-voxelized (the error-vs-angle curve).

Features. ``f(x)`` is the encoder's output flattened, ``(F,)``: what the head sees of one
view. For an equivariant encoder, ``rho(R)`` is the representation of its output field
type at ``R`` and the *invariant features* ``P f`` are the frequency-0 (trivial irrep)
coefficients, one per Fourier field. A plain encoder promises nothing: ``rho = I`` and
``P = I``, so its numbers are a control (how much a view changes for a model that has no
symmetry built in).

Metrics, per example ``i`` and rotation ``R`` (``x_R`` = the rotated view):

* ``invariant_error = ||P f(x_R) - P f(x)||`` and ``equivariant_error = ||f(x_R) - rho(R) f(x)||``;
* ``*_rel``: divided by ``||P f(x)||`` (resp. ``||f(x)||``) of the same example;
* ``*_spread``: divided by the between-example spread, the mean of ``||P f(x_i) - P f(x_j)||``
  (resp. ``||f(x_i) - f(x_j)||``) over all pairs ``i != j`` of the measured views. This is
  the more honest number: 1 means that rotating a view moves its features as far as
  replacing it by another structure's view does. ``*_rel`` can look small merely because
  all views share a large common component.

Summaries: per kind (and per angle), the mean over examples and rotations, the normal 95%
interval of the mean of the per-example means (examples are the independent draws) and
the maximum.
"""
from __future__ import annotations

import itertools
import math
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch

from .evaluate import mean_interval
from .run_state import load_trained_model, pick_device
from .views import StructureAtoms, ViewParams, random_rotation, read_view_set
from .voxelize import ImageParams, image_from_atoms

METRICS = ("invariant_rel", "invariant_spread", "equivariant_rel", "equivariant_spread")
"""Relative error columns of the sample table (see the module docstring)."""



# --- rotations ---------------------------------------------------------------------------

def cube_rotations() -> list[np.ndarray]:
    """The 24 rotations of the cube (signed permutation matrices of determinant 1), identity first."""
    rotations = []
    for columns in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            rotation = np.zeros((3, 3), dtype=np.int64)
            rotation[range(3), columns] = signs
            if round(np.linalg.det(rotation)) == 1:
                rotations.append(rotation)
    return rotations


def rotate_voxels(x: torch.Tensor, rotation: np.ndarray) -> torch.Tensor:
    """Rotate the last three (x, y, z) axes of ``x`` by a cube rotation, exactly.

    ``out(v) = x(R^T v)`` about the grid centre: the content at ``p`` moves to ``R p``, as
    voxelizing atoms rotated by ``R`` would give. Shapes: ``(..., L, L, L)`` -> same.
    """
    rotation = np.asarray(rotation)
    lead = x.dim() - 3
    source = [int(np.flatnonzero(row)[0]) for row in rotation]  # output axis b reads axis source[b]
    out = x.permute(*range(lead), *(lead + a for a in source))
    flips = [lead + b for b in range(3) if rotation[b, source[b]] < 0]
    return out.flip(flips) if flips else out


def axis_angle_rotation(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """Rotation matrix (3, 3) by ``angle_rad`` about the unit vector ``axis`` (Rodrigues)."""
    x, y, z = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + math.sin(angle_rad) * k + (1 - math.cos(angle_rad)) * k @ k


def rotation_angle_deg(rotation: np.ndarray) -> float:
    """Angle of a rotation matrix, in degrees, in [0, 180]."""
    return math.degrees(math.acos(float(np.clip((np.trace(rotation) - 1) / 2, -1, 1))))


def example_rotations(index: int, n_rotations: int, angles_deg, n_axes: int,
                      seed: int) -> list[tuple[str, int, float, np.ndarray]]:
    """The ``(kind, rotation index, angle_deg, R)`` measured on example ``index``: the 23
    non-identity cube rotations, then ``n_rotations`` Haar-uniform ones, then ``n_axes``
    random axes per angle of ``angles_deg``. Random draws come from
    ``default_rng([seed, index])``, so every model sees the same rotations."""
    rng = np.random.default_rng([seed, index])
    out = [("cube", k, rotation_angle_deg(r), r.astype(np.float64))
           for k, r in enumerate(cube_rotations()[1:], start=1)]
    for k in range(n_rotations):
        rotation = random_rotation(rng)
        out.append(("haar", k, rotation_angle_deg(rotation), rotation))
    for angle in angles_deg:
        for k in range(n_axes):
            out.append(("angle", k, float(angle), axis_angle_rotation(rng.normal(size=3), math.radians(angle))))
    return out


# --- features ----------------------------------------------------------------------------

class FeatureSymmetry:
    """What an encoder's output promises under rotations: ``rho(R)`` and the invariant part.

    Equivariant encoders (with an escnn ``out_type``): ``rho(R)`` is the output
    representation at ``R`` (voxel frame, converted by :func:`equivox.models.fields.group_element`),
    and :meth:`invariant` keeps the coordinates of the trivial irreps in the
    representation's irrep basis. Plain encoders: ``rho = I``, all features "invariant".
    """

    def __init__(self, encoder: torch.nn.Module):
        out_type = getattr(encoder, "out_type", None)
        self.equivariant = out_type is not None
        if not self.equivariant:
            self.n_features = int(encoder.out_channels)
            self.n_invariant = self.n_features
            return
        representation = out_type.representation
        self._representation = representation
        self.n_features = int(representation.size)
        group = representation.group
        slots, position = [], 0
        for irrep_id in representation.irreps:
            irrep = group.irrep(*irrep_id)
            if irrep.is_trivial():
                slots.append(position)
            position += irrep.size
        basis_inv = torch.as_tensor(representation.change_of_basis_inv, dtype=torch.float64)
        self._invariant_rows = basis_inv[slots]  # (F0, F)
        self.n_invariant = len(slots)

    def rho(self, rotation: np.ndarray) -> torch.Tensor:
        """``(F, F)`` float64 matrix acting on features for an atom rotation ``R`` (voxel frame)."""
        if not self.equivariant:
            return torch.eye(self.n_features, dtype=torch.float64)
        from .models import fields

        return torch.as_tensor(self._representation(fields.group_element(rotation)), dtype=torch.float64)

    def invariant(self, features: torch.Tensor) -> torch.Tensor:
        """``(N, F)`` -> ``(N, F0)``: the part of the features that should not change."""
        return features if not self.equivariant else features @ self._invariant_rows.T


@torch.no_grad()
def encode(encoder: torch.nn.Module, images: torch.Tensor, batch_size: int,
           device: torch.device) -> torch.Tensor:
    """``(N, C, L, L, L)`` views -> ``(N, F)`` float64 features, in batches of ``batch_size``."""
    parts = [encoder(images[start:start + batch_size].to(device)).flatten(1).double().cpu()
             for start in range(0, len(images), batch_size)]
    return torch.cat(parts)


def voxelize_rotated(crop, rotations: list[np.ndarray], params: ImageParams) -> torch.Tensor:
    """View ``crop`` = (coords (n, 3) view frame, channels, radii, occupancies) voxelized
    once per rotation about the view centre: ``(len(rotations), C, L, L, L)`` float32."""
    coords, channels, radii, occupancies = crop
    if not rotations:
        return torch.zeros(0, len(params.channels), *(params.length_voxels,) * 3)
    k = len(rotations)
    rotated = np.concatenate([coords @ np.asarray(r, dtype=np.float64).T for r in rotations])
    return image_from_atoms(rotated, np.tile(channels, k), np.tile(radii, k), np.tile(occupancies, k),
                            params, batch_index=np.repeat(np.arange(k), len(coords)), batch_size=k)


# --- data ----------------------------------------------------------------------------------

def view_a_crops(views_path: str | Path, origin_db: str | Path, params: ViewParams,
                 n_examples: int | None) -> tuple[list, torch.Tensor]:
    """View A of the first ``n_examples`` pairs (all when None) of a fixed view set, as
    atoms: ``(crops, stored)``, ``crops[i]`` = (coords (n, 3) view frame, channels,
    radii_A, occupancies), ``stored`` = the stored views ``(n, C, L, L, L)`` float32."""
    from .atoms import load_structure
    from .origin_db import OriginDB

    views = read_view_set(views_path, n_examples, view=0)
    for key, value in (("length_voxels", params.image.length_voxels),
                       ("resolution_A", params.image.resolution_A)):
        if key in views["attrs"] and not np.isclose(views["attrs"][key], value):
            raise ValueError(f"{views_path}: {key} is {views['attrs'][key]}, the config says {value}")
    structure_ids, rotations, centres = views["structure_ids"], views["rotations"], views["centres_A"][:, 0]
    stored = torch.from_numpy(views["images"])
    rows = {row["id"]: row for row in OriginDB(origin_db).structures()}
    files, structures, crops = {}, {}, []
    try:
        for structure_id, rotation, centre in zip(structure_ids, rotations, centres):
            row = rows[int(structure_id)]
            if row["id"] not in structures:
                path = row["atoms_path"]
                if path not in files:
                    files[path] = h5py.File(path, "r")
                structures[row["id"]] = StructureAtoms.from_store(
                    load_structure(files[path], row["chain_key"]), params)
            crops.append(structures[row["id"]].crop(centre, rotation, params.image))
    finally:
        for handle in files.values():
            handle.close()
    return crops, stored


# --- measuring -----------------------------------------------------------------------------

def mean_pairwise_distance(features: torch.Tensor) -> float:
    """Mean of ``||a - b||`` over all pairs of distinct rows of ``features`` (N >= 2, (N, F))."""
    if len(features) < 2:
        raise ValueError("the between-example spread needs at least 2 examples")
    distances = torch.cdist(features, features)
    n = len(features)
    return float(distances.sum() / (n * (n - 1)))


def measure_encoder(encoder: torch.nn.Module, crops: list, image_params: ImageParams, *,
                    stored: torch.Tensor | None = None, n_rotations: int, angles_deg, n_axes: int,
                    seed: int, batch_size: int, device: torch.device | str = "cpu") -> tuple[pd.DataFrame, dict]:
    """Measure an encoder (eval mode, on ``device``) on views given as atoms.

    Args:
        encoder: ``(N, C, L, L, L) -> (N, F, 1, 1, 1)``.
        crops: per example, (coords (n, 3) view frame with the view centre at 0, channels,
            radii_A, occupancies).
        image_params: how the views are voxelized.
        stored: the same views as stored ``(n, C, L, L, L)`` (for the ``identity`` floor);
            None leaves that kind out.

    Returns:
        ``(samples, spreads)``: one row per example and transform (columns ``example``,
        ``kind``, ``rotation``, ``angle_deg``, ``invariant_error``, ``equivariant_error``
        and :data:`METRICS`) and ``{"invariant": spread, "equivariant": spread,
        "invariant_norm": mean ||P f(x)||, "equivariant_norm": mean ||f(x)||}``.
    """
    device = torch.device(device)
    symmetry = FeatureSymmetry(encoder)
    base = voxelize_rotated_many(crops, image_params)
    features = encode(encoder, base, batch_size, device)  # (n, F)
    invariant = symmetry.invariant(features)
    spreads = {"invariant": mean_pairwise_distance(invariant),
               "equivariant": mean_pairwise_distance(features),
               "invariant_norm": float(invariant.norm(dim=1).mean()),
               "equivariant_norm": float(features.norm(dim=1).mean())}
    rows = []

    def add_rows(i, kind, transforms, rotated_features):
        for (index, angle, rotation), f_r in zip(transforms, rotated_features):
            inv_error = float((symmetry.invariant(f_r[None])[0] - invariant[i]).norm())
            eq_error = float((f_r - symmetry.rho(rotation) @ features[i]).norm())
            rows.append({"example": i, "kind": kind, "rotation": index,
                         "angle_deg": angle,
                         "invariant_error": inv_error, "equivariant_error": eq_error,
                         "invariant_rel": _ratio(inv_error, float(invariant[i].norm())),
                         "invariant_spread": _ratio(inv_error, spreads["invariant"]),
                         "equivariant_rel": _ratio(eq_error, float(features[i].norm())),
                         "equivariant_spread": _ratio(eq_error, spreads["equivariant"])})

    for i, crop in enumerate(crops):
        if stored is not None:
            add_rows(i, "identity", [(0, 0.0, np.eye(3))],
                     encode(encoder, stored[i:i + 1], batch_size, device))
        transforms = example_rotations(i, n_rotations, angles_deg, n_axes, seed)
        cube = [(k, angle, r) for kind, k, angle, r in transforms if kind == "cube"]
        images = torch.stack([rotate_voxels(base[i], r) for _, _, r in cube])
        add_rows(i, "cube", cube, encode(encoder, images, batch_size, device))
        for kind in ("haar", "angle"):
            chosen = [(k, angle, r) for kind_, k, angle, r in transforms if kind_ == kind]
            if chosen:
                images = voxelize_rotated(crop, [r for _, _, r in chosen], image_params)
                add_rows(i, kind, chosen, encode(encoder, images, batch_size, device))
    return pd.DataFrame(rows), spreads


def _ratio(error: float, scale: float) -> float:
    """``error / scale``; NaN where the scale is 0 (an encoder whose features are all zero
    for a view, as a plain ReLU net with dead outputs can be: no relative error exists)."""
    return error / scale if scale > 0 else float("nan")


def voxelize_rotated_many(crops: list, image_params: ImageParams) -> torch.Tensor:
    """Every crop voxelized unrotated: ``(len(crops), C, L, L, L)`` float32."""
    return torch.cat([voxelize_rotated(crop, [np.eye(3)], image_params) for crop in crops])


STORED_IMAGE_TOLERANCE = 1e-2
"""Largest ``||fresh - stored|| / ||stored||`` of the re-voxelized views accepted (float16
storage alone gives ~2e-4 on the demo)."""


def check_reproduced(crops: list, stored: torch.Tensor, image_params: ImageParams, source) -> float:
    """Relative difference of the re-voxelized views from the stored ones; raises
    ``ValueError`` above :data:`STORED_IMAGE_TOLERANCE` (the config's views or origins
    settings are not those that made ``source``, or the atom store changed)."""
    fresh = voxelize_rotated_many(crops, image_params)
    error = float((fresh - stored).norm() / stored.norm())
    if not error <= STORED_IMAGE_TOLERANCE:
        raise ValueError(f"{source}: views voxelized again from the atoms differ from the stored "
                         f"ones by {error:.3g} (relative); the config's views/origins settings are "
                         "not those that made this view set, or the atom store changed")
    return error


def summarise(samples: pd.DataFrame, confidence: float = 0.95) -> dict:
    """Per kind, and per rounded angle of kind ``angle``: for each of :data:`METRICS`
    ``{mean, ci_low, ci_high, max}`` (interval: normal, of the per-example means, its
    lower end clipped at 0 since every metric is a norm)."""
    def stats(rows: pd.DataFrame) -> dict:
        out = {}
        for metric in METRICS:
            per_example = rows.groupby("example")[metric].mean().to_numpy()
            mean = float(rows[metric].mean())
            low, high = (mean_interval(per_example, confidence)[1:] if len(per_example) >= 2
                         else (float("nan"), float("nan")))
            out[metric] = {"mean": mean, "ci_low": max(0.0, low), "ci_high": high,
                           "max": float(rows[metric].max())}
        return out

    kinds = {kind: stats(rows) for kind, rows in samples.groupby("kind", sort=False)}
    angles = samples[samples["kind"] == "angle"]
    by_angle = [{"angle_deg": float(angle), **stats(rows)}
                for angle, rows in angles.groupby("angle_deg")]
    return {"kinds": kinds, "by_angle": by_angle}


def measure_equivariance(weights_path: str | Path, views_path: str | Path, origin_db: str | Path,
                         params: ViewParams, *, n_examples: int | None, n_rotations: int, angles_deg,
                         n_axes: int, seed: int, batch_size: int, device: str) -> tuple[pd.DataFrame, dict]:
    """Measure one trained run's encoder (``final/weights.pt``) on view A of the first
    ``n_examples`` pairs of ``views_path``, whose atoms come from ``origin_db`` and the
    atom store; ``params`` must be those that made the view set (e.g.
    ``ViewParams.from_config(config)``; checked by :func:`check_reproduced`).

    Returns ``(samples, summary)``: the rows of :func:`measure_encoder` and a JSON-ready
    record with ``arch``, ``family``, ``equivariant``, ``n_features``, ``n_invariant``,
    ``n_examples``, the settings, ``stored_image_error`` (:func:`check_reproduced`), ``spread`` (:func:`measure_encoder`'s spreads),
    :func:`summarise`'s ``kinds`` and ``by_angle``, ``device`` and ``compute_s``.
    """
    start = time.perf_counter()
    device = pick_device(device)
    model, record = load_trained_model(weights_path, device)
    crops, stored = view_a_crops(views_path, origin_db, params, n_examples)
    image_error = check_reproduced(crops, stored, params.image, views_path)
    samples, spreads = measure_encoder(model.encoder, crops, params.image, stored=stored,
                                       n_rotations=n_rotations, angles_deg=angles_deg, n_axes=n_axes,
                                       seed=seed, batch_size=batch_size, device=device)
    symmetry = FeatureSymmetry(model.encoder)
    summary = {"arch": record["arch"], "family": record["spec"]["family"],
               "equivariant": symmetry.equivariant, "n_features": symmetry.n_features,
               "n_invariant": symmetry.n_invariant, "n_examples": len(crops), "views": str(views_path),
               "n_rotations": n_rotations, "angles_deg": list(angles_deg), "n_axes": n_axes, "seed": seed,
               "spread": spreads, "stored_image_error": image_error, **summarise(samples),
               "device": str(device), "compute_s": time.perf_counter() - start}
    return samples, summary
