import multiprocessing as mp
from dataclasses import replace

import h5py
import numpy as np
import pytest
import torch
from scipy import stats

from equivox.views import (FACES, CollateImages, ViewPairDataset, ViewPairSampler,
                           ViewSetDataset, collate_atoms, images_from_pairs, pack_atoms,
                           random_rotation, write_view_set)
from equivox.voxelize import image_from_atoms
from tests.defaults import ORIGIN_PARAMS, VIEW_PARAMS


def test_rotations_are_haar_uniform():
    rng = np.random.default_rng(1)
    rots = np.stack([random_rotation(rng) for _ in range(20000)])
    np.testing.assert_allclose(rots @ rots.transpose(0, 2, 1), np.eye(3)[None].repeat(len(rots), 0), atol=1e-12)
    assert np.allclose(np.linalg.det(rots), 1)
    # rotation angle t has density (1 - cos t) / pi on [0, pi]
    angles = np.arccos(np.clip((np.trace(rots, axis1=1, axis2=2) - 1) / 2, -1, 1))
    cdf = lambda t: (t - np.sin(t)) / np.pi  # noqa: E731
    assert stats.kstest(angles, cdf).pvalue > 0.01
    # where the view's x axis points is uniform on the sphere: each coordinate is U(-1, 1)
    for axis in range(3):
        assert stats.kstest(rots[:, axis, 0], stats.uniform(-1, 2).cdf).pvalue > 0.01
    # a rotation that is not uniform is caught (small angles only)
    small = np.linspace(0, 1, 1000)
    assert stats.kstest(small, cdf).pvalue < 1e-6


@pytest.fixture(scope="module")
def sampler(small_db):
    return ViewPairSampler(small_db, "train", VIEW_PARAMS, seed=3)


def test_view_b_sits_across_the_labelled_face(sampler):
    p = sampler.params
    labels = []
    for i in range(40):
        pair = sampler.sample(i)
        step = (pair.centres_A[1] - pair.centres_A[0]) @ pair.rotation  # in view A's axes
        np.testing.assert_allclose(step, p.offset_A * FACES[pair.label], atol=1e-9)
        atoms = sampler.atoms(pair.structure_id)
        assert atoms.density(pair.centres_A[1], p.origins.radius_A) >= p.origins.min_nearby_atoms - 1e-4
        labels.append(pair.label)
    assert len(set(labels)) >= 5


def test_labels_are_uniform(sampler):
    labels = [sampler.sample(i).label for i in range(600)]
    assert stats.chisquare(np.bincount(labels, minlength=6)).pvalue > 0.001


def test_examples_are_deterministic_per_index(small_db, sampler):
    again = ViewPairSampler(small_db, "train", VIEW_PARAMS, seed=3)
    for i in (0, 17, 123):
        a, b = sampler.sample(i), again.sample(i)
        assert (a.label, a.origin_id) == (b.label, b.origin_id)
        np.testing.assert_array_equal(a.atoms[1][0], b.atoms[1][0])
    other_seed = ViewPairSampler(small_db, "train", VIEW_PARAMS, seed=4)
    assert [other_seed.sample(i).origin_id for i in range(5)] != [sampler.sample(i).origin_id for i in range(5)]


def test_cropping_loses_no_atom_that_touches_the_view(sampler):
    pair = sampler.sample(5)
    atoms = sampler.atoms(pair.structure_id)
    image_p = sampler.params.image
    for view in (0, 1):
        local = (atoms.coords_A - pair.centres_A[view]) @ pair.rotation
        full = image_from_atoms(local, atoms.channels, atoms.radii_A, atoms.occupancies, image_p)
        cropped = image_from_atoms(*pair.atoms[view], image_p)
        torch.testing.assert_close(cropped, full)
        assert full.sum() > 10  # views contain protein


def test_splits_use_only_their_structures(small_db):
    val = ViewPairSampler(small_db, "val", VIEW_PARAMS, seed=0)
    assert {val.sample(i).structure_id for i in range(20)} == {s["id"] for s in val.structures}


