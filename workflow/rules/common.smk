# Shared by every stage: config validation, wildcard constraints, input functions.
import json
import re

from snakemake.utils import validate

from piff.choices import (ANCHORED_SUFFIX, DEFAULT_FORECAST_CENTRE, DRESSED_SUFFIX, FORECAST_CENTRES, SAMPLERS,
                          TRAINED_KINDS)
from piff.data.preprocess import dem_count, dem_splits, storm_splits
from piff.errors import PiffInputError
from piff.evaluation import default_nfe
from piff.evaluation.ensemble_runs import CONTROL_FILE, SOLVER
from piff.inference.dressing import DRESSING_FILE
from piff.training.config import RUN_ONLY_KEYS, ExperimentConfig
from piff.yaml_files import load_yaml

# Snakemake's YAML reader keeps the last of two equal keys silently: reread each config file
# strictly so a duplicated `datasets:` block is an error, not a different config.
for _configfile in workflow.configfiles:
    try:
        load_yaml(_configfile)
    except PiffInputError as err:
        raise ValueError(str(err)) from None

validate(config, "../schemas/config.schema.yaml")


def _check_config_references():
    """What the JSON schema cannot express, checked before any job runs: cross-references, and
    each experiment's choices and their combination by the package's own check."""
    for name, exp in config["experiments"].items():
        if exp["dataset"] not in config["datasets"]:
            raise ValueError(
                f"config: experiments.{name}.dataset = {exp['dataset']!r} is not a configured dataset "
                f"(datasets: {', '.join(sorted(config['datasets']))})"
            )
        try:
            ExperimentConfig.from_dict(exp, source=f"config: experiments.{name}")
        except PiffInputError as err:
            raise ValueError(str(err)) from None
    for name, ds in config["datasets"].items():
        if "terrain" in ds:
            try:
                dem_splits(ds)
            except PiffInputError as err:
                raise ValueError(f"{err} (datasets.{name})") from None


_check_config_references()

DATASETS = sorted(config["datasets"])
EXPERIMENTS = sorted(config["experiments"])
SIMULATED = [d for d in DATASETS if "import_png" not in config["datasets"][d]]
IMPORTED = [d for d in DATASETS if "import_png" in config["datasets"][d]]


def alternatives(names):
    # An empty alternation would match anything: use a pattern that matches nothing instead.
    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


def dataset_config(wildcards):
    return config["datasets"][wildcards.dataset]


def as_json(obj):
    """Params are compared as strings: sorted JSON keeps reordered keys from forcing reruns."""
    return json.dumps(obj, sort_keys=True)


def n_dems(dataset):
    return dem_count(config["datasets"][dataset]["terrain"])


def n_storms(dataset):
    storms = config["datasets"][dataset]["storms"]
    return len(storms["shapes"]) * len(storms["totals_mm"])


