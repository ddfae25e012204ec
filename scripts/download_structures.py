"""Rule download_structures: fetch one shard's PDB entries into dest_dir; write its manifest.

input.ids: the shard's id list, either a TSV with a ``pdb_id`` column (what rule
shard_ids writes: one row per chain) or plain text with one PDB id per line.
params: dest_dir, and where entries come from (url_template or mirror_dir): what
determines the data. How hard to try (structures.retries, backoff_s, timeout_s) and how
many failures a shard may have (structures.max_failed_fraction) are read from the
config, not params, so tuning them reruns nothing. "" counts as unset (None). A shard with more failed entries than allowed ends non-zero; its manifest
is kept as ``{manifest}.rejected`` for the end-of-run summary.
"""
import dataclasses
import logging
from pathlib import Path

from equivox.download import (OPERATIONAL_STRUCTURE_KEYS, FetchSettings, check_failed_fraction,
                              fetch_shard, rejected_manifest_path)
from equivox.errors import run_script
from equivox.shard_ids import read_shard_table

SETTINGS_FIELDS = tuple(f.name for f in dataclasses.fields(FetchSettings))
OPERATIONAL_FIELDS = tuple(k for k in OPERATIONAL_STRUCTURE_KEYS if k in SETTINGS_FIELDS)


def read_ids(ids_file) -> list[str]:
    """PDB ids in file order (repeats are dropped later, by fetch_shard)."""
    with open(ids_file, newline="") as handle:
        lines = [line for line in handle.read().splitlines() if line.strip()]
    if lines and "pdb_id" in lines[0].split("\t"):
        return [row["pdb_id"] for row in read_shard_table(ids_file)]
    return [line.strip() for line in lines]


def main(ids_file, dest_dir, manifest, settings_dict, max_failed_fraction=1.0) -> None:
    """Fetch every id in ``ids_file`` into ``dest_dir``; write the TSV ``manifest``.

    Raises ShardFailedError (one line, no traceback) when the share of failed entries
    exceeds ``max_failed_fraction``, after moving the manifest to its rejected name.
    """
    ids = read_ids(ids_file)
    settings = FetchSettings(**{k: None if v == "" else v for k, v in settings_dict.items()})
    logging.getLogger("equivox").info("%s: %s", ids_file, settings)
    rejected = rejected_manifest_path(Path(manifest))
    rejected.unlink(missing_ok=True)
    # No progress bar: parallel shards would interleave theirs on one terminal.
    results = fetch_shard(ids, Path(dest_dir), settings, Path(manifest), progress=False)
    try:
        check_failed_fraction(results, max_failed_fraction, Path(manifest))
    except Exception:
        Path(manifest).replace(rejected)
        raise


if "snakemake" in globals():
    structures = snakemake.config["structures"]  # noqa: F821 - operational keys, not params
    run_script(main, snakemake.log[0],  # noqa: F821 - injected by Snakemake
               ids_file=snakemake.input.ids,  # noqa: F821
               dest_dir=snakemake.params.dest_dir,  # noqa: F821
               manifest=snakemake.output.manifest,  # noqa: F821
               settings_dict={**{name: snakemake.params.get(name) for name in SETTINGS_FIELDS  # noqa: F821
                                 if name not in OPERATIONAL_FIELDS},
                              **{name: structures[name] for name in OPERATIONAL_FIELDS}},
               max_failed_fraction=structures["max_failed_fraction"])
