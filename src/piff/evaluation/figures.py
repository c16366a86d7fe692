"""Figures of one experiment (matplotlib, Agg backend, PNG).

- ``cases.png``: a few test maps (one per storm group where possible, at the latest sampled
  hour), each with DEM, hyetograph, SPM prior, truth, prediction at the largest NFE and error.
- ``error_vs_nfe.png``: MAE and CSI@0.1 against NFE, one line per storm group.
- ``error_vs_hour.png``: MAE against the hour of the storm, one line per NFE.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

from piff.data import format as fmt
from piff.evaluation.evaluate import valid_cells

N_CASES = 3
DPI = 110


# ----------------------------------------------------------------------------- cases
def pick_cases(samples: xr.Dataset, dataset: xr.Dataset, n: int = N_CASES) -> list[dict]:
    """Deterministic test maps to show: the wettest storm (largest total, then smallest id) of
    each storm group in turn, on the first DEM, at the latest sampled hour (flooding builds up
    during a storm). Groups are visited round-robin until ``n`` maps are chosen."""
    storms = np.sort(samples["storm"].values)
    groups = dataset["storm_group"].sel(storm=storms).values.astype(str)
    totals = dataset["storm_total"].sel(storm=storms).values
    order = [g for g in fmt.STORM_GROUPS if g in groups] + sorted(set(groups) - set(fmt.STORM_GROUPS))
    queues = {g: [s for _, s in sorted(zip(-totals[groups == g], storms[groups == g]))] for g in order}
    dem, hour = samples["dem"].values[0], int(samples["time"].values.max())
    cases = []
    while len(cases) < min(n, len(storms)):
        for g in order:
            if queues[g] and len(cases) < n:
                cases.append({"dem": dem, "storm": queues[g].pop(0), "group": g, "hour": hour})
    return cases


def spm_prior_m(dataset: xr.Dataset, dem, storm, hour: int) -> np.ndarray:
    """The SPM map the models were conditioned on for this map (24-h window lookup), metres."""
    from piff.hydro.spm import spm_lookup
    from piff.hydro.storms import rain_window

    window = rain_window(dataset["rainfall"].sel(storm=storm).values, hour)
    return spm_lookup(dataset["spm"].sel(dem=dem).values, float(window.sum()), dataset["rain_bin"].values)


def _map(ax, fig, values, valid, title, cmap, label, **norm):
    image = ax.imshow(np.where(valid, values, np.nan), cmap=cmap, interpolation="nearest", **norm)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(image, ax=ax, shrink=0.8).set_label(label, fontsize=8)


def _hyetograph(ax, rain_mm_per_h: np.ndarray, hour: int):
    """Bars of the stored intervals (k-1, k] for k = 1..T, with the target hour marked."""
    hours = np.arange(1, len(rain_mm_per_h))
    ax.bar(hours - 0.5, rain_mm_per_h[1:], width=1.0, color="tab:blue", edgecolor="white")
    ax.axvline(hour, color="tab:red", lw=1.5, label=f"target hour {hour}")
    ax.set_xlabel("hour", fontsize=8)
    ax.set_ylabel("rain (mm/h)", fontsize=8)
    ax.set_title("hyetograph", fontsize=9)
    ax.legend(fontsize=7)


def plot_cases(samples: xr.Dataset, dataset: xr.Dataset, path) -> Path:
    """Rows = cases; columns = DEM, hyetograph, SPM prior, truth, prediction, error (all m or mm/h)."""
    cases = pick_cases(samples, dataset)
    nfe = int(samples["nfe"].values.max())
    fig, axes = plt.subplots(len(cases), 6, figsize=(22, 3.4 * len(cases)), squeeze=False)
    for row, case in zip(axes, cases):
        dem, storm, hour = case["dem"], case["storm"], case["hour"]
        valid = valid_cells(dataset, dem)
        truth = dataset["depth"].sel(dem=dem, storm=storm, time=hour).values
        pred = samples["depth"].sel(nfe=nfe, dem=dem, storm=storm, time=hour).mean("member").values
        prior = spm_prior_m(dataset, dem, storm, hour)
        # one depth scale for prior, truth and prediction so that colours compare across panels
        vmax = max(float(np.nanmax(np.where(valid, a, 0.0))) for a in (truth, pred, prior)) or 1e-3
        err_max = float(np.nanmax(np.abs(np.where(valid, pred - truth, 0.0)))) or 1e-3
        label = f"DEM {dem}, storm {storm} ({case['group']}), hour {hour}"
        _map(row[0], fig, dataset["elevation"].sel(dem=dem).values, valid, f"{label}\nDEM", "terrain", "elevation (m)")
        _hyetograph(row[1], dataset["rainfall"].sel(storm=storm).values, hour)
        for ax, values, title in ((row[2], prior, "SPM prior"), (row[3], truth, "truth (solver)"),
                                  (row[4], pred, f"prediction (NFE {nfe})")):
            _map(ax, fig, values, valid, title, "Blues", "depth (m)", vmin=0.0, vmax=vmax)
        _map(row[5], fig, pred - truth, valid, "error (prediction - truth)", "RdBu_r", "depth error (m)",
             vmin=-err_max, vmax=err_max)
    fig.suptitle(f"{samples.attrs.get('experiment', '')} ({samples.attrs.get('kind', '')}): test cases")
    return _save(fig, path)


# ----------------------------------------------------------------------------- curves
def _seen(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the seen terrain (held-out storms on the training DEMs), the curves' subject."""
    return table[table["terrain"] == "seen"] if "terrain" in table else table


