"""``piff train``: train one experiment on one rank; for DDP, ``python -m piff.training.launch``
(torchrun on one node, srun + torchrun on several) starts ``python -m piff.training`` (this same
command) on every rank, as the Snakemake rule does.

Exit codes: 0 finished; 75 stopped early on the wall-time budget or a SIGTERM/SIGUSR1 after
saving (rerun to resume); 1 diverged (NaN); 2 bad input.
"""

from __future__ import annotations

import logging

from piff.commands import json_object, positive_float, positive_int

log = logging.getLogger("piff.train")


def add_arguments(p) -> None:
    p.add_argument("--hparams", required=True, help="experiment options as JSON (an experiments: entry)")
    p.add_argument("--dataset", required=True, help="data/<dataset>/dataset.nc")
    p.add_argument("--workdir", required=True, help="results/<name>: checkpoints/, loss.csv, options.yaml")
    p.add_argument("--out", required=True, help="final model file (written last, atomically)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--wall-time-min", type=positive_float, default=None,
                   help="save and exit with status 75 before this many minutes (a rerun resumes)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads per rank")
    p.add_argument("--log-every", type=positive_int, default=None, help="override the experiment's log_every")
    p.add_argument("--keep-checkpoints", type=positive_int, default=None, help="override keep_checkpoints")


def run(args) -> int:
    from piff import logs
    from piff.atomic import check_output
    from piff.training.config import ExperimentConfig
    from piff.training.train import TrainingDiverged, train

    logs.setup()
    check_output(args.out, inputs=(args.dataset,), suffixes=(".pt",), create_folder=True)  # --out in --workdir
    hparams = json_object("--hparams", args.hparams, '{"steps": 600}')
    cfg = ExperimentConfig.from_dict(hparams, source="--hparams")
    cfg.log_every = args.log_every or cfg.log_every
    cfg.keep_checkpoints = args.keep_checkpoints or cfg.keep_checkpoints
    try:
        return train(cfg, args.dataset, args.workdir, args.out, device=args.device,
                     wall_time_min=args.wall_time_min, threads=args.threads)
    except TrainingDiverged as err:
        log.error("%s", err)
        return 1
