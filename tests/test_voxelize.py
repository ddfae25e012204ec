"""equivox.voxelize: exact sphere-voxel overlap images, checked by hand and by quadrature."""
import gzip
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import integrate

from equivox.voxelize import atom_radii, channel_index, image_from_atoms
from tests.defaults import IMAGE_PARAMS

PARAMS = IMAGE_PARAMS  # 21 voxels of 0.75 A, channels C, N, O, *
RES_A = PARAMS.resolution_A
HALF_A = PARAMS.length_A / 2
CENTRE_VOXEL = PARAMS.length_voxels // 2  # voxel 10 is centred on the origin


def one_atom(centre_A, radius_A=0.375, occupancy=1.0, channel=0, params=PARAMS):
    """(C, L, L, L) float64 numpy image of one atom."""
    image = image_from_atoms(np.array([centre_A], dtype=float), np.array([channel]), np.array([radius_A]),
                             np.array([occupancy]), params)
    return image.double().numpy()


def nonzero_voxels(image, tol=1e-7):
    """{(channel, i, j, k): value} of the voxels above tol."""
    return {tuple(int(i) for i in idx): float(image[tuple(idx)]) for idx in np.argwhere(image > tol)}


def voxel_bounds_A(index):
    lower = -HALF_A + np.asarray(index) * RES_A
    return lower, lower + RES_A


def quadrature_overlap_A3(centre_A, radius_A, lower_A, upper_A):
    """vol(ball ∩ box) by nested adaptive quadrature of the ball's x-chord inside the box.

    Independent of the closed form: only the chord length sqrt(r² - y² - z²) is used.
    The integrands are continuous with kinks at known places, which are passed to
    scipy's QUADPACK as break points; this agrees with exact volumes to ~1e-15 A³.
    """
    (cx, cy, cz), r = centre_A, radius_A
    dxs, dys = (lower_A[0] - cx, upper_A[0] - cx), (lower_A[1] - cy, upper_A[1] - cy)

    def kinks(centre, squared_offsets, low, high):
        return [centre + sign * math.sqrt(s) for s in squared_offsets if s > 0 for sign in (-1, 1)
                if low < centre + sign * math.sqrt(s) < high] or None

    def chord(y, z):
        rest = r * r - (y - cy) ** 2 - (z - cz) ** 2
        if rest <= 0:
            return 0.0
        half = math.sqrt(rest)
        return max(0.0, min(upper_A[0], cx + half) - max(lower_A[0], cx - half))

    def slice_area(z):
        rho2 = r * r - (z - cz) ** 2
        y0, y1 = max(lower_A[1], cy - math.sqrt(max(rho2, 0))), min(upper_A[1], cy + math.sqrt(max(rho2, 0)))
        if rho2 <= 0 or y0 >= y1:
            return 0.0
        return integrate.quad(chord, y0, y1, args=(z,), points=kinks(cy, [rho2 - dx * dx for dx in dxs], y0, y1),
                              epsabs=1e-13, epsrel=1e-12, limit=200)[0]

    z0, z1 = max(lower_A[2], cz - r), min(upper_A[2], cz + r)
    if z0 >= z1:
        return 0.0
    squared = ([r * r - dx * dx for dx in dxs] + [r * r - dy * dy for dy in dys]
               + [r * r - dx * dx - dy * dy for dx in dxs for dy in dys])
    return integrate.quad(slice_area, z0, z1, points=kinks(cz, squared, z0, z1),
                          epsabs=1e-13, epsrel=1e-12, limit=200)[0]


def ball_volume_A3(radius_A):
    return 4 / 3 * math.pi * radius_A**3


# --- hand-computed cases ------------------------------------------------------------

@pytest.mark.parametrize("centre_A", [(0.0, 0.0, 0.0), (0.1, -0.15, 0.12), (3 * RES_A, -2 * RES_A, 5 * RES_A)])
def test_sphere_inside_one_voxel_gives_it_the_occupancy(centre_A):
    image = one_atom(centre_A, radius_A=0.2, occupancy=0.7)
    expected = tuple(CENTRE_VOXEL + round(c / RES_A) for c in centre_A)
    assert nonzero_voxels(image) == pytest.approx({(0, *expected): 0.7}, rel=1e-6)


def test_axis_order_is_x_y_z():
    image = one_atom((3 * RES_A, -2 * RES_A, 5 * RES_A), radius_A=0.2)
    assert image[0, CENTRE_VOXEL + 3, CENTRE_VOXEL - 2, CENTRE_VOXEL + 5] == pytest.approx(1, rel=1e-6)


