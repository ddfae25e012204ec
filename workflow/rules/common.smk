# Helpers shared by all rule files (paths, shard names, the final target list)
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
    """(mirror_dir or None, url_template or None) for download_structures"""
    if config["pisces"]["source"] == "demo":
        return f"{RESULTS}/demo/mirror", None
    if config["structures"]["source"] == "mirror":
        if not config["structures"]["mirror_dir"]:
            raise ValueError("config structures.mirror_dir: required when structures.source is 'mirror'")
        return config["structures"]["mirror_dir"], None
    return None, config["structures"]["url_template"]


def data_settings():
    """The config the data stage's result depends on, recorded in the origin database:
    the data sections less the operational fetch keys (retries, timeouts, allowed
    failure fraction), so that tuning those rebuilds nothing."""
    from equivox.download import OPERATIONAL_STRUCTURE_KEYS

    settings = {key: config[key] for key in ("demo", "pisces", "atoms", "origins", "splits")}
    settings["structures"] = {key: value for key, value in config["structures"].items()
                              if key not in OPERATIONAL_STRUCTURE_KEYS}
    return settings


def mirror_input():
    """The demo mirror is a rule output; a user's mirror is not tracked."""
    return [f"{RESULTS}/demo/pisces.txt"] if config["pisces"]["source"] == "demo" else []


def configured_runs():
    """(the architecture set as written, name -> equivox.study.Run of every training
    run): one run per architecture of train.models, or a study's runs (config study,
    docs/studies.md); validated."""
    import yaml

    from equivox.config import architecture_set_path
    from equivox.study import expand_runs

    raw = yaml.safe_load(architecture_set_path(config, workflow.basedir).read_text())
    return raw, expand_runs(config, raw)


ARCHITECTURE_SET, RUNS = configured_runs()
# run name -> its architecture (base spec with the study's arch.* values): what the
# per-run rules build and fingerprint
ARCHITECTURES = {name: run.spec for name, run in RUNS.items()}


def run_groups():
    """Run name -> group: the replicates (seeds) of one setting share a group, which the
    tables and figures aggregate; outside a study every run is its own group."""
    return {name: run.group for name, run in RUNS.items()}


def run_train(name):
    """config train with the run's own values (a study's train.* grid values, its seed)."""
    return {**config["train"], **RUNS[name].train}


def train_settings(wildcards):
    """The TrainSettings of one architecture's run (equivox.run_record.settings_from_config),
    as params: everything but OPERATIONAL_SETTINGS, which scripts/train_model.py adds."""
    from dataclasses import asdict

    from equivox.run_record import OPERATIONAL_SETTINGS, settings_from_config

    run = RUNS[wildcards.arch]
    settings = settings_from_config(
        run_train(wildcards.arch), wildcards.arch, spec=run.spec,
        # the training code is part of what a run records: a code edit starts a new lineage
        code=code_of("scripts/train_model.py", per_arch=True)(wildcards),
        atom_pack=f"{RESULTS}/atom_pack/train.pack", val_views=f"{RESULTS}/views/val.h5",
        view_config=view_config(),
        # what the origin DB and the validation set were made from: a run never continues
        # on other data (a changed PISCES filter or split starts a new lineage)
        data={**data_settings(),
              "val_views": {k: config["views"][k] for k in ("n_val", "seed", "image_dtype")},
              # example k of materialised shards depends on the shard size too
              **({"train_shards": {k: config["views"][k] for k in ("train_shards", "train_shard_size",
                                                                    "seed", "image_dtype")}}
                 if config["views"]["train_shards"] else {})},
        train_shards=train_shard_files())
    return {k: v for k, v in asdict(settings).items() if k not in OPERATIONAL_SETTINGS}


