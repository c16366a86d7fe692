"""GPU checks of piff on one CUDA device (issue 14, item 6): the figures a CPU cannot give.

Parts, one sub-command each (``bash bench/gpu.sh`` runs them all, each under a time limit):

* ``train-step``: one optimiser step of the paper experiment (config/paper.yaml ``paper``: the
  172 M-parameter ``paper`` network, x0 prediction, physics loss, bf16 autocast from ``amp: true``)
  on one device: global batch 128 = micro-batch 16 x 8 accumulation steps of 256 x 256 maps, then
  clipping, AdamW and the EMA, as piff.training.train runs them (Objective), on synthetic maps
  (their values do not change the cost).
* ``ddp``: (a) the real trainer, ``torchrun --standalone --nproc-per-node=1 -m piff.training``,
  with the paper experiment (same batch) on a small dataset that the solver builds on the CPU
  (piff.data.preprocess.build_dataset_in, 64 x 64 maps); per-step times from its timing.json.
  With one rank the trainer makes no process group (piff.training.distributed), so (b) runs
  the ``train-step`` step again under torchrun with an NCCL process group and the network in
  DDP (Objective.wrap_ddp; gradients synchronised on the last micro-batch only, as the trainer
  does), and times an NCCL all-reduce of a gradient-sized buffer.
* ``sample``: latency of piff.model.sample (Euler, float32 and inference mode, as piff sample and
  piff predict run it) with the paper network at NFE 1, 2, 5 and 10, 256 x 256 maps, batch 1 and 24.
* ``solver``: piff.hydro.solver.simulate (compile=True) with all 182 storms of the ``paper``
  dataset (config/config.yaml) batched, 24 h, on its first DEM (256 x 256 synthetic lowland, 20 m).
  The batch steps until its slowest storm reaches each hour: the three 720 mm storms alone took
  39,366 steps on a CPU, so expect ~40,000 steps of 182 x 65,536 cells.

Timing: torch.cuda.synchronize() before and after each timed region, perf_counter, the median
of a few repeats after a warm-up; peak memory from torch.cuda.max_memory_allocated. Each part
merges its figures into OUT/gpu.json; ``report`` adds each part's status, the card and the
versions, and writes OUT/gpu.md.

On the device machine, through the device tool: ``run`` with command ``bash bench/gpu.sh`` and
timeout_s 580 (the parts took ~6 min on an H200 on 2026-12-04; their limits add up to 550 s). The
ddp part's dataset needs netCDF4 and pyflwdir, which the device image lacks: put their wheels in ``.whl``
(netCDF4, cftime, pyflwdir, affine for cp312 manylinux: the device README's ``pip download``
line, after ``echo /.whl/ >> .git/info/exclude``) and add ``carry: [".whl"]``; gpu.sh installs
them. Without them the trainer run is skipped and the ddp part fails, the rest still runs.

``--smoke`` shrinks every part (tiny network, 16-32 cells, 4 storms for 1 h, 2 steps) to check the
code on a CPU in seconds: ``bash bench/gpu.sh --smoke`` or ``python bench/gpu.py PART --device cpu --smoke``
(tests/test_bench_gpu.py). ``--microbatch 32`` runs the batch of 128 as 32 x 4 instead.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import synthetic_batch  # noqa: E402  (bench/model.py)

from piff.model import Normaliser, sample  # noqa: E402
from piff.training.config import ExperimentConfig  # noqa: E402
from piff.training.objective import Objective  # noqa: E402
from piff.yaml_files import load_yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = "gpu.json"
PARTS = ("train-step", "ddp", "sample", "solver")
GIB = 2**30


def sizes(smoke: bool) -> SimpleNamespace:
    """Every size of the checks: the paper's, or the --smoke ones (seconds on a CPU)."""
    if smoke:
        return SimpleNamespace(preset="tiny", map=32, batch=4, micro=2, steps=2, trainer_steps=2, data_map=16,
                               data_hours=2, sample_batches=(1, 2), nfe=(1, 2), repeats=1, terrain=16, storms=4,
                               hours=1)
    # trainer_steps: the first three pay for cuDNN's algorithm choice and the allocator
    return SimpleNamespace(preset="paper", map=256, batch=128, micro=16, steps=3, trainer_steps=6, data_map=64,
                           data_hours=12, sample_batches=(1, 24), nfe=(1, 2, 5, 10), repeats=3, terrain=256,
                           storms=None, hours=24)


