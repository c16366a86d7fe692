"""The training loop: DDP, gradient accumulation, checkpoints every ``ckpt_every`` steps,
exact resume, NaN guard and a wall-time budget, in one readable function (see nanoGPT).

The command line is ``piff train`` (``piff.commands.train``, also ``python -m piff.training``
under torchrun); launch several ranks with ``python -m piff.training.launch --nproc N
[--nodes M] -- ARGS`` (the Snakemake rule does). :func:`train` returns 0 when finished and
75 (``EXIT_RESUMABLE``) when it stopped early after saving.
"""

from __future__ import annotations

import logging
import math
import random
import signal
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from piff import __version__
from piff.atomic import atomic_write_bytes
from piff.data.format import file_sha256
from piff.data.torch_dataset import FloodMapDataset
from piff.errors import PiffInputError
from piff.model.store import serialize
from piff.training import distributed
from piff.training.checkpoint import CheckpointDir, prepare_run_dir
from piff.training.config import ExperimentConfig
from piff.training.objective import Objective

log = logging.getLogger("piff.train")
EXIT_RESUMABLE = 75  # EX_TEMPFAIL: stopped on purpose, a rerun resumes
TIMING_FILE = "timing.json"  # per-step wall times of the run, beside loss.csv
SYMMETRY_STREAM = 2  # names the symmetry draws' random stream (piff.data.symmetry)


class TrainingDiverged(RuntimeError):
    pass


class StopRequested:
    """Set by SIGTERM/SIGUSR1 (preemption, Slurm's pre-time-limit signal)."""

    def __init__(self):
        self.flag = False
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self._handler)

    def _handler(self, signum, frame):
        log.warning("received signal %d: will save and stop after this step", signum)
        self.flag = True


