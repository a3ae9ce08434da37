"""A fleet of drives summed up for the team that recorded them: summary.json, summary.md and two charts.

Per drive and in total: frames, bag time, skipped frames with their reasons, the exposure histogram (the
paper's Figure 4) and the share of pixels per predicted class; then the frames to look at (darkest, most
saturated, least confident), each with its bag, topic and stamp, so that hard night cases can be found
again in the recordings. The drives' content (``drives``, ``total``, ``failed``) depends only on the bags and
the model; how the run went (wall time, processes, memory) is kept apart under ``run``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from egnet_core.data.labels import PALETTE
from egnet_core.data.statistics import format_histogram_table, plot_exposure_histogram
from egnet_core.reports.drive_summary import TOP_K, DriveSummary, FailedDrive, FrameRef, merge_drives

SUMMARY_JSON, SUMMARY_MARKDOWN = "summary.json", "summary.md"
EXPOSURE_CHART, CLASS_CHART = "summary_exposure.png", "summary_classes.png"
SUMMARY_FILES = (SUMMARY_JSON, SUMMARY_MARKDOWN, EXPOSURE_CHART, CLASS_CHART)
MARK = ("written_by", "egnet")  # in summary.json: what lets a rerun replace the summary of an earlier one

_LISTS = {
    "darkest": ("Darkest frames", "Lowest mean exposure (V channel of HSV: 0 black, 1 white)", "mean exposure"),
    "most_saturated": ("Most saturated frames", "Largest share of pixels with V >= 0.9 (the last exposure bin)",
                       "share V >= 0.9"),
    "least_confident": ("Least confident frames", "Lowest mean top softmax probability of the model",
                        "mean confidence"),
}


@dataclass(frozen=True)
class FleetRun:
    """How the fleet was segmented; it differs between runs where the drives' summaries do not."""

    seconds: float  # wall time, start to end, of the slowest process
    frames: int  # frames segmented by this run (drives done by an earlier run not counted)
    resumed: tuple[str, ...]  # drives an earlier run had finished, read back from its records
    world_size: int  # processes under torchrun (1 without)
    workers: int  # segmenting processes per torchrun process
    peak_memory_mib: dict[str, float]  # peak resident memory of each process that segmented

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class FleetSummaryFiles:
    json: Path
    markdown: Path
    exposure_chart: Path | None  # None without any frame
    class_chart: Path | None


def check_replaceable(out_dir: str | os.PathLike) -> None:
    """ValueError where ``out_dir`` holds a summary file egnet did not write (a ``summary.md`` without an
    egnet ``summary.json``, or a ``summary.json`` without egnet's mark): the summary would replace it."""
    root = Path(out_dir)
    present = [name for name in SUMMARY_FILES if (root / name).exists() or (root / name).is_symlink()]
    if not present:
        return
    try:
        marked = json.loads((root / SUMMARY_JSON).read_text(encoding="utf-8")).get(MARK[0]) == MARK[1]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        marked = False
    if not marked:
        raise ValueError(f"{str(root)!r} holds {present}, which an earlier egnet fleet run did not write (no "
                         f"{SUMMARY_JSON} with {MARK[0]}: {MARK[1]}); refusing to replace them: move them away or "
                         "choose another --out")


