# Helpers shared by all rule files (paths, shard names, the final target list)
import csv
from pathlib import Path

# one software stack for every rule (see envs/equivox.yaml and docs/install.md)
CONDA_ENV = "../../envs/equivox.yaml"
RESULTS = "results"
LOGS = "logs"
SHARDS = [f"{i:03d}" for i in range(config["structures"]["n_shards"])]


def pisces_source_file():
    """The raw PISCES list that pisces_list reads."""
    source = config["pisces"]["source"]
    if source == "demo":
        return f"{RESULTS}/demo/pisces.txt"
    if source == "url":
        return f"{RESULTS}/pisces/downloaded.txt"
    if not config["pisces"]["path"]:
        raise ValueError("config pisces.path: required when pisces.source is 'file'")
    return config["pisces"]["path"]


def structure_source():
    """(mirror_dir or None, url_template or None) for fetch_structures"""
    if config["pisces"]["source"] == "demo":
        return f"{RESULTS}/demo/mirror", None
    if config["structures"]["source"] == "mirror":
        if not config["structures"]["mirror_dir"]:
            raise ValueError("config structures.mirror_dir: required when structures.source is 'mirror'")
        return config["structures"]["mirror_dir"], None
    return None, config["structures"]["url_template"]


def mirror_input():
    """The demo mirror is a rule output; a user's mirror is not tracked."""
    return [f"{RESULTS}/demo/pisces.txt"] if config["pisces"]["source"] == "demo" else []


def n_view_examples(wildcards):
    return config["views"][f"n_{wildcards.split}"]


def final_outputs():
    views = [f"{RESULTS}/views/{split}.h5" for split in ("val", "test")]
    shards = [f"{RESULTS}/views/train_shards/{i:03d}.h5" for i in range(config["views"]["train_shards"])]
    return [f"{RESULTS}/origins.sqlite", f"{RESULTS}/origins.summary.tsv", *views, *shards,
            f"{RESULTS}/views/examples.png"]


def print_summary():
    summary = Path(f"{RESULTS}/origins.summary.tsv")
    if not summary.exists():
        return
    with open(summary) as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    print(f"\nequivox: origin database {Path(RESULTS, 'origins.sqlite').resolve()}")
    for row in rows:
        print(f"  {row['split']:>5}: {row['structures']:>6} structures {row['origins']:>9} origins")
