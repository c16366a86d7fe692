"""``piff evaluate``: score a samples file against the solver ground truth of its dataset.

    piff evaluate --samples results/base/samples.nc --dataset data/demo/dataset.nc \\
        --out-csv results/base/metrics.csv --out-json results/base/metrics.json

The CSV has one row per (nfe, storm group, hour) with hour "all" first; the JSON holds the
hour "all" rows nested by nfe and group, plus metadata (see ``piff.evaluation.evaluate``).
"""

from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("--samples", required=True, metavar="FILE", help="results/<name>/samples.nc")
    parser.add_argument("--dataset", required=True, metavar="FILE", help="the dataset the samples predict")
    parser.add_argument("--out-csv", required=True, metavar="FILE", help="metrics per nfe, group and hour")
    parser.add_argument("--out-json", required=True, metavar="FILE", help="hour-'all' metrics and metadata")


def run(args) -> int:
    from piff import logs
    from piff.atomic import check_output
    from piff.evaluation.evaluate import evaluate_files

    logs.setup()
    for option, out, suffixes in (("--out-csv", args.out_csv, (".csv",)), ("--out-json", args.out_json, (".json",))):
        check_output(out, inputs=(args.samples, args.dataset), suffixes=suffixes, option=option)
    table = evaluate_files(args.samples, args.dataset, args.out_csv, args.out_json)
    overall = table[(table["group"] == "all") & (table["hour"] == "all")]
    for _, r in overall.iterrows():
        print(f"NFE {r['nfe']}, {r['terrain']} terrain: MAE {r['mae']:.4f} m, RMSE {r['rmse']:.4f} m, "
              f"CSI@0.1 {r['csi@0.1']:.3f} over {r['n_maps']} maps")
    return 0
