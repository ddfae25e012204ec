# Analyses of finished runs: dead/dormant units per nonlinearity, held-out test results
# (docs/analyses.md).


rule analyze_dead_units:
    input:
        weights=f"{RESULTS}/runs/{{arch}}/final/weights.pt",
        views=f"{RESULTS}/views/val.h5",
    output:
        table=f"{RESULTS}/analysis/dead_units/{{arch}}.tsv",
    params:
        n_examples=config["analysis"]["dead_units"]["n_examples"],
        tau=config["analysis"]["dead_units"]["tau"],
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
    input:
        weights=f"{RESULTS}/runs/{{arch}}/final/weights.pt",
        views=f"{RESULTS}/views/test.h5",
    output:
        result=f"{RESULTS}/analysis/test/{{arch}}.json",
    params:
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
