"""Cost of the network presets on this machine: one training step and one evaluation, side by side.

For each preset in --presets (the bridge's network, 3 input maps): forward + backward of 16 maps
of 64 x 64 cells (the demo training batch) on 1 thread, as the workflow's train rule runs; and one
evaluation of a 256 x 256 map on 2 threads in ``piff predict``'s arithmetic (inference mode,
channels_last, float32), the fastest of 3 after a warm-up. The presets alternate within each of
--rounds rounds, so a drift of the shared machine's speed hits them alike; the table gives the
medians over the rounds (the first round's training step is left out as a warm-up). Random
weights: the cost does not depend on them. Prints a markdown table (quoted in docs/benchmarks.md,
"The patch-2 network"); run it alone.

    python bench/networks.py                                   # demo, demo_patch2, demo_patch2_fine; ~1 min
    python bench/networks.py --presets demo fast --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from piff.model import ModelConfig, build_model, count_parameters

DEFAULT_PRESETS = ("demo", "demo_patch2", "demo_patch2_fine")


def _training_step_s(net, x, t, rain) -> float:
    start = time.perf_counter()
    net(x, t, x, x, rain).square().mean().backward()
    return time.perf_counter() - start


def _evaluation_s(net, x, rain) -> float:
    t = torch.ones(1)
    start = time.perf_counter()
    net(x, t, x, x, rain)
    return time.perf_counter() - start


def measure(presets, rounds: int = 5, train_size: int = 64, batch: int = 16, eval_size: int = 256) -> dict:
    """{preset: (parameters, median training-step s, median evaluation s)}."""
    nets = {name: build_model(ModelConfig.from_preset(name)) for name in presets}
    g = torch.Generator().manual_seed(0)
    xb, rain_b = torch.randn(batch, 1, train_size, train_size, generator=g), 20 * torch.rand(batch, 24, generator=g)
    x1 = torch.randn(1, 1, eval_size, eval_size, generator=g).to(memory_format=torch.channels_last)
    rain_1 = 20 * torch.rand(1, 24, generator=g)
    train = {name: [] for name in presets}
    evaluate = {name: [] for name in presets}
    threads = torch.get_num_threads()
    try:
        for _ in range(rounds):
            for name, net in nets.items():
                torch.set_num_threads(1)
                net.train().to(memory_format=torch.contiguous_format)
                train[name].append(_training_step_s(net, xb, torch.rand(batch, generator=g), rain_b))
                net.zero_grad(set_to_none=True)
                torch.set_num_threads(2)
                net.eval().to(memory_format=torch.channels_last)
                with torch.inference_mode():
                    _evaluation_s(net, x1, rain_1)  # warm-up
                    evaluate[name].append(min(_evaluation_s(net, x1, rain_1) for _ in range(3)))
    finally:
        torch.set_num_threads(threads)
    return {name: (count_parameters(nets[name]), statistics.median(train[name][1:] or train[name]),
                   statistics.median(evaluate[name])) for name in presets}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=list(DEFAULT_PRESETS))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--train-size", type=int, default=64, help="training map side, cells")
    ap.add_argument("--eval-size", type=int, default=256, help="evaluated map side, cells")
    a = ap.parse_args(argv)
    results = measure(a.presets, a.rounds, a.train_size, eval_size=a.eval_size)
    print(f"| network | parameters | training step, 16 maps of {a.train_size} x {a.train_size}, fwd + bwd, 1 thread "
          f"| one evaluation at {a.eval_size} x {a.eval_size}, 2 threads |")
    print("|---|---:|---:|---:|")
    for name, (params, step_s, eval_s) in results.items():
        print(f"| `{name}` | {params / 1e6:.2f} M | {step_s:.2f} s | {1000 * eval_s:.0f} ms |")


if __name__ == "__main__":
    main()
