"""Rule download_pisces: fetch the PISCES list named in config pisces.url."""
import logging

from equivox.download import download_file
from equivox.logs import run_logged
from equivox.pisces import parse_pisces


def main(url, dest, retries, backoff_s, timeout_s):
    if not url:
        raise ValueError("config pisces.url: required when pisces.source is 'url'")
    attempts = download_file(url, dest, retries, backoff_s, timeout_s, check=parse_pisces)
    logging.getLogger("equivox").info("%s -> %s (%d attempt(s))", url, dest, attempts)


if "snakemake" in globals():
    p = snakemake.params
    run_logged(main, snakemake.log[0], url=p.url, dest=snakemake.output[0], retries=p.retries,
               backoff_s=p.backoff_s, timeout_s=p.timeout_s)
