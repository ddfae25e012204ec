"""The neighbour-location task: pairs of cubic views and the face that joins them.

View A is centred on an origin from the origin database, in a frame given by a
Haar-uniform random rotation R (a 3x3 matrix whose *columns* are the view's x, y, z
axes in the lab frame; an atom at lab position p sits at ``(p - centre) @ R`` in the
view). View B has the same frame, its centre moved by ``length_A + padding_A`` along
one of the 6 cube-face directions of view A. The label is that face:

    FACES = +x, -x, +y, -y, +z, -z     (label 0 .. 5, in view A's axes)

View B's centre must pass the origin density criterion. With ``require_all_faces``
(the default) an origin is used only if all six neighbour centres pass, and the face is
then drawn uniformly: the label is independent of view A alone. Otherwise a face is drawn
uniformly among the faces that pass, and view A's own density hints at the label. Because
R is uniform over SO(3), the labels are uniform either way.

Everything for example ``i`` of a split derives from
``numpy.random.default_rng([seed, stream, i])`` (``task.SPLIT_STREAMS``), so an example is
the same in any worker, any run, any number of workers, and splits share no draws.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import h5py
import numpy as np
import torch

from .atom_pack import AtomPack, build_pack, is_pack, open_pack, structure_atoms
from .atomic import atomic_write_h5
from .origins import OriginParams
from .task import FACE_NAMES, FACES, SPLIT_STREAMS, VIEW_CONFIG_KEYS
from .voxelize import ImageParams, image_from_atoms

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ViewParams:
    """The view sampler's settings; built from the validated config by :meth:`from_config`
    (the config schema holds every default)."""
    image: ImageParams
    padding_A: float                # gap between the two cubes (task.min_padding_A)
    origins: OriginParams           # criterion for B's centre
    require_all_faces: bool         # origin used only if all 6 neighbours are dense
    structure_weighting: str        # "origins": by origin count; "uniform": per structure
    max_retries: int                # fresh origins tried before giving up on an example

    def __post_init__(self):
        if self.padding_A < 0:
            raise ValueError(f"ViewParams.padding_A must be >= 0, got {self.padding_A}")
        if self.structure_weighting not in {"origins", "uniform"}:
            raise ValueError("ViewParams.structure_weighting must be 'origins' or 'uniform', "
                             f"got {self.structure_weighting!r}")

    CONFIG_KEYS = VIEW_CONFIG_KEYS
    """The keys of config ``views`` that :meth:`from_config` reads (with all of ``origins``)."""

    @classmethod
    def from_config(cls, config: dict) -> "ViewParams":
        """From the validated workflow config (keys ``views`` and ``origins``)."""
        v = config["views"]
        image = ImageParams(length_voxels=v["length_voxels"], resolution_A=v["resolution_A"],
                            channels=tuple(v["channels"]),
                            element_radii_A=tuple(sorted(v["element_radii_A"].items())),
                            default_radius_A=v["default_radius_A"])
        return cls(image=image, padding_A=v["padding_A"], origins=OriginParams(**config["origins"]),
                   require_all_faces=v["require_all_faces"],
                   structure_weighting=v["structure_weighting"], max_retries=v["max_retries"])

    @property
    def offset_A(self) -> float:
        """Distance between the two view centres."""
        return self.image.length_A + self.padding_A


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Haar-uniform rotation matrix (3, 3) from a normalised Gaussian quaternion."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def view_b_centre(centre_A: np.ndarray, rotation: np.ndarray, face: int, offset_A: float) -> np.ndarray:
    """Lab-frame centre of view B for a face of view A."""
    return centre_A + offset_A * rotation @ FACES[face]


def view_b_centres(centre_A: np.ndarray, rotation: np.ndarray, offset_A: float) -> np.ndarray:
    """(6, 3) :func:`view_b_centre` of every face, in label order (the same numbers)."""
    return centre_A + offset_A * (FACES @ rotation.T)


_SLAB_SLACK_A = 1e-3
"""The float32 x bounds of a ball query's slab are widened by this; membership is then
decided exactly, in float64."""


class StructureAtoms:
    """One structure's image atoms, ready for cropping: slices of an atom pack
    (:mod:`equivox.atom_pack`), no copies. Atoms are sorted by x, so a ball query is two
    binary searches and a float64 distance test on the slab between them."""

    def __init__(self, pack: AtomPack, index: int):
        lo, hi = int(pack.atom_start[index]), int(pack.atom_start[index + 1])
        self.x, self.y, self.z = pack.x[lo:hi], pack.y[lo:hi], pack.z[lo:hi]
        self.channel, self.radius_class = pack.channel[lo:hi], pack.radius_class[lo:hi]
        self.occupancy, self.radius_table_A = pack.occupancy[lo:hi], pack.radius_table_A
        self.max_radius_A = float(pack.max_radius_A[index])

    @classmethod
    def from_store(cls, atoms: dict, params: ViewParams) -> "StructureAtoms":
        """From one structure's atom-store columns (:func:`equivox.atoms.load_structure`)."""
        columns = structure_atoms(atoms, params)
        return cls(AtomPack.from_structures([(0, 1, columns, np.zeros((0, 3)))], "", params), 0)

    @property
    def coords_A(self) -> np.ndarray:
        """(N, 3) float64 lab coordinates."""
        return np.stack([self.x, self.y, self.z], axis=1).astype(np.float64)

    @property
    def channels(self) -> np.ndarray:
        return self.channel.astype(np.int64)

    @property
    def radii_A(self) -> np.ndarray:
        return self.radius_table_A[self.radius_class]

    @property
    def occupancies(self) -> np.ndarray:
        return self.occupancy

    def _ball(self, centre_A: np.ndarray, radius_A: float):
        """(first, inside, dx, dy, dz): the slab of atoms from index ``first`` whose x can be
        within ``radius_A`` of the centre, which of them are (distance <= radius), and
        their float64 offsets from the centre."""
        bounds = np.array([centre_A[0] - radius_A - _SLAB_SLACK_A, centre_A[0] + radius_A + _SLAB_SLACK_A],
                          dtype=np.float32)
        first, last = self.x.searchsorted(bounds)
        dx = np.subtract(self.x[first:last], centre_A[0], dtype=np.float64)
        dy = np.subtract(self.y[first:last], centre_A[1], dtype=np.float64)
        dz = np.subtract(self.z[first:last], centre_A[2], dtype=np.float64)
        d2 = dx * dx
        d2 += dy * dy
        d2 += dz * dz
        return first, d2 <= radius_A * radius_A, dx, dy, dz

    def density(self, centre_A: np.ndarray, radius_A: float) -> float:
        """Occupancy-weighted count of atoms within ``radius_A`` (the origin criterion)."""
        first, inside, *_ = self._ball(centre_A, radius_A)
        return float(self.occupancy[first:first + len(inside)][inside].sum(dtype=np.float64))

    def crop(self, centre_A: np.ndarray, rotation: np.ndarray, params: ImageParams):
        """Atoms that can touch the cube, in the view frame: (coords (n, 3), channels, radii, occ)."""
        reach = np.sqrt(3) * params.length_A / 2 + self.max_radius_A
        first, inside, dx, dy, dz = self._ball(centre_A, reach)
        keep = np.flatnonzero(inside)
        idx = first + keep
        local = np.stack([dx[keep], dy[keep], dz[keep]], axis=1) @ rotation
        return (local, self.channel[idx].astype(np.int64), self.radius_table_A[self.radius_class[idx]],
                self.occupancy[idx])


