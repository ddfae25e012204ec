"""Rule fetch_structures: fetch one shard's PDB entries into dest_dir; write its manifest.

input.ids: the shard's id list, either a TSV with a ``pdb_id`` column (what rule
shard_ids writes: one row per chain) or plain text with one PDB id per line.
params: dest_dir, and the FetchSettings fields (url_template, mirror_dir, retries,
backoff_s, timeout_s); None or "" leaves a field at its default.
"""
import csv
import dataclasses
import logging
from pathlib import Path

from equivox.download import FetchSettings, fetch_shard
from equivox.logs import run_logged

SETTINGS_FIELDS = tuple(f.name for f in dataclasses.fields(FetchSettings))


def read_ids(ids_file) -> list[str]:
    """PDB ids in file order (repeats are dropped later, by fetch_shard)."""
    with open(ids_file, newline="") as handle:
        lines = [line for line in handle.read().splitlines() if line.strip()]
    if lines and "pdb_id" in lines[0].split("\t"):
        return [row["pdb_id"] for row in csv.DictReader(lines, delimiter="\t")]
    return [line.strip() for line in lines]


def main(ids_file, dest_dir, manifest, settings_dict) -> None:
    """Fetch every id in ``ids_file`` into ``dest_dir``; write the TSV ``manifest``."""
    ids = read_ids(ids_file)
    settings = FetchSettings(**{k: v for k, v in settings_dict.items() if v not in (None, "")})
    logging.getLogger("equivox").info("%s: %s", ids_file, settings)
    # No progress bar: parallel shards would interleave theirs on one terminal.
    fetch_shard(ids, Path(dest_dir), settings, Path(manifest), progress=False)


if "snakemake" in globals():
    run_logged(main, snakemake.log[0],  # noqa: F821 - injected by Snakemake
               ids_file=snakemake.input.ids,  # noqa: F821
               dest_dir=snakemake.params.dest_dir,  # noqa: F821
               manifest=snakemake.output.manifest,  # noqa: F821
               settings_dict={name: snakemake.params.get(name) for name in SETTINGS_FIELDS})  # noqa: F821
