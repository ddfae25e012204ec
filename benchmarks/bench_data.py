"""Benchmark the data stage: parsing, origin selection, origin-DB sampling.

Prints structures parsed per second, origins chosen per second (and structures/s),
SQLite uniform origin samples per second from one process, and an extrapolation of
the whole data stage for N chains on K cores from the measured per-structure cost.

    python benchmarks/bench_data.py [--n-chains 10000] [--cores 16] [--samples 1000000]
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from equivox.atoms import load_structure, nonbiological_residues, read_structure, write_structure
from equivox.config import default_config
from equivox.demo_data import demo_sources
from equivox.origin_db import OriginDB, StructureRecord, assign_splits, build_origin_db
from equivox.origins import OriginParams, choose_origins


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-chains", type=int, default=10_000, help="chains to extrapolate to")
    parser.add_argument("--cores", type=int, default=16, help="cores to extrapolate to")
    parser.add_argument("--samples", type=int, default=1_000_000, help="origin samples to time")
    args = parser.parse_args(argv)

    sources = [(path, pdb, chain) for path, pdb, chain in demo_sources()]
    blocklist = nonbiological_residues()
    params = OriginParams(**default_config()["origins"])
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "atoms.h5"
        t0 = time.perf_counter()
        n_atoms, written = 0, []
        with h5py.File(store, "w") as h5:
            for path, pdb, chain in sources:
                table = read_structure(path)
                chain = chain or str(table.auth_chain[0])
                write_structure(h5, f"{pdb}_{chain}", pdb, chain, table, path, blocklist)
                n_atoms += len(table)
                written.append((f"{pdb}_{chain}", pdb, chain))
        parse_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        records, n_origins = [], 0
        with h5py.File(store, "r") as h5:
            for key, pdb, chain in written:
                coords, n_cand = choose_origins(load_structure(h5, key), params)
                n_origins += len(coords)
                records.append(StructureRecord(key, pdb, chain, "XRAY", 2.0, 0.2, 100, str(store),
                                               0, n_cand, coords))
        origins_s = time.perf_counter() - t0

        db_path = Path(tmp) / "o.sqlite"
        t0 = time.perf_counter()
        splits = assign_splits([r.pdb_id for r in records], {"train": .8, "val": .1, "test": .1}, 0)
        build_origin_db(db_path, records, splits, {})
        db_s = time.perf_counter() - t0

        db = OriginDB(db_path)
        rng = np.random.default_rng(0)
        for oid in rng.integers(1, db.n_origins + 1, size=10_000):  # warm the page cache
            db.origin(oid)
        t0 = time.perf_counter()
        for oid in rng.integers(1, db.n_origins + 1, size=args.samples):
            db.origin(oid)
        sample_rate = args.samples / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for i in range(20_000):
            db.origin(int(rng.integers(1, db.n_origins + 1)))
        single_rate = 20_000 / (time.perf_counter() - t0)

    n = len(written)
    per_structure_s = (parse_s + origins_s) / n
    # the demo's mean size is below the PDB's; scale by atoms (cost is ~linear in atoms)
    pdb_mean_atoms = 8_000  # typical asymmetric unit of a PISCES X-ray entry
    scale = pdb_mean_atoms / (n_atoms / n)
    total_h = per_structure_s * scale * args.n_chains / args.cores / 3600
    print(f"machine: {cpu_name()}, {platform.python_implementation()} {platform.python_version()}")
    print(f"structures: {n} ({n_atoms / n:.0f} atoms on average)")
    print(f"parse + store     : {n / parse_s:8.1f} structures/s   ({n_atoms / parse_s:,.0f} atoms/s)")
    print(f"choose origins    : {n / origins_s:8.1f} structures/s   ({n_origins / origins_s:,.0f} origins/s)")
    print(f"write SQLite      : {n_origins / db_s:,.0f} origins/s")
    print(f"sample origins    : {sample_rate:,.0f} samples/s (batches of 10,000, one process)")
    print(f"single origin()   : {single_rate:,.0f} lookups/s")
    print(f"extrapolation     : {args.n_chains} chains x {pdb_mean_atoms} atoms on {args.cores} cores "
          f"-> {total_h * 60:.1f} min parse+origins (download time not included)")


if __name__ == "__main__":
    main()
