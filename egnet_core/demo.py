"""The end-to-end demo behind the README's main command, on generated night scenes.

It generates a small data set in NightCity's on-disk layout, trains a small EGNet on it briefly, evaluates it
the paper's way, records the held-out frames as a night-drive bag, segments that bag offline, replays it
through the live ROS 2 node (recording what the node publishes) and leaves a report folder a person can open.
With a real NightCity copy and a checkpoint, the same command skips the synthetic steps.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from egnet_ros.bag_segment import BagSegmentation, segment_bag
from egnet_ros.bags import write_camera_bag
from egnet_ros.live_replay import LiveReplay, replay_through_node

from .config import load_train_config
from .data.datasets import open_dataset
from .data.statistics import exposure_histogram, plot_exposure_histogram
from .data.synthetic import write_nightcity
from .evaluation import evaluate
from .imageio import write_rgb
from .inference import Segmenter
from .labels import colorize
from .report import write_report
from .train import train
from .visualize import exposure_picture, strip

log = logging.getLogger(__name__)

DEMO_MARK = ".egnet-demo"  # marks a folder as the demo's own, to be replaced by the next run
DEMO_DOMAIN_ID = 73  # the live replay's own ROS domain, away from the default 0 a robot's graph runs on

# The embedded default: small enough for a few minutes on a 2-core CPU, large enough to learn the scenes.
DEMO_TRAINING = [
    "model.backbone=resnet18",
    "model.output_stride=16",
    "data.crop_size=192",
    "data.scale_min=0.75",
    "data.scale_max=1.25",
    "data.workers=1",
    "data.eval_size=null",
    "optim.batch_size=4",
    "optim.lr=0.02",
    "run.log_every=10",
    "run.keep_last=1",
]


@dataclass(frozen=True)
class DemoReport:
    root: Path
    checkpoint: Path
    miou: float
    mef1: float
    pictures: dict[str, Path]
    offline: BagSegmentation  # the held-out drive segmented by `egnet bag segment`
    live: LiveReplay  # the same drive replayed through the node


def run_demo(
    out: Path,
    *,
    seed: int = 0,
    data: Path | None = None,
    checkpoint: Path | None = None,
    device: str = "auto",
    size: tuple[int, int] = (512, 256),
    iterations: int = 150,
    drive_frames: int = 6,
    domain_id: int = DEMO_DOMAIN_ID,
) -> DemoReport:
    """``data`` and ``checkpoint`` given: evaluate them; otherwise generate scenes and train on them first.

    The first ``drive_frames`` validation images become the night-drive bag (10 frames/s); the live replay
    runs on ROS domain ``domain_id``."""
    out = Path(out)
    if (data is None) != (checkpoint is None):
        raise ValueError("the demo takes --data and --checkpoint together (a real data set and a model), or neither")
    if data is None:
        _fresh_output(out)
        width, height = size
        data = write_nightcity(out / "data", train=24, val=6, width=width, height=height, seed=seed).root
        log.info("generated 24 train and 6 val night scenes (%dx%d) under %s", width, height, data)
        config = load_train_config(None, [*DEMO_TRAINING, f"data.root={data}", f"run.out_dir={out / 'run'}",
                                          f"run.seed={seed}", f"run.device={device}",
                                          f"optim.iterations={iterations}", f"run.val_every={iterations}",
                                          f"run.checkpoint_every={iterations}"])
        checkpoint = train(config).last_checkpoint
    segmenter = Segmenter.from_checkpoint(checkpoint, device=device)
    result = evaluate(segmenter, open_dataset("nightcity", data, "val"), num_examples=3)
    files = write_report(result, out / "report", title=f"EGNet demo ({segmenter.config.backbone})")
    histogram = exposure_histogram(open_dataset("nightcity", data, "val"))
    pictures = {
        "report": files.markdown,
        "EF1 by exposure bin": files.ef1_chart,
        "exposure histogram": plot_exposure_histogram(histogram, out / "report" / "exposure_histogram.png",
                                                      title="pixels per image by exposure (Figure 4)"),
        "strip": write_rgb(out / "report" / "strip.png", _strip(result.examples, segmenter)),
    }
    drive = out / "bags" / "night_drive"
    frames = [sample.image for sample in _first(open_dataset("nightcity", data, "val"), drive_frames)]
    write_camera_bag(drive, frames, storage="mcap", overwrite=True)
    offline = segment_bag(drive, out / "bags" / "night_drive_segmented", segmenter, color=True, overwrite=True)
    live = replay_through_node(drive, checkpoint, out / "bags" / "night_drive_live", domain_id=domain_id,
                               device=device, overwrite=True)
    _append_bag_section(files.markdown, drive, offline, live)
    return DemoReport(root=out, checkpoint=Path(checkpoint), miou=result.scores.miou, mef1=result.scores.mef1,
                      pictures=pictures, offline=offline, live=live)


def _fresh_output(out: Path) -> None:
    """An empty ``out`` with the demo's mark in it. An earlier demo's output (marked) is replaced, so that the
    README's command can run again; a folder holding anything else is refused untouched."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not (out / DEMO_MARK).is_file():
            raise ValueError(f"refusing to write the demo into {str(out)!r}: it holds files that no earlier demo "
                             "wrote; give --out a new or empty folder")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / DEMO_MARK).write_text("written by `egnet demo`: the next demo into this folder replaces all of it\n")


def _first(dataset, count: int):
    return (dataset[index] for index in range(min(count, len(dataset))))


def _append_bag_section(markdown: Path, drive: Path, offline: BagSegmentation, live: LiveReplay) -> None:
    lines = [
        "", "## The night drive as a rosbag2", "",
        f"The first validation frames, recorded as a camera would (`bgr8`, 10 frames/s): `{drive}`.", "",
        "| step | frames | output |", "|---|---:|---|",
        f"| `egnet bag segment` (offline, {offline.frames_per_second:.2f} frames/s) | {offline.frames} | "
        f"`{offline.output}` |",
        f"| replayed through the live node (`egnet-segment`, use_sim_time) | {live.played} played, "
        + ", ".join(f"{count} on `{topic}`" for topic, count in live.recorded.items()) + f" | `{live.output}` |",
        "", "The live node keeps only the newest frame: one that arrives while the model is busy replaces the one "
        "waiting, so on a slow CPU it publishes for fewer frames than were played, each with its own frame's "
        f"stamp. Its log, with the counts: `{live.node_log}`.",
    ]
    with markdown.open("a", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")


def _strip(examples, segmenter: Segmenter):
    """Input, ground truth, prediction and predicted exposure of each example, one row per image."""
    rows = []
    for example in examples:
        predicted = segmenter.predict(example.image)
        rows.append(strip([("input", example.image), ("ground truth", colorize(example.label)),
                           ("prediction", colorize(predicted.labels)),
                           ("exposure", exposure_picture(predicted.exposure))], height=192))
    return np.concatenate(rows, axis=0)
