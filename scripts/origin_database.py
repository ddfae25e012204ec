"""Rule origin_database: merge the origin shards into SQLite with structure-level splits."""
import csv
import logging

import h5py

from equivox.logs import run_logged
from equivox.origin_db import (EXCLUDED_COLUMNS, SPLITS, StructureRecord, assign_splits,
                               build_origin_db, excluded_chains)
from equivox.pisces import read_chain_table
from equivox.provenance import provenance


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def main(kept, dropped, manifests, failures, atoms, origins, db, summary, excluded, splits, origin_params, config):
    log = logging.getLogger("equivox")
    listed = {c.chain_key: c for c in read_chain_table(kept)}
    dropped_rows = _rows(dropped)
    excluded_rows = [(r["chain_key"], "pisces", r["reason"]) for r in dropped_rows]
    for path in failures:
        excluded_rows += [(r["chain_key"], r["stage"], r["reason"]) for r in _rows(path)]
    records = []
    for atoms_path, origins_path in zip(atoms, origins):
        with h5py.File(atoms_path, "r") as a, h5py.File(origins_path, "r") as o:
            for key in sorted(o["structures"].keys()) if "structures" in o else []:
                coords = o[f"structures/{key}/coords_A"][()]
                if len(coords) == 0:
                    excluded_rows.append((key, "origins", "no atom passes the density criterion"))
                    continue
                c = listed[key]
                records.append(StructureRecord(
                    chain_key=key, pdb_id=c.pdb_id, chain=c.chain, method=c.method,
                    resolution_A=c.resolution_A, r_free=c.r_free, length=c.length,
                    atoms_path=atoms_path, n_atoms=int(a[f"structures/{key}"].attrs["n_atoms"]),
                    n_candidates=int(o[f"structures/{key}"].attrs["n_candidates"]),
                    origins_A=coords))
    if not records:
        raise ValueError("no structure has any origin; see logs/parse_atoms and logs/choose_origins")
    fractions = {s: splits[s] for s in SPLITS}
    split_of = assign_splits([r.pdb_id for r in records], fractions, splits["seed"])
    counts = build_origin_db(db, records, split_of, metadata={
        "origin_params": origin_params, "splits": splits, "config": config,
        "fetch_manifests": list(manifests), **provenance()})
    with open(summary, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["split", "structures", "origins"])
        for s in SPLITS:
            writer.writerow([s, counts[s]["structures"], counts[s]["origins"]])
    excluded_rows = excluded_chains([*listed, *(r["chain_key"] for r in dropped_rows)],
                                    excluded_rows, {r.chain_key for r in records})
    with open(excluded, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(EXCLUDED_COLUMNS)
        writer.writerows(excluded_rows)
    log.info("%s: %s; %d chains excluded (see %s)", db, counts, len(excluded_rows), excluded)


if "snakemake" in globals():
    i, o, p = snakemake.input, snakemake.output, snakemake.params
    run_logged(main, snakemake.log[0], kept=i.kept, dropped=i.dropped, manifests=list(i.manifests),
               failures=list(i.failures), atoms=list(i.atoms), origins=list(i.origins), db=o.db,
               summary=o.summary, excluded=o.excluded, splits=p.splits, origin_params=p.origins,
               config=p.config)
