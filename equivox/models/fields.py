"""Shared escnn helpers: the study's field types, grid, nonlinearities, pooling and init.

Every escnn object the model zoo builds is made here, so the study-wide choices
(docs/architectures.md) live in one place:

* symmetry group: SO(3) acting on R^3 (``escnn.gspaces.rot3dOnR3``);
* features: Fourier fields band-limited to frequency 2, i.e. one *spectral regular
  representation* of 1 + 9 + 25 = 35 channels ("width" counts these);
* Fourier nonlinearities sampled on the 96-point ``thomson_cube`` grid (24 cube
  rotations x N=4 points), which is closed under the 24 rotations of the cube, so
  those rotations act on the grid by permutation and pointwise functions, extreme
  pooling and the 90-degree rotations of voxels commute exactly.

escnn is imported lazily, through :func:`equivox.escnn_setup.import_escnn`, the first
time a helper needs it; a process that already imported it that way keeps its cache.

Voxel frame. A view is a ``(C, L, L, L)`` tensor whose spatial axes 0, 1, 2 are the
x, y, z axes of the view's frame (the voxelizer's convention). escnn reads the same
axes as (-Z, -Y, X) of its own frame, so a rotation ``R`` of the voxel frame is the
escnn rotation ``VOXEL_TO_ESCNN @ R @ VOXEL_TO_ESCNN.T``; :func:`group_element` does
the conversion. (The map has determinant -1, which is harmless: conjugating by it maps
rotations to rotations.)
"""
from __future__ import annotations

import math
import sys
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from equivox.escnn_setup import import_escnn

if TYPE_CHECKING:
    from escnn.group import GroupElement
    from escnn.gspaces import GSpace
    from escnn.nn import FieldType, FourierFieldType, GeometricTensor

BAND_LIMIT = 2
"""Highest SO(3) frequency kept in every Fourier field."""

GRID_KWARGS = {"type": "thomson_cube", "N": 4}
"""Arguments of ``SO3.grid`` for Fourier nonlinearities and pooling: 24 * 4 = 96 points."""

VOXEL_TO_ESCNN = np.array([[0, 0, 1], [0, -1, 0], [-1, 0, 0]])
"""Coordinates in escnn's frame of a point given in the voxel frame (axes 0, 1, 2 = x, y, z)."""


# --- escnn access ---------------------------------------------------------------------

def escnn_module():
    """The ``escnn`` module, imported through :func:`import_escnn` unless it already was."""
    escnn = sys.modules.get("escnn")
    if escnn is None or _cache_in_site_packages(escnn):
        escnn = import_escnn()
    return escnn


def _cache_in_site_packages(escnn) -> bool:
    cache = Path(escnn.group.__cache_path__).resolve()
    return Path(escnn.__file__).resolve().parent in cache.parents


@lru_cache(maxsize=None)
def gspace() -> GSpace:
    """SO(3) acting on R^3: the symmetry of every equivariant encoder."""
    return escnn_module().gspaces.rot3dOnR3(maximum_frequency=BAND_LIMIT)


@lru_cache(maxsize=None)
def so3_grid() -> tuple[GroupElement, ...]:
    """The 96 SO(3) elements on which Fourier fields are sampled (see ``GRID_KWARGS``)."""
    return tuple(gspace().fibergroup.grid(**GRID_KWARGS))


def group_element(rotation: np.ndarray) -> GroupElement:
    """The escnn SO(3) element of a rotation matrix given in the voxel frame."""
    matrix = VOXEL_TO_ESCNN @ np.asarray(rotation, dtype=float) @ VOXEL_TO_ESCNN.T
    return gspace().fibergroup.element(matrix, "MAT")


# --- field types ----------------------------------------------------------------------

def trivial_type(channels: int) -> FieldType:
    """``channels`` scalar fields, e.g. the element channels of a voxelized view."""
    gs = gspace()
    return escnn_module().nn.FieldType(gs, channels * [gs.trivial_repr])


def fourier_type(channels: int) -> FourierFieldType:
    """``channels`` spectral regular representations, 35 tensor channels each."""
    gs = gspace()
    return escnn_module().nn.FourierFieldType(gs, channels, gs.fibergroup.bl_irreps(BAND_LIMIT))