def n_chunks(dataset):
    per_job = config["datasets"][dataset]["simulate"]["storms_per_job"]
    return -(-n_storms(dataset) // per_job)


def dem_files(wildcards):
    return [f"data/{wildcards.dataset}/terrain/dem_{d:03d}.nc" for d in range(n_dems(wildcards.dataset))]


def sim_files(wildcards):
    """Per DEM, its simulation chunk files in chunk order (flat, DEM-major)."""
    ds = wildcards.dataset
    return [f"data/{ds}/sim/dem_{d:03d}_chunk_{c:03d}.nc" for d in range(n_dems(ds)) for c in range(n_chunks(ds))]


def prior_files(wildcards):
    """The coarse-prior chunk files (every DEM in each) in chunk order; none when disabled."""
    ds = wildcards.dataset
    if not config["datasets"][ds]["coarse_prior"]["enabled"]:
        return []
    return [f"data/{ds}/prior/chunk_{c:03d}.nc" for c in range(n_chunks(ds))]


def spm_files(wildcards):
    return [f"data/{wildcards.dataset}/spm/dem_{d:03d}.nc" for d in range(n_dems(wildcards.dataset))]


def dataset_file(name):
    return f"data/{name}/dataset.nc"


def all_targets():
    """Targets of the all rule: the datasets the experiments use (later stages add their results)."""
    used = sorted({config["experiments"][e]["dataset"] for e in EXPERIMENTS})
    targets = [dataset_file(d) for d in used]
    targets += [t for f in FINAL_TARGET_FUNCTIONS for t in f()]
    return targets


# Later stages append functions returning their final targets.
FINAL_TARGET_FUNCTIONS = []


def simulation_params(wildcards):
    """What the solver output depends on (terrain, boundaries, solver and chunking)."""
    cfg = dataset_config(wildcards)
    return as_json({k: cfg[k] for k in ("terrain", "boundaries", "sea_level_m", "solver", "simulate")})


def n_nodes(wildcards):
    return config["experiments"][wildcards.experiment]["nodes"]


def ranks_per_node(wildcards):
    return config["experiments"][wildcards.experiment]["nproc"] // n_nodes(wildcards)


def experiment_dataset(wildcards):
    return dataset_file(config["experiments"][wildcards.experiment]["dataset"])


# RUN_ONLY_KEYS (piff.training.config): options that change how a run is watched, not the
# weights it produces. They must not sit in tracked params (a change would retrain a finished
# model), so they are passed through a params function that takes `resources`, which Snakemake
# does not track.


def training_hparams(wildcards):
    exp = config["experiments"][wildcards.experiment]
    return as_json({k: v for k, v in exp.items() if k not in RUN_ONLY_KEYS})


def train_priority(wildcards):
    """Trainings before samples (the longest jobs first, so on a few cores no training runs
    alone at the end while the others' samples hold its core), and among trainings the
    generative ones first: their samples (NFE x hours x maps) are the long ones, while a
    regression's one-shot maps take seconds. Trained last, the U-Net's short sampling is what
    runs alone at the end (main job: the last PIFF model's 2-min sampling had run alone)."""
    return 10 if config["experiments"][wildcards.experiment]["type"] == "piff" else 9


def run_options(wildcards, resources):
    exp = config["experiments"][wildcards.experiment]
    opts = f"--log-every {exp['log_every']} --keep-checkpoints {exp['keep_checkpoints']}"
    if exp["wall_time_budget_min"]:
        opts += f" --wall-time-min {exp['wall_time_budget_min']}"
    return opts


def sample_inputs(wildcards):
    """The dataset, plus the trained model for the kinds that have one (baselines train nothing)."""
    exp = config["experiments"][wildcards.experiment]
    inputs = {"dataset": dataset_file(exp["dataset"])}
    if exp["type"] in TRAINED_KINDS:
        inputs["model"] = f"results/{wildcards.experiment}/model.pt"
    return inputs


def sample_options(wildcards):
    exp = config["experiments"][wildcards.experiment]
    return as_json({k: exp[k] for k in ("nfe", "sampler", "members", "seed")} | {"hours": exp["eval_hours"]})


def model_option(wildcards, input):
    return f"--model {input.model}" if "model" in input.keys() else ""


# ----------------------------------------------------------------------------- ensemble verification
ENSEMBLE = config["ensemble"]


def _ensemble_experiments():
    """The trained experiments the ensemble target scores; checked before any job runs."""
    name = ENSEMBLE["dataset"]
    if name is None:
        return []
    where = "config: ensemble"
    if name not in config["datasets"]:
        raise ValueError(f"{where}.dataset = {name!r} is not a configured dataset "
                         f"(datasets: {', '.join(sorted(config['datasets']))})")
    ds = config["datasets"][name]
    if "terrain" not in ds:
        raise ValueError(f"{where}.dataset = {name!r}: the ensemble needs a simulated dataset (the solver runs "
                         "on the rainfall members)")
    trained = [e for e in EXPERIMENTS
               if config["experiments"][e]["type"] in TRAINED_KINDS and config["experiments"][e]["dataset"] == name]
    chosen = trained if ENSEMBLE["experiments"] is None else ENSEMBLE["experiments"]
    for e in chosen:
        if e not in trained:
            raise ValueError(f"{where}.experiments: {e!r} is not a trained experiment on dataset {name!r} "
                             f"(those are: {', '.join(trained) or 'none'})")
        if e == SOLVER:
            raise ValueError(f"{where}.experiments: an experiment named {SOLVER!r} would share the reference "
                             f"ensemble's folder results/ensemble/{SOLVER}: rename it")
    if ENSEMBLE["sampler"] not in SAMPLERS:
        raise ValueError(f"{where}.sampler = {ENSEMBLE['sampler']!r} is not one of {', '.join(SAMPLERS)}")
    centre = ENSEMBLE["error_model"].get("centre", DEFAULT_FORECAST_CENTRE)
    if centre not in FORECAST_CENTRES:
        raise ValueError(f"{where}.error_model.centre = {centre!r} is not one of {', '.join(FORECAST_CENTRES)}")
    if ENSEMBLE["anchored"] and centre != "forecast":
        raise ValueError(f"{where}.anchored needs error_model.centre: forecast (centre {centre!r} is the real "
                         "storm, so the solver's control run would be the truth itself)")
    hours = ds["storms"]["hours"]
    if max(ENSEMBLE["hours"]) > hours:
        raise ValueError(f"{where}.hours: hour {max(ENSEMBLE['hours'])} is beyond the {hours}-h storms of {name!r}")
    bad = [d for d in (ENSEMBLE["dems"] or []) if d >= n_dems(name)]
    if bad:
        raise ValueError(f"{where}.dems: {bad} are not DEMs of {name!r} (0..{n_dems(name) - 1})")
    if ENSEMBLE["dressing"] and "val" not in storm_splits(ds):
        raise ValueError(f"{where}.dressing: the dressing is fitted on validation storms, and dataset {name!r} has "
                         "none (set its split.val_shapes or split.val_totals_mm, or dressing: 0)")
    return chosen


ENSEMBLE_EXPERIMENTS = _ensemble_experiments()


def ensemble_dataset(wildcards):
    if ENSEMBLE["dataset"] is None:
        raise ValueError("config: ensemble.dataset is not set: name the dataset whose held-out storms the "
                         "ensemble target forecasts (docs/ensemble.md)")
    return dataset_file(ENSEMBLE["dataset"])


def ensemble_model_inputs(wildcards):
    """The trained model, and with ``nfe: default`` the evaluation that measured a bridge's
    default NFE (the regression's one shot has none to wait for)."""
    inputs = {"model": f"results/{wildcards.experiment}/model.pt"}
    if ENSEMBLE["nfe"] == default_nfe.MEASURED and config["experiments"][wildcards.experiment]["type"] == "piff":
        inputs["metrics"] = f"results/{wildcards.experiment}/{default_nfe.METRICS_FILE}"
    return inputs


def ensemble_member_files():
    """{system: members file} the summary scores, the solver's apart: each experiment's ensemble,
    with ``dressing`` its dressed ensemble as a second system, with ``anchored`` its ensemble
    anchored on the solver's control run as a third, and with both that one dressed as well."""
    files = {e: f"results/ensemble/{e}/members.nc" for e in ENSEMBLE_EXPERIMENTS}
    if ENSEMBLE["dressing"]:
        files.update({f"{e}{DRESSED_SUFFIX}": f"results/ensemble/{e}/members_dressed.nc" for e in ENSEMBLE_EXPERIMENTS})
    if ENSEMBLE["anchored"]:
        files.update({f"{e}{ANCHORED_SUFFIX}": f"results/ensemble/{e}/members_anchored.nc"
                      for e in ENSEMBLE_EXPERIMENTS})
    if ENSEMBLE["anchored"] and ENSEMBLE["dressing"]:
        files.update({f"{e}{ANCHORED_SUFFIX}{DRESSED_SUFFIX}": f"results/ensemble/{e}/members_anchored_dressed.nc"
                      for e in ENSEMBLE_EXPERIMENTS})
    return files


def ensemble_options(keys):
    """The ensemble settings a rule depends on (sorted JSON params)."""
    return as_json({k: ENSEMBLE[k] for k in keys})
