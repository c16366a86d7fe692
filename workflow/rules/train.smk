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
    # threads, nproc and mem_mb are per node: the experiment's nproc ranks spread over `nodes`.
    threads: ranks_per_node
    resources:
        # ranks per node and nodes for piff.training.launch (torchrun, or srun + torchrun)
        nproc=ranks_per_node,
        nodes=n_nodes,
        # multi-node only (None = unset): the SLURM plugin then runs the command once in the
        # batch step (no `srun -n1` wrapper) in an allocation of one task per node, for the
        # launcher's own `srun ... torchrun` (docs/cluster.md)
        mpi=lambda w: "srun" if n_nodes(w) > 1 else None,
        tasks=lambda w: n_nodes(w) if n_nodes(w) > 1 else None,
        runtime=120,
        mem_mb=lambda w: 4000 * ranks_per_node(w),
    retries: 2
    priority: train_priority  # trainings first, generative ones before the regression (common.smk)
    log:
        "results/{experiment}/logs/train.log",
    benchmark:
        "results/{experiment}/benchmarks/train.tsv"
    conda:
        "../../envs/piff.yaml"
    shell:
        "python -m piff.training.launch --nproc {resources.nproc} --nodes {resources.nodes} --"
        " --hparams {params.hparams:q} --dataset {input.dataset:q} --workdir {params.workdir:q}"
        " --out {output.model:q} --threads 1 {params.run_options} >> {log:q} 2>&1"
