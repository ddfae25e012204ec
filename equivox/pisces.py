"""PISCES culled lists: parse the real formats, re-filter by config thresholds.

The Dunbrack server has written two headers; both are read, in any column order::

    PDBchain   len  method  resol  rfac  freerfac          (lists made today)
    5D8VA       80    XRAY   0.48  0.072    0.078
    7AF2AAA    117    XRAY   1.70  0.19     0.23

    IDs         length  Exptl.  resolution  R-factor  FreeRvalue   (older lists)
    12ASA          330    XRAY       2.200      0.16        0.29

Each id is a 4-character PDB code followed by the *author* chain id
(``auth_asym_id``), which may be several characters long (``AAA`` above). Values
that are not known are written ``NA`` (the demo list made from file headers uses
this; never a made-up number) and the filter's ``unknown`` policy decides. Older lists
wrote ``1.00`` for an R-factor or free R value that the entry does not state (139 of
15,139 rows of a 2019 list; the same chains are ``NA`` in later lists): an R value of
exactly 1 is read as unknown too. Columns other than the six are ignored.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ReportedError

HEADER_FIELDS = ("IDs", "length", "Exptl.", "resolution", "R-factor", "FreeRvalue")
# column name (as the server writes it) -> field, for every header format seen
COLUMN_NAMES = {
    "IDs": "id", "PDBchain": "id",
    "length": "length", "len": "length",
    "Exptl.": "method", "method": "method",
    "resolution": "resolution", "resol": "resolution",
    "R-factor": "r_factor", "rfac": "r_factor",
    "FreeRvalue": "r_free", "freerfac": "r_free",
}
FIELDS = ("id", "length", "method", "resolution", "r_factor", "r_free")
EXPECTED_HEADERS = ("'PDBchain len method resol rfac freerfac' (current lists) or "
                    "'IDs length Exptl. resolution R-factor FreeRvalue' (older lists)")
# written by older lists for an R value the entry does not state
R_NOT_STATED = 1.0
_ID_RE = re.compile(r"^([0-9][A-Za-z0-9]{3})([A-Za-z0-9]{1,4})$")


class PiscesFormatError(ReportedError):
    """A PISCES list line that does not follow the format; names file, line and what
    was expected in one line (scripts print it without a traceback)."""


@dataclass(frozen=True)
class PiscesChain:
    pdb_id: str        # 4 characters, lower case
    chain: str         # author chain id, case preserved, 1-4 characters
    length: int
    method: str        # XRAY, NMR, EM, ... as in the list
    resolution_A: float  # nan when unknown
    r_factor: float      # nan when unknown
    r_free: float        # nan when unknown

    @property
    def chain_key(self) -> str:
        """Stable id used throughout the pipeline: ``1abc_A`` (pdb id lower case)."""
        return f"{self.pdb_id}_{self.chain}"


def _number(token: str, path: Path, lineno: int, field: str) -> float:
    if token.upper() in {"NA", "N/A", "?", "."}:
        return math.nan
    try:
        return float(token)
    except ValueError:
        raise PiscesFormatError(
            f"{path}:{lineno}: field '{field}' should be a number or NA, got {token!r}"
        ) from None


def _r_value(token: str, path: Path, lineno: int, field: str) -> float:
    value = _number(token, path, lineno, field)
    return math.nan if value == R_NOT_STATED else value


def _header_columns(tokens: list[str], path: Path, lineno: int) -> dict[str, int] | None:
    """field -> column index, or None when the line is not a header at all."""
    known = {COLUMN_NAMES[t]: i for i, t in reversed(list(enumerate(tokens))) if t in COLUMN_NAMES}
    if "id" not in known:
        return None
    missing = [f for f in FIELDS if f not in known]
    if missing:
        raise PiscesFormatError(
            f"{path}:{lineno}: header lacks the column(s) for {', '.join(missing)}; expected "
            f"{EXPECTED_HEADERS}, got {' '.join(tokens)!r}")
    return known


def parse_pisces(path: str | Path) -> list[PiscesChain]:
    """Read a PISCES list (either header format, any column order).

    Raises :class:`PiscesFormatError` naming file, line and what was expected.
    """
    path = Path(path)
    chains: list[PiscesChain] = []
    columns: dict[str, int] | None = None
    try:
        handle = open(path, encoding="utf-8")
    except OSError as err:
        raise PiscesFormatError(f"{path}: cannot read the PISCES list ({err.strerror})") from None
    with handle:
        try:
            lines = handle.readlines()
        except UnicodeDecodeError as err:
            raise PiscesFormatError(f"{path}: not a text file ({err.reason} at byte {err.start})") from None
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tokens = line.split()
        if columns is None:
            columns = _header_columns(tokens, path, lineno)
            if columns is None:
                raise PiscesFormatError(
                    f"{path}:{lineno}: expected a header line {EXPECTED_HEADERS} before the "
                    f"first entry, got {line[:80]!r}")
            n_columns = len(tokens)
            continue
        if len(tokens) != n_columns:
            raise PiscesFormatError(
                f"{path}:{lineno}: expected {n_columns} columns as in the header, "
                f"got {len(tokens)}: {line[:80]!r}")
        field = {name: tokens[i] for name, i in columns.items()}
        match = _ID_RE.match(field["id"])
        if match is None:
            raise PiscesFormatError(
                f"{path}:{lineno}: the id column should hold a 4-character PDB code "
                f"followed by a 1-4 character chain id (e.g. 7AF2AAA), got {field['id']!r}")
        try:
            length = int(field["length"])
        except ValueError:
            raise PiscesFormatError(
                f"{path}:{lineno}: the length column should be an integer, "
                f"got {field['length']!r}") from None
        chains.append(PiscesChain(
            pdb_id=match.group(1).lower(),
            chain=match.group(2),
            length=length,
            method=field["method"].upper(),
            resolution_A=_number(field["resolution"], path, lineno, "resolution"),
            r_factor=_r_value(field["r_factor"], path, lineno, "R-factor"),
            r_free=_r_value(field["r_free"], path, lineno, "FreeRvalue"),
        ))
    if columns is None:
        raise PiscesFormatError(f"{path}: empty; expected a header line {EXPECTED_HEADERS}")
    return chains


@dataclass(frozen=True)
class PiscesFilter:
    """Thresholds applied on top of the list's own culling (identity is fixed by it);
    built from the validated config by :meth:`from_config` (the schema holds the defaults)."""
    max_resolution_A: float
    max_r_free: float
    min_length: int
    max_length: int
    methods: tuple[str, ...]
    unknown: str  # keep | drop: what to do with NA method / resolution / R-free

    @classmethod
    def from_config(cls, pisces: dict) -> "PiscesFilter":
        """From config ``pisces`` (validated)."""
        return cls(max_resolution_A=pisces["max_resolution_A"], max_r_free=pisces["max_r_free"],
                   min_length=pisces["min_length"], max_length=pisces["max_length"],
                   methods=tuple(pisces["methods"]), unknown=pisces["unknown"])

    def __post_init__(self):
        if self.unknown not in {"keep", "drop"}:
            raise ValueError(f"PiscesFilter.unknown must be 'keep' or 'drop', got {self.unknown!r}")

    def reason_to_drop(self, chain: PiscesChain) -> str | None:
        """None when the chain passes, else a short human-readable reason."""
        if chain.method == "NA":
            if self.unknown == "drop":
                return "method unknown"
        elif chain.method not in self.methods:
            return f"method {chain.method} not in {list(self.methods)}"
        if not self.min_length <= chain.length <= self.max_length:
            return f"length {chain.length} outside [{self.min_length}, {self.max_length}]"
        for value, limit, name in ((chain.resolution_A, self.max_resolution_A, "resolution"),
                                   (chain.r_free, self.max_r_free, "R-free")):
            if math.isnan(value):
                if self.unknown == "drop":
                    return f"{name} unknown"
            elif value > limit:
                return f"{name} {value:g} > {limit:g}"
        return None


def filter_chains(chains, criteria: PiscesFilter):
    """Split chains into (kept, dropped) where dropped holds (chain, reason) pairs.

    Duplicate chain ids keep their first occurrence.
    """
    kept, dropped, seen = [], [], set()
    for chain in chains:
        if chain.chain_key in seen:
            dropped.append((chain, "duplicate entry in list"))
            continue
        seen.add(chain.chain_key)
        reason = criteria.reason_to_drop(chain)
        if reason is None:
            kept.append(chain)
        else:
            dropped.append((chain, reason))
    return kept, dropped


TABLE_COLUMNS = ("chain_key", "pdb_id", "chain", "length", "method",
                 "resolution_A", "r_factor", "r_free")


def _row(chain: PiscesChain) -> list:
    fmt = lambda v: "NA" if isinstance(v, float) and math.isnan(v) else v  # noqa: E731
    return [chain.chain_key, chain.pdb_id, chain.chain, chain.length, chain.method,
            fmt(chain.resolution_A), fmt(chain.r_factor), fmt(chain.r_free)]


def write_chain_table(path: str | Path, chains, reasons=None) -> None:
    """TSV of chains; with ``reasons`` (same length) a final ``reason`` column."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(TABLE_COLUMNS + (("reason",) if reasons is not None else ()))
        for i, chain in enumerate(chains):
            writer.writerow(_row(chain) + ([reasons[i]] if reasons is not None else []))


