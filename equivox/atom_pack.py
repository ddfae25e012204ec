"""The atom pack: one split's image atoms, ready for the view sampler.

The HDF5 atom store stays the archival record of every parsed atom. The pack holds
only what sampling a view pair needs, preprocessed once per split (rule ``atom_pack``):
the biological atoms that have an image channel, as float32 coordinates, a uint8
channel, a uint8 radius class and a float32 occupancy; each structure's origins; and
each structure's atoms sorted by x, so that a ball query is two binary searches and one
distance test on a contiguous slab (no per-structure index to build, nothing to decode).
The file is memory-mapped read-only: every loader worker shares the page cache.

File layout (``results/atom_pack/<split>.pack``, written by :func:`write_pack` and read
by :func:`open_pack`, nowhere else)::

    bytes 0-7     magic b"EQVXPAK1"
    bytes 8-15    header length H, little-endian uint64
    bytes 16..    header: UTF-8 JSON {"version", "split", "params", "arrays"}, padded
                  with spaces to a multiple of 64 bytes from the file start; there the
                  data section starts, and arrays[name] = {"dtype", "shape", "offset"}
                  gives each array's offset in it (a multiple of 64)
    then each array, C order, little-endian, at its offset

Arrays (S structures, N atoms, M origins, K radii):

    structure_id     (S,)    int64    origin-database id (ascending)
    first_origin_id  (S,)    int64    origin id of the structure's first origin
    atom_start       (S+1,)  int64    structure s owns atoms atom_start[s]:atom_start[s+1]
    origin_start     (S+1,)  int64    ... and origins origin_start[s]:origin_start[s+1]
    max_radius_A     (S,)    float32  largest atom radius of the structure (0 if no atom)
    x, y, z          (N,)    float32  lab-frame coordinates, Å; ascending x per structure
    channel          (N,)    uint8    image channel (equivox.voxelize.channel_index)
    radius_class     (N,)    uint8    radius_A = radius_table_A[radius_class]
    occupancy        (N,)    float32
    source_index     (N,)    uint32   row of the atom in its atom-store structure
    radius_table_A   (K,)    float32  the radii the image parameters can give, ascending
    origins_A        (M, 3)  float32  origins in origin-id order (origin id
                                      first_origin_id[s] + k is row origin_start[s] + k)

``params`` records what the atoms were selected and typed with (channels, element
radii, default radius, exclude_hydrogens); a sampler with other parameters refuses
the pack.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from .atomic import replacing

MAGIC = b"EQVXPAK1"
VERSION = 1
_ALIGN = 64
STRUCTURE_ARRAYS = ("structure_id", "first_origin_id", "max_radius_A")
ATOM_ARRAYS = {"x": np.float32, "y": np.float32, "z": np.float32, "channel": np.uint8,
               "radius_class": np.uint8, "occupancy": np.float32, "source_index": np.uint32}


def pack_params(params) -> dict:
    """What a pack's atoms depend on, from :class:`equivox.views.ViewParams` (JSON-able)."""
    image = params.image
    return {"channels": list(image.channels),
            "element_radii_A": [[element, radius] for element, radius in image.element_radii_A],
            "default_radius_A": image.default_radius_A,
            "exclude_hydrogens": params.origins.exclude_hydrogens}


def radius_table(params) -> np.ndarray:
    """(K,) float32 ascending: every radius the image parameters can give an atom."""
    image = params.image
    return np.unique(np.array([image.default_radius_A, *(r for _, r in image.element_radii_A)],
                              dtype=np.float32))


