"""Rule download_pisces: fetch the PISCES list named in config pisces.url.

The retry settings (structures.retries, backoff_s, timeout_s) are read from the
config, not passed as params: they change how hard the download tries, not the list,
so tuning them reruns nothing.
"""
import logging

from equivox.download import download_file
from equivox.errors import ReportedError, run_script
from equivox.pisces import parse_pisces


def main(url, dest, retries, backoff_s, timeout_s):
    if not url:
        raise ReportedError("config pisces.url: required when pisces.source is 'url'")
    attempts = download_file(url, dest, retries, backoff_s, timeout_s, check=parse_pisces)
    logging.getLogger("equivox").info("%s -> %s (%d attempt(s))", url, dest, attempts)


if "snakemake" in globals():
    fetch = snakemake.config["structures"]  # noqa: F821 - operational keys, not params
    run_script(main, snakemake.log[0], url=snakemake.params.url, dest=snakemake.output[0],  # noqa: F821
               retries=fetch["retries"], backoff_s=fetch["backoff_s"], timeout_s=fetch["timeout_s"])
