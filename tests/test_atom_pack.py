"""The atom pack: round trip against the HDF5 atom store, the same pairs as the
store-and-KD-tree sampler it replaced, and readers in several processes at once."""
import pickle
from dataclasses import replace

import h5py
import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from equivox.atom_pack import build_pack, is_pack, open_pack, write_pack
from equivox.atoms import load_structure
from equivox.origin_db import OriginDB
from equivox.origins import biological_mask
from equivox.task import SPLIT_STREAMS
from equivox.views import ViewPairSampler, images_from_pairs, pack_atoms, random_rotation, view_b_centre
from equivox.voxelize import atom_radii, channel_index
from tests.defaults import ORIGIN_PARAMS, VIEW_PARAMS
from tests.test_views import loader_and_serial_batches

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def packs(small_db, tmp_path_factory):
    folder = tmp_path_factory.mktemp("packs")
    paths = {}
    for split in SPLITS:
        paths[split] = folder / f"{split}.pack"
        write_pack(paths[split], build_pack(small_db, split, VIEW_PARAMS))
    return paths


def test_pack_round_trip_equals_the_atom_store(small_db, packs):
    """Every field the sampler reads, for every structure of every split, equals what the
    atom store and the origin database hold (real demo structures)."""
    db = OriginDB(small_db)
    for split in SPLITS:
        assert is_pack(packs[split]) and not is_pack(small_db)
        pack = open_pack(packs[split])
        assert isinstance(pack.arrays["x"], np.memmap) and pack.split == split
        rows = db.structures(split)
        np.testing.assert_array_equal(pack.structure_id, [r["id"] for r in rows])
        np.testing.assert_array_equal(pack.first_origin_id, [r["first_origin_id"] for r in rows])
        np.testing.assert_array_equal(pack.n_origins, [r["n_origins"] for r in rows])
        for s, row in enumerate(rows):
            with h5py.File(row["atoms_path"], "r") as h5:
                atoms = load_structure(h5, row["chain_key"])
            keep = np.flatnonzero(biological_mask(atoms, ORIGIN_PARAMS.exclude_hydrogens))
            channels = channel_index(atoms["element"][keep], VIEW_PARAMS.image.channels)
            expected = keep[channels >= 0]
            atoms_of = slice(pack.atom_start[s], pack.atom_start[s + 1])
            source = pack.source_index[atoms_of].astype(np.int64)
            np.testing.assert_array_equal(np.sort(source), expected)  # the same atoms, each once
            coords = np.stack([pack.x[atoms_of], pack.y[atoms_of], pack.z[atoms_of]], axis=1)
            np.testing.assert_array_equal(coords, atoms["coords_A"][source])
            assert np.all(np.diff(pack.x[atoms_of]) >= 0)
            np.testing.assert_array_equal(pack.channel[atoms_of],
                                          channel_index(atoms["element"][source], VIEW_PARAMS.image.channels))
            radii = pack.radius_table_A[pack.radius_class[atoms_of]]
            np.testing.assert_array_equal(radii, atom_radii(atoms["element"][source], VIEW_PARAMS.image))
            assert pack.max_radius_A[s] == radii.max()
            np.testing.assert_array_equal(pack.occupancy[atoms_of], atoms["occupancy"][source])
            origins = pack.origins_A[pack.origin_start[s]:pack.origin_start[s + 1]]
            np.testing.assert_array_equal(origins.astype(np.float64), db.structure_origins(row["id"]))
            assert db.origin(row["first_origin_id"] + 3)[1].tolist() == origins[3].astype(np.float64).tolist()


def test_pack_refuses_other_parameters_and_splits(packs):
    radii = replace(VIEW_PARAMS.image, element_radii_A=(("S", 0.9),))
    with pytest.raises(ValueError, match="rule atom_pack"):
        ViewPairSampler(packs["train"], "train", replace(VIEW_PARAMS, image=radii), seed=0)
    with pytest.raises(ValueError, match="split 'train', not 'val'"):
        ViewPairSampler(packs["train"], "val", VIEW_PARAMS, seed=0)


