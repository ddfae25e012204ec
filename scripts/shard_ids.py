"""Rule shard_ids: deal the kept chains into shards; all chains of an entry share one."""
import logging

from equivox.logs import run_logged
from equivox.pisces import read_chain_table
from equivox.shard_ids import write_shard_tables


def main(kept_path, shard_paths):
    entries = write_shard_tables(read_chain_table(kept_path), shard_paths)
    for path, n in zip(shard_paths, entries):
        logging.getLogger("equivox").info("%s: %d entries", path, n)


if "snakemake" in globals():
    run_logged(main, snakemake.log[0], kept_path=snakemake.input[0], shard_paths=list(snakemake.output))
