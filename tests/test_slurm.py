"""SLURM: the launcher's command lines, the slurm profile, and runs on a REAL single-node Slurm.

The Slurm tests install munge + Slurm with apt-get when they are missing (root on Debian, as in
CI) and the Snakemake SLURM plugin with pip; they skip only where that is impossible (not
root, no apt-get). tests/slurm_cluster.py starts munged, slurmctld and slurmd and stops them by
pid afterwards, also when a test fails.
"""

from __future__ import annotations

import copy
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_cluster import SlurmCluster, ensure_slurm_installed, ensure_slurm_plugin
from workflow_utils import REPO, SNAKEFILE, TINY_DATASET, write_config

from piff.training import launch
from piff.training.launch import LaunchError, build_command, first_host, slurm_port

PROFILE = REPO / "profiles" / "slurm"
SNAKEMAKE_TIMEOUT = 420  # seconds; snakemake runs under `timeout -s INT` so it never hangs a test


# ----------------------------------------------------------------------------- launcher (pure)
def test_build_command_single_node_is_standalone_torchrun():
    cmd = build_command(4, 1, ["--hparams", "{}", "--out", "m.pt"])
    assert cmd == ["torchrun", "--standalone", "--nproc-per-node=4", "-m", "piff.training",
                   "--hparams", "{}", "--out", "m.pt"]


def test_build_command_multi_node_uses_srun_and_c10d_rendezvous():
    cmd = build_command(4, 3, ["--out", "m.pt"], rdzv_host="gpu03", job_id="4711", cpus_per_task=16)
    assert cmd[:cmd.index("torchrun")] == ["srun", "--nodes=3", "--ntasks=3", "--ntasks-per-node=1",
                                           "--cpus-per-task=16", "--kill-on-bad-exit=1"]
    assert cmd[cmd.index("torchrun"):] == [
        "torchrun", "--nnodes=3", "--nproc-per-node=4", "--rdzv-backend=c10d",
        f"--rdzv-endpoint=gpu03:{slurm_port('4711')}", "--rdzv-id=4711", "-m", "piff.training", "--out", "m.pt"]
    assert build_command(1, 2, [], rdzv_host="h", job_id="1", port=1234)[-4] == "--rdzv-endpoint=h:1234"


def test_build_command_rejects_multi_node_outside_slurm_and_bad_counts():
    with pytest.raises(LaunchError, match="Slurm allocation"):
        build_command(2, 2, [])
    with pytest.raises(ValueError):
        build_command(0, 1, [])


def test_slurm_port_differs_between_jobs_and_first_host_parses_node_lists():
    assert slurm_port("100") != slurm_port("101") and 20000 <= slurm_port("123456789") < 40000
    assert first_host("node07") == "node07"
    assert first_host("gpu[03-04],gpu07") == "gpu03"


def test_launch_main_dry_run_and_gpu_guard(monkeypatch, capsys):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert launch.main(["--nproc", "2", "--dry-run", "--", "--out", "x.pt"]) == 0
    out = capsys.readouterr().out
    assert "--standalone --nproc-per-node=2 -m piff.training --out x.pt" in out
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert launch.main(["--nproc", "2", "--dry-run", "--", "--out", "x.pt"]) == 2  # 2 ranks, 1 GPU
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    for var in ("SLURM_JOB_ID", "SLURM_JOBID"):
        monkeypatch.delenv(var, raising=False)
    assert launch.main(["--nproc", "2", "--nodes", "2", "--dry-run"]) == 2  # not inside a Slurm job


# ----------------------------------------------------------------------------- profile (dry run)
def _tiny_config(work: Path, **experiments) -> Path:
    ds = copy.deepcopy(TINY_DATASET)
    ds["terrain"]["count"] = 1           # 1 DEM x 4 storms in one chunk: 6 jobs in all
    ds["simulate"]["storms_per_job"] = 4
    return write_config(work, {"datasets": {"tiny": ds},
                               "experiments": experiments or {"t": {"dataset": "tiny"}}})


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", ""), "/usr/sbin", "/sbin"])
    return env