@dataclass
class ViewPair:
    """Atoms of both views (view frame) and the label; images are made from these."""
    atoms: list             # [view A crop, view B crop], each (coords, channels, radii, occ)
    label: int
    origin_id: int
    structure_id: int
    rotation: np.ndarray    # (3, 3)
    centres_A: np.ndarray   # (2, 3) lab frame


class ViewPairSampler:
    """Draws view pairs of one split from its atom pack; safe in DataLoader workers (a
    memory-mapped pack is shared through the page cache, and pickles as its path).

    ``source``: an atom pack file (rule ``atom_pack``), an :class:`AtomPack`, or an origin
    database, whose split is then packed in memory from the atom store (small sets,
    tests). Every source gives the same pairs.
    """

    def __init__(self, source, split: str, params: ViewParams, seed: int):
        if isinstance(source, AtomPack):
            self.pack = source
        else:
            self.pack = open_pack(source) if is_pack(source) else build_pack(source, split, params)
        self.pack.check(split, params)
        self.source = str(self.pack.path or source)
        self.split, self.params, self.seed = split, params, seed
        if not len(self.pack):
            raise ValueError(f"{self.source}: split {split!r} has no structures")
        counts = self.pack.n_origins.astype(np.float64)
        self.structures = [{"id": int(i), "first_origin_id": int(f), "n_origins": int(n)}
                           for i, f, n in zip(self.pack.structure_id, self.pack.first_origin_id, counts)]
        self.weights = (counts if params.structure_weighting == "origins"
                        else np.ones_like(counts)) / (counts.sum() if params.structure_weighting == "origins"
                                                      else len(counts))
        # rng.choice(len(weights), p=weights) without its O(structures) work per call:
        # the same cumulative sum and the same single uniform draw
        self._cdf = self.weights.cumsum()
        self._cdf /= self._cdf[-1]

    def atoms(self, structure_id: int) -> StructureAtoms:
        """The image atoms of one structure of the split, by origin-database id."""
        return StructureAtoms(self.pack, int(np.searchsorted(self.pack.structure_id, structure_id)))

    def sample(self, index: int) -> ViewPair:
        """The example at ``index`` (deterministic for the sampler's seed)."""
        rng = np.random.default_rng([self.seed, SPLIT_STREAMS[self.split], index])
        p, pack = self.params, self.pack
        for attempt in range(p.max_retries):
            s = int(self._cdf.searchsorted(rng.random(), side="right"))
            k = int(rng.integers(int(pack.n_origins[s])))
            origin_id = int(pack.first_origin_id[s]) + k
            centre = pack.origins_A[pack.origin_start[s] + k].astype(np.float64)
            rotation = random_rotation(rng)
            atoms = StructureAtoms(pack, s)
            centres_b = view_b_centres(centre, rotation, p.offset_A)
            ok = [f for f in range(6)
                  if atoms.density(centres_b[f], p.origins.radius_A) >= p.origins.min_nearby_atoms - 1e-4]
            if len(ok) == 6 or (ok and not p.require_all_faces):
                face = int(rng.choice(ok))
                crops = [atoms.crop(centre, rotation, p.image),
                         atoms.crop(centres_b[face], rotation, p.image)]
                if attempt:
                    log.debug("example %d: %d origin(s) had no dense face", index, attempt)
                return ViewPair(crops, face, origin_id, int(pack.structure_id[s]), rotation,
                                np.stack([centre, centres_b[face]]))
        need = "all six neighbouring views dense" if p.require_all_faces else "a dense neighbouring view"
        raise RuntimeError(f"example {index} of split {self.split!r}: no origin with {need} in "
                           f"{p.max_retries} tries; lower origins.min_nearby_atoms or views.padding_A"
                           + (", or set views.require_all_faces: false" if p.require_all_faces else ""))