def loader_and_serial_batches(sampler, n_pairs: int, batch_size: int, workers: int, context: str):
    """(batches of a DataLoader with ``workers`` processes, the same pairs collated in this
    process), images made in the workers; checks that they are equal."""
    dataset = ViewPairDataset(sampler, epoch_size=n_pairs)
    collate = CollateImages(sampler.params.image)
    serial = collate([dataset[i] for i in range(n_pairs)])
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate,
                                         multiprocessing_context=mp.get_context(context))
    batches = list(loader)
    torch.testing.assert_close(torch.cat([b[0] for b in batches]), serial[0])
    torch.testing.assert_close(torch.cat([b[1] for b in batches]), serial[1])
    return batches, serial


@pytest.mark.filterwarnings("ignore:This DataLoader will create 4 worker")
def test_loader_with_four_workers_matches_serial_and_handles_last_batch(sampler):
    batches, serial = loader_and_serial_batches(sampler, 22, batch_size=8, workers=4, context="fork")
    assert [len(b[1]) for b in batches] == [8, 8, 6]           # incomplete last batch
    dataset = ViewPairDataset(sampler, epoch_size=22)
    assert serial[0].shape == (22, 2, 4, 21, 21, 21) and serial[0].dtype == torch.float32
    # atoms shipped and voxelized "on the device" give the same images
    packed, labels = collate_atoms([dataset[i] for i in range(22)])
    torch.testing.assert_close(images_from_pairs(packed, 22, sampler.params.image), serial[0])


def test_view_set_round_trip(small_db, tmp_path):
    sampler = ViewPairSampler(small_db, "val", VIEW_PARAMS, seed=0)
    path = tmp_path / "val.h5"
    write_view_set(path, sampler, 10, batch_size=4, image_dtype=np.float32, progress=False)
    data = ViewSetDataset(path)
    assert len(data) == 10
    pairs = [sampler.sample(i) for i in range(10)]
    direct = images_from_pairs(pack_atoms(pairs), 10, sampler.params.image)
    for i in (0, 9):
        image, label = data[i]
        assert label.item() == pairs[i].label
        torch.testing.assert_close(image, direct[i])
    with h5py.File(path) as h5:
        assert h5.attrs["split"] == "val" and list(h5.attrs["faces"])[0] == "+x"
        np.testing.assert_allclose(h5["rotations"][3], pairs[3].rotation)
    assert not list(tmp_path.glob("*.tmp*"))


def test_impossible_density_gives_a_clear_error(small_db):
    params = replace(VIEW_PARAMS, origins=replace(ORIGIN_PARAMS, min_nearby_atoms=1e6), max_retries=3)
    with pytest.raises(RuntimeError, match="no origin with a dense neighbouring view in 3 tries"):
        ViewPairSampler(small_db, "train", params, seed=0).sample(0)


def test_training_shards_replay_the_sampler_and_cycle(small_db, tmp_path):
    from equivox.views import ShardedViewDataset
    sampler = ViewPairSampler(small_db, "train", VIEW_PARAMS, seed=3)
    paths = [tmp_path / f"{j:03d}.h5" for j in range(2)]
    for j, path in enumerate(paths):  # as rule views_train_shard writes shard j
        write_view_set(path, sampler, 3, first_index=3 * j, image_dtype=np.float32, progress=False)
    data = ShardedViewDataset(paths, epoch_size=5, first_index=4)  # global examples 4..8
    assert len(data) == 5
    labels = [int(data[i][1]) for i in range(5)]
    assert labels == [sampler.sample(k % 6).label for k in (4, 5, 6, 7, 8)]
    direct = images_from_pairs(pack_atoms([sampler.sample(5)]), 1, sampler.params.image)
    torch.testing.assert_close(data[1][0], direct[0])
    assert torch.equal(ShardedViewDataset(paths, 9)[6][0], ShardedViewDataset(paths, 9)[0][0])  # cycles
    write_view_set(paths[1], sampler, 2, image_dtype=np.float32, progress=False)
    with pytest.raises(ValueError, match="differ in size"):
        ShardedViewDataset(paths, 5)