def _snakemake(work: Path, *args: str, snakefile: Path = SNAKEFILE, timeout: float = SNAKEMAKE_TIMEOUT,
               env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = ["timeout", "-s", "INT", "-k", "30", str(int(timeout)), sys.executable, "-m", "snakemake",
           "--snakefile", str(snakefile), "--directory", str(work), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=work, env=env or _env(), timeout=timeout + 60)


@pytest.fixture(scope="module")
def slurm_plugin():
    reason = ensure_slurm_plugin()
    if reason:
        pytest.fail(reason)


def test_profile_resources_on_dry_run(tmp_path, slurm_plugin):
    cfg = _tiny_config(tmp_path, one={"dataset": "tiny", "nproc": 2, "microbatch": 8},
                       multi={"dataset": "tiny", "nproc": 4, "nodes": 2, "microbatch": 4})
    proc = _snakemake(tmp_path, "results/one/model.pt", "results/multi/model.pt", "-n", "--profile", str(PROFILE),
                      "--configfile", str(cfg), timeout=180)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-4000:]
    jobs = {m.group(1): m.group(2) for m in re.finditer(
        r"wildcards: experiment=(\w+)\n(?:[^\n]*\n)*?\s+resources: ([^\n]*)", text)}
    one, multi = jobs["one"], jobs["multi"]
    # single node: GPUs = ranks per node through `gpu`, no `tasks` (it would become --ntasks-per-gpu)
    assert "gpu=2" in one and "cpus_per_gpu=4" in one and "nodes=1" in one
    assert "tasks=" not in one and "mpi=" not in one
    assert "mpi=srun" in multi and "tasks=2" in multi and "nodes=2" in multi and "nproc=2" in multi
    assert "launch --nproc 2 --nodes 2 --" in text
    # the profile's simulate resources reach the preprocessing jobs
    assert re.search(r"rule simulate:.*?resources: [^\n]*mem_mb=4000[^\n]*runtime=120", text, re.S)


# ----------------------------------------------------------------------------- a real Slurm
@pytest.fixture(scope="module")
def cluster(slurm_plugin):
    reason = ensure_slurm_installed()
    if reason:
        pytest.skip(reason)
    with SlurmCluster() as c:
        yield c


def _slurm_overrides(cluster: SlurmCluster) -> list[str]:
    """What a test cluster needs on top of profiles/slurm (no slurmdbd, no accounts)."""
    return ["--slurm-status-command", "squeue", "--slurm-no-account", "--slurm-init-seconds-before-status-checks",
            "5", "--slurm-keep-successful-logs", "--jobs", "4",
            "--default-resources", f"slurm_partition={cluster.partition}", "mem_mb=1000", "runtime=10"]