def code_of(script, per_arch=False):
    """Fingerprint of a rule's script and the equivox code it runs, for the rule's params
    (equivox/code_version.py, docs/training.md "What reruns"): an edit that can change a
    result reruns the rule and, by mtime, what depends on it; a docstring, comment,
    logging or CLI-help edit does not. Every rule carries
    ``code=code_of("scripts/<its script>.py"),``; a rule with an ``{arch}`` wildcard that
    builds the model passes ``per_arch=True`` (only that model family's module counts)."""
    from equivox.code_version import code_version

    path = Path(workflow.basedir) / script
    if per_arch:
        return lambda wildcards: code_version(path, family=ARCHITECTURES[wildcards.arch]["family"])
    return code_version(path)


def train_shard_files():
    """The materialised training shards (views.train_shards of them; none = on the fly)."""
    return [f"{RESULTS}/views/train_shards/{i:03d}.h5" for i in range(config["views"]["train_shards"])]


def view_config(*extra):
    """The config a view sampler is made from (ViewParams.from_config), plus the ``extra``
    keys of ``views``. Rules take only this as params, so that editing e.g. n_test or a
    plotting option neither remakes the view sets nor, through them, retrains models."""
    from equivox.task import VIEW_CONFIG_KEYS

    views = {key: config["views"][key] for key in (*VIEW_CONFIG_KEYS, *extra)}
    return {"views": views, "origins": config["origins"]}


def n_view_examples(wildcards):
    return config["views"][f"n_{wildcards.split}"]


def model_families():
    """Model name -> family, in configured order (figures colour models by this order)."""
    return {name: spec["family"] for name, spec in ARCHITECTURES.items()}


def table_inputs(wildcards):
    """The records each paper table is made from (make_tables; unused kinds stay empty)."""
    runs = [f"{RESULTS}/runs/{arch}/final/run.json" for arch in ARCHITECTURES]
    tests = [f"{RESULTS}/analysis/test/{arch}.json" for arch in ARCHITECTURES]
    dead_units = [f"{RESULTS}/analysis/dead_units/{arch}.{weights}tsv" for arch in ARCHITECTURES
                  for weights in ("", "best.")]
    if COMPARISON_PROBLEM is not None:  # the tables are wanted: fail while the DAG is built
        raise COMPARISON_PROBLEM
    # the comparison table reads the per-pair results of the runs of the compared groups
    compared = {group for pair in COMPARISON_PAIRS for group in pair}
    examples = [f"{RESULTS}/analysis/test/{arch}.examples.npz" for arch, group in run_groups().items()
                if group in compared]
    return {"runs": runs if wildcards.table in ("results", "speed") else [],
            "tests": tests if wildcards.table in ("results", "replicates") else [],
            "dead_units": dead_units if wildcards.table == "dead_units" else [],
            "baselines": ([f"{RESULTS}/analysis/baselines/test.json"]
                          if wildcards.table in ("results", "baselines") else []),
            "examples": examples if wildcards.table == "comparison" else []}


def comparison_pairs():
    """config analysis.compare as [A, B] pairs of groups (run_groups()), checked: a name
    that is no group of the configured runs is a ValueError naming it and the groups; a
    pair naming a model of the architecture set that train.models leaves out is skipped
    (with a note), so that a subset of the models runs with the default pairs."""
    from equivox.tables import comparison_pairs as checked_pairs

    groups = list(dict.fromkeys(run_groups().values()))
    unselected = [name for name in ARCHITECTURE_SET if name not in ARCHITECTURES]
    return [list(pair) for pair in checked_pairs(config["analysis"]["compare"], groups, unselected)]


# checked once, when the workflow is read. A bad pair fails the DAG only where the tables
# are wanted (table_inputs), still before any job: a target that needs no table (one run,
# say, with another architecture set) is not stopped by the default pairs.
try:
    COMPARISON_PAIRS, COMPARISON_PROBLEM = comparison_pairs(), None
except ValueError as problem:
    COMPARISON_PAIRS, COMPARISON_PROBLEM = [], problem


