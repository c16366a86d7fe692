"""bench/predict.py: every (inference mode, precision) combination is run against one solver
run of each size, with its skill next to its time (a real solver and a real trained model)."""

from __future__ import annotations

import json
import shutil

from bench_utils import load_bench


def test_each_inference_mode_and_precision_gets_a_row_with_its_skill(model_path, capsys):
    bench = load_bench("predict")
    bench.main(["--model", str(model_path), "--sizes", "32", "--nfe", "1", "--repeats", "1", "--pairs", "1",
                "--inference", "windows", "tiled", "--precision", "fp32", "bf16", "--threads", "1", "--no-write"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 32x32 |")]
    assert len(rows) == 4  # 2 modes x 2 precisions, one NFE
    # the 32x32 DEM is larger than the model's 16x16 training maps: windowed attention, or tiles
    kinds = [row.split(" | ")[2] for row in rows]
    assert kinds == ["whole-domain, windows of 16x16 cells attention, float32",
                     "whole-domain, windows of 16x16 cells attention, bfloat16 autocast",
                     "tiled, float32", "tiled, bfloat16 autocast"]
    solver_s = {row.split(" | ")[3] for row in rows}
    assert len(solver_s) == 1  # one solver run for every combination
    for row in rows:
        mae_cm = float(row.split(" | ")[8].split(" cm")[0])
        assert 0.0 <= mae_cm < 100.0  # scored against the solver's maps


def test_the_default_nfe_is_timed_in_pairs_and_scored_on_its_own_maps(model_path, tmp_path, capsys):
    """A model whose recorded default NFE (2) is not the first NFE of the run: its row is the one
    timed in pairs with the solver, and its skill comes from its own maps, not from the maps of
    the NFE timed just before it (the bench asserts the scored maps' NFE)."""
    from piff.model.trained import load_trained

    model = tmp_path / "model.pt"
    shutil.copy(model_path, model)
    fingerprint = load_trained(model).meta["fingerprint"]
    (tmp_path / "metrics.json").write_text(json.dumps({"model_fingerprint": fingerprint, "default_nfe": {"nfe": 2},
                                                       "metrics": {}}))
    bench = load_bench("predict")
    bench.main(["--model", str(model), "--sizes", "32", "--nfe", "1", "--repeats", "1", "--pairs", "2",
                "--precision", "fp32", "--threads", "1", "--no-write"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 32x32 |")]
    assert [row.split(" | ")[1] for row in rows] == ["1", "2 (default)"]
    assert "(" in rows[1].split(" | ")[6] and "(" not in rows[0].split(" | ")[6]  # range over the pairs: NFE 2