def test_sphere_on_voxel_corner_gives_one_eighth_to_each_of_eight():
    corner_A = RES_A / 2  # voxel 10 spans [-0.375, 0.375]
    voxels = nonzero_voxels(one_atom((corner_A,) * 3))
    assert sorted(voxels) == [(0, i, j, k) for i in (10, 11) for j in (10, 11) for k in (10, 11)]
    assert list(voxels.values()) == pytest.approx([1 / 8] * 8, rel=1e-6)


def test_sphere_on_face_centre_gives_half_to_each_of_two():
    voxels = nonzero_voxels(one_atom((-RES_A / 2, 0.0, 0.0)))
    assert voxels == pytest.approx({(0, 9, 10, 10): 0.5, (0, 10, 10, 10): 0.5}, rel=1e-6)


def test_sphere_on_edge_centre_gives_quarter_to_each_of_four():
    voxels = nonzero_voxels(one_atom((0.0, RES_A / 2, -RES_A / 2)))
    assert voxels == pytest.approx({(0, 10, j, k): 0.25 for j in (10, 11) for k in (9, 10)}, rel=1e-6)


@pytest.mark.parametrize("radius_A", [0.375, 0.9, 1.7])
def test_total_is_occupancy_inside_the_grid(radius_A):
    rng = np.random.default_rng(0)
    for centre_A in rng.uniform(-HALF_A + radius_A, HALF_A - radius_A, size=(20, 3)):
        assert one_atom(centre_A, radius_A, occupancy=0.8).sum() == pytest.approx(0.8, rel=1e-6)


@pytest.mark.parametrize("depth_A", [-0.3, -0.1, 0.0, 0.05, 0.2, 0.37])
def test_sphere_crossing_one_face_keeps_only_the_inside_part(depth_A):
    """Centre at depth_A inside the +x face: the outside part is a cap of height r - depth_A."""
    radius_A = 0.375
    cap_height_A = radius_A - depth_A
    cap_A3 = math.pi * cap_height_A**2 * (3 * radius_A - cap_height_A) / 3
    expected = 1 - cap_A3 / ball_volume_A3(radius_A)
    assert one_atom((HALF_A - depth_A, 0.3, -1.1), radius_A).sum() == pytest.approx(expected, rel=1e-6)


def test_sphere_crossing_a_grid_corner_matches_quadrature():
    radius_A, centre_A = 1.1, (HALF_A - 0.2, -HALF_A + 0.45, HALF_A + 0.3)
    inside_A3 = quadrature_overlap_A3(centre_A, radius_A, (-HALF_A,) * 3, (HALF_A,) * 3)
    total = one_atom(centre_A, radius_A).sum()
    assert total == pytest.approx(inside_A3 / ball_volume_A3(radius_A), abs=1e-6)
    assert 0 < total < 0.5


def test_atom_beyond_its_radius_outside_the_grid_adds_nothing():
    assert one_atom((HALF_A + 0.376, 0.0, 0.0)).sum() == 0
    assert one_atom((-HALF_A - 2.0, 5.0, 0.0), radius_A=1.9).sum() == 0


@pytest.mark.slow
@pytest.mark.parametrize("radius_A, n_spheres", [(0.375, 3), (0.6, 1), (1.3, 1)])
def test_every_voxel_matches_quadrature(radius_A, n_spheres):
    """Per-voxel overlap of random spheres against independent quadrature, to float32."""
    rng = np.random.default_rng(int(radius_A * 100))
    for centre_A in rng.uniform(-2.0, 2.0, size=(n_spheres, 3)):
        image = one_atom(centre_A, radius_A)[0]
        lo = np.floor((centre_A - radius_A + HALF_A) / RES_A).astype(int)
        hi = np.floor((centre_A + radius_A + HALF_A) / RES_A).astype(int)
        for index in np.ndindex(*(hi - lo + 1)):
            voxel = lo + np.array(index)
            expected = quadrature_overlap_A3(centre_A, radius_A, *voxel_bounds_A(voxel)) / ball_volume_A3(radius_A)
            assert image[tuple(voxel)] == pytest.approx(expected, abs=1e-7), voxel
        assert image.sum() == pytest.approx(1, rel=1e-6)


