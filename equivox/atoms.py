"""Atom store: parse each structure once (Biopython) into an HDF5 file per shard.

Layout of ``results/atoms/{shard}.h5`` (documented in docs/data_formats.md)::

    /structures/<chain_key>/          one group per PISCES chain, e.g. "1abc_A"
        coords_A           (N, 3) float32   Cartesian coordinates, Angstrom
        element            (N,)   S2        upper case, e.g. b"C", b"FE"
        residue_name       (N,)   S5        comp id, e.g. b"ALA", b"HOH"
        auth_chain         (N,)   S4        author chain id (PISCES uses this one)
        label_chain        (N,)   S4        label_asym_id; b"?" for PDB-format files
        occupancy          (N,)   float32
        b_factor_A2        (N,)   float32
        altloc             (N,)   S1        b"" when none
        atom_name          (N,)   S4        e.g. b"CA"
        is_pisces_chain    (N,)   bool      atom belongs to the listed author chain
        is_nonbiological   (N,)   bool      water or blocklisted residue
        is_hydrogen        (N,)   bool
        attrs: pdb_id, chain, source_path, source_format, model, n_atoms

Policies: only the first model is kept (NMR ensembles). Every alternate location is
kept with its own occupancy, so occupancy-weighted counts and images see the average
conformation rather than an arbitrary pick.
"""
from __future__ import annotations

import gzip
import io
import math
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import h5py
import numpy as np

ATOM_FIELDS = {
    "coords_A": np.float32, "element": "S2", "residue_name": "S5",
    "auth_chain": "S4", "label_chain": "S4", "occupancy": np.float32,
    "b_factor_A2": np.float32, "altloc": "S1", "atom_name": "S4", "is_pisces_chain": bool,
    "is_nonbiological": bool, "is_hydrogen": bool,
}


def nonbiological_residues(extra=(), keep=()) -> frozenset[str]:
    """The blocklist shipped in equivox/data, plus ``extra``, minus ``keep``."""
    text = resources.files("equivox.data").joinpath("nonbiological_residues.txt").read_text()
    names = {tok for line in text.splitlines() if not line.startswith("#")
             for tok in line.split()}
    return frozenset((names | {n.upper() for n in extra}) - {n.upper() for n in keep})


class StructureParseError(ValueError):
    """A structure file that cannot be used; message names file and reason."""


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def structure_format(path: str | Path) -> str:
    """'mmcif' or 'pdb' from the file name (``.cif[.gz]`` vs ``.pdb/.ent[.gz]``)."""
    name = Path(path).name.lower().removesuffix(".gz")
    if name.endswith(".cif"):
        return "mmcif"
    if name.endswith((".pdb", ".ent")):
        return "pdb"
    raise StructureParseError(f"{path}: unknown structure format (expected .cif or .pdb/.ent, optionally .gz)")


@dataclass
class AtomTable:
    """Columns of one structure's atoms (first model), each a numpy array of length N."""
    coords_A: np.ndarray
    element: np.ndarray
    residue_name: np.ndarray
    auth_chain: np.ndarray
    label_chain: np.ndarray
    occupancy: np.ndarray
    b_factor_A2: np.ndarray
    altloc: np.ndarray
    atom_name: np.ndarray

    def __len__(self) -> int:
        return len(self.coords_A)


def _column(d: dict, key: str, path: Path) -> list[str]:
    try:
        return d[key]
    except KeyError:
        raise StructureParseError(f"{path}: mmCIF has no {key} column") from None


def _read_mmcif(path: Path) -> AtomTable:
    from Bio.PDB.MMCIF2Dict import MMCIF2Dict

    try:
        with _open_text(path) as handle:
            d = MMCIF2Dict(handle)
    except (EOFError, OSError, ValueError, UnicodeDecodeError) as err:
        raise StructureParseError(f"{path}: cannot read mmCIF ({type(err).__name__}: {err})") from None
    if "_atom_site.Cartn_x" not in d:
        raise StructureParseError(f"{path}: no _atom_site loop (not a coordinate file?)")
    models = np.asarray(d.get("_atom_site.pdbx_PDB_model_num", ["1"] * len(d["_atom_site.Cartn_x"])))
    first = models == models[0]
    try:
        coords = np.stack([np.asarray(_column(d, f"_atom_site.Cartn_{a}", path), dtype=np.float64)
                           for a in "xyz"], axis=1)
    except ValueError as err:
        raise StructureParseError(f"{path}: bad coordinate value ({err})") from None
    n = len(coords)
    get = lambda key, default: np.asarray(d.get(key, [default] * n))  # noqa: E731
    occupancy = np.asarray([1.0 if v in "?." else float(v) for v in get("_atom_site.occupancy", "1")])
    bfac = np.asarray([math.nan if v in "?." else float(v) for v in get("_atom_site.B_iso_or_equiv", "?")])
    altloc = np.asarray(["" if v in "?." else v for v in get("_atom_site.label_alt_id", ".")])
    table = AtomTable(
        coords_A=coords, element=np.char.upper(get("_atom_site.type_symbol", "X")),
        residue_name=get("_atom_site.label_comp_id", "UNK"),
        auth_chain=get("_atom_site.auth_asym_id", "?"),
        label_chain=get("_atom_site.label_asym_id", "?"),
        occupancy=occupancy, b_factor_A2=bfac, altloc=altloc,
        atom_name=get("_atom_site.label_atom_id", "?"))
    return _select(table, first)


