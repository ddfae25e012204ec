"""Rule origin_database: merge the origin shards into SQLite with structure-level splits."""
import logging

from equivox.atoms import atom_counts
from equivox.logs import run_logged
from equivox.origin_db import (SPLITS, StructureRecord, assign_splits, build_origin_db, excluded_chains,
                               read_excluded, write_excluded, write_summary)
from equivox.origins import read_origin_shard
from equivox.pisces import read_chain_table, read_reasons
from equivox.provenance import provenance


def main(kept, dropped, manifests, failures, atoms, origins, db, summary, excluded, splits, origin_params, config):
    log = logging.getLogger("equivox")
    listed = {c.chain_key: c for c in read_chain_table(kept)}
    dropped_rows = read_reasons(dropped)
    excluded_rows = [(key, "pisces", reason) for key, reason in dropped_rows]
    for path in failures:
        excluded_rows += read_excluded(path)
    records = []
    for atoms_path, origins_path in zip(atoms, origins):
        n_atoms = atom_counts(atoms_path)
        for key, coords, n_candidates in read_origin_shard(origins_path):
            if len(coords) == 0:
                excluded_rows.append((key, "origins", "no atom passes the density criterion"))
                continue
            c = listed[key]
            records.append(StructureRecord(
                chain_key=key, pdb_id=c.pdb_id, chain=c.chain, method=c.method,
                resolution_A=c.resolution_A, r_free=c.r_free, length=c.length,
                atoms_path=atoms_path, n_atoms=n_atoms[key], n_candidates=n_candidates,
                origins_A=coords))
    if not records:
        raise ValueError("no structure has any origin; see logs/parse_atoms and logs/choose_origins")
    fractions = {s: splits[s] for s in SPLITS}
    split_of = assign_splits([r.pdb_id for r in records], fractions, splits["seed"])
    counts = build_origin_db(db, records, split_of, metadata={
        "origin_params": origin_params, "splits": splits, "config": config,
        "fetch_manifests": list(manifests), **provenance()})
    write_summary(summary, counts)
    excluded_rows = excluded_chains([*listed, *(key for key, _ in dropped_rows)],
                                    excluded_rows, {r.chain_key for r in records})
    write_excluded(excluded, excluded_rows)
    log.info("%s: %s; %d chains excluded (see %s)", db, counts, len(excluded_rows), excluded)


if "snakemake" in globals():
    i, o, p = snakemake.input, snakemake.output, snakemake.params
    run_logged(main, snakemake.log[0], kept=i.kept, dropped=i.dropped, manifests=list(i.manifests),
               failures=list(i.failures), atoms=list(i.atoms), origins=list(i.origins), db=o.db,
               summary=o.summary, excluded=o.excluded, splits=p.splits, origin_params=p.origins,
               config=p.config)
