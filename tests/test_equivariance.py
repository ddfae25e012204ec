"""Measured equivariance: ~0 where a model is exactly invariant, clearly not for a plain one.

Real atoms (MDAnalysisTests structures through the origin database of conftest.small_db),
real voxelizer, real escnn and plain encoders.
"""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from equivox import figures
from equivox.equivariance import (FeatureSymmetry, axis_angle_rotation, cube_rotations,
                                  example_rotations, measure_encoder, measure_equivariance,
                                  rotate_voxels, rotation_angle_deg, summarise, voxelize_rotated)
from equivox.models import build_model
from equivox.run_state import weights_of
from equivox.tables import build_equivariance_table
from equivox.views import ViewPairSampler, write_view_set
from tests.defaults import IMAGE_PARAMS, VIEW_PARAMS

ESCNN = {"family": "escnn_cnn", "layout": "arch_3", "width": 1, "repeats": 0, "head_channels": [8]}
PLAIN = {"family": "plain_cnn", "layout": "arch_3", "width": 2, "repeats": 0, "head_channels": [8]}
SETTINGS = dict(n_rotations=2, angles_deg=[10, 90], n_axes=1, seed=0, batch_size=32)


@pytest.fixture(scope="module")
def crops(small_db):
    """View A of 3 real validation pairs, as atoms in the view frame."""
    sampler = ViewPairSampler(small_db, "val", VIEW_PARAMS, seed=0)
    return [sampler.sample(i).atoms[0] for i in range(3)]


@pytest.fixture(scope="module")
def models():
    """A small real escnn model and its plain twin (MLP heads), batch norms settled."""
    built = {}
    for arch, spec in (("escnn", ESCNN), ("plain", PLAIN)):
        torch.manual_seed(0)
        built[arch] = build_model(arch, spec)
        settled(built[arch].encoder)
    return built


def settled(encoder):
    """Non-trivial batch-norm statistics, then eval mode."""
    torch.manual_seed(1)
    encoder.train()
    with torch.no_grad():
        encoder(torch.rand(2, 4, 21, 21, 21))
    return encoder.eval()


class TotalOccupancy(torch.nn.Module):
    """Sum of each channel over the grid: ``(N, C, L, L, L) -> (N, C, 1, 1, 1)``. Invariant
    to every rotation of atoms that stay wholly inside the grid (the voxelizer conserves
    each atom's occupancy exactly)."""
    out_channels = 4

    def forward(self, x):
        return x.sum(dim=(2, 3, 4), keepdim=True)


def test_rotations_are_rotations_with_the_stated_angles():
    cube = cube_rotations()
    assert len(cube) == 24 and len({r.tobytes() for r in cube}) == 24
    assert (cube[0] == np.eye(3)).all()
    rotation = axis_angle_rotation(np.array([1.0, 2.0, -0.5]), np.radians(37.0))
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(rotation), 1) and np.isclose(rotation_angle_deg(rotation), 37.0)
    transforms = example_rotations(5, 3, [20, 180], 2, seed=0)
    assert [t[0] for t in transforms] == ["cube"] * 23 + ["haar"] * 3 + ["angle"] * 4
    assert [t[2] for t in transforms[-4:]] == [20, 20, 180, 180]
    assert all(np.isclose(rotation_angle_deg(r), a) for kind, _, a, r in transforms if kind == "angle")
    again = example_rotations(5, 3, [20, 180], 2, seed=0)
    assert all((a[3] == b[3]).all() for a, b in zip(transforms, again))


def test_rotating_atoms_by_a_cube_rotation_is_rotating_the_voxels(crops):
    """The convention the metrics rely on: atoms rotated p -> R p, voxelized, equal the
    voxels of the unrotated view moved by R."""
    params = VIEW_PARAMS.image
    base = voxelize_rotated(crops[0], [np.eye(3)], params)[0]
    rotated = voxelize_rotated(crops[0], [r.astype(float) for r in cube_rotations()], params)
    assert base.sum() > 10
    for rotation, image in zip(cube_rotations(), rotated):
        torch.testing.assert_close(image, rotate_voxels(base, rotation), rtol=0, atol=1e-5)


def test_escnn_encoder_scores_zero_on_cube_rotations_and_a_plain_one_does_not(crops, models):
    params = VIEW_PARAMS.image
    escnn, plain = models["escnn"].encoder, models["plain"].encoder
    symmetry = FeatureSymmetry(escnn)
    assert symmetry.equivariant and symmetry.n_invariant == len(escnn.out_type) < symmetry.n_features
    escnn_rows, _ = measure_encoder(escnn, crops, params, **SETTINGS)
    plain_rows, plain_spread = measure_encoder(plain, crops, params, **SETTINGS)
    escnn_cube, plain_cube = (rows[rows["kind"] == "cube"] for rows in (escnn_rows, plain_rows))
    assert len(escnn_cube) == 3 * 23
    for metric in ("invariant_rel", "invariant_spread", "equivariant_rel", "equivariant_spread"):
        assert escnn_cube[metric].max() < 1e-4, metric
    assert plain_spread["invariant"] > 0
    assert plain_cube["invariant_spread"].mean() > 0.1
    assert not FeatureSymmetry(plain).equivariant
    # off the grid's symmetries the escnn encoder is only approximately invariant
    assert escnn_rows.loc[escnn_rows["kind"] == "haar", "invariant_spread"].mean() > 1e-3


