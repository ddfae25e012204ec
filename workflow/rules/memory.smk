# Memory and batch size: peak memory of one training step at several batch sizes per
# architecture, its linear trend, and the largest batch that fits a GPU (equivox/memory_probe.py,
# docs/analyses.md "Memory and batch size"). Needs no data: random inputs of the trained shape.


rule memory_probe:
    output:
        tsv=f"{RESULTS}/analysis/memory/{{arch}}.tsv",
        summary=f"{RESULTS}/analysis/memory/{{arch}}.json",
    params:
        code=code_of("scripts/memory_probe.py", per_arch=True),
        spec=lambda wildcards: ARCHITECTURES[wildcards.arch],
        # the input shape (channels, length_voxels) and what the run's training step does
        # (head, amp, the optimizer keys: a study's train.* values included)
        views={key: config["views"][key] for key in ("channels", "length_voxels")},
        train=memory_probe_train,
        settings=memory_probe_settings(),
    threads: 2
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/memory_probe/{{arch}}.log",
    benchmark:
        f"{LOGS}/benchmarks/memory_probe/{{arch}}.tsv"
    script:
        "../../scripts/memory_probe.py"


rule memory_table:
    input:
        summaries=expand(f"{RESULTS}/analysis/memory/{{arch}}.json", arch=memory_probe_runs()),
    output:
        html=report(f"{RESULTS}/tables/memory.html", caption="../report/memory_table.rst",
                    category="Tables", labels={"table": "memory"}),
        csv=f"{RESULTS}/tables/memory.csv",
        md=f"{RESULTS}/tables/memory.md",
        tex=f"{RESULTS}/tables/memory.tex",
    params:
        code=code_of("scripts/memory_table.py"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/memory_table.log",
    script:
        "../../scripts/memory_table.py"
