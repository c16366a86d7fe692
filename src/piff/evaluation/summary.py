"""Compare experiments and baselines: ``results/summary.csv`` and ``results/summary.md``.

Reads each experiment's ``metrics.json`` (written by :mod:`piff.evaluation.evaluate`) and
lays out one row per (experiment, NFE, terrain, storm group) for hour "all". Terrain ``seen`` =
held-out storms on the training DEMs, ``unseen`` = the test storms on the held-out DEMs. The
values are means over test maps of per-map scores, or pooled over their cells (see ``averaging``
in each metrics.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from piff.atomic import atomic_write_text
from piff.data.format import STORM_GROUPS, TERRAINS
from piff.errors import PiffInputError
from piff.evaluation.default_nfe import REFERENCE_NFE, TOLERANCE

# display column -> (metrics.json key, number format)
COLUMNS = {
    "MAE (m)": ("mae", "{:.4f}"),
    "RMSE (m)": ("rmse", "{:.4f}"),
    "NSE": ("nse", "{:.3f}"),
    "NSE wet": ("nse_wet", "{:.3f}"),
    "NSE pooled": ("nse_pooled", "{:.3f}"),
    "CSI@0.1": ("csi@0.1", "{:.3f}"),
    "CSI@0.1 pooled": ("csi_pooled@0.1", "{:.3f}"),
    "CSI@0.3": ("csi@0.3", "{:.3f}"),
    "F1@0.1": ("f1@0.1", "{:.3f}"),
    "MD (m)": ("md", "{:.3f}"),
    "volume error": ("volume_error", "{:+.3f}"),
    "continuity (mm/h)": ("continuity_rms_mm_per_h", "{:.2f}"),
    "s per map": ("seconds_per_map", "{:.3g}"),
    "speed-up": ("speedup", "{:.3g}"),
}
INTRO = ("Seen terrain = held-out storms on the training DEMs; unseen terrain = the same held-out storms on "
         "DEMs never trained on (split.test_dems). "
         "Means over test maps (DEM x held-out storm x hour) of per-map scores against the solver, except "
         "the *pooled* columns: one NSE over all test cells together, and CSI from the contingency counts "
         "summed over all maps (per-map NSE of nearly dry maps is dominated by noise). "
         "NFE 0 = no network (SPM-only and coarse dynamic prior baselines). Depth thresholds in metres; "
         "continuity = RMS hourly water-balance imbalance of the prediction given the true previous hour; "
         "speed-up = solver wall time per event / model time per map. Rows sorted by MAE, best first. "
         "Each trained experiment is one training run (one seed): a difference smaller than the spread "
         "between seeds is not a finding (`python bench/ablation.py --seeds` measures it; "
         "docs/benchmarks.md, \"Seed spread\").")


def read_metrics(paths) -> list[dict]:
    """The metrics.json files, checked to carry the fields the summary needs."""
    out = []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise PiffInputError(path, f"not a readable metrics.json ({err})") from err
        if not {"experiment", "kind", "metrics"} <= set(data):
            raise PiffInputError(path, "not a metrics.json: needs experiment, kind and metrics")
        out.append(data)
    return out


def summary_table(metrics: list[dict]) -> pd.DataFrame:
    """One row per (experiment, nfe, terrain, group): experiment, kind, nfe, terrain, group, n_maps,
    then COLUMNS."""
    rows = []
    for m in metrics:
        for nfe, by_terrain in m["metrics"].items():
            for terrain, by_group in by_terrain.items():
                for group, values in by_group.items():
                    row = {"experiment": m["experiment"], "kind": m["kind"], "nfe": int(nfe), "terrain": terrain,
                           "group": group, "n_maps": values.get("n_maps")}
                    # null in json = undefined (e.g. no solver timings): NaN in the table
                    row.update({col: _number(values.get(key)) for col, (key, _) in COLUMNS.items()})
                    rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    order = {g: i for i, g in enumerate(("all",) + STORM_GROUPS)}
    table["_terrain"] = table["terrain"].map(lambda t: TERRAINS.index(t) if t in TERRAINS else len(TERRAINS))
    table["_group"] = table["group"].map(lambda g: order.get(g, len(order)))
    table = table.sort_values(["_terrain", "_group", "MAE (m)", "experiment", "nfe"], na_position="last")
    return table.drop(columns=["_terrain", "_group"]).reset_index(drop=True)


def markdown(table: pd.DataFrame) -> str:
    """One Markdown table per terrain and storm group (seen, "all" first), rows sorted by MAE."""
    lines = ["# Test-set comparison", "", INTRO, ""]
    header = ["experiment", "kind", "NFE", "maps"] + list(COLUMNS)
    for (terrain, group), rows in table.groupby(["terrain", "group"], sort=False):
        lines += [f"## {terrain.capitalize()} terrain, storm group: {group}", "", "| " + " | ".join(header) + " |",
                  "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
        for _, r in rows.iterrows():
            cells = [str(r["experiment"]), str(r["kind"]), str(r["nfe"]), _fmt(r["n_maps"], "{:d}")]
            cells += [_fmt(r[col], fmt) for col, (_, fmt) in COLUMNS.items()]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


# the error anatomy: where the error sits, by the reference depth of the cell (pooled over maps)
ANATOMY = {"dry: MAE (cm)": ("mae[dry]", 100.0), "dry: bias (cm)": ("bias[dry]", 100.0),
           "0.005-0.1 m: MAE (cm)": ("mae[0.005-0.1]", 100.0), "0.1-0.3 m: MAE (cm)": ("mae[0.1-0.3]", 100.0),
           "0.3-0.5 m: MAE (cm)": ("mae[0.3-0.5]", 100.0), ">0.5 m: MAE (cm)": ("mae[>0.5]", 100.0),
           "false wet (%)": ("false_wet_fraction", 100.0), "missed wet (%)": ("missed_wet_fraction", 100.0)}
ANATOMY_INTRO = ("Error anatomy (all test maps of each terrain, storm group all): mean absolute error and mean bias "
                 "(prediction - truth) over the cells whose TRUE depth lies in each band, pooled over maps; "
                 "dry = true depth below 5 mm; false wet = share of all cells the solver leaves below 0.05 m "
                 "that the prediction floods above it, missed wet the reverse.")


def anatomy_markdown(metrics: list[dict]) -> str:
    """The error-anatomy table: one row per (terrain, experiment, NFE) for storm group "all"."""
    header = ["terrain", "experiment", "NFE"] + list(ANATOMY)
    lines = ["## Error anatomy", "", ANATOMY_INTRO, "", "| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * 3 + ["---:"] * len(ANATOMY)) + "|"]
    for terrain in TERRAINS:
        for m in sorted(metrics, key=lambda m: m["experiment"]):
            for nfe, by_terrain in sorted(m["metrics"].items(), key=lambda kv: int(kv[0])):
                if terrain not in by_terrain:
                    continue
                values = by_terrain[terrain].get("all", {})
                cells = [terrain, m["experiment"], str(nfe)]
                cells += [_fmt(None if values.get(key) is None else values[key] * scale, "{:.2f}")
                          for key, scale in ANATOMY.values()]
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def default_nfe_markdown(metrics: list[dict]) -> str:
    """Each bridge model's measured default NFE for ``piff predict`` (``piff.evaluation.default_nfe``)."""
    chosen = [m for m in sorted(metrics, key=lambda m: m["experiment"]) if m.get("default_nfe")]
    if not chosen:
        return ""
    lines = ["## Default NFE of piff predict", "",
             f"The fewest network evaluations whose MAE on every terrain is within {TOLERANCE:.0%} of the MAE at "
             f"NFE {REFERENCE_NFE} (stored in each metrics.json; `piff predict` uses it when --nfe is omitted).", "",
             "| experiment | default NFE | " + " | ".join(f"MAE {t} (cm), at it / at reference" for t in TERRAINS)
             + " |",
             "|---|---:|" + "---:|" * len(TERRAINS)]
    for m in chosen:
        c = m["default_nfe"]
        cells = [m["experiment"], str(c["nfe"])]
        for t in TERRAINS:
            at, ref = c["mae_m"].get(t), c["reference_mae_m"].get(t)
            cells.append("n/a" if at is None else f"{100 * at:.2f} / {100 * ref:.2f} (NFE {c['reference_nfe']})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_summary(metrics_paths, out_csv, out_md) -> pd.DataFrame:
    """Read the experiments' metrics.json files and write the comparison CSV and Markdown."""
    metrics = read_metrics(metrics_paths)
    table = summary_table(metrics)
    atomic_write_text(out_csv, table.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out_md, markdown(table) + "\n" + default_nfe_markdown(metrics) + "\n" + anatomy_markdown(metrics))
    return table


def _number(v) -> float:
    return np.nan if v is None else float(v)


def _fmt(v, fmt: str) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return fmt.format(int(v) if fmt == "{:d}" else float(v))