def gated_type(field_type: FieldType) -> FieldType:
    """``field_type`` preceded by one scalar gate per field (input of a gated nonlinearity)."""
    gates = len(field_type) * [field_type.gspace.trivial_repr]
    return escnn_module().nn.FieldType(field_type.gspace, gates + list(field_type.representations))


def fiber_type(field_type: FieldType, copies: int = 1) -> FieldType:
    """The fibers of ``field_type`` (repeated ``copies`` times) as features of a 0D space.

    The Siamese head sees the 1x1x1 encoder outputs of both views as such features.
    """
    gs0 = escnn_module().gspaces.no_base_space(field_type.fibergroup)
    return escnn_module().nn.FieldType(gs0, copies * list(field_type.representations))


def hidden_fourier_type(channels: int) -> FourierFieldType:
    """``channels`` spectral regular representations on a 0D space (equivariant MLP)."""
    so3 = gspace().fibergroup
    gs0 = escnn_module().gspaces.no_base_space(so3)
    return escnn_module().nn.FourierFieldType(gs0, channels, so3.bl_irreps(BAND_LIMIT))


def sphere_type() -> FourierFieldType:
    """One band-limited function on the sphere S^2 = SO(3)/SO(2) (0D space, 9 channels).

    The SO(2) subgroup ``(False, -1)`` is the stabiliser of escnn's Z axis, so the function
    is evaluated at a direction ``d`` through any rotation taking Z to ``d``.
    """
    so3 = gspace().fibergroup
    gs0 = escnn_module().gspaces.no_base_space(so3)
    return escnn_module().nn.FourierFieldType(
        gs0, 1, so3.bl_irreps(BAND_LIMIT), subgroup_id=(False, -1))


def directions_to_elements(directions: np.ndarray) -> list[GroupElement]:
    """For each unit vector of ``directions`` (voxel frame, shape (n, 3)), an SO(3)
    element taking escnn's Z axis to it, for evaluating :func:`sphere_type` functions."""
    so3 = gspace().fibergroup
    elements = []
    for direction in np.asarray(directions, dtype=float):
        z = VOXEL_TO_ESCNN @ direction
        helper = [1.0, 0.0, 0.0] if abs(z[0]) < 0.9 else [0.0, 1.0, 0.0]
        x = np.cross(helper, z)
        x /= np.linalg.norm(x)
        # columns x, z cross x, z: a right-handed frame, so a rotation taking Z to z
        elements.append(so3.element(np.stack([x, np.cross(z, x), z], axis=1), "MAT"))
    return elements


# --- layers ---------------------------------------------------------------------------

def conv3d(in_type: FieldType, out_type: FieldType, kernel_size: int, *,
           stride: int = 1, padding: int = 0, bias: bool = False) -> nn.Module:
    """``escnn.nn.R3Conv`` with He initialisation (:func:`he_init_`).

    Shapes: ``(B, in_type.size, n, n, n) -> (B, out_type.size, m, m, m)`` with
    ``m = (n + 2 padding - kernel_size) // stride + 1``.
    """
    conv = escnn_module().nn.R3Conv(in_type, out_type, kernel_size, stride=stride,
                                    padding=padding, bias=bias, initialize=False)
    he_init_(conv.weights.data, conv.basisexpansion)
    return conv


def linear(in_type: FieldType, out_type: FieldType, *, bias: bool = True) -> nn.Module:
    """``escnn.nn.Linear`` with He initialisation: ``(B, in_type.size) -> (B, out_type.size)``."""
    layer = escnn_module().nn.Linear(in_type, out_type, bias=bias, initialize=False)
    he_init_(layer.weights.data, layer.basisexpansion)
    return layer


def batch_norm(field_type: FieldType) -> nn.Module:
    """Equivariant batch norm of ``field_type`` (3D, or 1D on a 0D space)."""
    enn = escnn_module().nn
    norm = enn.IIDBatchNorm3d if field_type.gspace.dimensionality == 3 else enn.IIDBatchNorm1d
    return norm(field_type)