def write_fleet_summary(drives: Sequence[DriveSummary], failed: Sequence[FailedDrive], run: FleetRun,
                        out_dir: str | os.PathLike, *, title: str = "Fleet summary", top_k: int = TOP_K
                        ) -> FleetSummaryFiles:
    """The summary of ``drives`` (in their order) into ``out_dir``, with the ``top_k`` frames to look at of each
    kind; each file is replaced whole, never left half-written."""
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    total = merge_drives(drives, k=top_k)
    histogram = total.exposure
    exposure_chart = class_chart = None
    if histogram is not None:
        exposure_chart = _replace(root / EXPOSURE_CHART, lambda path: plot_exposure_histogram(
            histogram, path, title=f"{title}: pixels per frame by exposure"))
        class_chart = _replace(root / CLASS_CHART, lambda path: _plot_classes(total, path, title))
    content = {MARK[0]: MARK[1], "title": title, "total": total.to_json(), "drives": [d.to_json() for d in drives],
               "failed": [asdict(f) for f in failed], "run": asdict(run) | {"frames_per_second": run.frames_per_second}}
    files = FleetSummaryFiles(json=root / SUMMARY_JSON, markdown=root / SUMMARY_MARKDOWN,
                              exposure_chart=exposure_chart, class_chart=class_chart)
    _replace(files.json, lambda path: path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8"))
    markdown = _markdown(total, drives, failed, run, title, exposure_chart, class_chart)
    _replace(files.markdown, lambda path: path.write_text(markdown, encoding="utf-8"))
    return files


def read_fleet_summary(path: str | os.PathLike) -> dict[str, Any]:
    """summary.json as written (for tools and tests); ``drives`` and ``total`` as DriveSummary."""
    content = json.loads(Path(path).read_text(encoding="utf-8"))
    return content | {"total": DriveSummary.from_json(content["total"]),
                      "drives": [DriveSummary.from_json(d) for d in content["drives"]]}


def _replace(path: Path, write) -> Path:
    """``write(temporary)`` then one rename over ``path``: a run killed here leaves the old file or the new."""
    temporary = path.with_name(f".{path.name}.tmp")
    write(temporary)
    temporary.replace(path)
    return path


def _plot_classes(total: DriveSummary, path: Path, title: str) -> None:
    shares = total.class_shares
    names = list(shares)
    figure = Figure(figsize=(8, 0.28 * len(names) + 1.2), layout="constrained")
    axes = figure.add_subplot()
    colours = PALETTE / 255 if len(names) == len(PALETTE) else "#4c72b0"
    axes.barh(range(len(names)), [100 * share for share in shares.values()], color=colours, edgecolor="#333333",
              linewidth=0.5)
    axes.set_yticks(range(len(names)), names, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("share of predicted pixels (%)")
    axes.set_title(f"{title}: predicted classes ({total.frames} frames)")
    figure.savefig(path, format="png", dpi=100)


def _markdown(total: DriveSummary, drives: Sequence[DriveSummary], failed: Sequence[FailedDrive], run: FleetRun,
              title: str, exposure_chart: Path | None, class_chart: Path | None) -> str:
    lines = [f"# {title}", "",
             f"{len(drives)} drives, {total.frames} frames, {_duration(total.duration_s)} of bag time, "
             f"{sum(total.skipped.values())} frames skipped, {len(failed)} drives failed.", "",
             f"This run: {run.frames} frames in {run.seconds:.1f} s ({run.frames_per_second:.2f} frames/s) on "
             f"{run.world_size} process(es) × {run.workers} worker(s); {len(run.resumed)} drives finished by an "
             "earlier run were read back from their records.", ""]
    if exposure_chart is not None:
        lines += ["## Exposure (the paper's Figure 4)", "", f"![exposure histogram]({exposure_chart.name})", "",
                  format_histogram_table(total.exposure), "",
                  "## Predicted classes", "", f"![share of pixels per class]({class_chart.name})", "",
                  "| class | share of pixels |", "|---|---:|",
                  *(f"| {name} | {share:.2%} |" for name, share in total.class_shares.items()),
                  *([f"| (unlabelled: below the confidence threshold) | {_ignored_share(total):.2%} |"]
                    if total.ignored_pixels else []), ""]
    lines += _frames_to_look_at(total)
    lines += _drive_table(drives)
    if total.skipped:
        lines += ["## Skipped frames", "", "| reason | frames |", "|---|---:|",
                  *(f"| {_cell(reason)} | {count} |" for reason, count in total.skipped.items()), ""]
    if total.damage:
        lines += ["## Damaged inputs", "", "Segmented up to the damage:", "",
                  *(f"- {_cell(message)}" for message in total.damage), ""]
    if failed:
        lines += ["## Failed drives", "", "Not segmented; a rerun tries them again.", "", "| bag | reason |",
                  "|---|---|", *(f"| {_cell(f.bag)} | {_cell(f.reason)} |" for f in failed), ""]
    return "\n".join(lines)


def _frames_to_look_at(total: DriveSummary) -> list[str]:
    lines = ["## Frames to look at", "",
             "The stamp is the frame's header stamp; the log time is the bag's own clock (seconds since the "
             "epoch), for `ros2 bag play --start-offset` (subtract the bag's start).", ""]
    for name, (heading, meaning, column) in _LISTS.items():
        frames: tuple[FrameRef, ...] = getattr(total, name)
        lines += [f"### {heading}", "", f"{meaning}.", "",
                  f"| # | bag | topic | stamp | log time | {column} |", "|---:|---|---|---:|---:|---:|"]
        lines += [f"| {rank} | {_cell(f.bag)} | {f.topic} | {_seconds(f.stamp_ns)} | {_seconds(f.log_time_ns)} | "
                  f"{f.value:.4f} |" for rank, f in enumerate(frames, start=1)]
        lines.append("")
    return lines


def _drive_table(drives: Sequence[DriveSummary]) -> list[str]:
    lines = ["## Drives", "",
             "Exposure: share of the input pixels with V < 0.1 (dark) and V >= 0.9 (saturated); classes: the "
             "three with most predicted pixels.", "",
             "| bag | frames | bag time | skipped | V < 0.1 | V >= 0.9 | top classes | damaged |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    for drive in drives:
        histogram = drive.exposure
        dark, bright = (f"{histogram.shares[0]:.1%}", f"{histogram.shares[-1]:.1%}") if histogram else ("–", "–")
        top = sorted(drive.class_shares.items(), key=lambda item: -item[1])[:3] if drive.frames else []
        classes = ", ".join(f"{name} {share:.0%}" for name, share in top) or "–"
        lines.append(f"| {_cell(drive.bag)} | {drive.frames} | {_duration(drive.duration_s)} | "
                     f"{sum(drive.skipped.values())} | {dark} | {bright} | {classes} | "
                     f"{'yes' if drive.damage else ''} |")
    lines += ["", "### Exposure per drive (share of pixels per bin)", ""]
    bins = next((d.exposure.bin_names for d in drives if d.frames), ())
    if bins:
        lines += ["| bag | " + " | ".join(bins) + " |", "|---|" + "---:|" * len(bins)]
        lines += [f"| {_cell(d.bag)} | " + " | ".join(f"{share:.1%}" for share in d.exposure.shares) + " |"
                  for d in drives if d.frames]
    return [*lines, ""]


def _ignored_share(drive: DriveSummary) -> float:
    return drive.ignored_pixels / (sum(drive.class_pixels) + drive.ignored_pixels)


def _duration(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{rest:04.1f}"


def _seconds(nanoseconds: int) -> str:
    return f"{nanoseconds // 10**9}.{nanoseconds % 10**9:09d}"


def _cell(text: str) -> str:
    """Text for a Markdown table cell: pipes escaped, lines joined."""
    return " ".join(str(text).split()).replace("|", "\\|")