def test_total_occupancy_is_invariant_to_any_rotation_of_atoms_inside_the_grid(crops):
    params = VIEW_PARAMS.image
    inscribed = []
    for coords, channels, radii, occupancies in crops:
        inside = np.linalg.norm(coords, axis=1) + radii < params.length_A / 2
        inscribed.append((coords[inside], channels[inside], radii[inside], occupancies[inside]))
    rows, spread = measure_encoder(TotalOccupancy(), inscribed, params, **SETTINGS)
    assert spread["invariant"] > 1.0  # the views differ by whole atoms
    for kind in ("cube", "haar", "angle"):
        assert rows.loc[rows["kind"] == kind, "invariant_spread"].max() < 1e-5, kind
    # the same encoder on the whole views: atoms near the corners leave the grid when rotated
    whole, _ = measure_encoder(TotalOccupancy(), crops, params, **SETTINGS)
    assert whole.loc[whole["kind"] == "haar", "invariant_spread"].mean() > 1e-3
    assert whole.loc[whole["kind"] == "cube", "invariant_spread"].max() < 1e-5


def test_trained_run_record_table_and_figure(small_db, models, tmp_path):
    """measure_equivariance on weights.pt files as train writes them, then the table and figure."""
    params = VIEW_PARAMS
    views = tmp_path / "val.h5"
    write_view_set(views, ViewPairSampler(small_db, "val", params, seed=0), 3, progress=False)
    summaries = []
    for arch, spec in (("escnn", ESCNN), ("plain", PLAIN)):
        weights = tmp_path / f"{arch}.pt"
        torch.save({"model": weights_of(models[arch]), "arch": arch, "spec": spec, "head": "mlp",
                    "in_channels": 4}, weights)
        samples, summary = measure_equivariance(weights, views, small_db, params, n_examples=2,
                                                device="cpu", **SETTINGS)
        assert summary["n_examples"] == 2 and summary["equivariant"] == (arch == "escnn")
        assert summary["stored_image_error"] < 1e-3  # float16 storage only
        assert summary["kinds"]["identity"]["invariant_spread"]["mean"] < 1e-2
        assert [row["angle_deg"] for row in summary["by_angle"]] == [10, 90]
        assert len(samples) == 2 * (1 + 23 + 2 + 2)
        path = tmp_path / f"{arch}.json"
        path.write_text(json.dumps(summary))
        summaries.append(path)
    numbers, shown = build_equivariance_table(summaries)
    assert list(numbers["model"]) == ["escnn", "plain"]
    assert numbers.loc[0, "cube_invariant_spread"] < 1e-4 < 0.1 < numbers.loc[1, "cube_invariant_spread"]
    assert shown.loc[1, "features"].endswith("(none promised)")
    records = [json.loads(path.read_text()) for path in summaries]
    fig = figures.equivariance_figure(records, {"escnn": "escnn_cnn", "plain": "plain_cnn"}, ["escnn", "plain"])
    figures.save(fig, tmp_path / "equivariance.svg", tmp_path / "equivariance.pdf")
    assert (tmp_path / "equivariance.svg").stat().st_size > 1000


def test_a_view_set_made_with_other_settings_is_refused(small_db, models, tmp_path):
    views = tmp_path / "val.h5"
    write_view_set(views, ViewPairSampler(small_db, "val", VIEW_PARAMS, seed=0), 2, progress=False)
    weights = tmp_path / "plain.pt"
    torch.save({"model": weights_of(models["plain"]), "arch": "plain", "spec": PLAIN, "head": "mlp",
                "in_channels": 4}, weights)
    other = replace(VIEW_PARAMS, image=replace(IMAGE_PARAMS, default_radius_A=1.5))
    with pytest.raises(ValueError, match="differ from the stored"):
        measure_equivariance(weights, views, small_db, other, n_examples=2, device="cpu", **SETTINGS)


def test_summary_intervals_cover_the_mean():
    import pandas as pd

    rows = pd.DataFrame({"example": [0, 0, 1, 1, 2, 2], "kind": ["haar"] * 6, "angle_deg": 0.0,
                         "invariant_rel": [1, 3, 2, 2, 5, 1], "invariant_spread": 1.0,
                         "equivariant_rel": 0.0, "equivariant_spread": 0.5})
    stats = summarise(rows)["kinds"]["haar"]["invariant_rel"]
    assert stats["mean"] == pytest.approx(14 / 6) and stats["max"] == 5
    assert stats["ci_low"] < stats["mean"] < stats["ci_high"]
