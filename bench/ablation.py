"""Ablation of the PIFF bridge (issue 12): output parameterisation, prior residual, depth loss,
time density, noise and physics loss, each trained on the same dataset for the same budget and
scored on its test maps at NFE 1 and 10 (``--nfe``), with the same-backbone U-Net regression as the bar.

    python bench/ablation.py                              # every variant, the base experiment's budget
    python bench/ablation.py --steps 600 --jobs 2         # two variants at a time (one thread each)
    python bench/ablation.py --variants velocity,x0 --steps 20 --eval-hours 6 12 --no-write   # smoke run
    python bench/ablation.py --variants x0_residual_l1_phy,unet --seeds 0 1 2 3 --nfe 1 2 5 10 --jobs 2   # seed spread

Every variant is the ``--experiment`` entry of ``--config`` (default: ``base`` of
config/config.yaml, the demo's paper-faithful PIFF) with a few options changed, trained, sampled
and scored through the functions the workflow's rules call: ``piff.training.train.train``
(rule ``train``, via ``piff train``), ``piff.inference.sampling.sample_test_set`` +
``piff.data.format.write_netcdf`` (rule ``sample``, via ``piff sample``) and
``piff.evaluation.evaluate.evaluate_files`` (rule ``evaluate``). Outputs go to
``--out-dir/<variant>/`` (model.pt, loss.csv, samples.nc, metrics.csv / .json); a model.pt whose
fingerprint matches the variant's options and dataset is reused instead of retrained (pass
``--retrain`` to train anyway). The table goes to the ``ablation`` section of docs/benchmarks.md.

With ``--seeds``, every variant is trained once per seed (weights, data order and bridge noise
all follow ``seed``) into ``--out-dir/<variant>-seed<k>/``, and the table gives each variant's
mean and range over the seeds at every scored NFE, and the default NFE each seed's model recorded
(section ``ablation-seeds``): a difference between two variants smaller than their seed ranges
is not a finding.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _report  # noqa: E402

from piff.yaml_files import load_yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("piff.bench.ablation")

# phy and unet of config.yaml before 2026-12-05 (demo network, 500 steps), as changes from the base
# experiment; today's are the variants phy_patch2_900_as_regression_physics001 and unet_patch2_900
PHY = {"prediction": "x0", "prior_residual": True, "depth_loss": "l1", "use_physics": True,
       "time_sampling": "anchored", "augment": "symmetry"}
UNET = {"type": "regression", "augment": "symmetry"}
PATCH2 = {"model": "demo_patch2"}
# the 2026-12-04 phy on the patch-2 network for 900 steps: what the one- and several-change
# variants below start from
PHY_900 = {**PHY, **PATCH2, "steps": 900}
# every change towards the U-Net at once (today's phy is this with the physics loss as a mean absolute
# residual on hour-mean face depths, variant phy_patch2_900_hour_mean_physics_l1)
AS_REGRESSION = {**PHY_900, "anchor_share": 0.95, "velocity_loss_weight": 0.0, "prior_residual": False,
                 "use_physics": False}
HALF_BATCH = {"batch_size": 8, "microbatch": 8, "steps": 1000, "warmup_steps": 100, "ema_decay": 0.995}
# name -> (options changed from the base experiment, what it tests)
VARIANTS = {
    "velocity": ({}, "the paper: velocity output, uniform t, constant noise (the base experiment)"),
    "velocity_phy": ({"use_physics": True}, "the paper + physics loss (the first phy)"),
    "x0": ({"prediction": "x0"}, "clean-depth output, v = x1 - x0_hat"),
    "x0_residual": ({"prediction": "x0", "prior_residual": True}, "x0 + residual on the prior map"),
    "x0_l1": ({"prediction": "x0", "depth_loss": "l1"}, "x0 + L1 on depth in metres"),
    "x0_wet_l1": ({"prediction": "x0", "depth_loss": "wet_l1"}, "x0 + wet-weighted L1 on depth"),
    "x0_logit_normal": ({"prediction": "x0", "time_sampling": "logit_normal"}, "x0 + logit-normal t (SD3)"),
    "x0_beta_dem": ({"prediction": "x0", "time_sampling": "beta_dem"}, "x0 + t biased to the DEM end (pi0)"),
    "x0_noise_none": ({"prediction": "x0", "noise": "none"}, "x0 without path noise (ot-ode)"),
    "x0_phy": ({"prediction": "x0", "use_physics": True}, "x0 + physics loss"),
    "x0_residual_phy": ({"prediction": "x0", "prior_residual": True, "use_physics": True},
                        "x0 + residual on the prior + physics loss"),
    "x0_residual_l1": ({"prediction": "x0", "prior_residual": True, "depth_loss": "l1"},
                       "x0 + residual on the prior + L1 on depth"),
    "x0_residual_l1_phy": ({"prediction": "x0", "prior_residual": True, "depth_loss": "l1", "use_physics": True},
                           "x0 + residual + L1 on depth + physics loss"),
    "x0_residual_l1x4_phy": ({"prediction": "x0", "prior_residual": True, "depth_loss": "l1", "depth_loss_weight": 4.0,
                              "use_physics": True}, "phy with the L1 depth loss weighted 4x"),
    "x0_residual_l1x10_phy": ({"prediction": "x0", "prior_residual": True, "depth_loss": "l1",
                               "depth_loss_weight": 10.0, "use_physics": True},
                              "phy with the L1 depth loss weighted 10x"),
    "x0_residual_l1_phy_anchored": ({"prediction": "x0", "prior_residual": True, "depth_loss": "l1",
                                     "use_physics": True, "time_sampling": "anchored"},
                                    "phy with half the training draws at t = 1, the sampler's first input"),
    "x0_residual_l1_phy_anchored_symmetry": (PHY,
                                             "the anchored phy, each training map under a random grid symmetry "
                                             "that keeps its boundaries"),
    "x0_residual_l1_phy_anchored80_symmetry": ({**PHY, "anchor_share": 0.8},
                                               "the 2026-12-04 phy with 80 % of the training draws at t = 1, not 50 %"),
    # the same compute as the main job's 500 steps of 16 maps, spent on twice the updates: the
    # warm-up and the EMA horizon keep their length in maps (800 and ~1600)
    "phy_batch8": ({**PHY, **HALF_BATCH},
                   "the 2026-12-04 phy with batches of 8 maps for twice the steps (the same maps seen)"),
    "unet_batch8": ({**UNET, **HALF_BATCH},
                    "the U-Net with batches of 8 maps for twice the steps (the same maps seen)"),
    "phy_no_physics": ({**PHY, "use_physics": False},
                       "the 2026-12-04 phy without the mass-conservation loss"),
    # the demo network without its full-resolution level (1.8x cheaper a training step): at the
    # same steps, and at the same training compute as phy (900 steps)
    "phy_patch2": ({**PHY, **PATCH2}, "the 2026-12-04 phy on the patch-2 network (no full-resolution level)"),
    "unet_patch2": ({**UNET, **PATCH2}, "the U-Net on the patch-2 network"),
    "phy_patch2_900": (PHY_900,
                       "the 2026-12-04 phy on the patch-2 network for 900 steps (the compute of 500 demo steps)"),
    "unet_patch2_900": ({**UNET, **PATCH2, "steps": 900},
                        "the U-Net on the patch-2 network for 900 steps, the compute of 500 on the demo network"),
    # why the U-Net turns more steps into skill and phy does not: one difference at a time
    "phy_patch2_900_direct": ({**PHY_900, "prior_residual": False},
                              "phy_patch2_900 predicting the depth itself, not a correction to the prior"),
    "phy_patch2_900_no_physics": ({**PHY_900, "use_physics": False},
                                  "phy_patch2_900 without the mass-conservation loss"),
    "phy_patch2_900_l1_only": ({**PHY_900, "velocity_loss_weight": 0.0},
                               "phy_patch2_900 without the bridge's velocity MSE: L1 on depth and physics only"),
    "phy_patch2_900_anchored95": ({**PHY_900, "anchor_share": 0.95},
                                  "phy_patch2_900 with 95 % of the training draws at t = 1, near a regression"),
    "phy_patch2_900_anchored95_l1_only": ({**PHY_900, "anchor_share": 0.95,
                                           "velocity_loss_weight": 0.0},
                                          "phy_patch2_900 with 95 % of draws at t = 1 and no velocity MSE "
                                          "(L1 on depth, prior residual, physics loss)"),
    "phy_patch2_900_as_regression": (AS_REGRESSION,
                                     "phy_patch2_900 with every change toward the U-Net at once: 95 % of draws "
                                     "at t = 1, L1 on depth only, no prior residual, no physics loss"),
    "phy_patch2_900_as_regression_physics": ({**AS_REGRESSION, "use_physics": True},
                                             "phy_patch2_900_as_regression with the mass-conservation loss"),
    "phy_patch2_900_as_regression_physics001": ({**AS_REGRESSION, "use_physics": True, "physics_weight": 0.01},
                                                "phy_patch2_900_as_regression_physics with a tenth of the "
                                                "physics weight (0.01): the phy of 2026-12-05 before stop 36"),
    "phy_patch2_900_hour_mean_physics": ({**AS_REGRESSION, "use_physics": True, "physics_flux": "scaled_hour_mean"},
                                         "phy_patch2_900_as_regression_physics (weight 0.1) with the fluxes scaled "
                                         "by the hour-mean face depths, not the end-of-hour ones"),
    "phy_patch2_900_hour_mean_physics003": ({**AS_REGRESSION, "use_physics": True, "physics_weight": 0.03,
                                             "physics_flux": "scaled_hour_mean"},
                                            "phy_patch2_900_hour_mean_physics at weight 0.03"),
    "phy_patch2_900_hour_mean_physics_l1": ({**AS_REGRESSION, "use_physics": True, "physics_flux": "scaled_hour_mean",
                                             "physics_norm": "l1"},
                                            "phy_patch2_900_hour_mean_physics with the mean absolute residual in "
                                            "metres (median-seeking, as the L1 depth loss) for the mean square: "
                                            "today's phy"),
    "phy_patch2_900_as_regression_residual_physics001": ({**AS_REGRESSION, "prior_residual": True, "use_physics": True,
                                                          "physics_weight": 0.01},
                                                         "phy_patch2_900_as_regression_physics001 predicting a "
                                                         "correction to the prior map"),
    "phy_patch2_fine_900": ({**PHY, "model": "demo_patch2_fine", "steps": 900},
                            "phy_patch2_900 with a full-resolution head that sees the input maps"),
    "unet_patch2_fine_900": ({**UNET, "model": "demo_patch2_fine", "steps": 900},
                             "unet_patch2_900 with a full-resolution head that sees the input maps"),
    "fast_phy": ({"model": "fast", "prediction": "x0", "prior_residual": True, "depth_loss": "l1",
                  "use_physics": True}, "phy on the fast preset (8-16-32-64 channels)"),
    "fast_unet": ({"model": "fast", "type": "regression"}, "the U-Net regression on the fast preset"),
    "velocity_logit_normal": ({"time_sampling": "logit_normal"}, "velocity + logit-normal t"),
    "velocity_noise_none": ({"noise": "none"}, "velocity without path noise"),
    "unet": ({"type": "regression"}, "same-backbone U-Net regression (L1, one shot): the bar"),
    "unet_symmetry": (UNET,
                      "the U-Net regression with the same grid-symmetry augmentation"),
}
DEFAULT_VARIANTS = ("velocity", "velocity_phy", "x0", "x0_residual", "x0_l1", "x0_wet_l1", "x0_logit_normal",
                    "x0_beta_dem", "x0_noise_none", "x0_phy", "x0_residual_phy", "x0_residual_l1",
                    "x0_residual_l1_phy", "unet")
NFE = (1, 10)


def variant_config(base: dict, name: str, steps: int | None, eval_hours, seed: int | None = None, nfe=NFE):
    """The ExperimentConfig of one variant: the base experiment, the variant's changes, the budget,
    the NFE it is scored at (and the seed, when given)."""
    from piff.training.config import ExperimentConfig

    options = {k: v for k, v in base.items() if k not in ("dataset", "description")}
    options.update(VARIANTS[name][0])
    if seed is not None:
        options["seed"] = seed
    options["nfe"] = sorted(nfe)
    options["description"] = VARIANTS[name][1]
    if steps is not None:
        options["steps"] = steps
        options["warmup_steps"] = min(options.get("warmup_steps", 50), max(steps // 10, 1))
    if eval_hours is not None:
        options["eval_hours"] = list(eval_hours)
    return ExperimentConfig.from_dict(options, source=f"ablation variant {name}")


def dry_cell_mean_depth_m(samples_path, dataset_path) -> dict:
    """Mean predicted depth [m] on the valid cells the solver leaves dry (< DRY_M), per terrain
    (seen / unseen DEMs) and NFE."""
    from piff.data import format as fmt
    from piff.evaluation.evaluate import open_samples, valid_cells
    from piff.hydro.metrics import DRY_M

    samples, dataset = open_samples(samples_path), fmt.open_dataset(dataset_path)
    try:
        hours = samples["time"].values.astype(int)
        out = {}
        terrain_of = fmt.terrain_of_dems(dataset)
        for terrain, nfe in ((t, n) for t in fmt.TERRAINS for n in samples["nfe"].values):
            total, count = 0.0, 0
            for dem in (d for d in samples["dem"].values if terrain_of[int(d)] == terrain):
                valid = valid_cells(dataset, dem)
                truth = dataset["depth"].sel(dem=dem, storm=samples["storm"].values, time=hours).values
                pred = samples["depth"].sel(nfe=nfe, dem=dem).mean("member").transpose("storm", "time", "y", "x").values
                dry = (truth < DRY_M) & valid
                total += float(pred[dry].sum())
                count += int(dry.sum())
            if count:
                out.setdefault(terrain, {})[int(nfe)] = total / count
        return out
    finally:
        samples.close()
        dataset.close()


def scored(work: Path, fingerprint: str, dataset_sha: str, cfg) -> bool:
    """Whether ``work`` already holds the scores of this model on this dataset at these hours and
    NFE (then a reused model is not sampled again)."""
    try:
        m = json.loads((work / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    nfe = {"1"} if cfg.type == "regression" else {str(n) for n in cfg.nfe}
    return ((work / "samples.nc").exists() and m.get("model_fingerprint") == fingerprint
            and m.get("dataset_sha256") == dataset_sha and m.get("hours") == list(cfg.eval_hours or [])
            and set(m.get("metrics", {})) == nfe)


def run_name(name: str, seed: int | None) -> str:
    """The folder (and row) name of one variant run: the variant, and its seed when given."""
    return name if seed is None else f"{name}-seed{seed}"


def run_variant(name: str, base: dict, dataset: str, out_dir: str, steps, eval_hours, threads: int, device: str,
                retrain: bool, seed: int | None = None, nfe=NFE) -> dict:
    """Train (or reuse), sample and score one variant; returns its row of the table."""
    import torch

    from piff import logs
    from piff.data.format import file_sha256, write_netcdf
    from piff.evaluation.evaluate import evaluate_files
    from piff.inference.sampling import sample_test_set
    from piff.model.store import load_checkpoint
    from piff.model.trained import resolve_device
    from piff.training.train import TIMING_FILE, train

    logs.setup()
    torch.set_num_threads(threads)
    cfg = variant_config(base, name, steps, eval_hours, seed, nfe)
    work = Path(out_dir) / run_name(name, seed)
    model = work / "model.pt"
    dataset_sha = file_sha256(dataset)
    fingerprint = cfg.fingerprint(dataset_sha)
    reuse = not retrain and model.exists() and load_checkpoint(model)["piff"].get("fingerprint") == fingerprint
    t0 = time.monotonic()
    if reuse:
        log.info("%s: reusing %s (same options and dataset)", work.name, model)
    else:
        rc = train(cfg, dataset, work, model, device=device, threads=threads)
        if rc != 0:
            raise RuntimeError(f"variant {name}: training stopped with status {rc}")
    train_s = time.monotonic() - t0
    step_s = json.loads((work / TIMING_FILE).read_text())["step_seconds"]
    history = (work / "loss.csv").read_text().splitlines()
    final_loss = float(history[-1].split(",")[history[0].split(",").index("loss")])

    t0 = time.monotonic()
    if not (reuse and scored(work, fingerprint, dataset_sha, cfg)):
        ds = sample_test_set(dataset, kind=cfg.type, model_path=model, nfe=cfg.nfe, sampler=cfg.sampler, members=1,
                             seed=cfg.seed, hours=cfg.eval_hours, batch_size=cfg.sample_batch_size,
                             device=str(resolve_device(device)), experiment=f"ablation/{name}")
        write_netcdf(ds, work / "samples.nc")
        evaluate_files(work / "samples.nc", dataset, work / "metrics.csv", work / "metrics.json")
    dry = dry_cell_mean_depth_m(work / "samples.nc", dataset)
    score_s = time.monotonic() - t0
    recorded = json.loads((work / "metrics.json").read_text())
    metrics = recorded["metrics"]
    scores = {}
    for terrain, nfe in ((t, n) for t in dry for n in cfg.nfe):
        m = metrics.get(str(nfe), metrics.get("1"))[terrain]["all"]  # the regression has NFE 1 only
        scores.setdefault(terrain, {})[nfe] = {
            "mae_cm": 100 * m["mae"], "nse_pooled": m["nse_pooled"], "csi_pooled": m["csi_pooled@0.1"],
            "dry_cm": 100 * dry[terrain].get(nfe, dry[terrain][min(dry[terrain])]),
            "volume_error": m["volume_error"], "n_maps": m["n_maps"]}
    log.info("%s: done (train %.0f s, sample + score %.0f s)", work.name, train_s, score_s)
    return {"name": name, "seed": cfg.seed, "default_nfe": (recorded.get("default_nfe") or {}).get("nfe"),
            "what": VARIANTS[name][1], "changes": VARIANTS[name][0], "steps": cfg.steps,
            "train_s": train_s if not reuse else sum(step_s), "s_per_100_steps": 100 * float(np.median(step_s)),
            "final_loss": final_loss, "score_s": score_s, "scores": scores, "reused": reuse}


def _fmt(x, spec):
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def table(rows: list[dict], terrain: str) -> str:
    """The ablation table of one terrain (seen: held-out storms on the training DEMs; unseen: the
    held-out DEMs)."""
    def pair(row, key, spec):
        nfes = sorted(row["scores"][terrain])
        a, b = (row["scores"][terrain][n][key] for n in (nfes[0], nfes[-1]))
        return _fmt(a, spec) if row["changes"].get("type") == "regression" else f"{_fmt(a, spec)} / {_fmt(b, spec)}"

    head = ("| variant | changes from base | MAE cm | pooled NSE | CSI@0.1 (pooled) | dry-cell depth cm "
            "| volume error | train s / 100 steps | final loss |\n|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        changes = ", ".join(f"{k}={v}" for k, v in r["changes"].items()) or "none (paper)"
        lines.append(f"| `{r['name']}` | {changes} | {pair(r, 'mae_cm', '.2f')} | {pair(r, 'nse_pooled', '.3f')} "
                     f"| {pair(r, 'csi_pooled', '.3f')} | {pair(r, 'dry_cm', '.2f')} "
                     f"| {pair(r, 'volume_error', '+.1%')} | {r['s_per_100_steps']:.0f} | {r['final_loss']:.4g} |")
    return head + "\n".join(lines)


def seed_table(rows: list[dict], terrain: str) -> str:
    """Each variant's mean (min to max) over its seeds at every scored NFE (the regression: one
    shot), and the default NFE each seed's model recorded (piff.evaluation.default_nfe)."""
    def spread(runs, key, nfe, spec):
        x = np.array([r["scores"][terrain][nfe][key] for r in runs])
        return f"{_fmt(float(x.mean()), spec)} ({_fmt(float(x.min()), spec)} to {_fmt(float(x.max()), spec)})"

    head = ("| variant | seeds | default NFE, per seed | NFE | MAE cm | pooled NSE | CSI@0.1 (pooled) "
            "| dry-cell depth cm | volume error |\n|---|---|---|---:|---|---|---|---|---|\n")
    lines = []
    for name in dict.fromkeys(r["name"] for r in rows):
        runs = [r for r in rows if r["name"] == name]
        seeds = ", ".join(str(r["seed"]) for r in runs)
        defaults = ", ".join("-" if r.get("default_nfe") is None else str(r["default_nfe"]) for r in runs)
        nfes = sorted(runs[0]["scores"][terrain])
        for nfe in nfes[:1] if runs[0]["changes"].get("type") == "regression" else nfes:
            lines.append(f"| `{name}` | {seeds} | {defaults} | {nfe} | {spread(runs, 'mae_cm', nfe, '.2f')} "
                         f"| {spread(runs, 'nse_pooled', nfe, '.3f')} | {spread(runs, 'csi_pooled', nfe, '.3f')} "
                         f"| {spread(runs, 'dry_cm', nfe, '.2f')} | {spread(runs, 'volume_error', nfe, '+.1%')} |")
    return head + "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="data/demo/dataset.nc")
    p.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    p.add_argument("--experiment", default="base", help="the experiment of --config every variant starts from")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help=f"comma-separated, from: {', '.join(VARIANTS)}")
    p.add_argument("--steps", type=int, default=None, help="training steps of every variant (default: the base's)")
    p.add_argument("--eval-hours", type=int, nargs="+", default=None, help="test hours to score (default: the base's)")
    p.add_argument("--out-dir", default="results/ablation")
    p.add_argument("--jobs", type=int, default=1, help="variants trained at the same time (processes)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per variant (the workflow's train: 1)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--retrain", action="store_true", help="train even where a matching model.pt exists")
    p.add_argument("--nfe", type=int, nargs="+", default=list(NFE),
                   help="NFE to score (default: 1 10; the workflow scores 1 2 5 10); tables: the smallest / largest")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="train every variant once per seed and report the spread (default: the experiment's seed)")
    p.add_argument("--markdown", default=str(_report.BENCHMARKS_MD), help="the benchmarks page to write")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    a = p.parse_args()
    names = [n.strip() for n in a.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    if not Path(a.dataset).exists():
        p.error(f"{a.dataset} does not exist (build it: snakemake --cores 2 {a.dataset})")
    experiments = load_yaml(a.config)["experiments"]
    if a.experiment not in experiments:
        p.error(f"{a.config} has no experiment {a.experiment!r}")
    base = experiments[a.experiment]
    seeds = a.seeds or [None]
    runs = [(n, s) for s in seeds for n in names]  # seed-major: a run stopped early has every variant
    for n, s in runs:  # every variant's options checked before any training
        variant_config(base, n, a.steps, a.eval_hours, s, a.nfe)

    from piff import logs

    logs.setup()
    t0 = time.monotonic()
    args = (base, a.dataset, a.out_dir, a.steps, a.eval_hours, a.threads, a.device, a.retrain)
    if a.jobs > 1:
        with ProcessPoolExecutor(a.jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(run_variant, n, *args, s, a.nfe) for n, s in runs]
            rows = [f.result() for f in futures]
    else:
        rows = [run_variant(n, *args, s, a.nfe) for n, s in runs]
    wall = time.monotonic() - t0
    Path(a.out_dir).mkdir(parents=True, exist_ok=True)
    (Path(a.out_dir) / "ablation.json").write_text(json.dumps(rows, indent=2) + "\n")

    steps = sorted({r["steps"] for r in rows})
    terrains = list(rows[0]["scores"])
    n_maps = " and ".join(f"{next(iter(rows[0]['scores'][t].values()))['n_maps']} {t}-terrain" for t in terrains)
    setting = (f"trained for {'/'.join(map(str, steps))} steps on `{a.dataset}` ({a.threads} torch "
               f"thread{'s' if a.threads > 1 else ''} per run, {a.jobs} at a time; {wall / 60:.1f} min in all), "
               f"then scored on its {n_maps} held-out test maps per NFE with the EMA weights (Euler sampler)")
    legend = ("Seen terrain: held-out storms on the training DEMs; unseen terrain: the held-out storms on DEMs "
              "never trained on (split.test_dems). MAE: per-map mean absolute error averaged over maps. Pooled NSE "
              "and CSI@0.1: over all test cells together (CSI from the summed contingency counts at 0.1 m). "
              "Dry-cell depth: mean predicted depth on the cells the solver leaves dry (< 5 mm). Volume error: "
              "per-map relative volume error averaged over maps.")
    if a.seeds:
        body = (f"Every variant is experiment `{a.experiment}` of `{Path(a.config).name}` with its options "
                f"(`bench/ablation.py` VARIANTS), once per seed ({', '.join(map(str, a.seeds))}: initial weights, "
                f"data order and bridge noise), {setting}. Cells: the mean over the seeds (min to max).\n\n"
                + "\n\n".join(f"**{t.capitalize()} terrain**\n\n{seed_table(rows, t)}" for t in terrains)
                + f"\n\n{legend} Outputs in `{a.out_dir}/<variant>-seed<k>/`.")
        section = ("ablation-seeds", "Seed spread of the headline comparison (issue 12)")
    else:
        body = (f"Every variant is experiment `{a.experiment}` of `{Path(a.config).name}` with the options in the "
                f"second column, {setting}. Cells: NFE {min(a.nfe)} / NFE {max(a.nfe)} (the regression: one "
                f"shot).\n\n"
                + "\n\n".join(f"**{t.capitalize()} terrain**\n\n{table(rows, t)}" for t in terrains) + "\n\n"
                f"{legend} Train s / 100 steps: median optimiser step time x 100. Outputs (model, loss curve, "
                f"samples, metrics.csv with the error anatomy) in `{a.out_dir}/<variant>/`.")
        section = ("ablation", "Ablation of the PIFF bridge (issue 12)")
    print(body)
    if not a.no_write:
        _report.BENCHMARKS_MD = Path(a.markdown)
        _report.write_section(*section, body)


if __name__ == "__main__":
    main()