def test_small_and_large_balls_in_one_call_equal_one_ball_per_call():
    """The block of voxels per ball is sized by the largest radius of a chunk, and G is
    evaluated only at edges inside a ball: balls of very different radii in one call,
    some touching voxel edges exactly, give what each gives alone."""
    rng = np.random.default_rng(11)
    n_atoms = 40
    radii_A = rng.choice([0.2, 0.375, 0.75, 1.6], size=n_atoms)
    centres_A = rng.uniform(-3.0, 3.0, size=(n_atoms, 3))
    # every fourth ball with its lower x bound, or its upper y bound, on a voxel edge
    centres_A[::4, 0] = -HALF_A + RES_A * rng.integers(5, 16, size=len(centres_A[::4])) + radii_A[::4]
    centres_A[1::4, 1] = -HALF_A + RES_A * rng.integers(5, 16, size=len(centres_A[1::4])) - radii_A[1::4]
    together = image_from_atoms(centres_A, np.zeros(n_atoms, dtype=int), radii_A, np.ones(n_atoms), PARAMS)
    alone = sum(one_atom(centre_A, radius_A) for centre_A, radius_A in zip(centres_A, radii_A))
    np.testing.assert_allclose(together.double().numpy(), alone, rtol=0, atol=1e-6)
    assert float(together.sum()) == pytest.approx(n_atoms, rel=1e-6)


def test_partial_occupancy_scales_linearly():
    centre_A = (0.2, 0.31, -0.05)
    full = one_atom(centre_A, occupancy=1.0)
    np.testing.assert_allclose(one_atom(centre_A, occupancy=0.35), 0.35 * full, rtol=1e-6, atol=1e-9)


# --- channels, radii, batching, types -----------------------------------------------

def test_channel_index_first_matching_pattern_wins():
    elements = ["C", "CA", "N", "O", "FE", "SE", "S"]
    assert channel_index(elements, ("C", "N", "O", "*")).tolist() == [0, 3, 1, 2, 3, 3, 3]
    assert channel_index(elements, ("S*", "C*", "O")).tolist() == [1, 1, -1, 2, -1, 0, 0]
    assert channel_index(elements, ("*", "C")).tolist() == [0] * 7
    # the atom store keeps elements as bytes
    assert channel_index(np.array([b"C", b"FE"], dtype="S2"), ("C", "N")).tolist() == [0, -1]


def test_unmatched_atoms_are_left_out_of_the_image():
    params = replace(IMAGE_PARAMS, channels=("C", "N"))
    elements = ["C", "FE", "N"]
    coords_A = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [-1.0, 0.0, 0.0]])
    image = image_from_atoms(coords_A, channel_index(elements, params.channels), atom_radii(elements, params),
                             np.ones(3), params)
    assert image.shape == (2, 21, 21, 21)
    assert image[0].sum() == pytest.approx(1, rel=1e-6)
    assert image[1].sum() == pytest.approx(1, rel=1e-6)


def test_atom_radii_default_and_overrides():
    params = replace(IMAGE_PARAMS, element_radii_A=(("FE", 0.6), ("S", 0.5)), default_radius_A=0.4)
    radii = atom_radii(np.array([b"C", b"FE", b"S", b"O"], dtype="S2"), params)
    assert radii.dtype == np.float32
    assert radii.tolist() == pytest.approx([0.4, 0.6, 0.5, 0.4])


def random_atoms(rng, n_atoms):
    return (rng.uniform(-HALF_A - 1, HALF_A + 1, size=(n_atoms, 3)), rng.integers(-1, 4, size=n_atoms),
            rng.uniform(0.3, 0.8, size=n_atoms), rng.uniform(0.2, 1.0, size=n_atoms))


def test_two_views_in_one_call_equal_two_calls():
    rng = np.random.default_rng(7)
    views = [random_atoms(rng, 300), random_atoms(rng, 200)]
    batch_index = np.repeat([0, 1], [300, 200])
    batched = image_from_atoms(*(np.concatenate(parts) for parts in zip(*views)), PARAMS,
                               batch_index=batch_index, batch_size=3)
    assert batched.shape == (3, 4, 21, 21, 21)
    assert batched.dtype == torch.float32
    for view, atoms in enumerate(views):
        torch.testing.assert_close(batched[view], image_from_atoms(*atoms, PARAMS), rtol=0, atol=1e-7)
    assert batched[2].abs().sum() == 0


def test_accepts_tensors_and_returns_float32_on_their_device():
    rng = np.random.default_rng(3)
    atoms = random_atoms(rng, 50)
    from_numpy = image_from_atoms(*atoms, PARAMS)
    from_tensors = image_from_atoms(*(torch.as_tensor(part) for part in atoms), PARAMS)
    assert from_numpy.dtype == from_tensors.dtype == torch.float32
    assert from_numpy.shape == (4, 21, 21, 21)
    torch.testing.assert_close(from_numpy, from_tensors, rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    atoms = random_atoms(np.random.default_rng(5), 2000)
    on_gpu = image_from_atoms(torch.as_tensor(atoms[0], device="cuda"), *atoms[1:], PARAMS)
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), image_from_atoms(*atoms, PARAMS), rtol=0, atol=1e-6)