def _jobs_in_squeue(cluster: SlurmCluster) -> list[dict]:
    """All jobs the controller still knows (MinJobAge=600 keeps finished ones): id, name, state, comment."""
    out = cluster.run("squeue", "-h", "-t", "all", "-o", "%i|%j|%T|%k").stdout
    return [dict(zip(("id", "name", "state", "comment"), ln.split("|", 3))) for ln in out.splitlines() if ln]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_preprocessing_runs_through_sbatch_with_the_slurm_profile(tmp_path, cluster):
    from piff.data import format as fmt

    cfg = _tiny_config(tmp_path)
    before = {j["id"] for j in _jobs_in_squeue(cluster)}
    t0 = time.monotonic()
    proc = _snakemake(tmp_path, "data/tiny/dataset.nc", "--profile", str(PROFILE), "--configfile", str(cfg),
                      *_slurm_overrides(cluster), env={**cluster.env(), **_env()})
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{text[-6000:]}\n{cluster.logs()}"
    elapsed = time.monotonic() - t0

    # every job was an sbatch job: the plugin's log per job, and the controller saw them complete
    n_jobs = 6  # terrain, storms, simulate, coarse_prior, spm, assemble
    logs = sorted((tmp_path / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert {p.parent.parent.name for p in logs} >= {"rule_terrain", "rule_storms", "rule_simulate",
                                                   "rule_coarse_prior", "rule_spm", "rule_assemble"}, logs
    ours = [j for j in _jobs_in_squeue(cluster) if j["id"] not in before]
    assert len(ours) == n_jobs, ours
    assert all(j["state"] == "COMPLETED" for j in ours), ours
    rules = {re.sub(r"_wildcards.*", "", j["comment"]).removeprefix("rule_") for j in ours}  # the plugin's --comment
    assert rules == {"terrain", "storms", "simulate", "coarse_prior", "spm", "assemble"}, ours
    submitted = re.findall(r"_slurm_rpc_submit_batch_job: JobId=(\d+)", cluster.slurmctld_log())
    assert {j["id"] for j in ours} <= set(submitted)
    assert "Job stats:" in text and elapsed < SNAKEMAKE_TIMEOUT

    # the outputs are valid
    ds = fmt.open_dataset(tmp_path / "data/tiny/dataset.nc", load=True)
    assert ds.sizes["dem"] == 1 and ds.sizes["storm"] == 4
    assert float(ds["depth"].max()) > 0.0


SRUN_SNAKEFILE = """\
import os
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in ({src!r}, os.environ.get("PYTHONPATH")) if p)

rule all:
    input: "srun.json", "rdzv.json", "job.json"

# two ranks started by srun itself (SLURM_PROCID / SLURM_NTASKS)
rule srun_ranks:
    output: "srun.json"
    resources: mpi="srun", tasks=2, mem_mb=1000, runtime=5
    shell: "{{resources.mpi}} --ntasks={{resources.tasks}} --kill-on-bad-exit=1 python -m piff.training.ddp_check --timeout 60 --out {{output}}"

# the launcher's multi-node command (srun -> 2 torchrun agents -> c10d rendezvous), squeezed onto
# this one node: 2 "nodes" become 2 tasks on one node
rule rdzv:
    output: rdzv="rdzv.json", job="job.json"
    resources: mpi="srun", tasks=2, mem_mb=1000, runtime=5
    shell: "python -c 'import json, os; from piff.training.launch import slurm_job_from_env; print(json.dumps(vars(slurm_job_from_env(dict(os.environ)))))' > {{output.job}} && {rdzv_cmd}"
"""  # noqa: E501


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_srun_ranks_and_the_multi_node_launcher_form_one_process_group(tmp_path, cluster):
    host = socket.gethostname()
    cmd = build_command(1, 2, ["--timeout", "60", "--out", "rdzv.json"], module="piff.training.ddp_check",
                        rdzv_host=host, job_id="$SLURM_JOB_ID", port=slurm_port(os.getpid()),
                        torchrun=launch.torchrun_command())
    squeezed = [{"--nodes=2": "--nodes=1", "--ntasks-per-node=1": "--ntasks-per-node=2"}.get(a, a) for a in cmd]
    assert squeezed != cmd and squeezed[0] == "srun"
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(SRUN_SNAKEFILE.format(src=str(REPO / "src"), rdzv_cmd=" ".join(squeezed)))
    proc = _snakemake(tmp_path, "--profile", str(PROFILE), *_slurm_overrides(cluster), snakefile=snakefile,
                      timeout=300, env={**cluster.env(), **_env()})
    text = proc.stdout + proc.stderr
    logs = "\n".join(p.read_text(errors="replace")[-3000:]
                     for p in (tmp_path / ".snakemake").rglob("slurm_logs/**/*.log"))
    assert proc.returncode == 0, f"{text[-5000:]}\n{logs}\n{cluster.logs()}"

    for name, launcher in (("srun.json", "slurm"), ("rdzv.json", "torchrun")):
        r = json.loads((tmp_path / name).read_text())
        assert r["ok"] and r["world_size"] == 2 and r["ranks_seen"] == [0, 1] and r["rank_sum"] == 1, r
        assert r["launcher"] == launcher and r["slurm_job_id"], r
        assert len({p["pid"] for p in r["processes"]}) == 2, r
    # inside the job the plugin removed SLURM_JOB_NODELIST & co.: the launcher asked scontrol
    job = json.loads((tmp_path / "job.json").read_text())
    assert job["nodelist"] == host and job["num_nodes"] == 1 and job["cpus_per_task"] >= 1, job
