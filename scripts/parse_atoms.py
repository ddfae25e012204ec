"""Rule parse_atoms: parse one shard's structures into an HDF5 atom store."""
import csv
import logging

from tqdm import tqdm

from equivox.atoms import (StructureParseError, atomic_write_h5, nonbiological_residues,
                           read_structure, write_structure)
from equivox.logs import run_logged


def main(ids_path, manifest_path, atoms_path, failures_path, extra_nonbiological, keep_biological):
    log = logging.getLogger("equivox")
    blocklist = nonbiological_residues(extra_nonbiological, keep_biological)
    with open(ids_path, newline="") as handle:
        chains = list(csv.DictReader(handle, delimiter="\t"))
    with open(manifest_path, newline="") as handle:
        fetched = {r["pdb_id"]: r for r in csv.DictReader(handle, delimiter="\t")}
    failures, tables = [], {}
    with atomic_write_h5(atoms_path) as h5:
        h5.attrs["blocklist"] = " ".join(sorted(blocklist))
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
    with open(failures_path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["chain_key", "stage", "reason"])
        writer.writerows(failures)
    log.info("%s: %d chains stored, %d failed", atoms_path, len(chains) - len(failures), len(failures))


if "snakemake" in globals():
    run_logged(main, snakemake.log[0], ids_path=snakemake.input.ids,
               manifest_path=snakemake.input.manifest, atoms_path=snakemake.output.atoms,
               failures_path=snakemake.output.failures,
               extra_nonbiological=snakemake.params.extra_nonbiological,
               keep_biological=snakemake.params.keep_biological)