def pack_atoms(pairs: list[ViewPair]):
    """Concatenate the atoms of many pairs for one batched voxelization.

    Returns (coords (M, 3) float32, channels, radii, occupancies, batch_index) with
    view ``2 * k`` = pair k's view A and ``2 * k + 1`` its view B.
    """
    parts = [crop for pair in pairs for crop in pair.atoms]
    batch = np.concatenate([np.full(len(c[0]), i, dtype=np.int64) for i, c in enumerate(parts)])
    return (torch.from_numpy(np.concatenate([c[0] for c in parts]).astype(np.float32)),
            torch.from_numpy(np.concatenate([c[1] for c in parts])),
            torch.from_numpy(np.concatenate([c[2] for c in parts])),
            torch.from_numpy(np.concatenate([c[3] for c in parts])),
            torch.from_numpy(batch))


def images_from_pairs(packed, n_pairs: int, params: ImageParams, device=None) -> torch.Tensor:
    """(n_pairs, 2, C, L, L, L) float32 images from :func:`pack_atoms` output."""
    coords, channels, radii, occupancies, batch = (t.to(device) if device is not None else t
                                                   for t in packed)
    images = image_from_atoms(coords, channels, radii, occupancies, params,
                              batch_index=batch, batch_size=2 * n_pairs)
    return images.view(n_pairs, 2, *images.shape[1:])


