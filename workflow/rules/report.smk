# Paper figures and tables from the run records and analyses, one rule and script per
# figure, captions in workflow/report/ (docs/analyses.md); the report's run description.


rule describe_run:
    input:
        summary=f"{RESULTS}/origins.summary.tsv",
        runs=expand(f"{RESULTS}/runs/{{arch}}/final/run.json", arch=ARCHITECTURES),
    output:
        html=report(f"{RESULTS}/report/run_description.html", caption="../report/run_description.rst",
                    category="Run", labels={"page": "run description"}),
    params:
        code=code_of("scripts/describe_run.py"),
        # the whole validated config is what the page shows: any config edit remakes it
        config=config,
        repo=workflow.basedir,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/describe_run.log",
    script:
        "../../scripts/describe_run.py"


rule plot_curves:
    input:
        runs=expand(f"{RESULTS}/runs/{{arch}}/final/run.json", arch=ARCHITECTURES),
        baselines=f"{RESULTS}/analysis/baselines/val.json",
    output:
        svg=report(f"{RESULTS}/figures/{{curve}}_vs_{{x}}.svg", caption="../report/curves.rst",
                   category="Training", labels={"curve": "{curve}", "against": "{x}"}),
        pdf=f"{RESULTS}/figures/{{curve}}_vs_{{x}}.pdf",
    params:
        code=code_of("scripts/plot_curves.py"),
        facet=config["analysis"]["figures"]["facet"],
        smoothing=config["analysis"]["figures"]["smoothing"],
        # run -> replicate group: a group of several runs is drawn as its mean and band
        groups=run_groups(),
    wildcard_constraints:
        curve="validation|training",
        x="steps|compute",
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/plot_curves/{{curve}}_vs_{{x}}.log",
    script:
        "../../scripts/plot_curves.py"


rule plot_test_results:
    input:
        tests=expand(f"{RESULTS}/analysis/test/{{arch}}.json", arch=ARCHITECTURES),
        baselines=f"{RESULTS}/analysis/baselines/test.json",
    output:
        svg=report(f"{RESULTS}/figures/test_results.svg", caption="../report/test_results.rst",
                   category="Test set"),
        pdf=f"{RESULTS}/figures/test_results.pdf",
    params:
        code=code_of("scripts/plot_test_results.py"),
        families=model_families(),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/plot_test_results.log",
    script:
        "../../scripts/plot_test_results.py"


rule plot_dead_units:
    input:
        table=f"{RESULTS}/analysis/dead_units/{{arch}}.tsv",
    output:
        svg=report(f"{RESULTS}/figures/dead_units/{{arch}}.svg", caption="../report/dead_units.rst",
                   category="Dead units", subcategory="Per model", labels={"model": "{arch}"}),
        pdf=f"{RESULTS}/figures/dead_units/{{arch}}.pdf",
    params:
        code=code_of("scripts/plot_dead_units.py"),
        tau=config["analysis"]["dead_units"]["tau"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/plot_dead_units/{{arch}}.log",
    script:
        "../../scripts/plot_dead_units.py"


rule plot_dead_units_summary:
    input:
        tables=expand(f"{RESULTS}/analysis/dead_units/{{arch}}.tsv", arch=ARCHITECTURES),
    output:
        svg=report(f"{RESULTS}/figures/dead_units_summary.svg",
                   caption="../report/dead_units_summary.rst", category="Dead units",
                   subcategory="All models"),
        pdf=f"{RESULTS}/figures/dead_units_summary.pdf",
    params:
        code=code_of("scripts/plot_dead_units_summary.py"),
        families=model_families(),
        tau=config["analysis"]["dead_units"]["tau"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/plot_dead_units_summary.log",
    script:
        "../../scripts/plot_dead_units_summary.py"


rule make_tables:
    input:
        unpack(table_inputs),
    output:
        html=report(f"{RESULTS}/tables/{{table}}.html", caption="../report/tables.rst",
                    category="Tables", labels={"table": "{table}"}),
        csv=f"{RESULTS}/tables/{{table}}.csv",
        md=f"{RESULTS}/tables/{{table}}.md",
        tex=f"{RESULTS}/tables/{{table}}.tex",
    params:
        code=code_of("scripts/make_tables.py"),
        confidence=config["analysis"]["test"]["confidence"],
        # run -> replicate group, the comparisons and their resampling: only the tables
        # that use them depend on them (an edit reruns those alone)
        groups=lambda wildcards: run_groups() if wildcards.table in ("replicates", "comparison") else {},
        compare=lambda wildcards: COMPARISON_PAIRS if wildcards.table == "comparison" else [],
        bootstrap=lambda wildcards: (config["analysis"]["bootstrap"] if wildcards.table == "comparison"
                                     else {}),
    wildcard_constraints:
        table="|".join(paper_tables()),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/make_tables/{{table}}.log",
    script:
        "../../scripts/make_tables.py"


rule paper_figures:
    input:
        list(paper_files().values()),
    output:
        list(paper_files()),
    params:
        code=code_of("scripts/paper_figures.py"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/paper_figures.log",
    script:
        "../../scripts/paper_figures.py"


rule plot_equivariance:
    input:
        summaries=expand(f"{RESULTS}/analysis/equivariance/{{arch}}.json", arch=ARCHITECTURES),
    output:
        svg=report(f"{RESULTS}/figures/equivariance.svg", caption="../report/equivariance.rst",
                   category="Equivariance"),
        pdf=f"{RESULTS}/figures/equivariance.pdf",
    params:
        code=code_of("scripts/plot_equivariance.py"),
        families=model_families(),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/plot_equivariance.log",
    script:
        "../../scripts/plot_equivariance.py"


rule equivariance_table:
    input:
        summaries=expand(f"{RESULTS}/analysis/equivariance/{{arch}}.json", arch=ARCHITECTURES),
    output:
        html=report(f"{RESULTS}/tables/equivariance.html", caption="../report/equivariance_table.rst",
                    category="Tables", labels={"table": "equivariance"}),
        csv=f"{RESULTS}/tables/equivariance.csv",
        md=f"{RESULTS}/tables/equivariance.md",
        tex=f"{RESULTS}/tables/equivariance.tex",
    params:
        code=code_of("scripts/equivariance_table.py"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/equivariance_table.log",
    script:
        "../../scripts/equivariance_table.py"
