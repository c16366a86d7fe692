# Stage 3: predict every test map (DEM x held-out storm x hour) at each NFE of the experiment,
# with the EMA weights; baselines (spm, coarse_prior) go through the same rule without a model.
# A shell: rule, like train, so code edits do not silently redo every experiment's samples.


rule sample:
    input:
        unpack(sample_inputs),
    output:
        "results/{experiment}/samples.nc",
    params:
        options=sample_options,
        kind=lambda w: config["experiments"][w.experiment]["type"],
        batch_size=lambda w: config["experiments"][w.experiment]["sample_batch_size"],
        model=model_option,
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        "results/{experiment}/logs/sample.log",
    benchmark:
        "results/{experiment}/benchmarks/sample.tsv"
    conda:
        "../../envs/piff.yaml"
    shell:
        "python -m piff sample --dataset {input.dataset:q} --kind {params.kind} {params.model}"
        " --options {params.options:q} --experiment {wildcards.experiment} --batch-size {params.batch_size}"
        " --threads {threads} --device auto --out {output:q} > {log:q} 2>&1"