def cube_overlap(local_A: np.ndarray, radii_A: np.ndarray, half_A: float) -> np.ndarray:
    """Whether each atom's sphere (view-frame centre) overlaps the cube [-half, half]^3."""
    outside = np.clip(np.abs(local_A) - half_A, 0, None)
    return np.linalg.norm(outside, axis=1) < radii_A


@pytest.mark.parametrize("padding_A, shared_expected", [(0.0, True), (VIEW_PARAMS.padding_A, False)])
def test_no_atom_touches_both_views_at_the_default_padding(small_db, padding_A, shared_expected):
    """Every atom of the structure (not only the crops) against both cubes; padding 0 is
    the control that shows the check can fail."""
    from equivox.task import min_padding_A
    params = replace(VIEW_PARAMS, padding_A=padding_A)
    assert VIEW_PARAMS.padding_A >= min_padding_A({"default_radius_A": params.image.default_radius_A})
    sampler = ViewPairSampler(small_db, "train", params, seed=5)
    shared = 0
    for i in range(30):
        pair = sampler.sample(i)
        atoms = sampler.atoms(pair.structure_id)
        touches = [cube_overlap((atoms.coords_A - pair.centres_A[v]) @ pair.rotation, atoms.radii_A,
                                params.image.length_A / 2) for v in (0, 1)]
        assert touches[0].any() and touches[1].any()
        shared += int((touches[0] & touches[1]).sum())
    assert (shared > 0) == shared_expected


def test_padding_below_the_leak_free_minimum_is_refused_unless_opted_in():
    from equivox.task import view_config_errors
    views = {"length_voxels": 21, "default_radius_A": 0.375, "element_radii_A": {"S": 0.9}, "padding_A": 1.0,
             "allow_shared_atoms": False}
    [message] = view_config_errors(views)
    assert "views.padding_A" in message and ">= 1.8" in message and "allow_shared_atoms" in message
    assert view_config_errors({**views, "allow_shared_atoms": True}) == []
    assert view_config_errors({**views, "padding_A": 1.8}) == []


def test_splits_draw_from_independent_streams(small_db):
    """With one seed, validation and test example i share no draw (rotation), nor do
    training examples; the same split and seed repeat exactly."""
    rotations = {split: [ViewPairSampler(small_db, split, VIEW_PARAMS, seed=0).sample(i).rotation
                         for i in range(5)] for split in ("train", "val", "test")}
    for a, b in (("train", "val"), ("val", "test"), ("train", "test")):
        assert all(not np.allclose(x, y) for x, y in zip(rotations[a], rotations[b]))
    again = ViewPairSampler(small_db, "val", VIEW_PARAMS, seed=0).sample(3).rotation
    np.testing.assert_array_equal(again, rotations["val"][3])


def test_all_faces_rule_uses_only_origins_with_six_dense_neighbours(small_db):
    """With require_all_faces every neighbour centre passes the criterion, so the label
    cannot depend on view A; labels stay uniform. (A wide, permissive criterion: the
    test structures are too small for all six at the default one.)"""
    params = replace(VIEW_PARAMS, origins=replace(ORIGIN_PARAMS, radius_A=9.0, min_nearby_atoms=5),
                     require_all_faces=True, max_retries=2000)
    sampler = ViewPairSampler(small_db, "train", params, seed=1)
    labels = []
    for i in range(120):
        pair = sampler.sample(i)
        atoms = sampler.atoms(pair.structure_id)
        for face in FACES:
            centre = pair.centres_A[0] + params.offset_A * pair.rotation @ face
            assert atoms.density(centre, 9.0) >= 5 - 1e-4
        labels.append(pair.label)
    assert stats.chisquare(np.bincount(labels, minlength=6)).pvalue > 0.001
    strict = ViewPairSampler(small_db, "train", replace(VIEW_PARAMS, require_all_faces=True, max_retries=5), seed=0)
    with pytest.raises(RuntimeError, match="all six neighbouring views dense.*require_all_faces: false"):
        strict.sample(0)
