"""Model speed on this machine: training step time per sample and sampling latency.

Measures (median of several repeats, after one warm-up):
* forward + backward of ``training_loss`` per sample, ``tiny`` preset, 64x64 and 256x256;
* sampling latency of one 256x256 map (Euler) at NFE 1, 5, 10, ``tiny`` preset;
* sampling latency of one 256x256 map at NFE 1, ``paper`` preset (skipped with --no-paper).

Usage: python bench/model.py [--quick] [--threads N] [--no-paper]
Writes the "model" section of docs/benchmarks.md via bench/_report.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import median_time, write_section  # noqa: E402

from piff.model import Bridge, ModelConfig, Normaliser, build_model, count_parameters, sample, training_loss  # noqa: E402


def synthetic_batch(b: int, size: int, seed: int = 0) -> dict:
    """Physical-unit batch in the data loader's layout (values only need to be plausible)."""
    g = torch.Generator().manual_seed(seed)
    elevation = 10 + 3 * torch.randn(b, 1, size, size, generator=g)
    depth = torch.relu(torch.randn(b, 1, size, size, generator=g)) * 0.3
    return dict(depth=depth, depth_prev=0.9 * depth, elevation=elevation, prior=0.8 * depth,
                rain_window=30 * torch.rand(b, 24, generator=g), flux_x=torch.zeros(b, 1, size, size + 1),
                flux_y=torch.zeros(b, 1, size + 1, size), loss=torch.zeros_like(depth),
                rain_mm_per_h=torch.full((b,), 30.0), dx=torch.full((b,), 20.0), hour=torch.full((b,), 5))




def train_step_per_sample(model, size: int, batch_size: int, repeats: int) -> float:
    batch = synthetic_batch(batch_size, size)
    norm = Normaliser.fit(batch["depth"], batch["elevation"])
    bridge = Bridge("constant")

    def step():
        loss, _ = training_loss(model, bridge, norm, batch, use_physics=True, physics_weight=0.1)
        model.zero_grad(set_to_none=True)
        loss.backward()

    return median_time(step, repeats) / batch_size


def sampling_latency(model, nfe: int, repeats: int, size: int = 256) -> float:
    batch = synthetic_batch(1, size)
    norm = Normaliser.fit(batch["depth"], batch["elevation"])
    return median_time(lambda: sample(model, Bridge("constant"), norm, batch["elevation"], batch["prior"],
                                      batch["rain_window"], nfe=nfe, method="euler"), repeats)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, smaller batches (a smoke run)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--no-paper", action="store_true", help="skip the paper preset's sampling latency")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    repeats = 2 if args.quick else 5
    tiny = build_model(ModelConfig.from_preset("tiny"))
    rows = []
    for size, bs in ((64, 2 if args.quick else 8), (256, 1 if args.quick else 2)):
        s = train_step_per_sample(tiny, size, bs, repeats)
        rows.append(f"| tiny | forward + backward (training_loss, physics on), batch {bs} | {size}x{size} | "
                    f"{s * 1e3:.0f} ms / sample |")
        print(rows[-1], flush=True)
    for nfe in (1, 5, 10):
        s = sampling_latency(tiny, nfe, repeats)
        rows.append(f"| tiny | sample one map, Euler, NFE {nfe} | 256x256 | {s * 1e3:.0f} ms |")
        print(rows[-1], flush=True)
    paper_params = ""
    if not args.no_paper:
        paper = build_model(ModelConfig.from_preset("paper"))
        paper_params = f", paper {count_parameters(paper) / 1e6:.1f} M"
        s = sampling_latency(paper, 1, 1 if args.quick else 3)
        rows.append(f"| paper | sample one map, Euler, NFE 1 | 256x256 | {s:.2f} s |")
        print(rows[-1], flush=True)
    body = (f"CPU, {torch.get_num_threads()} torch threads, float32; median of {repeats} repeats after a warm-up"
            f"{' (--quick: fewer repeats, smaller batches)' if args.quick else ''}. "
            f"Parameters: tiny {count_parameters(tiny) / 1e6:.2f} M{paper_params}.\n\n"
            "| preset | what | map | time |\n|---|---|---|---|\n" + "\n".join(rows))
    write_section("model", "Model: training step and sampling latency", body)


if __name__ == "__main__":
    main()
