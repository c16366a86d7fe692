"""Checks of the files the workflow ships: the conda env, the profiles, the schema, the embedded configs."""

from __future__ import annotations

import re

import tomllib
import yaml
from workflow_utils import REPO, jobs_run, snakemake


def _names(requirements):
    return {re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_conda_env_lists_every_package_dependency():
    # --sdm conda jobs import piff from the checkout, so the env must carry all its dependencies
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "envs" / "piff.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert _names(deps) == _names(pip)
    assert "torch==2.13.0" in pip  # a looser pin pulls a multi-GB CUDA build


def test_default_profile_runs_locally():
    profile = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    assert "executor" not in profile  # loaded automatically: never a cluster executor here
    slurm = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert slurm["executor"] == "slurm"


def test_every_rule_has_a_log_and_heavy_rules_a_benchmark():
    text = "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    rules = re.split(r"\nrule ", text)[1:]
    heavy = {"simulate", "coarse_prior", "spm", "assemble", "train", "sample", "evaluate", "ensemble_solver",
             "ensemble", "ensemble_summary"}
    for body in rules:
        name = body.split(":", 1)[0]
        assert "\n    log:" in body, f"rule {name} has no log"
        if name in heavy:
            assert "\n    benchmark:" in body, f"rule {name} has no benchmark"


def test_embedded_configs_plan_their_jobs(tmp_path):
    """The default config plans the main job, and config/paper.yaml the paper-scale experiments:
    every experiment valid (batch 128 = 4 ranks x micro-batch 16 x 2 accumulation steps), the
    paper dataset's simulate jobs fanned out in chunks of storms."""
    main = snakemake(tmp_path, "-n", "--configfile", str(REPO / "config" / "config.yaml"))
    assert jobs_run(main)["simulate"] == 5 and jobs_run(main)["train"] == 3
    assert jobs_run(main)["coarse_prior"] == 1  # one job per chunk of storms, every DEM in it
    paper = snakemake(tmp_path, "results/paper/samples.nc", "results/paper_unet/metrics.json", "-n", "--configfile",
                      str(REPO / "config" / "config.yaml"), str(REPO / "config" / "paper.yaml"))
    jobs = jobs_run(paper)
    assert jobs["train"] == 2 and jobs["simulate"] == 20 * 26  # 20 DEMs x 26 chunks of 7 storms
    assert jobs["coarse_prior"] == 26


def test_a_key_written_twice_in_a_config_file_is_an_error(tmp_path):
    """PyYAML keeps the last of two equal keys; the workflow must refuse the file instead."""
    text = (REPO / "config" / "config.yaml").read_text()
    twice = tmp_path / "twice.yaml"
    twice.write_text(text + "\ndatasets: {}\n")
    out = snakemake(tmp_path, "-n", configfile=twice, check=False)
    assert out.returncode != 0
    assert f"{twice}: not valid YAML: duplicate key 'datasets'" in out.stdout + out.stderr