class _ReferenceSampler:
    """The sampler before the atom pack (HDF5 atom store, origin DB, a KD-tree per
    structure), kept here to show that the pack gives the same pairs."""

    def __init__(self, db_path, split, params, seed):
        self.db, self.split, self.params, self.seed = OriginDB(db_path), split, params, seed
        self.structures = self.db.structures(split)
        counts = np.array([s["n_origins"] for s in self.structures], dtype=np.float64)
        self.weights = counts / counts.sum()
        self.cache = {}

    def _atoms(self, row):
        if row["id"] not in self.cache:
            with h5py.File(row["atoms_path"], "r") as h5:
                atoms = load_structure(h5, row["chain_key"])
            keep = biological_mask(atoms, self.params.origins.exclude_hydrogens)
            elements = np.char.decode(atoms["element"][keep]).astype(str)
            channels = channel_index(elements, self.params.image.channels)
            use = channels >= 0
            coords = atoms["coords_A"][keep][use].astype(np.float64)
            self.cache[row["id"]] = (coords, channels[use], atom_radii(elements[use], self.params.image),
                                     atoms["occupancy"][keep][use], cKDTree(coords))
        return self.cache[row["id"]]

    def sample(self, index):
        rng = np.random.default_rng([self.seed, SPLIT_STREAMS[self.split], index])
        p = self.params
        while True:
            row = self.structures[rng.choice(len(self.structures), p=self.weights)]
            origin_id = row["first_origin_id"] + int(rng.integers(row["n_origins"]))
            centre = self.db.origin(origin_id)[1]
            rotation = random_rotation(rng)
            coords, channels, radii, occ, tree = self._atoms(row)
            centres_b = [view_b_centre(centre, rotation, f, p.offset_A) for f in range(6)]
            ok = [f for f in range(6) if float(occ[tree.query_ball_point(centres_b[f], p.origins.radius_A)].sum())
                  >= p.origins.min_nearby_atoms - 1e-4]
            if ok and (len(ok) == 6 or not p.require_all_faces):
                face = int(rng.choice(ok))
                reach = np.sqrt(3) * p.image.length_A / 2 + float(radii.max(initial=0))
                crops = []
                for c in (centre, centres_b[face]):
                    idx = np.asarray(tree.query_ball_point(c, reach), dtype=np.int64)
                    crops.append(((coords[idx] - c) @ rotation, channels[idx], radii[idx], occ[idx]))
                return crops, face, origin_id, row["id"], rotation


def _sorted_atoms(crop):
    coords, channels, radii, occ = crop
    order = np.lexsort(coords.T)
    return coords[order], channels[order], radii[order], occ[order]


@pytest.mark.parametrize("split", ["train", "val"])
def test_pack_gives_the_pairs_of_the_atom_store_path(small_db, packs, split):
    """Same seed, same index: the same structure, origin, rotation, face and atoms in
    each view; the images agree to float32 rounding (atoms come in another order, so
    the voxelizer's float32 sums run in another order)."""
    params = replace(VIEW_PARAMS, require_all_faces=False)
    reference = _ReferenceSampler(small_db, split, params, seed=7)
    sampler = ViewPairSampler(packs[split], split, params, seed=7)
    pairs, old = [], []
    for i in range(60):
        crops, face, origin_id, structure_id, rotation = reference.sample(i)
        pair = sampler.sample(i)
        assert (pair.label, pair.origin_id, pair.structure_id) == (face, origin_id, structure_id)
        np.testing.assert_array_equal(pair.rotation, rotation)
        for new_crop, old_crop in zip(pair.atoms, crops):
            new_sorted, old_sorted = _sorted_atoms(new_crop), _sorted_atoms(old_crop)
            np.testing.assert_allclose(new_sorted[0], old_sorted[0], rtol=0, atol=1e-12)
            for a, b in zip(new_sorted[1:], old_sorted[1:]):
                np.testing.assert_array_equal(a, b)
        pairs.append(pair)
        old.append(type(pair)(crops, face, origin_id, structure_id, rotation, pair.centres_A))
    new_images = images_from_pairs(pack_atoms(pairs), len(pairs), params.image)
    old_images = images_from_pairs(pack_atoms(old), len(old), params.image)
    torch.testing.assert_close(new_images, old_images, rtol=0, atol=2e-6)
    assert new_images.sum() > 0


def test_in_memory_pack_gives_the_same_pairs_as_the_file(small_db, packs):
    from_db, from_file = (ViewPairSampler(source, "train", VIEW_PARAMS, seed=1) for source in (small_db, packs["train"]))
    for i in (0, 5, 33):
        a, b = from_db.sample(i), from_file.sample(i)
        assert (a.label, a.origin_id) == (b.label, b.origin_id)
        for x, y in zip(a.atoms[1], b.atoms[1]):
            np.testing.assert_array_equal(x, y)


def test_loader_workers_in_several_processes_share_the_pack(packs):
    """Two spawned workers map the same file (the sampler pickles as the pack's path) and
    give the batches one process makes."""
    sampler = ViewPairSampler(packs["train"], "train", VIEW_PARAMS, seed=2)
    state = pickle.loads(pickle.dumps(sampler))
    assert state.pack.path == str(packs["train"]) and isinstance(state.pack.arrays["x"], np.memmap)
    assert len(pickle.dumps(sampler)) < 100_000  # a path, not the atoms
    batches, _ = loader_and_serial_batches(sampler, 24, batch_size=6, workers=2, context="spawn")
    assert len(batches) == 4
