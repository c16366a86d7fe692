"""bench/ablation.py's seed spread: one run per (variant, seed), each with its own seed and
folder, summarised as the mean and range over the seeds."""

from __future__ import annotations

import pytest
from bench_utils import load_bench


@pytest.fixture(scope="module")
def ablation():
    return load_bench("ablation")


def _row(name, seed, changes, mae_m_by_nfe, default_nfe=None):
    scores = {t: {nfe: {"mae_cm": 100 * mae, "nse_pooled": 0.9, "csi_pooled": 0.8, "dry_cm": 0.5,
                        "volume_error": 0.1, "n_maps": 4}
                  for nfe, mae in mae_m_by_nfe.items()} for t in ("seen", "unseen")}
    return {"name": name, "seed": seed, "changes": changes, "scores": scores, "default_nfe": default_nfe}


def test_each_seed_is_its_own_run_and_the_table_gives_mean_and_range(ablation):
    base = {"dataset": "demo", "description": "x", "model": "tiny", "steps": 10}
    assert ablation.variant_config(base, "x0", None, None, 3).seed == 3
    assert ablation.variant_config(base, "x0", None, None, 3, nfe=[10, 1, 2]).nfe == [1, 2, 10]
    assert ablation.variant_config(base, "x0", None, None).seed == 0  # the experiment's own seed
    assert ablation.run_name("x0", 3) == "x0-seed3" and ablation.run_name("x0", None) == "x0"

    rows = [_row("x0", 0, {"prediction": "x0"}, {1: 0.010, 10: 0.009}, default_nfe=1),
            _row("x0", 1, {"prediction": "x0"}, {1: 0.014, 10: 0.011}, default_nfe=10),
            _row("unet", 0, {"type": "regression"}, {1: 0.012, 10: 0.012}),
            _row("unet", 1, {"type": "regression"}, {1: 0.016, 10: 0.016})]
    lines = ablation.seed_table(rows, "seen").splitlines()
    assert lines[2].startswith("| `x0` | 0, 1 | 1, 10 | 1 | 1.20 (1.00 to 1.40) |")
    assert lines[3].startswith("| `x0` | 0, 1 | 1, 10 | 10 | 1.00 (0.90 to 1.10) |")
    assert lines[4].startswith("| `unet` | 0, 1 | -, - | 1 | 1.40 (1.20 to 1.60) |")
    assert len(lines) == 5  # the regression has one row: it is one shot


def test_todays_phy_and_unet_are_the_ablation_variants_the_docs_name(ablation):
    # docs/benchmarks.md ("What holds phy back") and config.yaml's comments score the main job's
    # phy and unet by these variants: the same training options, hence the same fingerprint
    from piff.training.config import ExperimentConfig
    from piff.yaml_files import load_yaml

    experiments = load_yaml(ablation.REPO / "config" / "config.yaml")["experiments"]
    for name, variant in (("phy", "phy_patch2_900_hour_mean_physics_l1"), ("unet", "unet_patch2_900")):
        options = {k: v for k, v in experiments[name].items() if k != "dataset"}
        ours = ExperimentConfig.from_dict(options, source=name)
        theirs = ablation.variant_config(experiments["base"], variant, None, ours.eval_hours)
        assert ours.fingerprint("sha") == theirs.fingerprint("sha"), name
