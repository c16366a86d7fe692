# piff: physics-informed flood forecasting (a re-creation of PIFF, arXiv 2511.09130).
#
#   snakemake --cores 2                          # everything on config/config.yaml
#   snakemake --cores 8 results/phy/samples.nc   # one experiment's predictions
#   snakemake --cores 8 --forcerun train results/phy/model.pt   # retrain from step 0
#   snakemake --cores 2 results/ensemble_summary.csv  # ensemble verification (separate target)
#
# Stages: preprocess (terrain, storms, solver ground truth, SPM) -> train -> sample -> evaluate.
import os
import sys

from snakemake.utils import min_version

min_version("9.0")

# Jobs import piff from this checkout (also inside `--sdm conda` environments), and the
# `python` of shell rules is the one running Snakemake (`.venv/bin/snakemake` works without
# activating the venv; a conda env's bin still comes first under --sdm conda).
PIFF_SRC = os.path.join(workflow.basedir, "src")
sys.path.insert(0, PIFF_SRC)  # the controller reads the package's constants (torch-free modules)
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (PIFF_SRC, os.environ.get("PYTHONPATH")) if p),
    PATH=os.pathsep.join((os.path.dirname(sys.executable), os.environ.get("PATH", ""))),
)


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/ensemble.smk"


wildcard_constraints:
    dataset=alternatives(DATASETS),
    experiment=alternatives(EXPERIMENTS),
    dem=r"\d{3}",
    chunk=r"\d{3}",


rule all:
    default_target: True
    input:
        all_targets(),
