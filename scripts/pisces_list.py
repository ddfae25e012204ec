"""Rule pisces_list: parse a PISCES list and re-filter it by the config thresholds."""
import logging
from collections import Counter

from equivox.errors import ReportedError, run_script
from equivox.pisces import PiscesFilter, filter_chains, parse_pisces, write_chain_table


def main(source, kept_path, dropped_path, criteria):
    log = logging.getLogger("equivox")
    chains = parse_pisces(source)
    rule = PiscesFilter.from_config(criteria)
    kept, dropped = filter_chains(chains, rule)
    write_chain_table(kept_path, kept)
    write_chain_table(dropped_path, [c for c, _ in dropped], reasons=[r for _, r in dropped])
    log.info("%s: %d chains, kept %d, dropped %d", source, len(chains), len(kept), len(dropped))
    for reason, n in Counter(r.split(" ")[0] for _, r in dropped).most_common():
        log.info("  dropped for %s: %d", reason, n)
    if not kept:
        raise ReportedError(f"{source}: no chain passes the filter {rule}; relax config 'pisces'")


if "snakemake" in globals():
    run_script(main, snakemake.log[0], source=snakemake.input[0], kept_path=snakemake.output.kept,
               dropped_path=snakemake.output.dropped, criteria=snakemake.params.criteria)
