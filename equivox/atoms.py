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
        attrs: pdb_id, chain, source_path, source_format, n_models, model_policy,
               warnings (newline-separated; "" when none), n_atoms

Policies: every atom record of the kept model(s) is kept with its own occupancy: all
alternate locations, and all residue variants of a microheterogeneous position (1EJG:
PRO/SER at 22), in mmCIF and PDB format alike, so occupancy-weighted counts and images
see the average structure rather than an arbitrary pick. Of several models the first
is kept (NMR ensembles), except that the models of a diffraction entry that are its
alternative conformers (occupancies of each atom summing to <= 1 over the models, as
in 2G10) are all kept; see :func:`read_structure`. Models are found even in files that
do not number them. Suspicious defaults (no occupancy, no chain id) become warnings.
"""
from __future__ import annotations

import gzip
import io
import math
import os
import re
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import h5py
import numpy as np

from .atomic import atomic_write_h5

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
    """Columns of one structure's atoms, each a numpy array of length N.

    Which models are in it, and why, is in ``model_policy`` ("single": the file has
    one model; "first": the first of several; "merged": the models of an X-ray entry
    are its alternative conformers and all are kept, see :func:`read_structure`).
    ``warnings`` lists suspicious defaults taken while reading (stored with the atoms).
    """
    coords_A: np.ndarray
    element: np.ndarray
    residue_name: np.ndarray
    auth_chain: np.ndarray
    label_chain: np.ndarray
    occupancy: np.ndarray
    b_factor_A2: np.ndarray
    altloc: np.ndarray
    atom_name: np.ndarray
    n_models: int = 1
    model_policy: str = "single"
    warnings: tuple[str, ...] = ()

    COLUMNS = ("coords_A", "element", "residue_name", "auth_chain", "label_chain",
               "occupancy", "b_factor_A2", "altloc", "atom_name")

    def __len__(self) -> int:
        return len(self.coords_A)


@dataclass
class _RawAtoms:
    """Every atom record of a file, all models, before the model policy is applied."""
    columns: dict[str, np.ndarray]   # AtomTable.COLUMNS
    model: np.ndarray                # (N,) int, 1-based model index in file order
    residue_key: np.ndarray          # (N,) str: chain|seq|icode of the atom's residue
    method: str                      # experimental method as stated, upper case; "" if none
    warnings: list[str]
    identity: list[tuple]            # (N,) what makes an atom record unique within a model


# Experimental methods whose several models are alternative conformers of one crystal
DIFFRACTION_METHODS = frozenset({"X-RAY DIFFRACTION", "NEUTRON DIFFRACTION", "FIBER DIFFRACTION",
                                 "POWDER DIFFRACTION", "ELECTRON CRYSTALLOGRAPHY"})
# occupancies are deposited to 2 decimals: conformers of one atom sum to 1 within this
_OCCUPANCY_SUM_TOLERANCE = 0.05
# "no value" in mmCIF
_CIF_NULL = frozenset({"?", "."})


def _column(d: dict, key: str, path: Path, why: str) -> list[str]:
    try:
        return d[key]
    except KeyError:
        raise StructureParseError(f"{path}: mmCIF _atom_site loop has no {key.split('.')[1]} "
                                  f"column ({why})") from None


def _numbers(values, path: Path, name: str, default: float, warnings: list[str]) -> np.ndarray:
    """Floats of an mmCIF column; '?'/'.' -> ``default`` (counted in ``warnings``)."""
    values = np.asarray(values)
    null = np.isin(values, list(_CIF_NULL))
    out = np.full(len(values), default, dtype=np.float64)
    try:
        out[~null] = values[~null].astype(np.float64)
    except ValueError as err:
        raise StructureParseError(f"{path}: bad {name} value ({err})") from None
    if null.any() and not math.isnan(default):
        warnings.append(f"{int(null.sum())} atom(s) without {name}: {default:g} assumed")
    return out


def _model_from_repeats(identity: list[tuple], warnings: list[str]) -> np.ndarray:
    """Model index per atom for files without model numbers (no model column, no MODEL
    records): a new model starts where the file's first atom identity comes again
    after it was seen in the current model. Other repeated identities do not split
    models (see :func:`_first_of_repeats`)."""
    model = np.ones(len(identity), dtype=np.int64)
    if not identity:
        return model
    current, seen = 1, set()
    for i, key in enumerate(identity):
        if key == identity[0] and key in seen:
            current, seen = current + 1, set()
        seen.add(key)
        model[i] = current
    if current > 1:
        warnings.append(f"{current} models found by the first atom recurring "
                        "(the file numbers no models)")
    return model


def _first_of_repeats(model: np.ndarray, identity: list[tuple], warnings: list[str]) -> np.ndarray:
    """Mask keeping the first record of each atom identity within a model (the file
    repeats an atom: chain, residue, alt-loc and name all equal), as Biopython does."""
    seen, keep = set(), np.ones(len(identity), dtype=bool)
    for i, key in enumerate(zip(model.tolist(), identity)):
        if key in seen:
            keep[i] = False
        seen.add(key)
    if not keep.all():
        warnings.append(f"{int((~keep).sum())} atom record(s) repeat an atom of the same model "
                        "(chain, residue, alt-loc and name equal): the first is kept")
    return keep


def _read_mmcif(path: Path) -> _RawAtoms:
    from Bio.PDB.MMCIF2Dict import MMCIF2Dict

    try:
        with _open_text(path) as handle:
            d = MMCIF2Dict(handle)
    except (EOFError, OSError, ValueError, UnicodeDecodeError) as err:
        raise StructureParseError(f"{path}: cannot read mmCIF ({type(err).__name__}: {err})") from None
    if "_atom_site.Cartn_x" not in d:
        raise StructureParseError(f"{path}: no _atom_site loop (not a coordinate file?)")
    warnings: list[str] = []
    coords = np.stack([_numbers(_column(d, f"_atom_site.Cartn_{a}", path, "coordinates"), path,
                                f"Cartn_{a}", math.nan, warnings) for a in "xyz"], axis=1)
    n = len(coords)
    get = lambda key, default: np.asarray(d[key]) if key in d else np.full(n, default)  # noqa: E731
    chains = np.asarray(_column(d, "_atom_site.auth_asym_id", path, "author chain ids, which PISCES names"))
    elements = np.char.upper(np.asarray(_column(d, "_atom_site.type_symbol", path, "element symbols")))
    comp_key = "_atom_site.label_comp_id" if "_atom_site.label_comp_id" in d else "_atom_site.auth_comp_id"
    atom_key = "_atom_site.label_atom_id" if "_atom_site.label_atom_id" in d else "_atom_site.auth_atom_id"
    residues = np.asarray(_column(d, comp_key, path, "residue names"))
    names = np.asarray(_column(d, atom_key, path, "atom names"))
    if "_atom_site.occupancy" in d:
        occupancy = _numbers(d["_atom_site.occupancy"], path, "occupancy", 1.0, warnings)
    else:
        occupancy = np.ones(n)
        warnings.append("no occupancy column: occupancy 1 assumed for every atom")
    bfac = _numbers(get("_atom_site.B_iso_or_equiv", "?"), path, "B_iso_or_equiv", math.nan, warnings)
    altloc = get("_atom_site.label_alt_id", ".")
    altloc = np.where(np.isin(altloc, list(_CIF_NULL)), "", altloc)
    no_chain = np.isin(chains, list(_CIF_NULL)) | (chains == "")
    if no_chain.any():
        warnings.append(f"{int(no_chain.sum())} atom(s) with no author chain id ('.' or '?')")
    seq = get("_atom_site.auth_seq_id", "?") if "_atom_site.auth_seq_id" in d else get("_atom_site.label_seq_id", "?")
    icode = get("_atom_site.pdbx_PDB_ins_code", "?")
    residue_key = np.char.add(np.char.add(np.char.add(chains, "|"), np.char.add(seq, "|")), icode)
    label_chain = get("_atom_site.label_asym_id", "?")
    identity = list(zip(chains.tolist(), label_chain.tolist(), seq.tolist(), icode.tolist(),
                        residues.tolist(), names.tolist(), altloc.tolist()))
    if "_atom_site.pdbx_PDB_model_num" in d:
        numbers = d["_atom_site.pdbx_PDB_model_num"]
        order = {m: i + 1 for i, m in enumerate(dict.fromkeys(numbers))}  # 1-based, file order
        model = np.asarray([order[m] for m in numbers], dtype=np.int64)
    else:
        model = _model_from_repeats(identity, warnings)
    method = " ".join(str(m).upper() for m in d.get("_exptl.method", []) if m not in _CIF_NULL)
    columns = dict(coords_A=coords, element=elements, residue_name=residues, auth_chain=chains,
                   label_chain=label_chain, occupancy=occupancy,
                   b_factor_A2=bfac, altloc=altloc, atom_name=names)
    return _RawAtoms(columns, model, residue_key, method, warnings, identity)


def _pdb_element(fullname: str, element: str) -> str:
    """Element of a PDB-format atom as Biopython's PDBParser assigns it (inferred from
    the atom name when columns 77-78 are blank or not an element)."""
    from Bio.Data.IUPACData import atom_weights

    if element and element.capitalize() in atom_weights:
        return element
    import warnings as _warnings

    from Bio.PDB.Atom import Atom
    from Bio.PDB.PDBExceptions import PDBConstructionWarning

    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", PDBConstructionWarning)
        return Atom(fullname.strip(), np.zeros(3), 0.0, 1.0, " ", fullname, 0, element=element or None).element


def _read_pdb(path: Path) -> _RawAtoms:
    """Every ATOM/HETATM record of a PDB-format file (all residue variants of a
    microheterogeneous position, all alt-locs, all models), by the wwPDB v3.3 columns."""
    rows, model_numbers, method, warnings = [], [], "", []
    has_model_records, model, blank_occupancy, blank_chain = False, 1, 0, 0
    try:
        with _open_text(path) as handle:
            for lineno, line in enumerate(handle, start=1):
                record = line[:6]
                if record == "MODEL ":
                    if has_model_records:
                        model += 1
                    has_model_records = True
                elif record == "EXPDTA":
                    method = line[10:].strip().split(";")[0].strip().upper()
                elif record in ("ATOM  ", "HETATM"):
                    try:
                        xyz = (float(line[30:38]), float(line[38:46]), float(line[46:54]))
                    except ValueError:
                        raise StructureParseError(
                            f"{path}:{lineno}: {record.strip()} record without numeric x, y, z "
                            f"in columns 31-54: {line.rstrip()[:60]!r}") from None
                    occupancy = line[54:60].strip()
                    if not occupancy:
                        blank_occupancy += 1
                    bfac = line[60:66].strip()
                    chain = line[21].strip() if len(line) > 21 else ""
                    blank_chain += not chain
                    fullname = line[12:16]
                    rows.append((xyz, _pdb_element(fullname, line[76:78].strip().upper()),
                                 line[17:20].strip(), chain, float(occupancy) if occupancy else 1.0,
                                 float(bfac) if bfac else math.nan, line[16].strip(),
                                 fullname.strip(), f"{chain}|{line[22:26].strip()}|{line[26].strip()}"))
                    model_numbers.append(model)
    except (EOFError, OSError, UnicodeDecodeError, zlib.error) as err:
        raise StructureParseError(f"{path}: cannot read PDB format ({type(err).__name__}: {err})") from None
    except ValueError as err:
        raise StructureParseError(f"{path}: bad occupancy or B-factor ({err})") from None
    if not rows:
        raise StructureParseError(f"{path}: no ATOM/HETATM records")
    if blank_occupancy:
        warnings.append(f"{blank_occupancy} atom(s) without occupancy: 1 assumed")
    if blank_chain:
        warnings.append(f"{blank_chain} atom(s) with a blank chain id")
    coords, element, resname, chain_id, occ, bfac, alt, name, residue_key = zip(*rows)
    identity = list(zip(residue_key, resname, alt, name))
    if has_model_records:
        model_index = np.asarray(model_numbers, dtype=np.int64)
    else:
        model_index = _model_from_repeats(identity, warnings)
    columns = dict(coords_A=np.asarray(coords, dtype=np.float64), element=np.asarray(element),
                   residue_name=np.asarray(resname), auth_chain=np.asarray(chain_id),
                   label_chain=np.full(len(rows), "?"), occupancy=np.asarray(occ, dtype=np.float64),
                   b_factor_A2=np.asarray(bfac, dtype=np.float64), altloc=np.asarray(alt),
                   atom_name=np.asarray(name))
    return _RawAtoms(columns, model_index, np.asarray(residue_key), method, warnings, identity)


def _apply_model_policy(raw: _RawAtoms) -> AtomTable:
    """One model, or all models merged when they are the conformers of an X-ray entry.

    Rule: a file with several models keeps the first, unless its method is a
    diffraction method (X-ray, neutron, electron crystallography) and the models are
    alternative conformers: every atom found in more than one model has occupancies
    that sum to at most 1 (+0.05) over the models. Then all models are kept, each atom
    with its own occupancy (as alt-locs are), and atoms without an alt-loc id get the
    model number as one ("1", "2", ...).
    """
    warnings = list(raw.warnings)
    keep = _first_of_repeats(raw.model, raw.identity, warnings)
    columns = {k: v[keep] for k, v in raw.columns.items()}
    raw = _RawAtoms(columns, raw.model[keep], raw.residue_key[keep], raw.method, warnings, [])
    n_models = int(raw.model.max())
    if n_models == 1:
        return AtomTable(**columns, n_models=1, model_policy="single", warnings=tuple(warnings))
    diffraction = any(m in raw.method for m in DIFFRACTION_METHODS)
    if diffraction:
        key = np.char.add(np.char.add(raw.residue_key, "|"),
                          np.char.add(np.char.add(columns["residue_name"], "|"), columns["atom_name"]))
        keys, inverse = np.unique(key, return_inverse=True)
        occupancy_sum = np.bincount(inverse, weights=columns["occupancy"], minlength=len(keys))
        pairs = np.unique(np.stack([inverse, raw.model]), axis=1)
        in_several = np.bincount(pairs[0], minlength=len(keys)) > 1
        worst = float(occupancy_sum[in_several].max()) if in_several.any() else 0.0
        if worst <= 1 + _OCCUPANCY_SUM_TOLERANCE:
            columns["altloc"] = np.where(columns["altloc"] == "", raw.model.astype(str), columns["altloc"])
            warnings.append(f"{n_models} models of a diffraction entry kept as conformers "
                            f"(occupancies of an atom sum to <= {worst:.2f} over the models)")
            return AtomTable(**columns, n_models=n_models, model_policy="merged", warnings=tuple(warnings))
        warnings.append(f"{n_models} models of a diffraction entry whose occupancies sum to "
                        f"{worst:.2f} > 1 over the models: first model only")
    else:
        warnings.append(f"{n_models} models ({raw.method or 'method not stated'}): first model only")
    first = raw.model == 1
    return AtomTable(**{k: v[first] for k, v in columns.items()}, n_models=n_models,
                     model_policy="first", warnings=tuple(warnings))


def _known_elements() -> frozenset[str]:
    from Bio.Data.IUPACData import atom_weights
    return frozenset(e.upper() for e in atom_weights) | {"D"}


def read_structure(path: str | Path) -> AtomTable:
    """Parse an mmCIF or PDB-format file (gzip or plain) into one table of atoms.

    Every atom record of the kept model(s) is kept: all alt-loc conformers and all
    residue variants of a microheterogeneous position, each with its occupancy. Models
    follow :func:`_apply_model_policy` (first model, or an X-ray entry's conformer
    models merged); models are found by model number, MODEL records, or, failing both,
    by the file's first atom recurring. Raises StructureParseError naming the file
    when it is unreadable, lacks a required column (named), has no atoms,
    non-finite coordinates or element symbols that are not chemical elements.
    """
    path = Path(path)
    raw = _read_mmcif(path) if structure_format(path) == "mmcif" else _read_pdb(path)
    table = _apply_model_policy(raw)
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
                   source_format=structure_format(source_path), n_models=table.n_models,
                   model_policy=table.model_policy, warnings="\n".join(table.warnings),
                   n_atoms=len(table))
    return n_chain


def load_structure(h5: h5py.File, chain_key: str) -> dict[str, np.ndarray]:
    """All columns of one structure as numpy arrays (strings stay bytes)."""
    g = h5[f"structures/{chain_key}"]
    return {name: g[name][()] for name in ATOM_FIELDS}


def list_structures(h5: h5py.File) -> list[str]:
    return sorted(h5["structures"].keys()) if "structures" in h5 else []


def atom_counts(path: str | Path) -> dict[str, int]:
    """Chain key -> number of stored atoms, for every structure of an atom-store shard."""
    with h5py.File(path, "r") as h5:
        return {key: int(h5[f"structures/{key}"].attrs["n_atoms"]) for key in list_structures(h5)}


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
    ca = ((table.atom_name == "CA") & (table.element == "C") & np.isin(table.altloc, ["", "A", "1"])
          & ~np.isin(table.residue_name, list(nonbiological_residues())))
    meta["chain_lengths"] = {str(c): int(np.sum(ca & (table.auth_chain == c)))
                             for c in np.unique(table.auth_chain)}
    return meta


@contextmanager
def write_atom_store(path: str | Path, blocklist: frozenset[str]):
    """An atom-store shard being written (``h5py.File``; add structures with
    :func:`write_structure`), recording the residue ``blocklist`` it was made with;
    it replaces ``path`` when the block succeeds."""
    with atomic_write_h5(path) as h5:
        h5.attrs["blocklist"] = " ".join(sorted(blocklist))
        yield h5
