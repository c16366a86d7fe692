"""bench/ensemble_cost.py: the workflow's timed ensemble runs (solver, model, both controls, the
anchored ensemble) at several member counts, on a real tiny dataset and a real trained model."""

from __future__ import annotations

from bench_utils import load_bench


def test_each_member_count_gets_a_row_of_wall_times_and_speed_ups(tiny_dataset, model_path, capsys):
    bench = load_bench("ensemble_cost")
    bench.main(["--dataset", str(tiny_dataset), "--model", str(model_path), "--members", "2", "3", "--storms", "1",
                "--dems", "0", "--threads", "1", "--nfe", "1", "--hours", "2", "4", "--no-write"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("| 2 |", "| 3 |"))]
    assert len(rows) == 4  # printed as measured, then in the table
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        seconds = [float(c) for c in cells[1:6]]
        raw, anchored = (float(c.rstrip("x")) for c in cells[6:8])
        assert all(s > 0 for s in seconds) and raw > 0
        # one thread: nothing runs alongside, the anchored ensemble pays for both control runs too
        assert seconds[4] > seconds[2] and anchored < raw
