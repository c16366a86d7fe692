# Stage 4: score each experiment's samples against the solver, draw its figures, and compare
# all experiments and baselines in results/summary.{csv,md}. Cheap, so `script:` rules (they
# rerun when an adapter script changes, which costs seconds here).

report: "../report/workflow.rst"


FIGURES = ("cases", "error_vs_nfe", "error_vs_hour")

# Final targets: the summary and every experiment's figures (nothing without experiments).
FINAL_TARGET_FUNCTIONS.append(
    lambda: ["results/summary.csv", "results/summary.md"]
    + expand("results/{experiment}/figures/{name}.png", experiment=EXPERIMENTS, name=FIGURES)
    if EXPERIMENTS
    else []
)


rule evaluate:
    input:
        samples="results/{experiment}/samples.nc",
        dataset=experiment_dataset,
    output:
        csv="results/{experiment}/metrics.csv",
        json=f"results/{{experiment}}/{default_nfe.METRICS_FILE}",  # piff predict reads its default NFE here
    threads: 1
    resources:
        mem_mb=4000,
    log:
        "results/{experiment}/logs/evaluate.log",
    benchmark:
        "results/{experiment}/benchmarks/evaluate.tsv"
    conda:
        "../../envs/piff.yaml"
    script:
        "../scripts/evaluate.py"


rule figures:
    input:
        samples="results/{experiment}/samples.nc",
        dataset=experiment_dataset,
        metrics="results/{experiment}/metrics.csv",
    output:
        cases=report("results/{experiment}/figures/cases.png", caption="../report/cases.rst",
                     category="Test cases", subcategory="{experiment}"),
        error_vs_nfe=report("results/{experiment}/figures/error_vs_nfe.png", caption="../report/error_vs_nfe.rst",
                            category="Error against NFE", subcategory="{experiment}"),
        error_vs_hour=report("results/{experiment}/figures/error_vs_hour.png", caption="../report/error_vs_hour.rst",
                             category="Error against hour", subcategory="{experiment}"),
    threads: 1
    log:
        "results/{experiment}/logs/figures.log",
    benchmark:
        "results/{experiment}/benchmarks/figures.tsv"
    conda:
        "../../envs/piff.yaml"
    script:
        "../scripts/figures.py"


rule summary:
    input:
        metrics=expand(f"results/{{experiment}}/{default_nfe.METRICS_FILE}", experiment=EXPERIMENTS),
    output:
        csv=report("results/summary.csv", caption="../report/summary.rst", category="Summary"),
        md="results/summary.md",
    threads: 1
    log:
        "results/logs/summary.log",
    benchmark:
        "results/benchmarks/summary.tsv"
    conda:
        "../../envs/piff.yaml"
    script:
        "../scripts/summary.py"
