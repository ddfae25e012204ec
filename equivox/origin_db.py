"""The origin database (SQLite): structures, origins and metadata.

Schema (docs/data_formats.md)::

    structures(id INTEGER PRIMARY KEY, chain_key TEXT UNIQUE, pdb_id, chain, method,
               resolution_A, r_free, length, split, atoms_path, n_atoms,
               n_candidates, n_origins, first_origin_id)
    origins(id INTEGER PRIMARY KEY, structure_id INTEGER, x, y, z)   -- index on structure_id
    metadata(key TEXT PRIMARY KEY, value TEXT)                       -- JSON values

Origin ids are 1..N with no gaps, and each structure's origins are contiguous
(``first_origin_id`` .. ``first_origin_id + n_origins - 1``); this is checked when the
database is opened, so uniform sampling is a single random integer in [1, N].

Connections are opened lazily and per process: an :class:`OriginDB` created before a
DataLoader forks its workers opens a fresh connection in each worker.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import replacing

SPLITS = ("train", "val", "test")

SCHEMA = """
CREATE TABLE structures (
    id INTEGER PRIMARY KEY, chain_key TEXT UNIQUE NOT NULL, pdb_id TEXT NOT NULL,
    chain TEXT NOT NULL, method TEXT, resolution_A REAL, r_free REAL, length INTEGER,
    split TEXT NOT NULL CHECK (split IN ('train', 'val', 'test')),
    atoms_path TEXT NOT NULL, n_atoms INTEGER NOT NULL, n_candidates INTEGER NOT NULL,
    n_origins INTEGER NOT NULL, first_origin_id INTEGER NOT NULL);
CREATE TABLE origins (
    id INTEGER PRIMARY KEY, structure_id INTEGER NOT NULL REFERENCES structures(id),
    x REAL NOT NULL, y REAL NOT NULL, z REAL NOT NULL);
CREATE INDEX origins_structure ON origins(structure_id);
CREATE TABLE metadata (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def assign_splits(pdb_ids, fractions: dict[str, float], seed: int) -> dict[str, str]:
    """Structure-level split: pdb id -> 'train' | 'val' | 'test'.

    All chains of one PDB entry share a split (PISCES already culls by sequence
    identity, so the entry is the remaining unit of leakage). Entries are ordered by a
    seeded hash and cut at the requested fractions, so the split does not depend on
    input order and each split gets at least one entry when there are >= 3 entries.
    """
    total = sum(fractions[s] for s in SPLITS)
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    unique = sorted(set(pdb_ids))
    key = lambda p: hashlib.sha256(f"{seed}:{p}".encode()).hexdigest()  # noqa: E731
    ordered = sorted(unique, key=key)
    n = len(ordered)
    n_val = round(fractions["val"] * n)
    n_test = round(fractions["test"] * n)
    if n >= 3:
        n_val, n_test = max(n_val, 1 if fractions["val"] > 0 else 0), max(n_test, 1 if fractions["test"] > 0 else 0)
    n_val, n_test = min(n_val, n), min(n_test, max(n - n_val, 0))
    out = {}
    for i, pdb_id in enumerate(ordered):
        out[pdb_id] = "val" if i < n_val else "test" if i < n_val + n_test else "train"
    return out


@dataclass
class StructureRecord:
    chain_key: str
    pdb_id: str
    chain: str
    method: str
    resolution_A: float
    r_free: float
    length: int
    atoms_path: str
    n_atoms: int
    n_candidates: int
    origins_A: np.ndarray  # (M, 3) float32


def build_origin_db(path: str | Path, records: list[StructureRecord],
                    splits: dict[str, str], metadata: dict) -> dict[str, dict[str, int]]:
    """Write the database atomically (:func:`equivox.atomic.replacing`). Returns per-split counts."""
    counts = {s: {"structures": 0, "origins": 0} for s in SPLITS}
    with replacing(path) as pending:
        pending.tmp.unlink(missing_ok=True)
        con = sqlite3.connect(pending.tmp)
        con.executescript(SCHEMA)
        next_origin = 1
        for sid, rec in enumerate(sorted(records, key=lambda r: r.chain_key), start=1):
            m = len(rec.origins_A)
            split = splits[rec.pdb_id]
            con.execute("INSERT INTO structures VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (sid, rec.chain_key, rec.pdb_id, rec.chain, rec.method,
                         _nullable(rec.resolution_A), _nullable(rec.r_free), rec.length,
                         split, rec.atoms_path, rec.n_atoms, rec.n_candidates, m, next_origin))
            con.executemany("INSERT INTO origins VALUES (?,?,?,?,?)",
                            ((next_origin + i, sid, float(x), float(y), float(z))
                             for i, (x, y, z) in enumerate(rec.origins_A)))
            next_origin += m
            counts[split]["structures"] += 1
            counts[split]["origins"] += m
        meta = dict(metadata, n_origins=next_origin - 1, n_structures=len(records),
                    split_counts=counts)
        con.executemany("INSERT INTO metadata VALUES (?, ?)",
                        ((k, json.dumps(v, sort_keys=True)) for k, v in meta.items()))
        con.commit()
        con.close()
    return counts