def _overall(table: pd.DataFrame) -> pd.DataFrame:
    rows = _seen(table)
    return rows[rows["hour"].astype(str) == "all"]


def plot_error_vs_nfe(table: pd.DataFrame, path, title: str = "") -> Path:
    """MAE (m) and CSI@0.1 against NFE, one line per storm group (hour "all" rows of metrics.csv)."""
    rows = _overall(table)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, col, label in ((axes[0], "mae", "MAE (m)"), (axes[1], "csi@0.1", "CSI at 0.1 m")):
        for group, g in rows.groupby("group", sort=False):
            g = g.sort_values("nfe")
            # "all" in black and dashed on top: it coincides with a group when only one is tested
            style = {"color": "black", "linestyle": "--", "zorder": 3} if group == "all" else {}
            ax.plot(g["nfe"], g[col], marker="o", label=group, **style)
        ax.set_xlabel("network evaluations per map (NFE; 0 = no network)")
        ax.set_ylabel(label)
        ax.set_xticks(sorted(rows["nfe"].unique()))
        ax.grid(alpha=0.3)
        ax.legend(title="storm group", fontsize=8)
    fig.suptitle(f"{title}: error against NFE (mean over test maps, seen terrain)")
    return _save(fig, path)


def plot_error_vs_hour(table: pd.DataFrame, path, title: str = "") -> Path:
    """MAE (m) against the storm hour, one line per NFE (storm group "all")."""
    table = _seen(table)
    rows = table[(table["group"] == "all") & (table["hour"].astype(str) != "all")].copy()
    rows["hour"] = rows["hour"].astype(int)
    fig, ax = plt.subplots(figsize=(7, 4))
    for nfe, g in rows.groupby("nfe"):
        g = g.sort_values("hour")
        ax.plot(g["hour"], g["mae"], marker="o", label=f"NFE {nfe}")
    ax.set_xlabel("hour since storm start")
    ax.set_ylabel("MAE (m)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{title}: MAE against hour (mean over test maps, seen terrain)")
    return _save(fig, path)


def make_figures(samples_path, dataset_path, metrics_csv, cases_png, nfe_png, hour_png) -> None:
    """All three figures of one experiment from its samples, dataset and metrics.csv."""
    from piff.evaluation.evaluate import open_samples

    table = pd.read_csv(metrics_csv, dtype={"hour": str})
    samples = open_samples(samples_path)
    dataset = fmt.open_dataset(dataset_path)
    try:
        title = samples.attrs.get("experiment", "") or Path(samples_path).parent.name
        plot_cases(samples, dataset, cases_png)
        plot_error_vs_nfe(table, nfe_png, title)
        plot_error_vs_hour(table, hour_png, title)
    finally:
        samples.close()
        dataset.close()


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
