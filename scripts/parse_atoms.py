"""Rule parse_atoms: parse one shard's structures into an HDF5 atom store."""
import logging

from tqdm import tqdm

from equivox.atoms import (StructureParseError, nonbiological_residues, write_atom_store,
                           read_structure, write_structure)
from equivox.download import read_manifest
from equivox.logs import run_logged
from equivox.origin_db import write_excluded
from equivox.shard_ids import read_shard_table


def main(ids_path, manifest_path, atoms_path, failures_path, extra_nonbiological, keep_biological):
    log = logging.getLogger("equivox")
    blocklist = nonbiological_residues(extra_nonbiological, keep_biological)
    chains = read_shard_table(ids_path)
    fetched = {r["pdb_id"]: r for r in read_manifest(manifest_path)}
    failures, tables = [], {}
    with write_atom_store(atoms_path, blocklist) as h5:
        for row in tqdm(chains, desc=f"parse_atoms {ids_path}", unit="chain", mininterval=5):
            entry = fetched.get(row["pdb_id"])
            if entry is None or entry["status"] not in {"ok", "cached"}:
                reason = "not in fetch manifest" if entry is None else f"{entry['status']}: {entry['reason']}"
                failures.append((row["chain_key"], "fetch", reason))
                continue
            try:
                if row["pdb_id"] not in tables:
                    tables[row["pdb_id"]] = read_structure(entry["path"])
                    for warning in tables[row["pdb_id"]].warnings:  # also in the store's attrs
                        log.warning("%s: %s", entry["path"], warning)
                write_structure(h5, row["chain_key"], row["pdb_id"], row["chain"],
                                tables[row["pdb_id"]], entry["path"], blocklist)
            except StructureParseError as err:
                failures.append((row["chain_key"], "parse", str(err)))
                log.warning("%s", err)
    write_excluded(failures_path, failures)
    log.info("%s: %d chains stored, %d failed", atoms_path, len(chains) - len(failures), len(failures))


if "snakemake" in globals():
    run_logged(main, snakemake.log[0], ids_path=snakemake.input.ids,
               manifest_path=snakemake.input.manifest, atoms_path=snakemake.output.atoms,
               failures_path=snakemake.output.failures,
               extra_nonbiological=snakemake.params.extra_nonbiological,
               keep_biological=snakemake.params.keep_biological)
