# Analyses of finished runs: dead/dormant units per nonlinearity, held-out test results
# (docs/analyses.md).


rule baselines:
    # {split} = val: validation only (what the curve figures draw, so that a test-set
    # edit replots no curve); test: both sets, the best baseline still chosen on val
    input:
        unpack(baseline_view_sets),
        pack=f"{RESULTS}/atom_pack/train.pack",
    output:
        result=f"{RESULTS}/analysis/baselines/{{split}}.json",
    params:
        # the view sampler's config: the structure-blind model is fitted on training pairs
        config=view_config("seed"),
        n_train=config["analysis"]["baselines"]["n_train"],
        code=code_of("scripts/baselines.py"),
        confidence=config["analysis"]["test"]["confidence"],
    threads: 2
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/baselines/{{split}}.log",
    benchmark:
        f"{LOGS}/benchmarks/baselines/{{split}}.tsv"
    script:
        "../../scripts/baselines.py"


rule analyze_dead_units:
    # the final weights (table; what the figures draw) and the best ones (best_table)
    input:
        weights=f"{RESULTS}/runs/{{arch}}/final/weights.pt",
        best_weights=f"{RESULTS}/runs/{{arch}}/final/best_weights.pt",
        views=f"{RESULTS}/views/val.h5",
    output:
        table=f"{RESULTS}/analysis/dead_units/{{arch}}.tsv",
        best_table=f"{RESULTS}/analysis/dead_units/{{arch}}.best.tsv",
    params:
        code=code_of("scripts/analyze_dead_units.py", per_arch=True),
        n_examples=config["analysis"]["dead_units"]["n_examples"],
        tau=config["analysis"]["dead_units"]["tau"],
        open_fraction=config["analysis"]["dead_units"]["open_fraction"],
        batch_size=config["analysis"]["batch_size"],
        device=config["analysis"]["device"],
    threads: 2
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/analyze_dead_units/{{arch}}.log",
    benchmark:
        f"{LOGS}/benchmarks/analyze_dead_units/{{arch}}.tsv"
    script:
        "../../scripts/analyze_dead_units.py"


rule evaluate_test:
    # the final weights (the top-level fields of the record) and the best-validation
    # weights ("best"); per-pair loss and correctness of both in examples.npz
    input:
        weights=f"{RESULTS}/runs/{{arch}}/final/weights.pt",
        best_weights=f"{RESULTS}/runs/{{arch}}/final/best_weights.pt",
        views=f"{RESULTS}/views/test.h5",
    output:
        result=f"{RESULTS}/analysis/test/{{arch}}.json",
        examples=f"{RESULTS}/analysis/test/{{arch}}.examples.npz",
    params:
        code=code_of("scripts/evaluate_test.py", per_arch=True),
        n_examples=config["analysis"]["test"]["n_examples"],
        confidence=config["analysis"]["test"]["confidence"],
        batch_size=config["analysis"]["batch_size"],
        device=config["analysis"]["device"],
    threads: 2
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/evaluate_test/{{arch}}.log",
    benchmark:
        f"{LOGS}/benchmarks/evaluate_test/{{arch}}.tsv"
    script:
        "../../scripts/evaluate_test.py"


rule measure_equivariance:
    input:
        weights=f"{RESULTS}/runs/{{arch}}/final/weights.pt",
        views=f"{RESULTS}/views/val.h5",
        db=f"{RESULTS}/origins.sqlite",
    output:
        samples=f"{RESULTS}/analysis/equivariance/{{arch}}.tsv",
        summary=f"{RESULTS}/analysis/equivariance/{{arch}}.json",
    params:
        code=code_of("scripts/measure_equivariance.py", per_arch=True),
        # the views were made with this config; view A is re-cropped from the atom store
        config=view_config(),
        settings=config["analysis"]["equivariance"],
        batch_size=config["analysis"]["batch_size"],
        device=config["analysis"]["device"],
    threads: 2
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/measure_equivariance/{{arch}}.log",
    benchmark:
        f"{LOGS}/benchmarks/measure_equivariance/{{arch}}.tsv"
    script:
        "../../scripts/measure_equivariance.py"
