# Training: one run directory per architecture, resumable (docs/training.md).


rule train_model:
    input:
        pack=f"{RESULTS}/atom_pack/train.pack",
        val=f"{RESULTS}/views/val.h5",
        shards=train_shard_files(),
    output:
        weights=f"{RESULTS}/runs/{{arch}}/final/weights.pt",
        # the weights of the validation with the lowest loss (docs/training.md)
        best_weights=f"{RESULTS}/runs/{{arch}}/final/best_weights.pt",
        metrics=f"{RESULTS}/runs/{{arch}}/final/metrics.csv",
        run=f"{RESULTS}/runs/{{arch}}/final/run.json",
    params:
        code=code_of("scripts/train_model.py", per_arch=True),
        # the architecture's own spec, not the whole set: editing one architecture
        # retrains only that model. Checkpoints live in run_dir, outside the outputs,
        # so a failed or preempted run keeps its progress.
        settings=train_settings,
        run_dir=f"{RESULTS}/runs/{{arch}}",
    threads: config["train"]["num_workers"] + 1
    resources:
        gpu=config["train"]["resources"]["gpu"],
        mem_mb=config["train"]["resources"]["mem_mb"],
        runtime=config["train"]["resources"]["runtime_min"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/train_model/{{arch}}.log",
    benchmark:
        f"{LOGS}/benchmarks/train_model/{{arch}}.tsv"
    script:
        "../../scripts/train_model.py"