EXCLUDED_COLUMNS = ("chain_key", "stage", "reason")
# a repeat of a listed chain; its first listing's fate is the chain's fate
DUPLICATE_REASON = "duplicate entry in list"


def excluded_chains(listed: list[str], reasons: list[tuple[str, str, str]],
                    in_database: set[str]) -> list[tuple[str, str, str]]:
    """The exact excluded list: every listed chain not in the database, once.

    listed: every chain key of the PISCES list (kept and dropped, repeats allowed).
    reasons: (chain_key, stage, reason) rows from the stages, in stage order (pisces,
    fetch, parse, origins); a chain's first row wins, except that a "duplicate entry
    in list" row only counts when nothing else is said about the chain. A chain in
    the database is never listed, whatever a row says (the repeat of a kept chain);
    a listed chain that no stage explains is listed with stage "unknown".
    Returns rows sorted by chain key.
    """
    first: dict[str, tuple[str, str, str]] = {}
    for key, stage, reason in reasons:
        if key not in first or first[key][2] == DUPLICATE_REASON != reason:
            first[key] = (key, stage, reason)
    rows = []
    for key in sorted(set(listed) - set(in_database)):
        rows.append(first.get(key, (key, "unknown", "not in any stage's output")))
    return rows


def write_excluded(path: str | Path, rows) -> None:
    """A TSV of excluded chains, one ``(chain_key, stage, reason)`` per row: the atom
    store's ``<shard>.failures.tsv`` and ``origins.excluded.tsv``."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(EXCLUDED_COLUMNS)
        writer.writerows(rows)


def read_excluded(path: str | Path) -> list[tuple[str, str, str]]:
    """Inverse of :func:`write_excluded`."""
    with open(path, newline="") as handle:
        return [(r["chain_key"], r["stage"], r["reason"]) for r in csv.DictReader(handle, delimiter="\t")]


SUMMARY_COLUMNS = ("split", "structures", "origins")


def write_summary(path: str | Path, counts: dict[str, dict[str, int]]) -> None:
    """``origins.summary.tsv``: structures and origins per split (counts of :func:`build_origin_db`)."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(SUMMARY_COLUMNS)
        for split in SPLITS:
            writer.writerow([split, counts[split]["structures"], counts[split]["origins"]])


def read_summary(path: str | Path) -> list[dict[str, str]]:
    """Rows of :func:`write_summary`'s file (``split``, ``structures``, ``origins``)."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def _nullable(value: float):
    return None if value is None or value != value else float(value)


class OriginDB:
    """Read access to the origin database, safe across fork (one connection per pid)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"origin database {self.path} does not exist")
        self._con = None
        self._pid = None
        self.n_origins = int(self.metadata()["n_origins"])
        self._check_contiguous()

    @property
    def con(self) -> sqlite3.Connection:
        if self._con is None or self._pid != os.getpid():
            # never reuse a connection inherited through fork
            self._con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                        check_same_thread=False)
            self._pid = os.getpid()
        return self._con

    def __getstate__(self):  # picklable for spawn-based DataLoader workers
        return {"path": self.path, "n_origins": self.n_origins}

    def __setstate__(self, state):
        self.path, self.n_origins = state["path"], state["n_origins"]
        self._con, self._pid = None, None

    def _check_contiguous(self):
        lo, hi, n = self.con.execute("SELECT MIN(id), MAX(id), COUNT(*) FROM origins").fetchone()
        if n != self.n_origins or (n and (lo != 1 or hi != n)):
            raise ValueError(f"{self.path}: origin ids are not 1..{self.n_origins} "
                             f"(min {lo}, max {hi}, count {n}); rebuild the database")

    def metadata(self) -> dict:
        return {k: json.loads(v) for k, v in self.con.execute("SELECT key, value FROM metadata")}

    def structures(self, split: str | None = None) -> list[dict]:
        """Rows of the structures table as dicts, optionally one split only."""
        cur = self.con.execute(
            "SELECT * FROM structures" + (" WHERE split = ?" if split else "") + " ORDER BY id",
            (split,) if split else ())
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur]

    def origin(self, origin_id: int) -> tuple[int, np.ndarray]:
        """(structure_id, xyz) of one origin; ids run 1..n_origins."""
        row = self.con.execute("SELECT structure_id, x, y, z FROM origins WHERE id = ?",
                               (int(origin_id),)).fetchone()
        if row is None:
            raise KeyError(f"{self.path}: no origin with id {origin_id} (valid: 1..{self.n_origins})")
        return row[0], np.asarray(row[1:], dtype=np.float64)

    def structure_origins(self, structure_id: int) -> np.ndarray:
        """(M, 3) float64 origins of one structure, in origin-id order."""
        rows = self.con.execute("SELECT x, y, z FROM origins WHERE structure_id = ? ORDER BY id",
                                (int(structure_id),)).fetchall()
        return np.asarray(rows, dtype=np.float64).reshape(-1, 3)

    def close(self):
        if self._con is not None and self._pid == os.getpid():
            self._con.close()
        self._con = None
