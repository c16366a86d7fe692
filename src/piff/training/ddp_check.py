"""Check that the processes of a launch form ONE torch.distributed process group.

    torchrun --standalone --nproc-per-node=2 -m piff.training.ddp_check --out result.json
    srun --ntasks=2 python -m piff.training.ddp_check --out result.json        # inside sbatch

Every rank joins the group (gloo on CPU, so no GPU is needed), all-reduces its rank id and a
one-hot "I am here" vector, and gathers the hostnames; rank 0 writes a JSON report:

    {"world_size": 2, "ranks_seen": [0, 1], "rank_sum": 1, "expected_rank_sum": 1,
     "hostnames": ["n1", "n1"], "launcher": "slurm", "ok": true}

Rank and world size come from torchrun (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) or, when
those are absent, from Slurm (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID); under Slurm the master
address defaults to the first host of the step's node list and the port to one derived from
the job id. Exit status 0 when the group is complete, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import sys
from pathlib import Path

from piff.training.launch import first_host, slurm_port


def rendezvous_env(env: dict) -> tuple[dict, str]:
    """The RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT to use, and the launcher's name."""
    if "RANK" in env and "WORLD_SIZE" in env:
        out = {k: env[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k in env}
        out.setdefault("LOCAL_RANK", "0")
        return out, "torchrun"
    if "SLURM_PROCID" in env:
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        return {
            "RANK": env["SLURM_PROCID"],
            "WORLD_SIZE": env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS", "1"),
            "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
            "MASTER_ADDR": env.get("MASTER_ADDR") or (first_host(nodelist) if nodelist else "127.0.0.1"),
            "MASTER_PORT": env.get("MASTER_PORT") or str(slurm_port(env.get("SLURM_JOB_ID"))),
        }, "slurm"
    return {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}, "single"


def run(out: Path | None, timeout_s: float = 120.0) -> dict:
    import torch
    import torch.distributed as dist

    rdv, launcher = rendezvous_env(dict(os.environ))
    os.environ.update(rdv)
    rank, world = int(rdv["RANK"]), int(rdv["WORLD_SIZE"])
    host = socket.gethostname()
    if world > 1:
        dist.init_process_group("gloo", rank=rank, world_size=world, init_method="env://",
                                timeout=datetime.timedelta(seconds=timeout_s))
        rank_sum = torch.tensor([float(rank)])
        dist.all_reduce(rank_sum, op=dist.ReduceOp.SUM)
        present = torch.zeros(world)
        present[rank] = 1.0
        dist.all_reduce(present, op=dist.ReduceOp.SUM)
        hosts: list = [None] * world
        dist.all_gather_object(hosts, {"rank": rank, "host": host, "pid": os.getpid(),
                                       "local_rank": int(rdv["LOCAL_RANK"])})
        dist.barrier()
        dist.destroy_process_group()
    else:
        rank_sum, present = torch.tensor([0.0]), torch.ones(1)
        hosts = [{"rank": 0, "host": host, "pid": os.getpid(), "local_rank": 0}]
    ranks_seen = [i for i, v in enumerate(present.tolist()) if v == 1.0]
    expected = world * (world - 1) // 2
    report = {
        "world_size": world,
        "ranks_seen": ranks_seen,
        "rank_sum": int(rank_sum.item()),
        "expected_rank_sum": expected,
        "hostnames": [h["host"] for h in hosts],
        "processes": hosts,
        "master": f"{rdv.get('MASTER_ADDR', '')}:{rdv.get('MASTER_PORT', '')}",
        "launcher": launcher,
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "ok": ranks_seen == list(range(world)) and int(rank_sum.item()) == expected
              and len({h["pid"] for h in hosts}) == world,
    }
    if rank == 0 and out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        os.replace(tmp, out)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m piff.training.ddp_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None, help="JSON report written by rank 0")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the other ranks")
    args = p.parse_args(argv)
    report = run(args.out, args.timeout)
    print(f"rank {os.environ.get('RANK')}/{report['world_size']} on {socket.gethostname()}: "
          f"ranks seen {report['ranks_seen']}, ok={report['ok']}", flush=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