class ViewPairDataset(torch.utils.data.Dataset):
    """Training examples made on the fly: item i -> ViewPair (see the collate functions).

    ``epoch_size`` only sets how many indices one pass visits; every index is a new
    random pair (infinite augmentation), reproducible from (seed, index).
    """

    def __init__(self, sampler: ViewPairSampler, epoch_size: int, first_index: int = 0):
        self.sampler, self.epoch_size, self.first_index = sampler, epoch_size, first_index

    def __len__(self):
        return self.epoch_size

    def __getitem__(self, i):
        return self.sampler.sample(self.first_index + i)


class CollateImages:
    """Voxelize in the loader worker (CPU): batch -> (images, labels)."""

    def __init__(self, params: ImageParams):
        self.params = params

    def __call__(self, pairs):
        images = images_from_pairs(pack_atoms(pairs), len(pairs), self.params)
        return images, torch.tensor([p.label for p in pairs], dtype=torch.int64)


def collate_atoms(pairs):
    """Ship atoms; images are made on the training device: batch -> (packed, labels)."""
    return pack_atoms(pairs), torch.tensor([p.label for p in pairs], dtype=torch.int64)


# --- fixed evaluation sets --------------------------------------------------------

def write_view_set(path, sampler: ViewPairSampler, n_examples: int, first_index: int = 0,
                   batch_size: int = 64, image_dtype=np.float16, progress: bool = True) -> None:
    """Materialise pairs ``first_index ..`` (``n_examples``) into HDF5, atomically.

    Datasets: images (n, 2, C, L, L, L), labels (n,) int64, origin_ids, structure_ids,
    rotations (n, 3, 3), centres_A (n, 2, 3); attrs: every parameter and the seed.
    """
    from tqdm import tqdm

    p = sampler.params.image
    shape = (n_examples, 2, len(p.channels), p.length_voxels, p.length_voxels, p.length_voxels)
    with atomic_write_h5(path) as h5:
        images = h5.create_dataset("images", shape=shape, dtype=image_dtype,
                                   chunks=(1, *shape[1:]), compression="gzip",
                                   compression_opts=4, shuffle=True)
        labels = h5.create_dataset("labels", shape=(n_examples,), dtype=np.int64)
        origin_ids = h5.create_dataset("origin_ids", shape=(n_examples,), dtype=np.int64)
        structure_ids = h5.create_dataset("structure_ids", shape=(n_examples,), dtype=np.int64)
        rotations = h5.create_dataset("rotations", shape=(n_examples, 3, 3), dtype=np.float64)
        centres = h5.create_dataset("centres_A", shape=(n_examples, 2, 3), dtype=np.float64)
        bar = tqdm(total=n_examples, desc=f"views {sampler.split}", unit="pair",
                   disable=not progress, mininterval=5)
        for start in range(0, n_examples, batch_size):
            stop = min(start + batch_size, n_examples)
            pairs = [sampler.sample(first_index + i) for i in range(start, stop)]
            sl = slice(start, start + len(pairs))
            images[sl] = images_from_pairs(pack_atoms(pairs), len(pairs), p).numpy().astype(image_dtype)
            labels[sl] = [q.label for q in pairs]
            origin_ids[sl] = [q.origin_id for q in pairs]
            structure_ids[sl] = [q.structure_id for q in pairs]
            rotations[sl] = np.stack([q.rotation for q in pairs])
            centres[sl] = np.stack([q.centres_A for q in pairs])
            bar.update(len(pairs))
        bar.close()
        h5.attrs.update(split=sampler.split, seed=sampler.seed, n_examples=n_examples,
                        first_index=first_index,
                        length_voxels=p.length_voxels, resolution_A=p.resolution_A,
                        channels=list(p.channels), default_radius_A=p.default_radius_A,
                        padding_A=sampler.params.padding_A, faces=list(FACE_NAMES),
                        require_all_faces=sampler.params.require_all_faces,
                        radius_A=sampler.params.origins.radius_A,
                        min_nearby_atoms=sampler.params.origins.min_nearby_atoms,
                        source=sampler.source)


