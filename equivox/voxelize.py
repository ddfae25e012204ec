"""Atoms -> 3D images, each atom spread over voxels by the exact sphere-voxel overlap.

Stage 5 ("voxelize") of the pipeline. Every atom is a ball of radius ``radius_A``; the
value it adds to a voxel of its channel is

    occupancy * volume(ball ∩ voxel) / volume(ball)

so an atom wholly inside the grid adds exactly its occupancy to the image, and an
atom that crosses the grid edge adds only the part inside.

Grid convention
---------------
Coordinates are in the view frame with the view centre at the origin. The grid spans
``[-length_A/2, +length_A/2]`` on each axis; voxel ``(i, j, k)`` covers
``x in [-length_A/2 + i*resolution_A, -length_A/2 + (i+1)*resolution_A]`` (likewise
``y`` with ``j`` and ``z`` with ``k``), so image axis 0 is x, axis 1 is y, axis 2 is z,
and an image has shape ``(C, L, L, L)`` with ``L = length_voxels``. This is the same
placement as macromol_voxelize with ``Grid(center_A=0)``.

The maths (derivation in docs/voxelizer.md)
-------------------------------------------
Work in units of the atom's radius with the atom at the origin, so the atom is the unit
ball B. For ``a, b, c >= 0`` let ``G(a, b, c) = vol(B ∩ {x > a, y > b, z > c})``. It is
zero when ``a² + b² + c² >= 1``; otherwise the divergence theorem (``vol = ⅓∮ p·n dS``)
and Gauss-Bonnet for the curvilinear spherical triangle on the sphere give the closed form

    3 G = α_xy + α_xz + α_yz - π - 3abc + ab·t_xy + ac·t_xz + bc·t_yz
          - ½ [a(3 - a²) φ_x + b(3 - b²) φ_y + c(3 - c²) φ_z]

    t_xy  = sqrt(1 - a² - b²)                       (likewise t_xz, t_yz)
    α_xy  = atan2(t_xy, ab)                         angle of the triangle at x=a, y=b
    φ_x   = atan2(t_xy·t_xz - bc, b·t_xz + c·t_xy)  arc angle of the edge on x=a
                                                     (φ_y, φ_z by permuting a, b, c)

Only ``atan2`` and ``sqrt`` of non-negative numbers appear, so it is stable everywhere,
including near-degenerate triangles, and it is evaluated in float64.

For signed bounds: with Y any constraint on y and z and ``F(u) = vol(B ∩ {x > u} ∩ Y)``
for ``u >= 0``, the mirror symmetry x -> -x of B gives, for any real a,
``vol(B ∩ {x > a} ∩ Y) = F(0) + sign(a)·(F(|a|) - F(0))``, and the volume in
``a0 < x < a1`` is the difference of that at ``a0`` and ``a1``, where ``F(0)`` cancels.
The same holds on each axis in turn. So for an atom whose voxels
have edges ``e_0 < ... < e_K`` along each axis, one evaluation of G on the
``(K+2)³`` grid of abscissas ``(|e_0|, ..., |e_K|, 0)`` followed by, per axis,
``h_m = sign(e_m)·(g_m - g_0)`` and ``overlap_m = h_m - h_{m+1}`` gives the exact
overlap with all ``K³`` voxels (``_voxel_fractions``). The block is chosen so that
``e_0`` and ``e_K`` lie at least one radius from the centre, where G vanishes, so only
the ``K³`` abscissas of the inner edges and 0 need evaluating. ``_add_balls``, which applies it
to a chunk of atoms and adds the results to the image, is the one hot loop.
"""
from __future__ import annotations

import fnmatch
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["ImageParams", "channel_index", "atom_radii", "image_from_atoms"]

_BALL_VOLUME = 4.0 * math.pi / 3.0
# Atoms per pass of the hot loop. CPU: each float64 temporary is then 0.5 MiB and stays in
# cache (8192 atoms ran ~2x slower). GPU: a pass fills the device and bounds its memory.
_CHUNK_ATOMS = {"cpu": 1024, "default": 1 << 18}


