"""Shards of the data stage: the kept chains dealt into ``structures.n_shards`` tables
(``results/structures/shards/<shard>.tsv``), all chains of one PDB entry in one shard.

A shard table (written by :func:`write_shard_tables`, read by :func:`read_shard_table`)::

    chain_key  pdb_id  chain       one row per kept chain of the shard's entries
"""
from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

SHARD_COLUMNS = ("chain_key", "pdb_id", "chain")


def shard_ids(pdb_ids: Iterable[str], n_shards: int) -> list[list[str]]:
    """Split ids into exactly ``n_shards`` lists (some empty if there are few ids).

    Ids are lower-cased, de-duplicated and sorted, then dealt round-robin: shard k gets
    sorted ids k, k + n, k + 2n, ... Round-robin rather than contiguous because PDB ids
    roughly follow deposition date, and recent entries (large cryo-EM assemblies) are
    much bigger; dealing spreads them evenly, so shards take similar times.
    """
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    ids = sorted({str(i).strip().lower() for i in pdb_ids})
    return [ids[k::n_shards] for k in range(n_shards)]


def write_shard_tables(chains, paths: list[str | Path]) -> list[int]:
    """Deal ``chains`` (PiscesChain, in list order) into one table per path; returns the
    number of entries of each shard."""
    shards = shard_ids(sorted({c.pdb_id for c in chains}), len(paths))
    for ids, path in zip(shards, paths):
        members = set(ids)
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(SHARD_COLUMNS)
            writer.writerows([c.chain_key, c.pdb_id, c.chain] for c in chains if c.pdb_id in members)
    return [len(ids) for ids in shards]


def read_shard_table(path: str | Path) -> list[dict[str, str]]:
    """Rows (``chain_key``, ``pdb_id``, ``chain``) of a shard table."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))