def gated_nonlinearity(field_type: FieldType) -> nn.Module:
    """Sigmoid-gated nonlinearity: input :func:`gated_type` ``(field_type)``, output ``field_type``."""
    return escnn_module().nn.GatedNonLinearity1(gated_type(field_type))


def first_hermite(x: torch.Tensor) -> torch.Tensor:
    """First Hermite function, normalised: sqrt(2) pi^(-1/4) x exp(-x^2 / 2)."""
    return math.sqrt(2) * math.pi ** -0.25 * x * torch.exp(-x ** 2 / 2)


def leaky_hardshrink(x: torch.Tensor, cutoff: float = 2.0, slope: float = 0.1) -> torch.Tensor:
    """Hard shrink at ``cutoff`` plus a linear leak (the original notes saw collapses with it)."""
    return F.hardshrink(x, cutoff) + slope * x


FOURIER_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "elu": F.elu,
    "silu": F.silu,
    "tanh": torch.tanh,
    "leaky_hardshrink": leaky_hardshrink,
    "first_hermite": first_hermite,
}
"""Functions a Fourier nonlinearity may apply on the grid, by config name."""


def fourier_nonlinearity(field_type: FourierFieldType, function: str) -> nn.Module:
    """Sample on :func:`so3_grid`, apply ``FOURIER_FUNCTIONS[function]``, transform back.

    Shape-preserving. Exactly equivariant to the 24 rotations of the cube (they permute
    the grid), approximately to other rotations.
    """
    return escnn_module().nn.FourierPointwise(
        field_type, list(so3_grid()), function=FOURIER_FUNCTIONS[function])


def antialiased_avg_pool(field_type: FieldType, stride: int) -> nn.Module:
    """The escnn SE(3) example's skip-path pool: Gaussian blur (sigma 0.33, 3^3), strided.

    Shapes: ``(B, C, n, n, n) -> (B, C, (n - 1) // stride + 1, ...)``.
    """
    return escnn_module().nn.PointwiseAvgPoolAntialiased3D(
        field_type, sigma=0.33, stride=stride, padding=1)


def directsum(tensors: Sequence[GeometricTensor]) -> GeometricTensor:
    """Concatenate geometric tensors along channels (their field types concatenate too)."""
    return escnn_module().nn.tensor_directsum(list(tensors))


class GaussianDownsample3d(nn.Module):
    """Depth-wise Gaussian blur then subsampling by ``stride``, corrected at the edges.

    Zero padding keeps the window centred on every kept voxel, and the output is divided
    by the blur of an all-ones image, so edge voxels are weighted averages too. Both are
    symmetric under the cube's rotations, so this commutes with them exactly when
    ``n - 1`` is a multiple of ``stride``.

    Shapes: ``(B, C, n, n, n) -> (B, C, (n - 1) // stride + 1, ...)``.
    """

    def __init__(self, sigma: float = 0.6, stride: int = 2):
        super().__init__()
        radius = int(round(3 * sigma))
        offsets = torch.arange(-radius, radius + 1, dtype=torch.get_default_dtype())
        profile = torch.exp(-offsets ** 2 / (2 * sigma ** 2))
        kernel = profile[:, None, None] * profile[None, :, None] * profile[None, None, :]
        self.register_buffer("kernel", (kernel / kernel.sum())[None, None], persistent=False)
        self.stride = stride
        self.padding = radius

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        kernel = self.kernel.to(x.dtype)
        blurred = F.conv3d(x, kernel.expand(channels, -1, -1, -1, -1), stride=self.stride,
                           padding=self.padding, groups=channels)
        coverage = F.conv3d(torch.ones_like(x[:1, :1]), kernel, stride=self.stride,
                            padding=self.padding)
        return blurred / coverage