def _read_pdb(path: Path) -> AtomTable:
    import warnings

    from Bio.PDB import PDBParser
    from Bio.PDB.PDBExceptions import PDBConstructionWarning

    try:
        with _open_text(path) as handle, warnings.catch_warnings():
            # element inference for files without the element column is expected
            warnings.simplefilter("ignore", PDBConstructionWarning)
            structure = PDBParser(QUIET=True).get_structure(path.name, handle)
    except (EOFError, OSError, ValueError, UnicodeDecodeError) as err:
        raise StructureParseError(f"{path}: cannot read PDB format ({type(err).__name__}: {err})") from None
    models = list(structure)
    if not models:
        raise StructureParseError(f"{path}: no models / no ATOM records")
    rows = []
    for chain in models[0]:
        for residue in chain:
            for atom in residue.get_unpacked_list():  # every alt-loc conformer
                rows.append((atom.coord, atom.element, residue.get_resname(), chain.id,
                             atom.occupancy, atom.bfactor, atom.altloc.strip(), atom.get_name()))
    if not rows:
        raise StructureParseError(f"{path}: no atoms in the first model")
    coords, element, resname, chain_id, occ, bfac, alt, name = zip(*rows)
    return AtomTable(
        coords_A=np.asarray(coords, dtype=np.float64), element=np.char.upper(np.asarray(element)),
        residue_name=np.asarray(resname), auth_chain=np.asarray(chain_id),
        label_chain=np.full(len(rows), "?"),
        occupancy=np.asarray([1.0 if o is None else o for o in occ], dtype=np.float64),
        b_factor_A2=np.asarray(bfac, dtype=np.float64), altloc=np.asarray(alt),
        atom_name=np.asarray(name))


def _select(table: AtomTable, mask: np.ndarray) -> AtomTable:
    return AtomTable(**{k: v[mask] for k, v in table.__dict__.items()})


def _known_elements() -> frozenset[str]:
    from Bio.Data.IUPACData import atom_weights
    return frozenset(e.upper() for e in atom_weights) | {"D"}


def read_structure(path: str | Path) -> AtomTable:
    """Parse the first model of an mmCIF or PDB-format file (gzip or plain).

    Raises StructureParseError naming the file when it is unreadable, has no atoms,
    non-finite coordinates or element symbols that are not chemical elements.
    """
    path = Path(path)
    table = _read_mmcif(path) if structure_format(path) == "mmcif" else _read_pdb(path)
    if len(table) == 0:
        raise StructureParseError(f"{path}: no atoms")
    if not np.isfinite(table.coords_A).all():
        raise StructureParseError(f"{path}: non-finite coordinates")
    # element X is the wwPDB convention for atoms of unknown residues/ligands only
    bad = ~np.isin(table.element, list(_known_elements())) & ~(
        (table.element == "X") & np.isin(table.residue_name, ["UNX", "UNL", "UNK"]))
    if bad.any():
        unknown = sorted(set(table.element[bad].tolist()))
        first = int(np.flatnonzero(bad)[0])
        raise StructureParseError(
            f"{path}: element symbol(s) {unknown} are not chemical elements "
            f"(first at atom {first + 1}, residue {table.residue_name[first]})")
    return table