def structure_atoms(atoms: dict[str, np.ndarray], params) -> dict[str, np.ndarray]:
    """One structure's pack columns (:data:`ATOM_ARRAYS`, sorted by x) from its atom-store
    columns (:func:`equivox.atoms.load_structure`): the biological atoms
    (:func:`equivox.origins.biological_mask`) that some channel takes."""
    from .origins import biological_mask
    from .voxelize import atom_radii, channel_index

    keep = np.flatnonzero(biological_mask(atoms, params.origins.exclude_hydrogens))
    elements = atoms["element"][keep]
    channels = channel_index(elements, params.image.channels)
    use = channels >= 0
    source = keep[use]
    coords = np.asarray(atoms["coords_A"], dtype=np.float32)[source]
    radii = atom_radii(elements[use], params.image)
    return sort_by_x({"x": coords[:, 0], "y": coords[:, 1], "z": coords[:, 2],
                      "channel": channels[use].astype(np.uint8),
                      "radius_class": np.searchsorted(radius_table(params), radii).astype(np.uint8),
                      "occupancy": np.asarray(atoms["occupancy"], dtype=np.float32)[source],
                      "source_index": source.astype(np.uint32)})


def sort_by_x(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-atom columns reordered by ascending x (stable: ties keep their order)."""
    order = np.argsort(columns["x"], kind="stable")
    return {name: np.ascontiguousarray(values[order]) for name, values in columns.items()}


class AtomPack:
    """A pack's arrays (memory-mapped from a file, or in memory) and its header.

    Pickles as its path when it came from a file, so a spawned worker maps the same
    file instead of receiving a copy.
    """

    def __init__(self, arrays: dict[str, np.ndarray], split: str, params: dict, path: str | None = None):
        self.arrays, self.split, self.params, self.path = arrays, split, params, path
        for name, values in arrays.items():  # plain ndarrays (a memmap's ufunc results cost more)
            setattr(self, name, values.view(np.ndarray))
        self.n_origins = np.diff(self.origin_start)

    @classmethod
    def from_structures(cls, structures, split: str, params) -> "AtomPack":
        """From ``(structure_id, first_origin_id, columns, origins_A (M, 3))`` per structure,
        in ascending id; ``columns`` as :func:`structure_atoms` returns them."""
        structures = list(structures)
        atoms = {name: np.concatenate([np.zeros(0, dtype)] + [c[name] for _, _, c, _ in structures])
                 for name, dtype in ATOM_ARRAYS.items()}
        return cls.from_arrays(
            atoms, atom_counts=[len(c["x"]) for _, _, c, _ in structures],
            structure_id=[s[0] for s in structures], first_origin_id=[s[1] for s in structures],
            origins_A=np.concatenate([np.zeros((0, 3))] + [s[3] for s in structures]),
            origin_counts=[len(s[3]) for s in structures], split=split, params=params)

    @classmethod
    def from_arrays(cls, atoms: dict[str, np.ndarray], atom_counts, structure_id, first_origin_id,
                    origins_A: np.ndarray, origin_counts, split: str, params) -> "AtomPack":
        """From the atom columns of every structure concatenated (:data:`ATOM_ARRAYS`, each
        structure's atoms sorted by x), atoms and origins per structure, the origins."""
        arrays = {name: np.asarray(atoms[name]).astype(dtype, copy=False) for name, dtype in ATOM_ARRAYS.items()}
        atom_start = np.concatenate([[0], np.cumsum(atom_counts, dtype=np.int64)]).astype(np.int64)
        table = radius_table(params)
        radii = np.concatenate([table[arrays["radius_class"]], [0]]).astype(np.float32)
        nonempty = np.diff(atom_start) > 0
        max_radius = np.zeros(len(atom_start) - 1, np.float32)
        if nonempty.any():
            max_radius[nonempty] = np.maximum.reduceat(radii, atom_start[:-1][nonempty])
        arrays.update(
            structure_id=np.asarray(structure_id, dtype=np.int64),
            first_origin_id=np.asarray(first_origin_id, dtype=np.int64),
            atom_start=atom_start,
            origin_start=np.concatenate([[0], np.cumsum(origin_counts, dtype=np.int64)]).astype(np.int64),
            max_radius_A=max_radius, radius_table_A=table,
            origins_A=np.asarray(origins_A, dtype=np.float32).reshape(-1, 3))
        return cls(arrays, split, pack_params(params))

    def __len__(self) -> int:
        return len(self.structure_id)

    def check(self, split: str, params) -> None:
        """Raise ValueError unless this pack is of ``split`` and made with ``params``."""
        where = self.path or "in-memory atom pack"
        if self.split != split:
            raise ValueError(f"{where}: atom pack of split {self.split!r}, not {split!r}")
        if self.params != pack_params(params):
            raise ValueError(f"{where}: made with {self.params}, but the views need {pack_params(params)}; "
                             "rebuild it (rule atom_pack)")

    def __getstate__(self):
        if self.path is not None:
            return {"path": self.path}
        return {"arrays": self.arrays, "split": self.split, "params": self.params}

    def __setstate__(self, state):
        if "path" in state:
            other = open_pack(state["path"])
            state = {"arrays": other.arrays, "split": other.split, "params": other.params, "path": other.path}
        self.__init__(state["arrays"], state["split"], state["params"], state.get("path"))


def _layout(pack: AtomPack) -> tuple[bytes, list[tuple[int, np.ndarray]]]:
    """(header bytes padded to the data section, [(offset in the data section, array)])."""
    entries, placed, offset = {}, [], 0
    for name, values in pack.arrays.items():
        values = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
        offset = -(-offset // _ALIGN) * _ALIGN
        entries[name] = {"dtype": values.dtype.str, "shape": list(values.shape), "offset": offset}
        placed.append((offset, values))
        offset += values.nbytes
    header = json.dumps({"version": VERSION, "split": pack.split, "params": pack.params,
                         "arrays": entries}, sort_keys=True).encode()
    return header + b" " * (-(len(header) + 16) % _ALIGN), placed


def write_pack(path: str | Path, pack: AtomPack) -> None:
    """Write ``pack`` to ``path`` atomically (:func:`equivox.atomic.replacing`)."""
    header, placed = _layout(pack)
    with replacing(path) as pending:
        with open(pending.tmp, "wb") as handle:
            handle.write(MAGIC + struct.pack("<Q", len(header)) + header)
            start = handle.tell()
            for offset, values in placed:
                handle.write(b"\0" * (start + offset - handle.tell()))
                handle.write(values.tobytes())


def is_pack(path: str | Path) -> bool:
    """Whether ``path`` is an atom pack file (by its magic)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(MAGIC)) == MAGIC
    except (IsADirectoryError, FileNotFoundError):
        return False


def open_pack(path: str | Path) -> AtomPack:
    """Memory-map a pack file read-only (inverse of :func:`write_pack`)."""
    path = str(path)
    with open(path, "rb") as handle:
        if handle.read(len(MAGIC)) != MAGIC:
            raise ValueError(f"{path}: not an atom pack (rule atom_pack writes them)")
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    if header["version"] != VERSION:
        raise ValueError(f"{path}: atom pack version {header['version']}, this code reads {VERSION}; rebuild it")
    start = 16 + length
    arrays = {name: np.memmap(path, dtype=np.dtype(e["dtype"]), mode="r", offset=start + e["offset"],
                              shape=tuple(e["shape"])) if np.prod(e["shape"]) else
              np.zeros(e["shape"], np.dtype(e["dtype"]))
              for name, e in header["arrays"].items()}
    return AtomPack(arrays, header["split"], header["params"], path)


def build_pack(db_path: str | Path, split: str, params, progress: bool = False) -> AtomPack:
    """The pack of ``split`` from the origin database and the HDF5 atom store it names."""
    import h5py
    from tqdm import tqdm

    from .atoms import load_structure
    from .origin_db import OriginDB

    db = OriginDB(db_path)
    rows = db.structures(split)
    files, structures = {}, []
    try:
        for row in tqdm(rows, desc=f"atom_pack {split}", unit="structure", mininterval=5, disable=not progress):
            if row["atoms_path"] not in files:
                files[row["atoms_path"]] = h5py.File(row["atoms_path"], "r")
            columns = structure_atoms(load_structure(files[row["atoms_path"]], row["chain_key"]), params)
            structures.append((row["id"], row["first_origin_id"], columns, db.structure_origins(row["id"])))
    finally:
        for handle in files.values():
            handle.close()
        db.close()
    return AtomPack.from_structures(structures, split, params)