class FourierPool3d(nn.Module):
    """Downsample Fourier fields by 2, exactly equivariantly to the cube's rotations.

    ``mode="extreme"``: sample every field on :func:`so3_grid`, keep in each 3^3 window
    the value of largest magnitude (max pooling would bias the frequency-0 coefficient
    upwards), blur-and-subsample, transform back. ``mode="average"``: blur-and-subsample
    the coefficients directly (averaging is linear, so it commutes with the transforms).

    Shapes: ``(B, C * 35, n, n, n) -> (B, C * 35, (n + 1) // 2, ...)`` for odd ``n``.
    """

    def __init__(self, field_type: FourierFieldType, mode: str = "extreme"):
        super().__init__()
        if mode not in ("extreme", "average"):
            raise ValueError(f"pool mode must be 'extreme' or 'average', not {mode!r}")
        enn = escnn_module().nn
        self.in_type = self.out_type = field_type
        self.mode = mode
        self.downsample = GaussianDownsample3d(sigma=0.6, stride=2)
        if mode == "extreme":
            grid = list(so3_grid())
            self.ift = enn.InverseFourierTransform(field_type, grid)
            self.ft = enn.FourierTransform(grid, field_type, extra_irreps=field_type.bl_irreps)

    def forward(self, x: GeometricTensor) -> GeometricTensor:
        if self.mode == "average":
            return self.out_type(self.downsample(x.tensor))
        samples = self.ift(x)  # GridTensor (B, C, 96, n, n, n)
        b, c, g, *spatial = samples.tensor.shape
        flat = samples.tensor.reshape(b, c * g, *spatial)
        _, index = F.max_pool3d(flat.abs(), 3, stride=1, padding=1, return_indices=True)
        extreme = flat.flatten(2).gather(2, index.flatten(2)).view_as(flat)
        pooled = self.downsample(extreme)
        samples.tensor = pooled.reshape(b, c, g, *pooled.shape[2:])
        return self.ft(samples)


# --- initialisation -------------------------------------------------------------------

def he_init_(weights: torch.Tensor, basis) -> None:
    """Fill ``weights`` like ``escnn.nn.init.generalized_he_init``, in milliseconds.

    escnn computes the per-weight variance with a Python loop over every weight (about
    12 s for a 98 -> 98 regular-representation 3^3 conv); this computes the same
    variances per block of ``basis`` (an escnn ``BlocksBasisExpansion``) and tiles them
    over the field copies. Same variances, same random draw: the weights are bitwise
    those escnn would give under the same seed (tests/test_models.py checks this).
    """
    weights.copy_(he_variances(basis).to(weights.device) * torch.randn_like(weights))


def he_variances(basis) -> torch.Tensor:
    """Per-weight scale of escnn's generalized He init for a ``BlocksBasisExpansion``.

    escnn's rule: weight ``w`` from input irrep type ``i`` to output irrep slot ``o``
    gets ``1 / sqrt(n_types(o) * n_weights(i, o))``, where ``n_types(o)`` counts the
    input irrep types reaching slot ``o`` and ``n_weights(i, o)`` the weights from type
    ``i`` into ``o``. Both depend only on the output representation and the irrep index
    within it, so they are computed once per block.
    """
    pairs = basis._representations_pairs  # (in_repr_name, out_repr_name), weight order
    block_attrs = {
        pair: list(getattr(basis, f"block_expansion_{basis._escape_pair(pair)}").get_basis_info())
        for pair in pairs
    }
    weights_into = defaultdict(int)  # (out_repr, out_irrep_idx, in_irrep) -> count
    types_into = defaultdict(set)    # (out_repr, out_irrep_idx) -> {in_irrep}
    for (in_repr, out_repr), attrs in block_attrs.items():
        for attr in attrs:
            slot = (out_repr, attr["out_irrep_idx"])
            weights_into[slot + (attr["in_irrep"],)] += basis._in_count[in_repr]
            types_into[slot].add(attr["in_irrep"])
    blocks = []
    for (in_repr, out_repr), attrs in block_attrs.items():
        scale = np.array([
            1.0 / math.sqrt(len(types_into[(out_repr, a["out_irrep_idx"])])
                            * weights_into[(out_repr, a["out_irrep_idx"], a["in_irrep"])])
            for a in attrs
        ])
        blocks.append(np.tile(scale, basis._in_count[in_repr] * basis._out_count[out_repr]))
    variances = torch.from_numpy(np.concatenate(blocks)).to(torch.get_default_dtype())
    if variances.numel() != basis.dimension():
        raise RuntimeError("he_variances: escnn's basis layout changed; update equivox/models/fields.py")
    return variances