@dataclass(frozen=True)
class ImageParams:
    """Shape and content of one view.

    Attributes:
        length_voxels: voxels along each edge of the cubic grid (L).
        resolution_A: edge length of one voxel, in angstroms.
        channels: one fnmatch pattern per channel, matched against upper-case element
            symbols; an atom goes to the first channel whose pattern matches ("*"
            matches every element) and is left out of the image if none does.
        element_radii_A: (element, radius_A) pairs overriding ``default_radius_A`` for
            those element symbols (exact, upper case). A mapping is accepted too.
        default_radius_A: radius of every other atom, in angstroms.
    """

    length_voxels: int
    resolution_A: float
    channels: tuple[str, ...]
    element_radii_A: tuple[tuple[str, float], ...]
    default_radius_A: float

    def __post_init__(self) -> None:
        # Lists and mappings (as read from YAML) are frozen into tuples so that the
        # parameters stay hashable and immutable.
        if (isinstance(self.length_voxels, bool) or not isinstance(self.length_voxels, numbers.Integral)
                or self.length_voxels < 1):
            raise ValueError(f"ImageParams.length_voxels must be an int >= 1, got {self.length_voxels!r}")
        _check_positive("resolution_A", self.resolution_A)
        _check_positive("default_radius_A", self.default_radius_A)

        channels = self.channels
        if isinstance(channels, str) or not isinstance(channels, Sequence) or not channels:
            raise ValueError(f"ImageParams.channels must be a non-empty sequence of patterns, "
                             f"got {channels!r}")
        for pattern in channels:
            if not isinstance(pattern, str) or not pattern or pattern != pattern.upper():
                raise ValueError("ImageParams.channels: patterns must be non-empty upper-case strings, "
                                 f"got {pattern!r}")
        object.__setattr__(self, "channels", tuple(channels))

        radii = self.element_radii_A
        pairs = list(radii.items()) if isinstance(radii, Mapping) else list(radii)
        frozen = []
        for pair in pairs:
            if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
                raise ValueError(f"ImageParams.element_radii_A: expected (element, radius_A) pairs, "
                                 f"got {pair!r}")
            element, radius_A = pair
            if not isinstance(element, str) or not element or element != element.upper():
                raise ValueError("ImageParams.element_radii_A: elements must be upper-case symbols, "
                                 f"got {element!r}")
            _check_positive(f"element_radii_A[{element!r}]", radius_A)
            frozen.append((element, float(radius_A)))
        elements = [element for element, _ in frozen]
        if len(set(elements)) != len(elements):
            raise ValueError(f"ImageParams.element_radii_A: duplicate elements in {elements}")
        object.__setattr__(self, "element_radii_A", tuple(frozen))

    @property
    def length_A(self) -> float:
        """Edge length of the whole grid, in angstroms."""
        return self.length_voxels * self.resolution_A


def _check_positive(field: str, value: object) -> None:
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or value <= 0):
        raise ValueError(f"ImageParams.{field} must be a finite number > 0, got {value!r}")


def _element_strings(elements: Sequence[str] | np.ndarray) -> np.ndarray:
    """Element symbols as a str array; the atom store keeps them as bytes (S2)."""
    array = np.asarray(elements)
    if array.dtype.kind == "S":
        array = np.char.decode(array, "ascii")
    return array.astype(str)


def channel_index(elements: Sequence[str] | np.ndarray, channels: Sequence[str]) -> np.ndarray:
    """Channel of each atom, by the first pattern in ``channels`` that matches its element.

    Args:
        elements: (N,) upper-case element symbols ("C", "FE", "SE"), str or bytes.
        channels: fnmatch patterns, e.g. ``ImageParams.channels``.

    Returns:
        (N,) int64 channel indices; -1 where no pattern matches (the atom is ignored).
    """
    unique, inverse = np.unique(_element_strings(elements), return_inverse=True)
    table = np.array(
        [next((i for i, pattern in enumerate(channels) if fnmatch.fnmatchcase(element, pattern)), -1)
         for element in unique], dtype=np.int64)
    return table[inverse].reshape(-1)


def atom_radii(elements: Sequence[str] | np.ndarray, params: ImageParams) -> np.ndarray:
    """(N,) float32 radius_A of each atom: ``params.element_radii_A`` or the default."""
    unique, inverse = np.unique(_element_strings(elements), return_inverse=True)
    lookup = dict(params.element_radii_A)
    table = np.array([lookup.get(element, params.default_radius_A) for element in unique], dtype=np.float32)
    return table[inverse].reshape(-1)


