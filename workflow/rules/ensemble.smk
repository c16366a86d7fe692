# Ensemble verification (docs/ensemble.md). A separate target, not part of `all`:
#
#   snakemake --cores 2 results/ensemble_summary.csv
#
# rainfall-forecast members of the held-out storms -> the solver on every member (reference) and
# each trained experiment on every member -> CRPS, Brier skill, reliability, spread-skill and
# wall times against the solver on the real storm. The solver and model ensembles run with the
# same torch threads (ensemble.threads) one after another, so their wall times compare.


rule ensemble_rain:
    input:
        dataset=ensemble_dataset,
    output:
        "results/ensemble/rain_members.nc",
    params:
        cfg=lambda w: ensemble_options(("storms", "n_storms", "dems", "members", "seed", "error_model")),
    log:
        "results/ensemble/logs/rain.log",
    conda:
        "../../envs/piff.yaml"
    script:
        "../scripts/ensemble_rain.py"


rule ensemble_solver:
    input:
        dataset=ensemble_dataset,
        rain="results/ensemble/rain_members.nc",
    output:
        "results/ensemble/solver/members.nc",
    params:
        cfg=lambda w: ensemble_options(("hours",)),
    threads: ENSEMBLE["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        "results/ensemble/logs/solver.log",
    benchmark:
        "results/ensemble/benchmarks/solver.tsv"
    conda:
        "../../envs/piff.yaml"
    script:
        "../scripts/ensemble_solver.py"


rule ensemble:
    input:
        unpack(ensemble_model_inputs),
        dataset=ensemble_dataset,
        rain="results/ensemble/rain_members.nc",
    output:
        "results/ensemble/{experiment}/members.nc",
    params:
        cfg=lambda w: ensemble_options(("samples", "sampler", "nfe", "hours", "seed")),
    threads: ENSEMBLE["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        "results/ensemble/logs/{experiment}.log",
    benchmark:
        "results/ensemble/benchmarks/{experiment}.tsv"
    conda:
        "../../envs/piff.yaml"
    script:
        "../scripts/ensemble.py"


rule ensemble_summary:
    input:
        dataset=ensemble_dataset,
        solver="results/ensemble/solver/members.nc",
        members=expand("results/ensemble/{experiment}/members.nc", experiment=ENSEMBLE_EXPERIMENTS),
    output:
        csv=report("results/ensemble_summary.csv", caption="../report/ensemble_summary.rst", category="Ensemble"),
        md="results/ensemble_summary.md",
        reliability_csv="results/ensemble/reliability.csv",
        spread_skill_csv="results/ensemble/spread_skill.csv",
        crps_map="results/ensemble/crps_map.nc",
        reliability=report("results/ensemble/figures/reliability.png", caption="../report/ensemble_reliability.rst",
                           category="Ensemble"),
        spread_skill=report("results/ensemble/figures/spread_skill.png",
                            caption="../report/ensemble_spread_skill.rst", category="Ensemble"),
    params:
        systems=ENSEMBLE_EXPERIMENTS,
    threads: 1
    resources:
        mem_mb=4000,
    log:
        "results/ensemble/logs/summary.log",
    benchmark:
        "results/ensemble/benchmarks/summary.tsv"
    conda:
        "../../envs/piff.yaml"
    script:
        "../scripts/ensemble_summary.py"
