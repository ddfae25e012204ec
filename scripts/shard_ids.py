"""Rule shard_ids: deal the kept chains into shards; all chains of an entry share one."""
import csv
import logging

from equivox.download import shard_ids
from equivox.logs import run_logged
from equivox.pisces import read_chain_table


def main(kept_path, shard_paths):
    chains = read_chain_table(kept_path)
    shards = shard_ids(sorted({c.pdb_id for c in chains}), len(shard_paths))
    for ids, path in zip(shards, shard_paths):
        members = set(ids)
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(["chain_key", "pdb_id", "chain"])
            for c in chains:
                if c.pdb_id in members:
                    writer.writerow([c.chain_key, c.pdb_id, c.chain])
        logging.getLogger("equivox").info("%s: %d entries", path, len(ids))


if "snakemake" in globals():
    run_logged(main, snakemake.log[0], kept_path=snakemake.input[0], shard_paths=list(snakemake.output))
