"""``piff sample``: predict the test maps of a dataset at several NFE (``piff.inference.sampling``).

    piff sample --dataset data/demo/dataset.nc --kind piff --model results/phy/model.pt \\
        --options '{"nfe": [1, 2, 5, 10]}' --out results/phy/samples.nc
"""

from __future__ import annotations

import json
import logging

from piff.choices import DEFAULT_PRECISION, EXPERIMENT_TYPES, PRECISIONS, SAMPLERS, TRAINED_KINDS
from piff.commands import json_object, positive_int, torch_device
from piff.errors import PiffInputError

log = logging.getLogger("piff.sample")


def add_arguments(p) -> None:
    p.add_argument("--dataset", required=True, help="data/<dataset>/dataset.nc")
    p.add_argument("--kind", required=True, choices=EXPERIMENT_TYPES)
    p.add_argument("--model", default=None, help="results/<name>/model.pt (trained kinds)")
    p.add_argument("--options", default="{}", help="JSON: nfe (list), sampler, members, seed, hours (list or null)")
    p.add_argument("--experiment", default="", help="experiment name, for the metadata")
    p.add_argument("--device", type=torch_device, default="cpu", help="cpu, cuda, cuda:1, ... or auto")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION,
                   help="the network's arithmetic (as piff predict): auto = bfloat16 where the device computes "
                        "it natively, else float32")
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--out", required=True, help="results/<name>/samples.nc")


def run(args) -> int:
    import torch

    from piff import logs
    from piff.atomic import check_output
    from piff.cf import NETCDF_SUFFIXES
    from piff.data.format import write_netcdf
    from piff.inference.sampling import sample_test_set
    from piff.model.trained import resolve_device

    logs.setup()
    check_output(args.out, inputs=(args.dataset, args.model), suffixes=NETCDF_SUFFIXES)
    if args.threads:
        torch.set_num_threads(args.threads)
    opts = json_object("--options", args.options, '{"nfe": [1, 10]}')
    _check_options(opts)
    if args.kind in TRAINED_KINDS and not args.model:
        raise PiffInputError("--model", f"kind {args.kind} needs a trained model file")
    ds = sample_test_set(args.dataset, kind=args.kind, model_path=args.model, nfe=opts.get("nfe", [1, 2, 5, 10]),
                         sampler=opts.get("sampler", "euler"), members=int(opts.get("members", 1)),
                         seed=int(opts.get("seed", 0)), hours=opts.get("hours"), batch_size=args.batch_size,
                         device=str(resolve_device(args.device)), experiment=args.experiment,
                         precision=args.precision)
    write_netcdf(ds, args.out)
    log.info("wrote %s", args.out)
    return 0


def _check_options(opts: dict) -> None:
    """The --options values, before any work (a bad one would otherwise fail deep in sampling)."""
    def whole(value, low):
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    unknown = sorted(set(opts) - {"nfe", "sampler", "members", "seed", "hours"})
    if unknown:
        raise PiffInputError("--options", f"unknown key(s) {', '.join(unknown)}; known: nfe, sampler, members, "
                                          "seed, hours")
    checks = (("nfe", lambda v: isinstance(v, list) and v and all(whole(n, 1) for n in v),
               "a list of whole numbers >= 1"),
              ("sampler", lambda v: v in SAMPLERS, f"one of {', '.join(SAMPLERS)}"),
              ("members", lambda v: whole(v, 1), "a whole number >= 1"),
              ("seed", lambda v: whole(v, -2 ** 63), "a whole number"),
              ("hours", lambda v: v is None or isinstance(v, list) and all(whole(h, 1) for h in v),
               "null or a list of whole hours >= 1"))
    for key, ok, expected in checks:
        if key in opts and not ok(opts[key]):
            raise PiffInputError("--options", f"{key} must be {expected}, got {json.dumps(opts[key])}")
