# Data stage: PISCES list -> mmCIF files -> atom store (HDF5) -> origin database (SQLite).
# Work is sharded (config structures.n_shards) so the DAG stays small at 10K chains.


rule demo_data:
    output:
        pisces=f"{RESULTS}/demo/pisces.txt",
    params:
        code=code_of("scripts/demo_data.py"),
        mirror=f"{RESULTS}/demo/mirror",
        max_structures=config["demo"]["max_structures"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/demo_data.log",
    script:
        "../../scripts/demo_data.py"


rule download_pisces:
    output:
        f"{RESULTS}/pisces/downloaded.txt",
    params:
        code=code_of("scripts/download_pisces.py"),
        # retries, backoff_s and timeout_s are operational: the script reads them from the
        # config, so tuning them reruns nothing
        url=config["pisces"]["url"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/download_pisces.log",
    script:
        "../../scripts/download_pisces.py"


rule pisces_list:
    input:
        pisces_source_file(),
    output:
        kept=f"{RESULTS}/pisces/kept.tsv",
        dropped=f"{RESULTS}/pisces/dropped.tsv",
    params:
        code=code_of("scripts/pisces_list.py"),
        criteria=config["pisces"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/pisces_list.log",
    script:
        "../../scripts/pisces_list.py"


rule shard_ids:
    input:
        f"{RESULTS}/pisces/kept.tsv",
    output:
        expand(f"{RESULTS}/structures/shards/{{shard}}.tsv", shard=SHARDS),
    params:
        code=code_of("scripts/shard_ids.py"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/shard_ids.log",
    script:
        "../../scripts/shard_ids.py"


rule download_structures:
    input:
        ids=f"{RESULTS}/structures/shards/{{shard}}.tsv",
        mirror=mirror_input(),
    output:
        manifest=f"{RESULTS}/structures/manifests/{{shard}}.tsv",
    params:
        code=code_of("scripts/download_structures.py"),
        # files live outside the declared outputs: a failed or interrupted shard keeps
        # what it already fetched, and the rerun only fetches what is missing
        dest_dir=f"{RESULTS}/structures/files",
        mirror_dir=structure_source()[0],
        # a function: Snakemake would read {pdb_id} in a plain string as a wildcard
        url_template=lambda wildcards: structure_source()[1],
        # retries, backoff_s, timeout_s and max_failed_fraction are operational: the
        # script reads them from the config, so tuning them reruns nothing
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/download_structures/{{shard}}.log",
    benchmark:
        f"{LOGS}/benchmarks/download_structures/{{shard}}.tsv"
    script:
        "../../scripts/download_structures.py"


rule parse_atoms:
    input:
        ids=f"{RESULTS}/structures/shards/{{shard}}.tsv",
        manifest=f"{RESULTS}/structures/manifests/{{shard}}.tsv",
    output:
        atoms=f"{RESULTS}/atoms/{{shard}}.h5",
        failures=f"{RESULTS}/atoms/{{shard}}.failures.tsv",
    params:
        code=code_of("scripts/parse_atoms.py"),
        extra_nonbiological=config["atoms"]["extra_nonbiological"],
        keep_biological=config["atoms"]["keep_biological"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/parse_atoms/{{shard}}.log",
    benchmark:
        f"{LOGS}/benchmarks/parse_atoms/{{shard}}.tsv"
    script:
        "../../scripts/parse_atoms.py"


rule choose_origins:
    input:
        atoms=f"{RESULTS}/atoms/{{shard}}.h5",
    output:
        origins=f"{RESULTS}/origins/{{shard}}.h5",
    params:
        code=code_of("scripts/choose_origins.py"),
        origins=config["origins"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/choose_origins/{{shard}}.log",
    benchmark:
        f"{LOGS}/benchmarks/choose_origins/{{shard}}.tsv"
    script:
        "../../scripts/choose_origins.py"


rule origin_database:
    input:
        kept=f"{RESULTS}/pisces/kept.tsv",
        dropped=f"{RESULTS}/pisces/dropped.tsv",
        manifests=expand(f"{RESULTS}/structures/manifests/{{shard}}.tsv", shard=SHARDS),
        failures=expand(f"{RESULTS}/atoms/{{shard}}.failures.tsv", shard=SHARDS),
        atoms=expand(f"{RESULTS}/atoms/{{shard}}.h5", shard=SHARDS),
        origins=expand(f"{RESULTS}/origins/{{shard}}.h5", shard=SHARDS),
    output:
        db=f"{RESULTS}/origins.sqlite",
        summary=f"{RESULTS}/origins.summary.tsv",
        excluded=f"{RESULTS}/origins.excluded.tsv",
    params:
        code=code_of("scripts/origin_database.py"),
        splits=config["splits"],
        origins=config["origins"],
        # recorded in the DB's metadata: the settings the data depend on, not the whole
        # config (a training, plotting or network-tuning edit must not rebuild the DB)
        config=data_settings(),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/origin_database.log",
    script:
        "../../scripts/origin_database.py"


rule atom_pack:
    # the sampler's input: one split's image atoms in one memory-mapped file, shared by
    # every loader worker (the atom store stays the archival record)
    input:
        db=f"{RESULTS}/origins.sqlite",
        atoms=expand(f"{RESULTS}/atoms/{{shard}}.h5", shard=SHARDS),
    output:
        pack=f"{RESULTS}/atom_pack/{{split}}.pack",
    wildcard_constraints:
        split="train|val|test",
    params:
        code=code_of("scripts/atom_pack.py"),
        config=view_config(),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/atom_pack/{{split}}.log",
    benchmark:
        f"{LOGS}/benchmarks/atom_pack/{{split}}.tsv"
    script:
        "../../scripts/atom_pack.py"