def read_chain_table(path: str | Path) -> list[PiscesChain]:
    """Inverse of :func:`write_chain_table` (the ``reason`` column is ignored)."""
    nan_or = lambda s: math.nan if s == "NA" else float(s)  # noqa: E731
    with open(path, newline="", encoding="utf-8") as handle:
        return [PiscesChain(pdb_id=r["pdb_id"], chain=r["chain"], length=int(r["length"]),
                            method=r["method"], resolution_A=nan_or(r["resolution_A"]),
                            r_factor=nan_or(r["r_factor"]), r_free=nan_or(r["r_free"]))
                for r in csv.DictReader(handle, delimiter="\t")]


def read_reasons(path: str | Path) -> list[tuple[str, str]]:
    """``(chain_key, reason)`` of every row of a table written with ``reasons``."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [(r["chain_key"], r["reason"]) for r in csv.DictReader(handle, delimiter="\t")]


def write_pisces(path: str | Path, chains) -> None:
    """Write chains in the current PISCES list format (used for the demo list)."""
    fmt = lambda v, p: "NA" if math.isnan(v) else f"{v:.{p}f}"  # noqa: E731
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("PDBchain       len  method  resol    rfac  freerfac\n")
        for c in chains:
            handle.write(f"{c.pdb_id.upper() + c.chain:<12}{c.length:>6}  {c.method:>6}  "
                         f"{fmt(c.resolution_A, 3):>5}  {fmt(c.r_factor, 3):>6}  "
                         f"{fmt(c.r_free, 3):>8}\n")
