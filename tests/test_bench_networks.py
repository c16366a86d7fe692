"""bench/networks.py: the presets' costs, measured for real on small maps."""

from bench_utils import load_bench


def test_network_costs_are_measured_for_each_preset_and_printed(capsys):
    bench = load_bench("networks")
    results = bench.measure(["demo", "demo_patch2"], rounds=2, train_size=16, batch=2, eval_size=32)
    assert list(results) == ["demo", "demo_patch2"]
    for params, step_s, eval_s in results.values():
        assert 1e6 < params < 2e6 and step_s > 0 and eval_s > 0
    bench.main(["--presets", "demo_patch2", "--rounds", "1", "--train-size", "16", "--eval-size", "32"])
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| network |") and table[2].startswith("| `demo_patch2` | 1.24 M |")