def baseline_view_sets(wildcards):
    """The view sets rule baselines evaluates: val, and test for the test record."""
    splits = ("val",) if wildcards.split == "val" else ("val", "test")
    return {split: f"{RESULTS}/views/{split}.h5" for split in splits}


def paper_tables():
    """Names of the paper tables (make_tables writes results/tables/<name>.{csv,md,tex,html})."""
    return ["results", "baselines", "speed", "dead_units", "replicates", "comparison"]


OWN_RULE_TABLES = ("equivariance", "memory")
"""Paper tables written by a rule of their own (equivariance_table, memory_table), not by make_tables."""


def memory_probe_runs():
    """The runs whose memory is probed: one per setting (the first replicate), since the
    replicates of a setting differ only by their seed."""
    return [name for name, run in RUNS.items() if run.replicate == 0]


def memory_probe_train(wildcards):
    """What the run's training step does that the probe repeats: train.head, train.amp and
    the optimizer keys (equivox.memory_probe.OPTIMIZER_KEYS), with the run's study values."""
    from equivox.memory_probe import OPTIMIZER_KEYS

    train = run_train(wildcards.arch)
    return {key: train[key] for key in ("head", "amp", *OPTIMIZER_KEYS)}


def memory_probe_settings():
    """analysis.memory_probe with its device resolved: null = analysis.device."""
    settings = dict(config["analysis"]["memory_probe"])
    settings["device"] = settings["device"] or config["analysis"]["device"]
    return settings


def paper_files():
    """results/paper/ copy -> source, for paper_figures: figures (SVG, PDF), tables
    (CSV, Markdown, LaTeX) and the example view pairs."""
    figures = ["validation_vs_steps", "validation_vs_compute", "training_vs_steps", "test_results",
               "dead_units_summary", "equivariance", *(f"dead_units/{arch}" for arch in ARCHITECTURES)]
    files = {f"{RESULTS}/paper/figures/{name}.{ext}": f"{RESULTS}/figures/{name}.{ext}"
             for name in figures for ext in ("svg", "pdf")}
    files.update({f"{RESULTS}/paper/tables/{name}.{ext}": f"{RESULTS}/tables/{name}.{ext}"
                  for name in (*paper_tables(), *OWN_RULE_TABLES) for ext in ("csv", "md", "tex")})
    files[f"{RESULTS}/paper/figures/view_pairs.svg"] = f"{RESULTS}/views/examples.svg"
    return files


def final_outputs():
    views = [f"{RESULTS}/views/{split}.h5" for split in ("val", "test")]
    shards = train_shard_files()
    runs = [f"{RESULTS}/runs/{arch}/final/run.json" for arch in ARCHITECTURES]
    analyses = [f"{RESULTS}/analysis/{kind}/{arch}.{ext}" for arch in ARCHITECTURES
                for kind, ext in (("dead_units", "tsv"), ("dead_units", "best.tsv"), ("test", "json"),
                                  ("test", "examples.npz"), ("equivariance", "json"))]
    analyses += [f"{RESULTS}/analysis/memory/{arch}.{ext}" for arch in memory_probe_runs()
                 for ext in ("tsv", "json")]
    tables = [f"{RESULTS}/tables/{name}.html" for name in (*paper_tables(), *OWN_RULE_TABLES)]
    return [f"{RESULTS}/origins.sqlite", f"{RESULTS}/origins.summary.tsv", *views, *shards,
            f"{RESULTS}/views/examples.png", *runs, *analyses, *tables, *paper_files(),
            f"{RESULTS}/report/run_description.html"]


def print_summary(snakemake_logs, failed):
    """The end-of-run summary (equivox/summary.py): downloads, origin DB, training runs,
    test accuracy beside chance and the best baseline, failed jobs, where the outputs are."""
    from equivox.summary import workflow_summary

    print(f"\n{workflow_summary(RESULTS, list(ARCHITECTURES), snakemake_logs, failed=failed)}")
