# Stage 2: training. A shell: rule calling package code, so editing piff's source does not
# silently retrain every experiment (script: rules rerun when the script's mtime changes).
# Checkpoints go to results/<name>/checkpoints/ (not an output: Snakemake never deletes them),
# so a plain rerun after a crash resumes; --forcerun train retrains from step 0 because the
# previous run is marked COMPLETED; changed hyper-parameters change the fingerprint.


rule train:
    input:
        dataset=experiment_dataset,
    output:
        model="results/{experiment}/model.pt",
    params:
        hparams=training_hparams,
        workdir=lambda w: f"results/{w.experiment}",
        run_options=run_options,
    threads: lambda w: config["experiments"][w.experiment]["nproc"]
    resources:
        nproc=lambda w: config["experiments"][w.experiment]["nproc"],
        runtime=lambda w: 120,
        mem_mb=lambda w: 4000 * config["experiments"][w.experiment]["nproc"],
    retries: 2
    log:
        "results/{experiment}/logs/train.log",
    benchmark:
        "results/{experiment}/benchmarks/train.tsv"
    conda:
        "../../envs/piff.yaml"
    shell:
        "torchrun --standalone --nproc-per-node={resources.nproc} -m piff.training"
        " --hparams {params.hparams:q} --dataset {input.dataset:q} --workdir {params.workdir:q}"
        " --out {output.model:q} --threads 1 {params.run_options} >> {log:q} 2>&1"
