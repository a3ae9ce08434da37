"""The demo's night drive: the ROS side's step of ``egnet demo``, added through the ``egnet.demo_steps`` entry point.

The first validation frames are recorded as a camera would (``bgr8``, 10 frames/s), the bag is segmented offline
with ``egnet bag segment``'s code, and replayed through the live node in its own process (``use_sim_time``, the
bag played with ``/clock``), the node's outputs recorded into a third bag.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from egnet_core.data.datasets import open_dataset
from egnet_core.demo import DemoContext, DemoStep

from .bag_segment import BagSegmentation, segment_bag
from .bags import write_camera_bag
from .live_replay import LiveReplay, replay_through_node

DEMO_DOMAIN_ID = 73  # the live replay's own ROS domain, away from the default 0 a robot's graph runs on
DRIVE_FRAMES = 6


@dataclass(frozen=True)
class NightDrive:
    drive: Path  # the recorded frames
    offline: BagSegmentation  # the drive segmented by `egnet bag segment`
    live: LiveReplay  # the same drive replayed through the node


def night_drive(context: DemoContext) -> DemoStep:
    """Record, segment offline and replay through the live node; append the report's section."""
    options = dict(context.options)
    frames_wanted = options.pop("drive_frames", DRIVE_FRAMES)
    domain_id = options.pop("domain_id", DEMO_DOMAIN_ID)
    if options:
        raise ValueError(f"the demo's night drive takes drive_frames and domain_id, not {sorted(options)}")
    bags = context.out / "bags"
    dataset = open_dataset("nightcity", context.data, "val")
    frames = [dataset[index].image for index in range(min(frames_wanted, len(dataset)))]
    drive = bags / "night_drive"
    write_camera_bag(drive, frames, storage="mcap", overwrite=True)
    offline = segment_bag(drive, bags / "night_drive_segmented", context.segmenter, color=True, overwrite=True)
    # The live replay's node and player find each other on this host only.
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    live = replay_through_node(drive, context.checkpoint, bags / "night_drive_live", domain_id=domain_id,
                               device=context.device, overwrite=True)
    result = NightDrive(drive=drive, offline=offline, live=live)
    _append_section(context.report, result)
    summary = (f"night-drive bag: {offline.frames} frames segmented offline ({offline.frames_per_second:.2f} "
               f"frames/s) into {offline.output}; {live.played} replayed through the live node, outputs recorded: "
               + ", ".join(f"{count} on {topic}" for topic, count in live.recorded.items()))
    return DemoStep(name="night drive", summary=summary, result=result)


def _append_section(markdown: Path, result: NightDrive) -> None:
    offline, live = result.offline, result.live
    lines = [
        "", "## The night drive as a rosbag2", "",
        f"The first validation frames, recorded as a camera would (`bgr8`, 10 frames/s): `{result.drive}`.", "",
        "| step | frames | output |", "|---|---:|---|",
        f"| `egnet bag segment` (offline, {offline.frames_per_second:.2f} frames/s) | {offline.frames} | "
        f"`{offline.output}` |",
        f"| replayed through the live node (`egnet-segment`, use_sim_time) | {live.played} played, "
        + ", ".join(f"{count} on `{topic}`" for topic, count in live.recorded.items()) + f" | `{live.output}` |",
        "", "The live node keeps only the newest frame: one that arrives while the model is busy replaces the one "
        "waiting, so on a slow CPU it publishes for fewer frames than were played, each with its own frame's "
        "stamp, but never skips the last one; "
        + ("the last frame's outputs were recorded" if live.complete else
           "**the last frame's outputs did not arrive** (see the node's log)")
        + f". Its log, with the counts: `{live.node_log}`.",
    ]
    with markdown.open("a", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")
