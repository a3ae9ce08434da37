"""``egnet ablate`` and ``egnet compare``: the paper's ablation tables as commands (see ``engine.ablation`` and
``reports.comparison``)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from egnet_core.config import ARCHITECTURES, VARIANTS


def add_study_commands(commands: argparse._SubParsersAction) -> None:
    ablate = commands.add_parser(
        "ablate", help="train and score every variant of Tables 4 and 5 with one seed and budget: one table")
    ablate.add_argument("--config", help="YAML training config (its seed, schedule and data for every variant)")
    ablate.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override one config field for every variant (repeatable)")
    ablate.add_argument("--data", required=True, type=Path, help="data set root (data.root)")
    ablate.add_argument("--out", required=True, type=Path,
                        help="study folder: runs/NAME/ per variant, comparison.md/.json/.png; run again to resume")
    ablate.add_argument("--variants", type=lambda text: [name.strip() for name in text.split(",")],
                        default=list(VARIANTS), help=f"comma-separated EGNet variants (default: all: "
                        f"{','.join(VARIANTS)}) and other networks ({','.join(ARCHITECTURES[1:])}; output stride 8)")
    ablate.add_argument("--split", default="val", help="the split scored: NightCity's test set is 'val' (default)")
    ablate.add_argument("--native-size", action="store_true", help="score at each image's size, not the paper's "
                        "900x900")
    ablate.set_defaults(run=_ablate)

    compare = commands.add_parser("compare", help="the ablation table from existing runs' metrics.json files")
    compare.add_argument("runs", nargs="+", type=Path, metavar="RUN_OR_METRICS",
                         help="a metrics.json, or a run folder holding test/metrics.json or metrics.json")
    compare.add_argument("--out", required=True, type=Path, help="folder for comparison.md/.json/.png")
    compare.add_argument("--title", default="Comparison", help="the table's title")
    compare.set_defaults(run=_compare)


def _ablate(args: argparse.Namespace) -> int:
    from egnet_core.cli import ensure_writable_dir
    from egnet_core.config import load_train_config
    from egnet_core.deploy.inference import PAPER_INPUT_SIZE
    from egnet_core.engine.ablation import check_names, run_ablation

    names = check_names(args.variants)
    config = load_train_config(args.config, args.set)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, root=str(args.data)))
    ensure_writable_dir(args.out, "--out")

    def report(run) -> None:
        print(f"{run.name}: {run.status}; {run.final}", flush=True)

    result = run_ablation(config, args.out, names=names, test_split=args.split,
                          eval_size=None if args.native_size else PAPER_INPUT_SIZE, on_run=report)
    print(f"table: {result.table.markdown} (chart {result.table.chart.name}, {result.table.json.name})")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from egnet_core.cli import ensure_writable_dir
    from egnet_core.reports.comparison import read_row, write_comparison

    ensure_writable_dir(args.out, "--out")
    rows = [read_row(path) for path in args.runs]
    names = [row.name for row in rows]
    if len(set(names)) < len(names):  # two runs of one folder name: the path tells them apart
        rows = [row if names.count(row.name) == 1 else dataclasses.replace(row, name=str(path))
                for row, path in zip(rows, args.runs)]
    files = write_comparison(rows, args.out, title=args.title)
    print(f"table of {len(rows)} runs: {files.markdown}")
    return 0
