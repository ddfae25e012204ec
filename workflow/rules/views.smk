# Views: fixed validation/test pairs in HDF5, optional training shards, pictures.


rule views:
    input:
        pack=f"{RESULTS}/atom_pack/{{split}}.pack",
    output:
        views=f"{RESULTS}/views/{{split}}.h5",
    params:
        code=code_of("scripts/views.py"),
        # only the sections views depend on: an analysis or plotting edit must not
        # remake the view sets (and, through them, retrain every model)
        config=view_config("seed", "image_dtype"),
        n_examples=n_view_examples,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/views/{{split}}.log",
    benchmark:
        f"{LOGS}/benchmarks/views/{{split}}.tsv"
    script:
        "../../scripts/views.py"


rule views_train_shard:
    input:
        pack=f"{RESULTS}/atom_pack/train.pack",
    output:
        views=f"{RESULTS}/views/train_shards/{{index}}.h5",
    params:
        code=code_of("scripts/views.py"),
        # only the sections views depend on: an analysis or plotting edit must not
        # remake the view sets (and, through them, retrain every model)
        config=view_config("seed", "image_dtype"),
        n_examples=config["views"]["train_shard_size"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/views/train_{{index}}.log",
    benchmark:
        f"{LOGS}/benchmarks/views/train_{{index}}.tsv"
    script:
        "../../scripts/views.py"


rule render_views:
    input:
        views=f"{RESULTS}/views/val.h5",
    output:
        png=report(f"{RESULTS}/views/examples.png", caption="../report/views.rst",
                   category="Task"),
        svg=f"{RESULTS}/views/examples.svg",
    params:
        code=code_of("scripts/render_views.py"),
        n_examples=config["views"]["render_examples"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/render_views.log",
    script:
        "../../scripts/render_views.py"
