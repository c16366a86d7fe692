"""bench/main_job.py: the per-rule job times count the main job's jobs, and only those."""

from __future__ import annotations

from pathlib import Path

from bench_utils import load_bench


def write_benchmark(path: Path, seconds: float) -> None:
    """A Snakemake benchmark file (tab-separated, header then one row per repeat)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:00\t1.0\n")


def test_stage_seconds_sums_the_main_job_rules_and_skips_the_ensemble_target(tmp_path):
    stage_seconds = load_bench("main_job").stage_seconds
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text("experiments:\n  phy: {}\n  spm: {}\n")
    write_benchmark(tmp_path / "data/demo/benchmarks/simulate/dem_000_chunk_000.tsv", 60.0)
    write_benchmark(tmp_path / "data/demo/benchmarks/simulate/dem_001_chunk_000.tsv", 40.0)
    write_benchmark(tmp_path / "data/demo/benchmarks/assemble.tsv", 9.0)
    write_benchmark(tmp_path / "results/phy/benchmarks/train.tsv", 240.0)
    write_benchmark(tmp_path / "results/phy/benchmarks/sample.tsv", 44.0)
    write_benchmark(tmp_path / "results/spm/benchmarks/sample.tsv", 2.0)
    write_benchmark(tmp_path / "results/benchmarks/summary.tsv", 0.5)
    # the ensemble target, run afterwards in the same folder: its files name experiments too
    write_benchmark(tmp_path / "results/ensemble/benchmarks/phy.tsv", 6.0)
    write_benchmark(tmp_path / "results/ensemble/benchmarks/solver.tsv", 89.0)
    write_benchmark(tmp_path / "results/ensemble/benchmarks/summary.tsv", 5.0)

    assert stage_seconds(tmp_path) == {
        "simulate": 100.0, "assemble": 9.0, "train": 240.0, "sample": 46.0, "summary": 0.5}
