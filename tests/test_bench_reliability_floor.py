"""bench/reliability_floor.py: the perfect-model reliability gap beside the real one, on real
solver members of the tiny dataset."""

from __future__ import annotations

import numpy as np
import pytest
from bench_utils import load_bench

from piff import cf
from piff.evaluation import ensemble as S
from piff.evaluation import ensemble_runs as R


def test_perfect_model_rows_from_a_real_solver_ensemble(tiny_dataset, tmp_path, capsys):
    cfg = {"n_storms": 2, "dems": [0, 1], "members": 5, "seed": 0,
           "error_model": {"sigma_log": 0.4, "rho": 0.6, "max_shift_h": 1}}
    rain = cf.write_netcdf(R.rain_members_dataset(tiny_dataset, cfg), tmp_path / "rain.nc")
    members = cf.write_netcdf(R.solver_members(tiny_dataset, rain, [2, 4, 6]), tmp_path / "solver.nc")
    bench = load_bench("reliability_floor")
    rows, cases = bench.floor(members, tiny_dataset, [2, 3], threshold=0.01)
    assert cases == "2 storms x 2 DEMs x 3 hours"
    assert [r["members"] for r in rows] == [2, 3] and [r["truths"] for r in rows] == [3, 2]
    # the perfect model of N = 3: members 3 and 4 in turn as the truth, members 0-2 the ensemble
    import xarray as xr

    ens = np.moveaxis(xr.load_dataset(members)["depth"].values, 2, 0).reshape(5, -1)
    expect = np.median([S.perfect_model_gap(ens, 3, t, 0.01) for t in (3, 4)])
    assert rows[1]["perfect_median"] == pytest.approx(expect)
    assert all(0 <= r["real"] <= 1 and r["real_range"][0] <= r["real_range"][1] for r in rows)
    bench.main(["--members-file", str(members), "--dataset", str(tiny_dataset), "--members", "2",
                "--threshold", "0.01", "--no-write"])
    assert "| 2 |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="5 members"):
        bench.floor(members, tiny_dataset, [5])
