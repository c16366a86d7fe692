"""Checks of the files the workflow ships: the conda env, the profiles, the schema, the embedded configs."""

from __future__ import annotations

import re
import shlex
import shutil

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


def _documented_commands(text: str, prefix: str) -> list[list[str]]:
    """The snakemake command lines of a README or a config comment (``prefix`` stripped from
    every line, backslash continuations joined, trailing comments dropped), without the program
    name and without --cores / --profile (a dry run plans the same jobs on any executor)."""
    lines = [line[len(prefix):] if line.startswith(prefix) else line for line in text.splitlines()]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    commands = []
    for line in joined.splitlines():
        if not line.split(" ", 1)[0].endswith("snakemake"):
            continue  # prose
        words = shlex.split(line.split(" #", 1)[0])
        if words:
            args, rest = [], iter(words[1:])
            for w in rest:
                if w in ("--cores", "--profile"):
                    next(rest)
                else:
                    args.append(w)
            commands.append(args)
    return commands


def test_documented_commands_plan_only_their_targets(tmp_path):
    """Greedy options (--forcerun, --configfile) swallow the targets written after them: the
    README's forced retrain must plan one training, not the whole job, and config/paper.yaml's
    command its own experiment (each run as written, in a folder holding the repository's config/)."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    readme = [c for c in _documented_commands((REPO / "README.md").read_text(), "") if "--forcerun" in c]
    assert readme, "the README shows how to retrain"
    for args in readme:
        jobs = jobs_run(snakemake(tmp_path, *args, "-n"))
        assert jobs["train"] == 1 and "sample" not in jobs and "all" not in jobs, (args, jobs)
    paper = _documented_commands((REPO / "config" / "paper.yaml").read_text(), "#   ")
    assert len(paper) == 2
    jobs = jobs_run(snakemake(tmp_path, *paper[0], "-n"))
    assert jobs["train"] == 1 and jobs["sample"] == 1 and "all" not in jobs, jobs
    jobs = jobs_run(snakemake(tmp_path, *paper[1], "-n"))
    assert jobs["train"] == 3 and jobs["evaluate"] == 5 and "all" not in jobs, jobs


def test_a_key_written_twice_in_a_config_file_is_an_error(tmp_path):
    """PyYAML keeps the last of two equal keys; the workflow must refuse the file instead."""
    text = (REPO / "config" / "config.yaml").read_text()
    twice = tmp_path / "twice.yaml"
    twice.write_text(text + "\ndatasets: {}\n")
    out = snakemake(tmp_path, "-n", configfile=twice, check=False)
    assert out.returncode != 0
    assert f"{twice}: not valid YAML: duplicate key 'datasets'" in out.stdout + out.stderr