def image_from_atoms(
    coords_A: np.ndarray | torch.Tensor,
    channels: np.ndarray | torch.Tensor,
    radii_A: np.ndarray | torch.Tensor,
    occupancies: np.ndarray | torch.Tensor,
    params: ImageParams,
    batch_index: np.ndarray | torch.Tensor | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Voxelize atoms into one view, or into ``batch_size`` views at once.

    Args:
        coords_A: (N, 3) atom centres in the view frame (view centre at the origin),
            in angstroms. If a tensor, the image is computed on its device.
        channels: (N,) int channel of each atom (``channel_index``); -1 = ignore.
        radii_A: (N,) atom radii in angstroms (``atom_radii``), > 0.
        occupancies: (N,) weight of each atom (crystallographic occupancy).
        params: grid size, resolution and channel count.
        batch_index: (N,) int view of each atom, in ``[0, batch_size)``.
        batch_size: number of views; required with ``batch_index``.

    Returns:
        float32 tensor (C, L, L, L), or (batch_size, C, L, L, L) with ``batch_index``,
        C = len(params.channels), L = params.length_voxels, axes (channel, x, y, z).
        Atoms more than their radius outside the grid add nothing; atoms crossing
        the grid edge add only their overlap with the grid.
    """
    if (batch_index is None) != (batch_size is None):
        raise ValueError("image_from_atoms: give both batch_index and batch_size, or neither")
    device = coords_A.device if isinstance(coords_A, torch.Tensor) else torch.device("cpu")
    coords = torch.as_tensor(coords_A, dtype=torch.float64, device=device)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError(f"image_from_atoms: coords_A must have shape (N, 3), got {tuple(coords.shape)}")
    n_atoms = coords.shape[0]
    channel = _atom_vector("channels", channels, torch.int64, device, n_atoms)
    radius = _atom_vector("radii_A", radii_A, torch.float64, device, n_atoms)
    occupancy = _atom_vector("occupancies", occupancies, torch.float64, device, n_atoms)
    n_views = 1 if batch_size is None else int(batch_size)
    view = (torch.zeros(n_atoms, dtype=torch.int64, device=device) if batch_index is None
            else _atom_vector("batch_index", batch_index, torch.int64, device, n_atoms))

    n_channels, length = len(params.channels), params.length_voxels
    if n_atoms and bool(((channel >= n_channels) | (view < 0) | (view >= n_views)).any()):
        raise ValueError(f"image_from_atoms: channels must be < {n_channels} and batch_index "
                         f"in [0, {n_views})")

    # One slot past the image collects the contributions to voxels outside the grid,
    # so that no data-dependent masking (a device sync) is needed per voxel.
    image = torch.zeros(n_views * n_channels * length**3 + 1, dtype=torch.float32, device=device)
    half_A = params.length_A / 2
    touches_grid = (channel >= 0) & (coords.abs() < half_A + radius[:, None]).all(dim=1)
    keep = touches_grid.nonzero().squeeze(1)
    if keep.numel():
        # Voxels a ball can touch along one axis: at most ceil(2r / resolution) + 1.
        span = math.ceil(2 * float(radius[keep].max()) / params.resolution_A) + 1
        xyz = coords[keep].T.contiguous()  # (3, N): atoms along the contiguous axis
        radius, weight = radius[keep], occupancy[keep]
        offset = (view[keep] * n_channels + channel[keep]) * length**3
        chunk = _CHUNK_ATOMS.get(device.type, _CHUNK_ATOMS["default"])
        for start in range(0, keep.numel(), chunk):
            atoms = slice(start, start + chunk)
            _add_balls(image, xyz[:, atoms], radius[atoms], weight[atoms], offset[atoms], span, params)
    image = image[:-1].view(n_views, n_channels, length, length, length)
    return image if batch_index is not None else image[0]


def _atom_vector(name: str, values, dtype: torch.dtype, device: torch.device, n_atoms: int) -> torch.Tensor:
    vector = torch.as_tensor(values, device=device).to(dtype)
    if vector.shape != (n_atoms,):
        raise ValueError(f"image_from_atoms: {name} must have shape ({n_atoms},), got {tuple(vector.shape)}")
    return vector


def _add_balls(image: torch.Tensor, xyz_A: torch.Tensor, radius_A: torch.Tensor, weight: torch.Tensor,
               offset: torch.Tensor, span: int, params: ImageParams) -> None:
    """Add N balls to the flat ``image`` (the hot loop).

    Args:
        image: flat float32 images, plus one last slot that absorbs voxels off the grid.
        xyz_A: (3, N) float64 ball centres; radius_A, weight: (N,) float64.
        offset: (N,) int64 flat index of voxel (0, 0, 0) of each ball's view and channel.
        span: voxels per axis of the block that holds any one ball.
    """
    length, half_A = params.length_voxels, params.length_A / 2
    # Atoms run along the last, contiguous axis of every array: the broadcasts over
    # voxel offsets then vectorise on CPU and coalesce on GPU.
    first = torch.floor((xyz_A - radius_A + half_A) / params.resolution_A).long()  # (3, N)
    steps = torch.arange(span + 1, device=image.device)[:, None]
    edges_A = -half_A + (first[:, None, :] + steps) * params.resolution_A  # (3, span+1, N)
    fractions = _voxel_fractions((edges_A - xyz_A[:, None, :]) / radius_A)  # (span, span, span, N)

    voxel = first[:, None, :] + steps[:span]  # (3, span, N)
    ix, iy, iz = voxel[0, :, None, None], voxel[1, None, :, None], voxel[2, None, None, :]
    inside = ((ix >= 0) & (ix < length)) & ((iy >= 0) & (iy < length)) & ((iz >= 0) & (iz < length))
    flat = torch.where(inside, offset + (ix * length + iy) * length + iz, image.numel() - 1)
    image.index_add_(0, flat.reshape(-1), (fractions * weight).to(torch.float32).reshape(-1))


def _voxel_fractions(edges: torch.Tensor) -> torch.Tensor:
    """Fraction of the unit ball inside each voxel of a small block, for N balls at once.

    Args:
        edges: (3, K+1, N) float64 voxel edges along x, y, z, ascending, relative to the
            ball centre and in units of its radius, for N balls.

    Returns:
        (K, K, K, N) float64 volume(ball ∩ voxel) / volume(ball), voxel axes x, y, z.
    """
    _, n_edges, n_atoms = edges.shape
    sign = edges.sign()  # sign(0) = 0 is right: g_m - g_0 vanishes there anyway
    # Abscissas |e_0| .. |e_K| and 0 per axis. The first and last edges lie at least one
    # radius from the centre (the block is chosen so), where G vanishes: G is evaluated
    # only at the K-1 inner edges and 0, (K/(K+2))³ of the full grid (1/8 for K = 2),
    # and the rest stays zero. Clamping at 1 keeps every intermediate finite.
    inner = torch.cat([edges[:, 1:-1].abs().clamp(max=1.0), edges.new_zeros(3, 1, n_atoms)], dim=1)
    g_inner = _ball_corner_volume(inner[0, :, None, None], inner[1, None, :, None],
                                  inner[2, None, None, :])  # (K, K, K, N)
    at = torch.cat([torch.arange(1, n_edges - 1), torch.tensor([n_edges])]).to(edges.device)
    g = edges.new_zeros(n_edges + 1, n_edges + 1, n_edges + 1, n_atoms)  # (K+2, K+2, K+2, N)
    g[at[:, None, None], at[None, :, None], at[None, None, :]] = g_inner
    for axis in range(3):
        shape = [1, 1, 1, n_atoms]
        shape[axis] = n_edges
        h = sign[axis].reshape(shape) * (g.narrow(axis, 0, n_edges) - g.narrow(axis, n_edges, 1))
        g = h.narrow(axis, 0, n_edges - 1) - h.narrow(axis, 1, n_edges - 1)
    return g / _BALL_VOLUME


def _ball_corner_volume(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """G(a, b, c) = vol(unit ball ∩ {x > a, y > b, z > c}) for broadcastable a, b, c in [0, 1].

    The terms are grouped so that most work happens on the pairwise (2D) broadcasts and
    the full 3D broadcast sees few, fused (addcmul) operations.
    """
    a2, b2, c2 = a * a, b * b, c * c
    ab, ac, bc = a * b, a * c, b * c
    rest_xy = 1 - a2 - b2
    t_xy = rest_xy.clamp(min=0).sqrt()  # z of the triangle's vertex on x=a, y=b
    t_xz = (1 - a2 - c2).clamp(min=0).sqrt()
    t_yz = (1 - b2 - c2).clamp(min=0).sqrt()
    # α_xy + α_xz + α_yz - π + ab·t_xy + ac·t_xz + bc·t_yz - 3abc
    volume = ((torch.atan2(t_xy, ab) + ab * t_xy - math.pi) + (torch.atan2(t_xz, ac) + ac * t_xz)
              + (torch.atan2(t_yz, bc) + bc * t_yz))
    volume = torch.addcmul(volume, ab, c, value=-3)
    # - ½ [a(3 - a²) φ_x + b(3 - b²) φ_y + c(3 - c²) φ_z]
    phi_x = torch.atan2(torch.addcmul(-bc, t_xy, t_xz), torch.addcmul(b * t_xz, c, t_xy))
    phi_y = torch.atan2(torch.addcmul(-ac, t_xy, t_yz), torch.addcmul(a * t_yz, c, t_xy))
    phi_z = torch.atan2(torch.addcmul(-ab, t_xz, t_yz), torch.addcmul(a * t_yz, b, t_xz))
    volume = torch.addcmul(volume, a * (3 - a2), phi_x, value=-0.5)
    volume = torch.addcmul(volume, b * (3 - b2), phi_y, value=-0.5)
    volume = torch.addcmul(volume, c * (3 - c2), phi_z, value=-0.5)
    return torch.where(rest_xy > c2, volume / 3, 0.0)  # G = 0 unless a² + b² + c² < 1