def write_structure(h5: h5py.File, chain_key: str, pdb_id: str, chain: str,
                    table: AtomTable, source_path: str | Path, blocklist: frozenset[str]) -> int:
    """Write one structure's group into an open atom store; returns atoms in the chain.

    Raises StructureParseError when the PISCES chain has no atoms in the file
    (compared against the *author* chain ids, exact and case-sensitive).
    """
    in_chain = table.auth_chain == chain
    n_chain = int(in_chain.sum())
    if n_chain == 0:
        present = sorted(set(table.auth_chain.tolist()))
        raise StructureParseError(
            f"{source_path}: author chain {chain!r} not found (chains present: {present})")
    group_path = f"structures/{chain_key}"
    if group_path in h5:
        del h5[group_path]  # a rerun after an interruption rewrites the entry
    g = h5.create_group(group_path)
    columns = {
        "coords_A": table.coords_A.astype(np.float32),
        "element": table.element.astype("S2"),
        "residue_name": table.residue_name.astype("S5"),
        "auth_chain": table.auth_chain.astype("S4"),
        "label_chain": table.label_chain.astype("S4"),
        "occupancy": table.occupancy.astype(np.float32),
        "b_factor_A2": table.b_factor_A2.astype(np.float32),
        "altloc": table.altloc.astype("S1"),
        "atom_name": table.atom_name.astype("S4"),
        "is_pisces_chain": in_chain,
        "is_nonbiological": np.isin(table.residue_name, list(blocklist)),
        "is_hydrogen": np.isin(table.element, ["H", "D"]),
    }
    for name, values in columns.items():
        g.create_dataset(name, data=values, compression="gzip", compression_opts=4,
                         shuffle=True, chunks=True if len(values) > 0 else None)
    g.attrs.update(pdb_id=pdb_id, chain=chain, source_path=str(source_path),
                   source_format=structure_format(source_path), model=1, n_atoms=len(table))
    return n_chain


def load_structure(h5: h5py.File, chain_key: str) -> dict[str, np.ndarray]:
    """All columns of one structure as numpy arrays (strings stay bytes)."""
    g = h5[f"structures/{chain_key}"]
    return {name: g[name][()] for name in ATOM_FIELDS}


def list_structures(h5: h5py.File) -> list[str]:
    return sorted(h5["structures"].keys()) if "structures" in h5 else []


# --- header metadata (used to build the demo PISCES list from real files) ---------

_PDB_METHODS = {"X-RAY DIFFRACTION": "XRAY", "SOLUTION NMR": "NMR", "NMR": "NMR",
                "ELECTRON MICROSCOPY": "EM", "ELECTRON CRYSTALLOGRAPHY": "EC",
                "NEUTRON DIFFRACTION": "NEUTRON"}


def _float_or_nan(value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def read_header(path: str | Path) -> dict:
    """Experimental metadata stated in the file itself; unknown -> nan / "NA".

    Returns dict(method, resolution_A, r_factor, r_free, chain_lengths) where
    chain_lengths maps author chain id -> number of polymer residues in model 1.
    """
    path = Path(path)
    meta = {"method": "NA", "resolution_A": math.nan, "r_factor": math.nan, "r_free": math.nan}
    if structure_format(path) == "mmcif":
        from Bio.PDB.MMCIF2Dict import MMCIF2Dict
        with _open_text(path) as handle:
            d = MMCIF2Dict(handle)
        first = lambda key: (d.get(key) or ["?"])[0]  # noqa: E731
        method = first("_exptl.method").upper()
        meta["method"] = _PDB_METHODS.get(method, "NA" if method in "?." else method.replace(" ", "_"))
        meta["resolution_A"] = _float_or_nan(first("_refine.ls_d_res_high"))
        if math.isnan(meta["resolution_A"]):
            meta["resolution_A"] = _float_or_nan(first("_em_3d_reconstruction.resolution"))
        meta["r_factor"] = _float_or_nan(first("_refine.ls_R_factor_R_work"))
        meta["r_free"] = _float_or_nan(first("_refine.ls_R_factor_R_free"))
    else:
        with _open_text(path) as handle:
            for line in handle:
                if line.startswith("EXPDTA"):
                    meta["method"] = _PDB_METHODS.get(line[10:].strip().split(";")[0].strip(), "NA")
                elif line.startswith("REMARK   2 RESOLUTION."):
                    m = re.search(r"RESOLUTION\.\s+([0-9.]+)\s+ANGSTROM", line)
                    meta["resolution_A"] = _float_or_nan(m.group(1)) if m else math.nan
                elif line.startswith("REMARK   3   R VALUE            (WORKING SET)"):
                    meta["r_factor"] = _float_or_nan(line.split(":")[-1])
                elif line.startswith("REMARK   3   FREE R VALUE       ") and ":" in line:
                    meta["r_free"] = _float_or_nan(line.split(":")[-1])
                elif line.startswith(("ATOM", "HETATM")):
                    break
    table = read_structure(path)
    # residues counted by C-alpha atoms (first conformer only) outside the blocklist
    ca = ((table.atom_name == "CA") & (table.element == "C") & (table.altloc <= "A")
          & ~np.isin(table.residue_name, list(nonbiological_residues())))
    meta["chain_lengths"] = {str(c): int(np.sum(ca & (table.auth_chain == c)))
                             for c in np.unique(table.auth_chain)}
    return meta


def atomic_write_h5(path: str | Path):
    """Context manager writing an HDF5 file under a temp name, renamed on success."""
    from contextlib import contextmanager

    @contextmanager
    def _cm():
        tmp = Path(f"{path}.tmp{os.getpid()}")
        try:
            with h5py.File(tmp, "w") as h5:
                yield h5
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return _cm()
