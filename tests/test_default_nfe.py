"""The default NFE of ``piff predict``: chosen from the held-out MAE per NFE by the evaluation,
kept in metrics.json beside model.pt, used only for the model it was measured for."""

from __future__ import annotations

import json

import pytest
import xarray as xr
from test_predict import files, run_cli  # noqa: F401 (files: a fixture)

from piff.evaluation import default_nfe


def test_the_fewest_nfe_within_3_percent_on_every_terrain():
    mae = {1: {"seen": 0.0200, "unseen": 0.0300},
           2: {"seen": 0.0103, "unseen": 0.0204},   # seen within 3 %, unseen 2 % too: chosen
           5: {"seen": 0.0101, "unseen": 0.0200},
           10: {"seen": 0.0100, "unseen": 0.0200}}
    choice = default_nfe.choose(mae)
    assert choice["nfe"] == 2 and choice["reference_nfe"] == 10
    assert choice["mae_m"] == mae[2] and choice["reference_mae_m"] == mae[10]


def test_one_terrain_outside_the_tolerance_rules_an_nfe_out():
    mae = {1: {"seen": 0.0100, "unseen": 0.0300}, 2: {"seen": 0.0110, "unseen": 0.0207},
           5: {"seen": 0.0102, "unseen": 0.0205}, 10: {"seen": 0.0100, "unseen": 0.0200}}
    # NFE 1: unseen 50 % worse; NFE 2: seen 10 % worse; NFE 5: 2 % and 2.5 %
    assert default_nfe.choose(mae)["nfe"] == 5


def test_reference_is_the_largest_sampled_nfe_without_10():
    assert default_nfe.choose({1: {"seen": 0.05}, 4: {"seen": 0.02}}) == {
        "nfe": 4, "reference_nfe": 4, "tolerance": 0.03, "mae_m": {"seen": 0.02}, "reference_mae_m": {"seen": 0.02}}
    assert default_nfe.choose({1: {"seen": 0.1}, 10: {"seen": 0.2}})["nfe"] == 1  # fewer steps, better: fine


def _metrics_beside(model_file, fingerprint, nfe):
    path = model_file.with_name(default_nfe.METRICS_FILE)
    path.write_text(json.dumps({"experiment": "x", "kind": "piff", "metrics": {}, "model_fingerprint": fingerprint,
                                "default_nfe": {"nfe": nfe, "reference_nfe": 10}}))
    return path


def test_recorded_needs_the_same_model(tmp_path):
    model = tmp_path / "model.pt"
    assert default_nfe.recorded(model, "abc") is None  # no metrics.json
    _metrics_beside(model, "abc", 2)
    assert default_nfe.recorded(model, "abc") == 2
    assert default_nfe.recorded(model, "other") is None  # measured for another (retrained) model
    model.with_name("metrics.json").write_text("{not json")
    assert default_nfe.recorded(model, "abc") is None


def test_resolve_reads_the_recorded_nfe_or_names_the_missing_file(tmp_path):
    """The ensemble's nfe: an integer stands; "default" is this model's recorded NFE, and without
    one (no file, or measured for another model) a one-line error names the metrics file."""
    from piff.errors import PiffInputError

    model = tmp_path / "model.pt"
    assert default_nfe.resolve(3, model, "abc") == 3
    with pytest.raises(PiffInputError, match=r"metrics\.json.*no default NFE recorded"):
        default_nfe.resolve(default_nfe.MEASURED, model, "abc")
    _metrics_beside(model, "abc", 5)
    assert default_nfe.resolve(default_nfe.MEASURED, model, "abc") == 5
    with pytest.raises(PiffInputError, match="no default NFE recorded"):
        default_nfe.resolve(default_nfe.MEASURED, model, "retrained")


def test_predict_uses_the_measured_default_nfe_of_its_model(model_path, trained, files, tmp_path):  # noqa: F811
    dem, rain = files
    work = tmp_path / "results"
    work.mkdir()
    model = work / "model.pt"
    model.write_bytes(model_path.read_bytes())

    def nfe_used(*extra):
        out = tmp_path / "flood.nc"
        assert run_cli("--model", model, "--dem", dem, "--rain", rain, "--hours", "2", "--members", "2",
                       *extra, "--out", out) == 0
        with xr.open_dataset(out) as ds:
            return int(ds.attrs["nfe"])

    assert nfe_used() == default_nfe.FALLBACK_NFE
    _metrics_beside(model, trained.meta["fingerprint"], 2)
    assert nfe_used() == 2
    assert nfe_used("--nfe", "5") == 5  # an explicit --nfe wins
    _metrics_beside(model, "another model", 2)
    assert nfe_used() == default_nfe.FALLBACK_NFE


@pytest.mark.parametrize("kind, expect", [("piff", True), ("regression", False)])
def test_evaluation_records_the_choice_for_bridge_models(kind, expect):
    import pandas as pd

    from piff.evaluation.evaluate import _default_nfe

    rows = pd.DataFrame([{"nfe": n, "terrain": t, "group": g, "hour": "all", "mae": m}
                         for n, m in ((1, 0.03), (2, 0.0101), (10, 0.01)) for t in ("seen", "unseen")
                         for g in ("all", "design")])
    got = _default_nfe(rows, kind)
    assert (got is not None) == expect
    if expect:
        assert got["nfe"] == 2 and set(got["mae_m"]) == {"seen", "unseen"}
