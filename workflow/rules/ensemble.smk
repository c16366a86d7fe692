# Ensemble verification (docs/ensemble.md). A separate target, not part of `all`:
#
#   snakemake --cores 2 results/ensemble_summary.csv
#
# rainfall-forecast members of the held-out storms -> the solver on every member (reference) and
# each trained experiment on every member -> CRPS, Brier skill, reliability, spread-skill and
# wall times against the solver on the real storm. The solver and model ensembles run with the
# same torch threads (ensemble.threads) one after another, so their wall times compare. With
# ensemble.dressing, each experiment's ensemble is scored a second time, dressed with the
# model's own errors on the validation storms (error_dressing, ensemble_dressed). With
# ensemble.anchored, each experiment's ensemble is also run anchored on the solver's run of the
# members' central forecast (the control; ensemble_anchored, piff.inference.anchoring), its wall
# time that of the whole anchored run, both control runs included; with
# dressing too, the anchored members are dressed with the anchored members' own errors on forecast
# members of the validation storms (anchored_dressing, ensemble_anchored_dressed; the solver's runs
# of those members are shared by every experiment: ensemble_validation_solver and its control).

VALIDATION_RAIN = "results/ensemble/validation_rain_members.nc"
VALIDATION_SOLVER = f"results/ensemble/{SOLVER}/validation_members.nc"
VALIDATION_SOLVER_CONTROL = f"results/ensemble/{SOLVER}/validation_{CONTROL_FILE}"


rule ensemble_rain:
    input:
        dataset=ensemble_dataset,
    output:
        "results/ensemble/rain_members.nc",
    params:
        cfg=lambda w: ensemble_options(("storms", "n_storms", "dems", "members", "seed", "error_model")),
        validation=False,
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
        f"results/ensemble/{SOLVER}/members.nc",
    params:
        cfg=lambda w: ensemble_options(("hours",)),
        control=False,
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


# The anchored ensemble as a forecast makes it: per storm, the model on the members and their
# control while the solver runs the control alongside (piff.inference.anchoring.anchored_ensemble),
# so its wall time is that whole run, not a sum of separate ones.
rule ensemble_anchored:
    input:
        unpack(ensemble_model_inputs),
        dataset=ensemble_dataset,
        rain="results/ensemble/rain_members.nc",
    output:
        "results/ensemble/{experiment}/members_anchored.nc",
    params:
        cfg=lambda w: ensemble_options(("samples", "sampler", "nfe", "hours", "seed")),
    threads: ENSEMBLE["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        "results/ensemble/logs/{experiment}_anchored.log",
    benchmark:
        "results/ensemble/benchmarks/{experiment}_anchored.tsv"
    conda:
        "../../envs/piff.yaml"
    script:
        "../scripts/ensemble_anchored.py"


rule error_dressing:
    input:
        unpack(ensemble_model_inputs),
        dataset=ensemble_dataset,
    output:
        f"results/{{experiment}}/{DRESSING_FILE}",  # piff predict --dressing reads it here
    params:
        cfg=lambda w: ensemble_options(("sampler", "nfe", "seed")),
    threads: ENSEMBLE["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    log:
        "results/{experiment}/logs/error_dressing.log",
    benchmark:
        "results/{experiment}/benchmarks/error_dressing.tsv"
    conda:
        "../../envs/piff.yaml"
    script:
        "../scripts/error_dressing.py"


rule ensemble_dressed:
    input:
        members="results/ensemble/{experiment}/members.nc",
        dressing=f"results/{{experiment}}/{DRESSING_FILE}",
    output:
        "results/ensemble/{experiment}/members_dressed.nc",
    params:
        maps=ENSEMBLE["dressing"],
    threads: 1
    resources:
        mem_mb=4000,
    log:
        "results/ensemble/logs/{experiment}_dressed.log",
    benchmark:
        "results/ensemble/benchmarks/{experiment}_dressed.tsv"
    conda:
        "../../envs/piff.yaml"
    script:
        "../scripts/ensemble_dressed.py"


# The anchored dressing's cases: forecast members of the validation storms on the training DEMs
# (the test storms stay out), run through the solver once for every experiment.
use rule ensemble_rain as ensemble_validation_rain with:
    output:
        VALIDATION_RAIN,
    params:
        cfg=lambda w: ensemble_options(("members", "seed", "error_model")),
        validation=True,
    log:
        "results/ensemble/logs/validation_rain.log",


use rule ensemble_solver as ensemble_validation_solver with:
    input:
        dataset=ensemble_dataset,
        rain=VALIDATION_RAIN,
    output:
        VALIDATION_SOLVER,
    log:
        "results/ensemble/logs/solver_validation.log",
    benchmark:
        "results/ensemble/benchmarks/solver_validation.tsv"


use rule ensemble_solver as ensemble_validation_solver_control with:
    input:
        dataset=ensemble_dataset,
        rain=VALIDATION_RAIN,
    output:
        VALIDATION_SOLVER_CONTROL,
    params:
        cfg=lambda w: ensemble_options(("hours",)),
        control=True,
    log:
        "results/ensemble/logs/solver_validation_control.log",
    benchmark:
        "results/ensemble/benchmarks/solver_validation_control.tsv"


rule anchored_dressing:
    input:
        unpack(ensemble_model_inputs),
        dataset=ensemble_dataset,
        rain=VALIDATION_RAIN,
        solver=VALIDATION_SOLVER,
        solver_control=VALIDATION_SOLVER_CONTROL,
    output:
        "results/ensemble/{experiment}/anchored_dressing.nc",
    params:
        cfg=lambda w: ensemble_options(("samples", "sampler", "nfe", "hours", "seed")),
    threads: ENSEMBLE["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    log:
        "results/ensemble/logs/{experiment}_anchored_dressing.log",
    benchmark:
        "results/ensemble/benchmarks/{experiment}_anchored_dressing.tsv"
    conda:
        "../../envs/piff.yaml"
    script:
        "../scripts/anchored_dressing.py"


use rule ensemble_dressed as ensemble_anchored_dressed with:
    input:
        members="results/ensemble/{experiment}/members_anchored.nc",
        dressing="results/ensemble/{experiment}/anchored_dressing.nc",
    output:
        "results/ensemble/{experiment}/members_anchored_dressed.nc",
    log:
        "results/ensemble/logs/{experiment}_anchored_dressed.log",
    benchmark:
        "results/ensemble/benchmarks/{experiment}_anchored_dressed.tsv"


rule ensemble_summary:
    input:
        dataset=ensemble_dataset,
        solver=f"results/ensemble/{SOLVER}/members.nc",
        members=list(ensemble_member_files().values()),
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
        systems=list(ensemble_member_files()),
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
