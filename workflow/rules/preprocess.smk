# Stage 1: terrain -> storms -> simulate (one job per DEM x chunk of storms), coarse prior (one job
# per chunk, every DEM), SPM (one job per DEM) -> dataset.nc
# Each rule's params hold only its own part of the dataset config (sorted JSON), so changing
# one dataset parameter reruns only the jobs of that dataset that depend on it.


rule terrain:
    output:
        "data/{dataset}/terrain/dem_{dem}.nc",
    params:
        terrain=lambda w: as_json(dataset_config(w)["terrain"]),
    priority: 30  # gates the solver runs (see rule storms)
    log:
        "data/{dataset}/logs/terrain/dem_{dem}.log",
    wildcard_constraints:
        dataset=alternatives(SIMULATED),
    conda:
        "../../envs/piff.yaml"
    script:
        "../scripts/terrain.py"


rule storms:
    output:
        storms="data/{dataset}/storms.nc",
        csv="data/{dataset}/scenario_rainfall.csv",
    params:
        storms=lambda w: as_json(dataset_config(w)["storms"]),
        split=lambda w: as_json(dataset_config(w)["split"]),
    # Priorities order the ready jobs longest-first, so on a few cores the short jobs fill the
    # gaps instead of delaying the long ones: the DEMs and the storm table gate everything, the
    # one coarse-prior job of a chunk (every DEM; 18-39 s for the demo) starts next to the first
    # solver run, then the solver runs, SPM tables last (1-2 s each). Priorities do not pass to
    # a job's inputs, so the gating rules need their own.
    priority: 30
    log:
        "data/{dataset}/logs/storms.log",
    wildcard_constraints:
        dataset=alternatives(SIMULATED),
    conda:
        "../../envs/piff.yaml"
    script:
        "../scripts/storms.py"


rule simulate:
    input:
        dem="data/{dataset}/terrain/dem_{dem}.nc",
        storms="data/{dataset}/storms.nc",
    output:
        "data/{dataset}/sim/dem_{dem}_chunk_{chunk}.nc",
    params:
        cfg=simulation_params,
    threads: lambda w: dataset_config(w)["simulate"]["threads"]
    priority: 20
    resources:
        mem_mb=lambda w: dataset_config(w)["simulate"]["mem_mb"],
        runtime=lambda w: dataset_config(w)["simulate"]["runtime_min"],
    log:
        "data/{dataset}/logs/simulate/dem_{dem}_chunk_{chunk}.log",
    benchmark:
        "data/{dataset}/benchmarks/simulate/dem_{dem}_chunk_{chunk}.tsv"
    wildcard_constraints:
        dataset=alternatives(SIMULATED),
    conda:
        "../../envs/piff.yaml"
    script:
        "../scripts/simulate.py"


rule coarse_prior:
    # every DEM of one chunk of storms in one job: on its small grid the prior costs its fixed
    # overheads (imports, compiling the step) more than its cells (piff.data.preprocess)
    input:
        dems=dem_files,
        storms="data/{dataset}/storms.nc",
    output:
        "data/{dataset}/prior/chunk_{chunk}.nc",
    params:
        cfg=lambda w: as_json({**json.loads(simulation_params(w)), "coarse_prior": dataset_config(w)["coarse_prior"]}),
    threads: 1
    priority: 25
    log:
        "data/{dataset}/logs/coarse_prior/chunk_{chunk}.log",
    benchmark:
        "data/{dataset}/benchmarks/coarse_prior/chunk_{chunk}.tsv"
    wildcard_constraints:
        dataset=alternatives(SIMULATED),
    conda:
        "../../envs/piff.yaml"
    script:
        "../scripts/coarse_prior.py"


rule spm:
    input:
        dem="data/{dataset}/terrain/dem_{dem}.nc",
    output:
        "data/{dataset}/spm/dem_{dem}.nc",
    params:
        cfg=lambda w: as_json({k: dataset_config(w)[k] for k in ("terrain", "boundaries", "sea_level_m")}),
    log:
        "data/{dataset}/logs/spm/dem_{dem}.log",
    benchmark:
        "data/{dataset}/benchmarks/spm/dem_{dem}.tsv"
    wildcard_constraints:
        dataset=alternatives(SIMULATED),
    conda:
        "../../envs/piff.yaml"
    script:
        "../scripts/spm.py"


rule assemble:
    input:
        dems=dem_files,
        storms="data/{dataset}/storms.nc",
        sims=sim_files,
        spm=spm_files,
        priors=prior_files,
    output:
        "data/{dataset}/dataset.nc",
    params:
        cfg=lambda w: as_json(dataset_config(w)),
        n_chunks=lambda w: n_chunks(w.dataset),
    log:
        "data/{dataset}/logs/assemble.log",
    benchmark:
        "data/{dataset}/benchmarks/assemble.tsv"
    wildcard_constraints:
        dataset=alternatives(SIMULATED),
    conda:
        "../../envs/piff.yaml"
    script:
        "../scripts/assemble.py"


rule import_png:
    output:
        "data/{dataset}/dataset.nc",
    params:
        cfg=lambda w: as_json(dataset_config(w)["import_png"]),
    log:
        "data/{dataset}/logs/import_png.log",
    benchmark:
        "data/{dataset}/benchmarks/import_png.tsv"
    wildcard_constraints:
        dataset=alternatives(IMPORTED),
    conda:
        "../../envs/piff.yaml"
    script:
        "../scripts/import_png.py"
