"""Tables 4 and 5 of the paper, for any set of runs: mIoU, mEF1, EF1 per exposure bin, and the model's cost.

Each row comes from one ``metrics.json`` written by ``egnet evaluate`` or ``egnet ablate`` (the cost columns only
where the run recorded them, under ``"model"``), so users can set their own runs beside ours with
``egnet compare``. Written as ``comparison.md``, ``comparison.json`` and a bar chart, ``comparison.png``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

# Where a run folder keeps the scores of its test split: egnet ablate's layout, then egnet evaluate --out's.
METRICS_PLACES = ("test/metrics.json", "metrics.json")


@dataclass(frozen=True)
class ModelCost:
    parameters: int
    gflops: float  # one 1024×512 frame
    ms_per_frame: float  # one 1024×512 frame, batch 1, on the machine that ran the study
    device: str


@dataclass(frozen=True)
class ComparisonRow:
    name: str
    miou: float | None  # None where the metrics file has null (nothing to score)
    mef1: float | None
    ef1: dict[str, float | None]  # by exposure bin name
    cost: ModelCost | None  # None where the run did not record it
    source: str  # the metrics.json read


@dataclass(frozen=True)
class ComparisonFiles:
    markdown: Path
    json: Path
    chart: Path


def metrics_file(path: str | os.PathLike) -> Path:
    """``path`` itself when it is a file, else the first of ``METRICS_PLACES`` in that folder."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"{str(path)!r} does not exist: give a metrics.json or a run folder holding one")
    for place in METRICS_PLACES:
        if (path / place).is_file():
            return path / place
    raise FileNotFoundError(f"{str(path)!r} holds no {' or '.join(METRICS_PLACES)}: evaluate the run first "
                            "(egnet evaluate --out RUN/test)")


def read_row(path: str | os.PathLike, name: str | None = None) -> ComparisonRow:
    """One row from a metrics.json or a run folder; ``name`` defaults to the run folder's name."""
    source = metrics_file(path)
    try:
        metrics = json.loads(source.read_text(encoding="utf-8"))
        miou, mef1, ef1 = metrics["miou"], metrics["mef1"], dict(metrics["ef1"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{str(source)!r} is not a metrics.json of egnet evaluate (needs miou, mef1 and ef1 by "
                         f"exposure bin): {error}") from None
    cost = metrics.get("model")
    if name is None:
        folder = source.parent.parent if source.parent.name == "test" else source.parent
        name = folder.name
    return ComparisonRow(name=name, miou=miou, mef1=mef1, ef1=ef1, cost=None if cost is None else ModelCost(**cost),
                         source=str(source))


def write_comparison(rows: Sequence[ComparisonRow], out_dir: str | os.PathLike, *, title: str) -> ComparisonFiles:
    """The table (Markdown and JSON) and the chart of ``rows``, in their order, into ``out_dir``."""
    if not rows:
        raise ValueError("nothing to compare: no runs given")
    bins = list(rows[0].ef1)
    for row in rows[1:]:
        if list(row.ef1) != bins:
            raise ValueError(f"{row.source!r} has exposure bins {list(row.ef1)}, {rows[0].source!r} has {bins}: "
                             "runs scored with different bins cannot share a table")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = ComparisonFiles(markdown=out / "comparison.md", json=out / "comparison.json", chart=out / "comparison.png")
    files.json.write_text(json.dumps({"title": title, "rows": [asdict(row) for row in rows]}, indent=2) + "\n",
                          encoding="utf-8")
    _write_chart(rows, files.chart, title)
    files.markdown.write_text(_markdown(rows, bins, title, files.chart.name), encoding="utf-8")
    return files


def _markdown(rows: Sequence[ComparisonRow], bins: Sequence[str], title: str, chart: str) -> str:
    header = ["method", "mIoU (%)", "mEF1", *(f"EF1 {name}" for name in bins), "params (M)", "GFLOPs (1024×512)",
              "ms/frame"]
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    best_miou = max((row.miou for row in rows if row.miou is not None), default=None)
    best_mef1 = max((row.mef1 for row in rows if row.mef1 is not None), default=None)
    for row in rows:
        miou = _bold(_number(row.miou, 100, 2), row.miou is not None and row.miou == best_miou)
        mef1 = _bold(_number(row.mef1, 1, 4), row.mef1 is not None and row.mef1 == best_mef1)
        cost = row.cost
        cells = [row.name, miou, mef1, *(_number(row.ef1[name], 1, 3) for name in bins),
                 "–" if cost is None else f"{cost.parameters / 1e6:.1f}",
                 "–" if cost is None else f"{cost.gflops:.1f}",
                 "–" if cost is None else f"{cost.ms_per_frame:.0f} ({cost.device})"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Best mIoU and mEF1 in bold. EF1 per bin as in the paper's Tables 4 and 5; – where a bin held no "
              "pixels or a run did not record its cost.", "", f"![mIoU and mEF1 per method]({chart})", ""]
    lines += [f"- {row.name}: `{row.source}`" for row in rows]
    return "\n".join(lines) + "\n"


def _write_chart(rows: Sequence[ComparisonRow], path: Path, title: str) -> None:
    figure = Figure(figsize=(max(6.0, 1.2 * len(rows) + 2), 3.8), layout="constrained")
    axes = figure.add_subplot()
    positions = np.arange(len(rows))
    miou = [np.nan if row.miou is None else row.miou for row in rows]
    mef1 = [np.nan if row.mef1 is None else row.mef1 for row in rows]
    axes.bar(positions - 0.2, np.nan_to_num(miou), width=0.4, label="mIoU", color="#3b6ea5")
    axes.bar(positions + 0.2, np.nan_to_num(mef1), width=0.4, label="mEF1", color="#d08c2f")
    axes.set_xticks(positions, [row.name for row in rows], rotation=30, ha="right", fontsize=8)
    axes.set_ylim(0, 1)
    axes.set_ylabel("score")
    axes.set_title(title)
    axes.legend()
    figure.savefig(path, dpi=100)


def _number(value: float | None, scale: float, digits: int) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value * scale:.{digits}f}"


def _bold(text: str, bold: bool) -> str:
    return f"**{text}**" if bold else text