def test_no_atoms_gives_an_empty_image():
    image = image_from_atoms(np.zeros((0, 3)), np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0), PARAMS)
    assert image.shape == (4, 21, 21, 21) and image.abs().sum() == 0


def test_bad_inputs_are_rejected():
    atoms = random_atoms(np.random.default_rng(1), 5)
    with pytest.raises(ValueError, match="batch_size"):
        image_from_atoms(*atoms, PARAMS, batch_index=np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="channels"):
        image_from_atoms(atoms[0], np.full(5, 4), *atoms[2:], PARAMS)
    with pytest.raises(ValueError, match="radii_A"):
        image_from_atoms(atoms[0], atoms[1], atoms[2][:4], atoms[3], PARAMS)


# --- parameters ---------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("length_voxels", 0), ("length_voxels", 2.5), ("length_voxels", True),
    ("resolution_A", 0.0), ("resolution_A", float("nan")), ("default_radius_A", -0.1),
    ("channels", ()), ("channels", "C"), ("channels", ("C", "fe")),
    ("element_radii_A", (("FE", 0.0),)), ("element_radii_A", (("Fe", 0.5),)),
    ("element_radii_A", (("FE", 0.5), ("FE", 0.6))),
])
def test_bad_params_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        replace(IMAGE_PARAMS, **{field: value})


def test_params_are_frozen_hashable_and_accept_config_lists():
    params = replace(IMAGE_PARAMS, length_voxels=9, resolution_A=1.0, channels=["C", "*"], element_radii_A={"FE": 0.6})
    assert params.channels == ("C", "*") and params.element_radii_A == (("FE", 0.6),)
    assert params.length_A == 9.0
    assert hash(params) == hash(replace(IMAGE_PARAMS, length_voxels=9, resolution_A=1.0, channels=("C", "*"),
                                            element_radii_A=(("FE", 0.6),)))
    with pytest.raises(AttributeError):
        params.length_voxels = 3


# --- side by side with macromol_voxelize --------------------------------------------

def protein_atoms(mda_data):
    """Heavy atoms of a real crystal structure: coords_A (N, 3), elements (N,), occupancies (N,)."""
    from Bio.PDB import PDBParser

    with gzip.open(mda_data / "dssp" / "1eteA.pdb.gz", "rt") as handle:
        structure = PDBParser(QUIET=True).get_structure("1ete", handle)
    atoms = [atom for atom in structure[0].get_atoms() if atom.element != "H"]
    return (np.array([atom.coord for atom in atoms], dtype=np.float64), np.array([atom.element for atom in atoms]),
            np.array([atom.occupancy for atom in atoms], dtype=np.float64))


def test_matches_macromol_voxelize_on_a_real_protein(mda_data):
    """Same atoms, same grid: macromol_voxelize's Grid(center_A=0) voxel centres are at
    (i - (L-1)/2) * resolution_A, i.e. the same placement, and its image axes are (c, x, y, z)."""
    mmvx = pytest.importorskip("macromol_voxelize")
    pl = pytest.importorskip("polars")
    coords_A, elements, occupancies = protein_atoms(mda_data)
    params = replace(IMAGE_PARAMS, element_radii_A=(("S", 0.5),))
    channels, radii_A = channel_index(elements, params.channels), atom_radii(elements, params)
    grid = mmvx.Grid(length_voxels=params.length_voxels, resolution_A=params.resolution_A)
    reference_params = mmvx.ImageParams(channels=len(params.channels), grid=grid)

    rng = np.random.default_rng(11)
    centres_A = coords_A[rng.choice(len(coords_A), size=4, replace=False)] + rng.normal(0, 1, size=(4, 3))
    batch = image_from_atoms(np.concatenate([coords_A - c for c in centres_A]), np.tile(channels, 4),
                             np.tile(radii_A, 4), np.tile(occupancies, 4), params,
                             batch_index=np.repeat(np.arange(4), len(coords_A)), batch_size=4).numpy()
    for view, centre_A in enumerate(centres_A):
        local_A = coords_A - centre_A
        atoms = pl.DataFrame({"x": local_A[:, 0], "y": local_A[:, 1], "z": local_A[:, 2],
                              "radius_A": radii_A.astype(np.float64), "occupancy": occupancies,
                              "channels": [[int(c)] for c in channels]})
        reference, _ = mmvx.image_from_atoms(atoms, reference_params)
        assert reference.sum() > 50  # the view really is inside the protein
        np.testing.assert_allclose(batch[view], reference, rtol=0, atol=1e-5)