def read_view_set(path, n_examples: int | None = None, view: int | None = None) -> dict:
    """The first ``n_examples`` pairs (all when None) of a view set (:func:`write_view_set`):
    ``images`` float32 (n, 2, C, L, L, L), or (n, C, L, L, L) of one ``view`` (0 = A,
    1 = B); ``labels``, ``structure_ids``, ``rotations``, ``centres_A``; ``attrs`` (dict)."""
    with h5py.File(path, "r") as h5:
        n = int(h5["labels"].shape[0]) if n_examples is None else min(n_examples, int(h5["labels"].shape[0]))
        images = h5["images"][:n] if view is None else h5["images"][:n, view]
        return {"images": images.astype(np.float32), "labels": h5["labels"][:n],
                "structure_ids": h5["structure_ids"][:n], "rotations": h5["rotations"][:n],
                "centres_A": h5["centres_A"][:n], "attrs": dict(h5.attrs)}


def view_set_batches(path, batch_size: int = 256):
    """Yield ``(images (B, 2, C, L, L, L) float32, labels (B,))`` of a view set in order."""
    with h5py.File(path, "r") as h5:
        n = h5["labels"].shape[0]
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            yield (torch.from_numpy(h5["images"][start:stop].astype(np.float32)),
                   h5["labels"][start:stop])


class ViewSetDataset(torch.utils.data.Dataset):
    """A fixed HDF5 view set: item i -> (images (2, C, L, L, L) float32, label int64)."""

    def __init__(self, path):
        self.path = str(path)
        with h5py.File(self.path, "r") as h5:
            self.n = int(h5["labels"].shape[0])
        self._h5, self._pid = None, None

    def __getstate__(self):
        return {"path": self.path, "n": self.n, "_h5": None, "_pid": None}

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if self._pid != os.getpid():
            self._h5, self._pid = h5py.File(self.path, "r"), os.getpid()
        return (torch.from_numpy(self._h5["images"][i].astype(np.float32)),
                torch.tensor(int(self._h5["labels"][i]), dtype=torch.int64))


class ShardedViewDataset(torch.utils.data.Dataset):
    """Training examples read from materialised shards (rule ``views_train_shard``).

    Global example ``k`` is row ``k % size`` of shard ``(k // size) % n_shards``: the
    shards in order, then again from the first (an epoch of the shards, repeated). Shard
    ``j`` holds examples ``j * size ..`` of the views seed, so while ``k`` is within the
    shards, example ``k`` is the pair the on-the-fly sampler would make for that seed.
    Item ``i`` is global example ``first_index + i``: a resumed run goes on where it
    stopped. Yields ``(images (2, C, L, L, L) float32, label int64)``.
    """

    def __init__(self, paths, epoch_size: int, first_index: int = 0):
        self.shards = [ViewSetDataset(path) for path in paths]
        if not self.shards:
            raise ValueError("ShardedViewDataset needs at least one shard")
        sizes = {len(shard) for shard in self.shards}
        if len(sizes) != 1:
            raise ValueError(f"training shards differ in size: {sorted(sizes)} ({', '.join(map(str, paths))})")
        self.size = sizes.pop()
        self.epoch_size, self.first_index = epoch_size, first_index

    def __len__(self):
        return self.epoch_size

    def __getitem__(self, i):
        k = self.first_index + i
        return self.shards[(k // self.size) % len(self.shards)][k % self.size]
