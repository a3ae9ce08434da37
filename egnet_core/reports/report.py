"""An evaluation written out for people and programs: metrics.json, report.md, an EF1 chart and example strips."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from egnet_core.criteria.metrics import SegmentationScores
from egnet_core.data.exposure import bin_names
from egnet_core.data.imageio import write_rgb
from egnet_core.data.labels import CLASS_NAMES, colorize
from egnet_core.engine.evaluation import EvaluationResult, Example
from egnet_core.reports.visualize import exposure_picture, strip

# Why each average of the per-class precision and recall in a bin was chosen; Eq. (2) leaves it open.
_AVERAGE_NOTES = {
    "micro": (
        "TP, FP and FN of every class in a bin are pooled, so a bin's precision, recall and EF1 all equal its "
        "pixel accuracy. This is the default because it reproduces the paper's magnitudes: Table 2 reports EF1 "
        "near 0.9 for models whose mIoU is near 50, which a class-averaged F1 would not reach."
    ),
    "macro": (
        "Precision and recall are the unweighted means over the classes present in the bin's ground truth or "
        "prediction, so rare classes count as much as road and sky; expect values near the mIoU."
    ),
    "weighted": (
        "Precision and recall are means over the classes in the bin, weighted by each class's ground-truth "
        "pixels in the bin."
    ),
}


@dataclass(frozen=True)
class ReportFiles:
    root: Path
    metrics: Path  # metrics.json
    markdown: Path  # report.md
    ef1_chart: Path  # ef1_by_bin.png
    examples: tuple[Path, ...]  # examples/*.png


def write_report(
    result: EvaluationResult, out_dir: str | os.PathLike, *, title: str, config: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
) -> ReportFiles:
    """Write the report files into ``out_dir`` (created if missing); ``config`` is recorded in metrics.json, and
    ``model`` (the network's cost, as ``egnet ablate`` measures it) under ``"model"`` where given."""
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    class_names = _class_names(len(result.scores.iou))
    metrics = _write_metrics(result, root / "metrics.json", title, class_names, config, model)
    chart = _write_ef1_chart(result, root / "ef1_by_bin.png", title)
    examples = tuple(_write_example(index, example, root / "examples") for index, example in enumerate(result.examples))
    markdown = root / "report.md"
    markdown.write_text(_markdown(result, title, class_names, chart, examples, root), encoding="utf-8")
    return ReportFiles(root=root, metrics=metrics, markdown=markdown, ef1_chart=chart, examples=examples)


def _write_metrics(
    result: EvaluationResult, path: Path, title: str, class_names: Sequence[str], config: dict[str, Any] | None,
    model: dict[str, Any] | None,
) -> Path:
    summary = {"title": title, **result.scores.to_dict(class_names)}
    summary |= {"images": result.images, "seconds": result.seconds, "config": config or {}}
    if model is not None:
        summary["model"] = model
    # Config values JSON has no type for (paths, for one) are written as their text.
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def _write_ef1_chart(result: EvaluationResult, path: Path, title: str) -> Path:
    ef1 = result.scores.ef1
    names = bin_names(len(ef1))
    # A Figure without pyplot: no global backend or figure registry is touched (Agg is used for the PNG).
    figure = Figure(figsize=(8, 3.5), layout="constrained")
    axes = figure.add_subplot()
    axes.bar(range(len(ef1)), np.nan_to_num(ef1, nan=0.0), color="#3b6ea5")
    for index in result.scores.empty_bins:
        axes.text(index, 0.02, "no pixels", rotation=90, ha="center", va="bottom", fontsize=8)
    axes.set_xticks(range(len(ef1)), names, rotation=45, ha="right", fontsize=8)
    axes.set_ylim(0, 1)
    axes.set_xlabel("exposure bin (V channel of the input)")
    axes.set_ylabel(f"EF1 ({result.scores.average})")
    axes.set_title(f"{title}: mEF1 {_decimal(result.scores.mef1)}")
    figure.savefig(path, dpi=100)
    return path


def _write_example(index: int, example: Example, folder: Path) -> Path:
    panels = [
        ("input", example.image),
        ("ground truth", colorize(example.label)),
        ("prediction", colorize(example.prediction)),
        ("input exposure", exposure_picture(example.exposure)),
    ]
    if example.attention is not None:  # the paper's Figure 9, in the exposure map's colours: 0 dark, 1 yellow
        panels += [("EGL attention, stage 2", exposure_picture(example.attention.stage2)),
                   ("EGL attention, stage 3", exposure_picture(example.attention.stage3))]
    safe_name = re.sub(r"[^\w.-]+", "_", example.name)
    return write_rgb(folder / f"{index:02d}_{safe_name}.png", strip(panels))


def _markdown(
    result: EvaluationResult,
    title: str,
    class_names: Sequence[str],
    chart: Path,
    examples: Sequence[Path],
    root: Path,
) -> str:
    scores = result.scores
    lines = [
        f"# {title}",
        "",
        f"{result.images} images, {result.seconds:.1f} s. Scores are totals over the whole split.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| mIoU (%) | {_percent(scores.miou)} |",
        f"| pixel accuracy (%) | {_percent(scores.pixel_accuracy)} |",
        f"| mEF1 | {_decimal(scores.mef1)} |",
        "",
        *_iou_table(scores.iou, class_names),
        *_ef1_table(scores),
        f"![EF1 by exposure bin]({chart.relative_to(root).as_posix()})",
        "",
    ]
    if examples:
        shown = "Input, ground truth, prediction and input exposure"
        if any(example.attention is not None for example in result.examples):
            shown += (", then the attention maps W_r of the Exposure Guidance Layers after stages 2 and 3 (Eq. 1; "
                      "the paper's Figure 9), from 0 (dark) to 1 (yellow)")
        lines += ["## Examples", "", f"{shown}.", ""]
        for path in examples:
            lines += [f"![{path.stem}]({path.relative_to(root).as_posix()})", ""]
    return "\n".join(lines)


def _iou_table(iou: np.ndarray, class_names: Sequence[str]) -> list[str]:
    rows = [f"| {name} | {_percent(value)} |" for name, value in zip(class_names, iou)]
    note = "– marks a class absent from both ground truth and prediction; mIoU averages the others."
    return ["## IoU by class", "", "| class | IoU (%) |", "|---|---|", *rows, "", note, ""]


def _ef1_table(scores: SegmentationScores) -> list[str]:
    """EF1 per exposure bin in the layout of the paper's Table 2: bins as columns, mEF1 last."""
    names = bin_names(len(scores.ef1))
    header = "| | " + " | ".join(names) + " | mEF1 |"
    rule = "|---" * (len(names) + 2) + "|"
    row = "| EF1 | " + " | ".join(_decimal(value) for value in scores.ef1) + f" | {_decimal(scores.mef1)} |"
    empty = ", ".join(names[index] for index in scores.empty_bins)
    notes = [f"Bins without labelled pixels ({empty}) are marked – and left out of mEF1.", ""] if empty else []
    return [
        "## Exposure-aware F1 (layout of the paper's Table 2)",
        "",
        header,
        rule,
        row,
        "",
        *notes,
        f"Averaging over classes: **{scores.average}**. {_AVERAGE_NOTES[scores.average]}",
        "",
    ]


def _class_names(num_classes: int) -> Sequence[str]:
    return CLASS_NAMES if num_classes == len(CLASS_NAMES) else [str(index) for index in range(num_classes)]


def _percent(value: float) -> str:
    return "–" if math.isnan(value) else f"{100 * value:.1f}"


def _decimal(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.3f}"
