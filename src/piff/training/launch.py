"""Start DDP training the right way for where it runs: one node, or several inside a Slurm job.

    python -m piff.training.launch --nproc N [--nodes M] [--port P] -- <piff.training arguments>

* ``--nodes 1`` (default): ``torchrun --standalone --nproc-per-node=N -m piff.training ...``
  (``--standalone`` picks a free port, so two jobs on one node never clash).
* ``--nodes M`` with M > 1, inside a Slurm allocation of M nodes (rule ``train`` submits it with
  ``mpi="srun"``, ``nodes=M``, ``tasks=M``): one torchrun agent per node through srun,
  joined by a c10d rendezvous on the first host of the allocation::

      srun --nodes=M --ntasks=M --ntasks-per-node=1 [--cpus-per-task=C] --kill-on-bad-exit=1 \\
          torchrun --nnodes=M --nproc-per-node=N --rdzv-backend=c10d \\
          --rdzv-endpoint=<first host>:<port> --rdzv-id=<job id> -m piff.training ...

The command is built by the pure function :func:`build_command`; :func:`main` only gathers the
facts from the environment (job id, node list, CPUs per task: the Snakemake jobstep plugin
removes most SLURM_* variables, so they are asked from ``scontrol show job``), prints the
command and replaces itself with it (``os.execvp``), so signals from Slurm reach torchrun
directly and the exit status is torchrun's.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_MODULE = "piff.training"


class LaunchError(RuntimeError):
    pass


def slurm_port(job_id: str | int | None, base: int = 20000, span: int = 20000) -> int:
    """A rendezvous port derived from the job id: jobs sharing a node get different ports."""
    job = str(job_id) if job_id is not None else ""
    return base + (int(job) % span if job.isdigit() else 0)


def first_host(nodelist: str) -> str:
    """First host of a Slurm node list ("gpu[03-04],gpu07" -> "gpu03") via ``scontrol show hostnames``."""
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                             check=True, timeout=60).stdout.split()
        if out:
            return out[0]
    except (OSError, subprocess.SubprocessError):
        pass
    # no scontrol: the simple forms "a,b" and "n[1-3,7]" by hand
    head = re.split(r",(?![^\[]*\])", nodelist)[0]
    m = re.fullmatch(r"([^\[]*)\[([^\],-]+).*\]", head)
    return m.group(1) + m.group(2) if m else head


@dataclass
class SlurmJob:
    job_id: str
    nodelist: str
    num_nodes: int | None = None
    cpus_per_task: int | None = None


def slurm_job_from_env(env: dict) -> SlurmJob | None:
    """The enclosing Slurm job, from the environment and (for what is missing) ``scontrol show job``."""
    job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    if not job_id:
        return None
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or ""
    num_nodes = env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES")
    cpus = env.get("SLURM_CPUS_PER_TASK")
    if not (nodelist and num_nodes and cpus):
        try:
            info = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True,
                                  check=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError) as e:
            raise LaunchError(f"cannot ask Slurm about job {job_id} (scontrol show job): {e}") from e
        fields = dict(re.findall(r"(\S+?)=(\S*)", info))
        nodelist = nodelist or fields.get("NodeList", "")
        num_nodes = num_nodes or fields.get("NumNodes", "").split("-")[0]
        cpus = cpus or fields.get("CPUs/Task")
    return SlurmJob(job_id=job_id, nodelist=nodelist,
                    num_nodes=int(num_nodes) if str(num_nodes or "").isdigit() else None,
                    cpus_per_task=int(cpus) if str(cpus or "").isdigit() else None)


def build_command(nproc: int, nodes: int, args: Sequence[str], *, module: str = DEFAULT_MODULE,
                  port: int | None = None, rdzv_host: str | None = None, job_id: str | None = None,
                  cpus_per_task: int | None = None, torchrun: Sequence[str] = ("torchrun",)) -> list[str]:
    """The command line that starts ``nproc`` ranks per node on ``nodes`` nodes.

    Pure: everything it needs is an argument. For ``nodes > 1`` the rendezvous host (first node
    of the allocation) and the Slurm job id are required; ``port`` defaults to one derived from
    the job id.
    """
    if nproc < 1 or nodes < 1:
        raise ValueError(f"nproc and nodes must be >= 1 (got nproc={nproc}, nodes={nodes})")
    tail = ["-m", module, *args]
    if nodes == 1:
        return [*torchrun, "--standalone", f"--nproc-per-node={nproc}", *tail]
    if not job_id or not rdzv_host:
        raise LaunchError(f"--nodes {nodes} needs a Slurm allocation of {nodes} nodes (no SLURM_JOB_ID / node list "
                          "here); submit through the slurm profile, or use --nodes 1")
    port = port if port is not None else slurm_port(job_id)
    srun = ["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1"]
    if cpus_per_task:
        # steps do not inherit the job's CPUs per task (and the jobstep plugin drops SLURM_CPUS_PER_TASK):
        # without it a cgroup-confined cluster would pin torchrun and all its ranks to one core
        srun.append(f"--cpus-per-task={cpus_per_task}")
    srun.append("--kill-on-bad-exit=1")
    return [*srun, *torchrun, f"--nnodes={nodes}", f"--nproc-per-node={nproc}", "--rdzv-backend=c10d",
            f"--rdzv-endpoint={rdzv_host}:{port}", f"--rdzv-id={job_id}", *tail]


def torchrun_command() -> list[str]:
    """``torchrun`` next to this interpreter, on PATH, or ``python -m torch.distributed.run``."""
    beside = os.path.join(os.path.dirname(sys.executable), "torchrun")
    if os.access(beside, os.X_OK):
        return [beside]
    found = shutil.which("torchrun")
    return [found] if found else [sys.executable, "-m", "torch.distributed.run"]


def check_gpus(nproc: int, env: dict) -> None:
    """Fail early when fewer GPUs are visible than ranks per node (ranks would share cuda:0 or crash)."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None or visible.strip() in ("", "NoDevFiles"):
        return  # no GPU restriction known: CPU ranks (gloo) or all GPUs of the node
    n = len([d for d in visible.split(",") if d.strip()])
    if 0 < n < nproc:
        raise LaunchError(f"{nproc} ranks per node but only {n} GPU(s) visible (CUDA_VISIBLE_DEVICES={visible}): "
                          f"request gpu={nproc} for rule train (profiles/slurm) or lower the experiment's nproc")


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, rest = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(prog="python -m piff.training.launch",
                                description="Start piff DDP training on one node or across Slurm nodes.",
                                epilog="Arguments after -- go to the training module unchanged.")
    p.add_argument("--nproc", type=int, required=True, help="ranks per node (GPUs per node, or CPU processes)")
    p.add_argument("--nodes", type=int, default=1, help="nodes (>1 only inside a Slurm job of that many nodes)")
    p.add_argument("--port", type=int, default=None, help="multi-node rendezvous port (default: from the job id)")
    p.add_argument("--module", default=DEFAULT_MODULE, help="module each rank runs (default: %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="print the command, do not run it")
    return p.parse_args(argv), rest


def main(argv: Sequence[str] | None = None) -> int:
    args, rest = parse_args(argv)
    env = dict(os.environ)
    try:
        check_gpus(args.nproc, env)
        job = slurm_job_from_env(env) if args.nodes > 1 else None
        if args.nodes > 1:
            if job is None:
                raise LaunchError(f"--nodes {args.nodes} outside a Slurm job: submit with the slurm profile "
                                  "(rule train then asks for mpi='srun', nodes, tasks) or use --nodes 1")
            if job.num_nodes is not None and job.num_nodes < args.nodes:
                raise LaunchError(f"--nodes {args.nodes} but Slurm job {job.job_id} has {job.num_nodes} node(s) "
                                  f"({job.nodelist})")
        cmd = build_command(args.nproc, args.nodes, rest, module=args.module, port=args.port,
                            rdzv_host=first_host(job.nodelist) if job and job.nodelist else None,
                            job_id=job.job_id if job else None,
                            cpus_per_task=job.cpus_per_task if job else None, torchrun=torchrun_command())
    except (LaunchError, ValueError) as e:
        print(f"piff.training.launch: error: {e}", file=sys.stderr)
        return 2
    print(f"piff.training.launch: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    try:
        os.execvp(cmd[0], cmd)
    except OSError as e:
        print(f"piff.training.launch: error: cannot run {cmd[0]}: {e}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main())