def paper_experiment(s, **overrides) -> ExperimentConfig:
    """config/paper.yaml's ``paper`` experiment on one rank: the same global batch, by more
    accumulation steps (paper: 4 ranks x 16 x 2; here 1 x 16 x 8)."""
    exp = load_yaml(REPO / "config" / "paper.yaml")["experiments"]["paper"]
    return ExperimentConfig.from_dict({**exp, "model": s.preset, "batch_size": s.batch, "microbatch": s.micro,
                                       "nproc": 1, **overrides})


# ----------------------------------------------------------------------------- timing and results
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn, device, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``repeats`` calls after ``warmup`` untimed ones (cuDNN algorithm
    choice, allocator growth); the device is drained before and after each timed call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def reset_peak(device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None


def fig(what: str, value, unit: str) -> dict:
    return {"what": what, "value": None if value is None else float(value), "unit": unit}


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def record(out, part: str, device, settings: dict, figures: list, error: str | None = None) -> None:
    """Merge one part's results into OUT/gpu.json (the parts run one after another)."""
    path = Path(out) / RESULTS
    data = json.loads(path.read_text()) if path.exists() else {"parts": {}}
    entry = {"device": device_label(device), "settings": settings,
             "figures": [f for f in figures if f["value"] is not None]}  # no memory figures on a CPU
    if error:
        entry["error"] = error
    known = data["parts"].get(part, {}).get("figures", [])
    data["parts"][part] = entry
    path.write_text(json.dumps(data, indent=1) + "\n")
    for f in (f for f in entry["figures"] if f not in known):  # each figure printed once
        print(f"{part}: {f['what']}: {f['value']:.4g} {f['unit']}", flush=True)


def resolve(device: str) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("gpu.py: --device cuda but torch sees no CUDA device")
        dev = torch.device("cuda", dev.index if dev.index is not None else int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(dev)
    return dev


# ----------------------------------------------------------------------------- train-step
def optimiser_step(s, device, ddp: bool = False):
    """(config, objective, step): ``step()`` is one optimiser step as piff.training.train runs
    it: accumulation (under DDP the gradients sync on the last micro-batch only), clipping,
    AdamW, EMA, and the host read of the loss that the trainer's NaN guard does."""
    cfg = paper_experiment(s)
    batch = synthetic_batch(cfg.microbatch, s.map)
    norm = Normaliser.fit(batch["depth"].numpy(), batch["elevation"].numpy()).state_dict()
    batch = {k: v.to(device) for k, v in batch.items()}
    torch.manual_seed(0)
    objective = Objective(cfg, normaliser_state=norm, device=device)
    model = objective.wrap_ddp(SimpleNamespace(enabled=True, device=device)) if ddp else objective.model
    optimizer = objective.optimizer()
    generator = torch.Generator(device=device).manual_seed(0)  # training_loss draws on the batch's device

    def step():
        for micro in range(cfg.accumulation):
            last = micro == cfg.accumulation - 1
            with nullcontext() if last or not ddp else model.no_sync():
                loss, _ = objective.loss(model, batch, generator)
                (loss / cfg.accumulation).backward()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise RuntimeError(f"loss is {value}")
        torch.nn.utils.clip_grad_norm_(objective.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        objective.update_ema()

    return cfg, objective, step


def step_settings(cfg, s, device) -> dict:
    return {"preset": cfg.model, "map": s.map, "batch": cfg.batch_size, "microbatch": cfg.microbatch,
            "accumulation": cfg.accumulation, "bf16_autocast": cfg.amp and device.type == "cuda",
            "prediction": cfg.prediction, "physics": cfg.use_physics, "timed_steps": s.steps}


def train_step(a, s, device) -> None:
    cfg, objective, step = optimiser_step(s, device)
    reset_peak(device)
    seconds = median_seconds(step, device, s.steps)
    params = sum(p.numel() for p in objective.parameters())
    what = f"{cfg.model}, batch {cfg.batch_size} = {cfg.microbatch} x {cfg.accumulation}, {s.map}x{s.map}"
    record(a.out, "train-step", device, {**step_settings(cfg, s, device), "parameters": params}, [
        fig(f"optimiser step ({what})", seconds, "s"),
        fig(f"training throughput ({what})", cfg.batch_size / seconds, "maps/s"),
        fig("peak memory, training step", peak_gib(device), "GiB")])


# ----------------------------------------------------------------------------- ddp
def torchrun(*args) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1", *map(str, args)]


def run_logged(cmd) -> str | None:
    """Run ``cmd`` (gpu.sh's time limit stops it with this process), echo the end of its
    output; None when it worked, else its exception line (torchrun ends with its own summary)."""
    print("$", " ".join(cmd[:8]), "...", flush=True)
    proc = subprocess.run(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    print(proc.stdout[-8000:], flush=True)
    if proc.returncode == 0:
        return None
    lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
    raised = [ln for ln in lines if re.match(r"[\w.]*(Error|Exception|Diverged)\b", ln) and "ChildFailed" not in ln]
    return f"exit {proc.returncode}: " + (raised[-1] if raised else " | ".join(lines[-3:]))[-600:]


def small_dataset(folder: Path, s) -> Path:
    """A real dataset from the solver on the CPU: 2 DEMs x 6 training storms x data_hours maps
    (>= 128, one global batch); the smoke run keeps SMOKE_DATASET's 16 x 16 cells."""
    from piff.data.preprocess import SMOKE_DATASET, build_dataset_in

    cfg = json.loads(json.dumps(SMOKE_DATASET))
    cfg["terrain"]["size"] = s.data_map
    cfg["storms"].update(shapes=["uniform", "scs_type2", "chicago_r0.5", "huff_q1"], hours=s.data_hours)
    cfg["solver"]["compile"] = s.data_map > 32  # the CPU's compiled fast path pays for itself from 64 x 64
    cfg["coarse_prior"] = {"enabled": False}  # the paper experiment trains on the SPM prior
    return build_dataset_in(folder, cfg, name="gpu")


def ddp(a, s, device) -> None:
    """The DDP step first (no dataset needed), then the trainer; figures are recorded after
    each, so that a part stopped at its time limit keeps what it measured."""
    cfg = paper_experiment(s)
    steps = s.trainer_steps
    settings = {**step_settings(cfg, s, device), "trainer_steps": steps, "trainer_map": s.data_map,
                "ddp_backend": "nccl" if device.type == "cuda" else "gloo"}
    figures, errors = [], []

    def save():
        record(a.out, "ddp", device, settings, figures, "; ".join(errors) or None)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        result = tmp / "ddp_step.json"
        error = run_logged(torchrun(__file__, "ddp-step", "--device", device.type, "--result", result,
                                    *(["--smoke"] if a.smoke else []),
                                    *(["--microbatch", a.microbatch] if a.microbatch else [])))
        if error:
            errors.append(f"DDP step: {error}")
        else:
            figures += json.loads(result.read_text())
        save()
        missing = [m for m in ("netCDF4", "pyflwdir") if importlib.util.find_spec(m) is None]
        if missing:
            errors.append(f"trainer run skipped: its dataset needs {', '.join(missing)} (wheels in .whl, see "
                          "bench/gpu.py)")
        else:
            t0 = time.perf_counter()
            dataset = small_dataset(tmp / "data", s)
            figures.append(fig(f"dataset build, solver on the CPU, {s.data_map}x{s.data_map}",
                               time.perf_counter() - t0, "s"))
            save()
            work = tmp / "run"
            hp = paper_experiment(s, steps=steps, log_every=1, ckpt_every=steps, wall_time_budget_min=None).to_dict()
            error = run_logged(torchrun("-m", "piff.training", "--hparams", json.dumps(hp), "--dataset", dataset,
                                        "--workdir", work, "--out", work / "model.pt", "--device", device.type))
            if error:
                errors.append(f"trainer: {error}")
            else:
                from piff.training.train import TIMING_FILE

                seconds = json.loads((work / TIMING_FILE).read_text())["step_seconds"]
                median = float(np.median(seconds[min(3, len(seconds) - 1):]))
                what = f"batch {cfg.batch_size} = {cfg.microbatch} x {cfg.accumulation}, {s.data_map}x{s.data_map}"
                figures.append(fig(f"piff.training under torchrun, 1 rank: optimiser step ({what})", median, "s"))
    save()
    if errors:
        sys.exit("ddp: " + "; ".join(errors))


def ddp_step(a, s, device) -> None:
    """Under torchrun: a process group (NCCL on CUDA, gloo on a CPU, as the trainer picks), the
    optimiser step with the network in DDP, and an all-reduce of a gradient-sized buffer."""
    import torch.distributed as dist

    cuda = device.type == "cuda"
    dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
    try:
        cfg, objective, step = optimiser_step(s, device, ddp=True)
        reset_peak(device)
        seconds = median_seconds(step, device, s.steps)
        n = sum(p.numel() for p in objective.parameters())
        grads = torch.ones(n, device=device)
        reduce_s = median_seconds(lambda: dist.all_reduce(grads), device, 5)
        if float(grads[0]) != dist.get_world_size() ** 6:  # six sums of ones over the ranks
            raise RuntimeError(f"all-reduce gave {float(grads[0])}")
        backend = dist.get_backend()
        what = f"batch {cfg.batch_size} = {cfg.microbatch} x {cfg.accumulation}, {s.map}x{s.map}"
        figures = [fig(f"DDP ({backend}, 1 rank) optimiser step ({what})", seconds, "s"),
                   fig("peak memory, DDP step", peak_gib(device), "GiB"),
                   fig(f"all-reduce ({backend}) of {n / 1e6:.1f} M float32 gradients", reduce_s * 1e3, "ms")]
        Path(a.result).write_text(json.dumps([f for f in figures if f["value"] is not None]))
    finally:
        dist.destroy_process_group()


# ----------------------------------------------------------------------------- sample
def sample_part(a, s, device) -> None:
    cfg = paper_experiment(s)
    batch = synthetic_batch(max(s.sample_batches), s.map)
    norm = Normaliser.fit(batch["depth"].numpy(), batch["elevation"].numpy()).state_dict()
    batch = {k: v.to(device) for k, v in batch.items()}
    torch.manual_seed(0)
    objective = Objective(cfg, normaliser_state=norm, device=device)

    def call(b, nfe):
        with torch.inference_mode():
            sample(objective.model, objective.bridge, objective.normaliser, batch["elevation"][:b],
                   batch["prior"][:b], batch["rain_window"][:b], nfe=nfe, method=cfg.sampler)

    figures = []
    for b in s.sample_batches:
        reset_peak(device)
        for nfe in s.nfe:
            seconds = median_seconds(lambda: call(b, nfe), device, s.repeats)  # noqa: B023 (called at once)
            figures.append(fig(f"sample, Euler NFE {nfe}, batch {b}, {s.map}x{s.map}", seconds * 1e3, "ms"))
            if b > 1:
                figures.append(fig(f"sample, Euler NFE {nfe}, batch {b}: per map", seconds * 1e3 / b, "ms"))
        figures.append(fig(f"peak memory, sampling batch {b}", peak_gib(device), "GiB"))
    record(a.out, "sample", device, {"preset": cfg.model, "map": s.map, "sampler": cfg.sampler,
                                     "prediction": cfg.prediction, "dtype": "float32", "repeats": s.repeats}, figures)


# ----------------------------------------------------------------------------- solver
def solver_part(a, s, device) -> None:
    from piff.data.preprocess import boundary_string, make_terrain
    from piff.hydro.solver import simulate
    from piff.hydro.storms import scenario_grid

    ds = load_yaml(REPO / "config" / "config.yaml")["datasets"]["paper"]
    terrain = make_terrain({**ds["terrain"], "size": s.terrain}, 0)
    st = ds["storms"]
    storms = scenario_grid(totals=st["totals_mm"], shapes=st["shapes"], hours=24, cap_mm_per_h=st["cap_mm_per_h"],
                           seed=st["seed"])[:s.storms]
    rain = np.stack([x.rain_mm_per_h for x in storms])
    sv = ds["solver"]
    kw = dict(manning=sv["manning"], alpha=sv["alpha"], theta=sv["theta"], dtype=sv["dtype"],
              compile=sv["compile"] and not a.smoke, boundaries=boundary_string(ds, 0), device=device)
    settings = {"storms": len(storms), "hours": s.hours, "grid": list(terrain.elevation.shape), "dx_m": terrain.dx,
                "boundaries": kw["boundaries"], "compile": kw["compile"], "dtype": sv["dtype"]}
    # warm-up: the same storms (the same shapes, so no recompilation), one hour; recorded at
    # once, so that a run stopped at its time limit still tells the compilation time
    t0 = time.perf_counter()
    simulate(terrain.elevation, terrain.dx, rain, hours=1, **kw)
    sync(device)
    warm = fig("warm-up: compilation + 1 h", time.perf_counter() - t0, "s")
    record(a.out, "solver", device, settings, [warm])
    reset_peak(device)
    t0 = time.perf_counter()
    res = simulate(terrain.elevation, terrain.dx, rain, hours=s.hours, **kw)
    sync(device)
    wall = time.perf_counter() - t0
    n, (ny, nx) = len(storms), terrain.elevation.shape
    what = f"{n} storms batched, {s.hours} h, {ny}x{nx}"
    residual = max(abs(m["relative_residual"]) for m in res.mass_balance)
    record(a.out, "solver", device, settings, [
        fig(f"simulate ({what})", wall, "s"),
        fig("simulate, per storm", wall / n, "s"),
        fig("time steps", res.n_steps, "steps"),
        fig("time per step (all storms)", wall / res.n_steps * 1e3, "ms"),
        warm,
        fig("largest relative mass-balance residual", residual, "1"),
        fig("peak memory, solver", peak_gib(device), "GiB")])


# ----------------------------------------------------------------------------- report
def machine(device_type: str) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
            "nccl": ".".join(map(str, torch.cuda.nccl.version())) if torch.cuda.is_available() else None,
            "device": device_type}
    try:
        info["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        info["nvidia_smi"] = "no CUDA device (nvidia-smi not found or failed)"
    try:
        info["revision"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                          text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        info["revision"] = "unknown"
    info["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return info


def status_text(rc: int) -> str:
    return "ok" if rc == 0 else "timed out" if rc in (124, 137) else f"failed (exit {rc})"


def report(a) -> None:
    """Add each part's exit status (NAME=RC from gpu.sh) and the machine to gpu.json; write gpu.md."""
    path = Path(a.out) / RESULTS
    data = json.loads(path.read_text()) if path.exists() else {"parts": {}}
    data["machine"], data["smoke"] = machine(a.device), a.smoke
    for item in a.status:
        name, rc = item.split("=")
        entry = data["parts"].setdefault(name, {"device": "", "figures": []})
        entry["exit"], entry["status"] = int(rc), status_text(int(rc))
    path.write_text(json.dumps(data, indent=1) + "\n")
    m = data["machine"]
    lines = ["# GPU checks (bench/gpu.sh)" + (" --smoke" if a.smoke else ""), "",
             f"Card: {m['nvidia_smi']}. torch {m['torch']}, CUDA {m['cuda']}, cuDNN {m['cudnn']}, NCCL {m['nccl']}, "
             f"Python {m['python']}. Revision {m['revision']}, {m['date']}.", "",
             "| part | status | what | value | device |", "|---|---|---|---:|---|"]
    for name, entry in data["parts"].items():
        status = entry.get("status", "?")
        for f in entry["figures"] or [{"what": "(no figures)", "value": math.nan, "unit": ""}]:
            lines.append(f"| {name} | {status} | {f['what']} | {f['value']:.4g} {f['unit']} | {entry['device']} |")
    for name, entry in data["parts"].items():
        if entry.get("error"):
            lines.append(f"\n{name}: {entry['error']}")
    lines.append("\nSettings: " + "; ".join(f"{n} `{json.dumps(e.get('settings', {}))}`"
                                           for n, e in data["parts"].items()))
    text = "\n".join(lines) + "\n"
    (Path(a.out) / "gpu.md").write_text(text)
    print(text)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=[*PARTS, "ddp-step", "report"])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the code on a CPU in seconds")
    p.add_argument("--out", default=os.environ.get("OUT", "bench/gpu_out"), help="folder of gpu.json and gpu.md")
    p.add_argument("--microbatch", type=int, default=None, help="train-step/ddp micro-batch (default 16)")
    p.add_argument("--result", help="ddp-step: JSON file of its figures")
    p.add_argument("status", nargs="*", help="report: NAME=EXIT_STATUS of each part")
    a = p.parse_intermixed_args(argv)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    if a.part == "report":
        return report(a)
    s = sizes(a.smoke)
    if a.microbatch:
        s.micro = a.microbatch
    device = resolve(a.device)
    {"train-step": train_step, "ddp": ddp, "ddp-step": ddp_step, "sample": sample_part,
     "solver": solver_part}[a.part](a, s, device)


if __name__ == "__main__":
    main()