# ----------------------------------------------------------------------------- data order
def microbatch_indices(n_samples: int, cfg: ExperimentConfig, step: int, rank: int, micro: int) -> list[int]:
    """Sample indices of one micro-batch, a pure function of (seed, step, rank, micro).

    Each epoch is a seeded permutation; global batch ``step`` is a contiguous slice of it and
    rank ``r`` takes every ``world``-th sample of that slice. Because the data order is a
    function of the step, resuming at step k reads exactly what the uninterrupted run read.
    """
    epoch, pos = divmod(step, n_samples // cfg.batch_size)  # >= 1 batch: train() checks the split first
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    return _my_slice(torch.randperm(n_samples, generator=g), cfg, pos, rank, micro).tolist()


def microbatch_symmetry_draws(n_samples: int, cfg: ExperimentConfig, step: int, rank: int, micro: int) -> list:
    """One draw in [0, 1) per sample of the micro-batch, which picks its grid symmetry
    (``augment: symmetry``): like the data order, a pure function of (seed, step, rank, micro),
    from a stream of its own, so resume stays exact and the data order is the one without it."""
    epoch, pos = divmod(step, n_samples // cfg.batch_size)
    draws = np.random.default_rng([cfg.seed, epoch, SYMMETRY_STREAM]).random(n_samples)
    return _my_slice(draws, cfg, pos, rank, micro).tolist()


def _my_slice(epoch_sequence, cfg: ExperimentConfig, pos: int, rank: int, micro: int):
    batch = epoch_sequence[pos * cfg.batch_size:(pos + 1) * cfg.batch_size]
    mine = batch[rank::cfg.nproc]
    return mine[micro * cfg.microbatch:(micro + 1) * cfg.microbatch]


def collate(dataset, indices, device, symmetry_draws=None) -> dict:
    samples = ([dataset[i] for i in indices] if symmetry_draws is None
               else [dataset.transformed(i, u) for i, u in zip(indices, symmetry_draws, strict=True)])
    batch = torch.utils.data.default_collate(samples)
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


# ----------------------------------------------------------------------------- schedule
def lr_lambda(cfg: ExperimentConfig):
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "cosine":
            frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
            return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        if cfg.lr_schedule == "step":
            return 0.99 ** (step // 1000)  # PIFF's StepLR(0.99 every 1000 steps)
        return 1.0

    return f


# ----------------------------------------------------------------------------- RNG state
def rng_state(generator: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
             "objective": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    generator.set_state(state["objective"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_rng_states(d: distributed.Dist, generator) -> list:
    """Every rank's RNG state, collected on all ranks (checkpoints hold them all)."""
    mine = rng_state(generator)
    if not d.enabled:
        return [mine]
    out = [None] * d.world
    torch.distributed.all_gather_object(out, mine)
    return out


# ----------------------------------------------------------------------------- the loop
def train(cfg: ExperimentConfig, dataset_path, workdir, out_path, *, device: str = "auto",
          wall_time_min: float | None = None, threads: int | None = None) -> int:
    t_start = time.monotonic()
    d = distributed.setup(device)
    if threads:
        torch.set_num_threads(threads)
    if d.world != cfg.nproc:
        raise PiffInputError("nproc", f"the experiment asks for {cfg.nproc} ranks but {d.world} were launched "
                                      f"(use torchrun --nproc-per-node={cfg.nproc})")
    workdir, out_path = Path(workdir), Path(out_path)
    stop = StopRequested()
    budget_s = 60.0 * (wall_time_min if wall_time_min is not None else (cfg.wall_time_budget_min or math.inf))

    data = FloodMapDataset(dataset_path, "train", prior=cfg.prior, with_physics=cfg.use_physics)
    if len(data) < cfg.batch_size:  # before the run folder is made or a line is logged
        raise PiffInputError(dataset_path, f"batch_size {cfg.batch_size} exceeds the {len(data)} maps of the "
                                           "training split; lower batch_size or use a larger dataset")
    if cfg.augment == "symmetry" and d.is_master:
        counts = [len(g) for g in data.symmetries]  # parses the boundaries: a bad one fails here, named
        log.log(logging.INFO if max(counts) > 1 else logging.WARNING,
                "augment: symmetry: %s grid symmetries per training DEM%s", counts,
                "" if max(counts) > 1 else " (only the identity: the augmentation changes nothing)")
    dataset_sha = d.from_master(lambda: file_sha256(dataset_path))  # read the file once, not per rank
    fingerprint = cfg.fingerprint(dataset_sha)
    ckpts = CheckpointDir(workdir, cfg.keep_checkpoints)
    if d.is_master:
        mode = prepare_run_dir(ckpts, fingerprint)
        log.info("%s run %s (fingerprint %s), %d ranks on %s, %d training maps",
                 mode, workdir.name, fingerprint, d.world, d.device, len(data))
    d.barrier()
    state = ckpts.newest_valid(fingerprint)

    torch.manual_seed(cfg.seed)  # identical initial weights (and EMA) on every rank
    objective = Objective(cfg, data if state is None else None,
                          normaliser_state=None if state is None else state["normaliser"], device=d.device)
    seed = cfg.seed + 7919 * d.rank  # then different noise on every rank, reproducibly
    torch.manual_seed(seed), np.random.seed(seed % 2**32), random.seed(seed)
    # on the training device: torch.rand/randn on a GPU refuse a CPU generator (the CPU stream,
    # and so every CPU result, is unchanged)
    generator = torch.Generator(device=d.device).manual_seed(seed)
    optimizer = objective.optimizer()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    step, history = 0, []
    if state is not None:
        objective.load_state_dict(state["objective"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, history = state["step"], state["history"]
        set_rng_state(state["rng"][d.rank], generator)
    model = objective.wrap_ddp(d)

    save_seconds = [0.0]

    def save(reason: str) -> None:
        t_save = time.monotonic()
        rngs = gather_rng_states(d, generator)
        if d.is_master:
            per_epoch = len(data) // cfg.batch_size
            path = ckpts.save({
                "step": step, "fingerprint": fingerprint, "objective": objective.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rngs,
                "data_position": {"epoch": step // per_epoch, "batch_in_epoch": step % per_epoch},
                "normaliser": objective.normaliser.state_dict(), "history": history,
                "train_config": cfg.to_dict(), "piff_version": __version__}, step)
            log.info("saved %s (%s)", path, reason)
        d.barrier()
        save_seconds[0] = max(save_seconds[0], time.monotonic() - t_save)

    step_times = []
    while step < cfg.steps:
        t0 = time.monotonic()
        model.train()
        loss_sum = torch.zeros((), device=d.device)
        parts = {}
        for micro in range(cfg.accumulation):
            draws = (microbatch_symmetry_draws(len(data), cfg, step, d.rank, micro)
                     if cfg.augment == "symmetry" else None)
            batch = collate(data, microbatch_indices(len(data), cfg, step, d.rank, micro), d.device, draws)
            sync = nullcontext() if micro == cfg.accumulation - 1 or not d.enabled else model.no_sync()
            with sync:
                loss, logs = objective.loss(model, batch, generator)
                (loss / cfg.accumulation).backward()
            loss_sum += loss.detach() / cfg.accumulation
            for k, v in logs.items():
                parts[k] = parts.get(k, 0.0) + float(v) / cfg.accumulation
        # one all-reduce carries the loss (for the NaN guard and the log) and the stop vote
        stop_vote = float(stop.flag or time.monotonic() - t_start > budget_s - _margin(step_times, save_seconds[0]))
        reduced = d.all_reduce_sum(torch.stack([loss_sum, torch.tensor(stop_vote, device=d.device)]))
        mean_loss = float(reduced[0]) / d.world
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(f"loss is {mean_loss} at step {step + 1}; the last good checkpoint is kept "
                                   f"in {ckpts.path}")
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(objective.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        objective.update_ema()
        step += 1
        step_times.append(time.monotonic() - t0)
        lr = scheduler.get_last_lr()[0]
        history.append({"step": step, "loss": mean_loss, "lr": lr, **parts})
        if d.is_master and (step % cfg.log_every == 0 or step == cfg.steps or step == 1):
            sps = cfg.batch_size / np.median(step_times[-20:])
            eta = (cfg.steps - step) * np.median(step_times[-20:])
            log.info("step %d/%d loss %.5f lr %.2e %.1f samples/s ETA %s", step, cfg.steps, mean_loss, lr, sps,
                     _hms(eta))
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save("periodic" if step < cfg.steps else "final step")
        if reduced[1] > 0 and step < cfg.steps:
            if step % cfg.ckpt_every:
                save("stopping early")
            log.warning("stopped at step %d before the wall-time budget or on a signal; rerun to resume", step)
            distributed.teardown(d)
            return EXIT_RESUMABLE

    if d.is_master:
        write_outputs(objective, optimizer, scheduler, cfg, fingerprint, data, dataset_sha, step, history,
                      out_path, workdir, step_times)
        ckpts.mark_completed(fingerprint)
    d.barrier()
    distributed.teardown(d)
    return 0


def _margin(step_times: list, save_s: float) -> float:
    """Seconds to keep in hand before the budget: two slow steps, the slowest save so far
    (or 5 s before the first one) and 1 s for the exit."""
    return 2.0 * max(step_times[-20:], default=0.0) + (save_s or 5.0) + 1.0


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def write_outputs(objective, optimizer, scheduler, cfg, fingerprint, data, dataset_sha, step, history,
                  out_path: Path, workdir: Path, step_times=()) -> None:
    """model.pt (last, atomically), options.yaml, loss.csv, loss.png and timing.json (the wall
    time of every optimiser step this process ran: the steps since the last resume)."""
    import json

    import yaml

    write_loss_curve(history, workdir / "loss.csv", workdir / "loss.png")
    timing = {"global_batch": cfg.batch_size, "ranks": cfg.nproc, "step_seconds": [float(t) for t in step_times]}
    atomic_write_bytes(workdir / TIMING_FILE, json.dumps(timing).encode())
    meta = {"piff_version": __version__, "fingerprint": fingerprint, "step": step, "train_config": cfg.to_dict(),
            "dataset": str(data.path), "dataset_sha256": dataset_sha, "cell_size_m": data.dx,
            "grid_shape": list(data.shape), "rain_max_mm_per_h": float(data.rainfall[data.storm_rows].max()),
            **objective.metadata()}
    (workdir / "options.yaml").write_text(yaml.safe_dump(meta, sort_keys=True))
    payload = {**objective.export(), "optimizer": optimizer.state_dict(), "sched": scheduler.state_dict(),
               "piff": meta}
    atomic_write_bytes(out_path, serialize(payload))
    log.info("wrote %s", out_path)


def write_loss_curve(history, csv_path: Path, png_path: Path) -> None:
    keys = list(history[0]) if history else ["step", "loss", "lr"]
    lines = [",".join(keys)] + [",".join(f"{h.get(k, '')}" for k in keys) for h in history]
    atomic_write_bytes(csv_path, ("\n".join(lines) + "\n").encode())
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [h["step"] for h in history]
    for k in keys:
        if k not in ("step", "lr"):
            ax.plot(steps, [h[k] for h in history], label=k, lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
