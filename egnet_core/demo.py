"""The end-to-end demo behind the README's main command, on generated night scenes.

It generates a small data set in NightCity's on-disk layout, trains a small EGNet on it briefly (validating on
scenes held out of the train split), evaluates the model of the last iteration, ``final.pt``, on the val split
the paper's way and leaves a report folder a person can open. The val split is the test split: training never
reads it. Other packages add steps after the evaluation
through the ``egnet.demo_steps`` entry point: the ROS side records the held-out frames as a night-drive bag,
segments it offline and replays it through the live node. With a real NightCity copy and a checkpoint, the same
command skips the synthetic steps.
"""

from __future__ import annotations

import importlib.metadata
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from egnet_core.data.datasets import open_dataset
from egnet_core.data.imageio import write_rgb
from egnet_core.data.labels import colorize
from egnet_core.data.statistics import exposure_histogram, plot_exposure_histogram
from egnet_core.deploy.inference import Segmenter
from egnet_core.engine.evaluation import evaluate
from egnet_core.engine.scene_training import SceneRecipe, train_on_generated_scenes
from egnet_core.reports.report import write_report
from egnet_core.reports.visualize import exposure_picture, strip

log = logging.getLogger(__name__)

DEMO_MARK = ".egnet-demo"  # marks a folder as the demo's own, to be replaced by the next run
STEPS_GROUP = "egnet.demo_steps"

@dataclass(frozen=True)
class DemoContext:
    """What a step added through ``egnet.demo_steps`` gets: the trained model, its data and the report."""

    out: Path
    data: Path  # a NightCity root
    checkpoint: Path
    segmenter: Segmenter
    device: str
    report: Path  # report.md, to which a step appends its section
    options: dict[str, Any] = field(default_factory=dict)  # the caller's options for the steps (run_demo's **)


@dataclass(frozen=True)
class DemoStep:
    """What a step did: one line for the terminal and its own typed result."""

    name: str
    summary: str
    result: Any


@dataclass(frozen=True)
class DemoReport:
    root: Path
    checkpoint: Path
    miou: float
    mef1: float
    pictures: dict[str, Path]
    steps: dict[str, DemoStep]  # name -> what each added step did
    skipped: dict[str, str]  # name -> why an added step could not run (its extra is not installed)


def demo_steps() -> tuple[dict[str, Callable[[DemoContext], DemoStep]], dict[str, str]]:
    """The steps other packages add, and those whose extra is missing with the reason."""
    steps, skipped = {}, {}
    for entry in importlib.metadata.entry_points(group=STEPS_GROUP):
        try:
            steps[entry.name] = entry.load()
        except ImportError as error:
            extra = entry.extras[0] if entry.extras else "ros"
            skipped[entry.name] = f"needs the {extra!r} extra ({error.name or error} is not installed)"
    return steps, skipped


def run_demo(
    out: Path,
    *,
    seed: int = 0,
    data: Path | None = None,
    checkpoint: Path | None = None,
    device: str = "auto",
    size: tuple[int, int] = (512, 256),
    iterations: int = 150,
    **step_options: Any,
) -> DemoReport:
    """``data`` and ``checkpoint`` given: evaluate them; otherwise generate scenes and train on them first.

    ``step_options`` go to the added steps (the ROS side's night drive takes ``drive_frames`` and
    ``domain_id``)."""
    out = Path(out)
    if (data is None) != (checkpoint is None):
        raise ValueError("the demo takes --data and --checkpoint together (a real data set and a model), or neither")
    if data is None:
        _fresh_output(out)
        trained = train_on_generated_scenes(SceneRecipe(iterations=iterations, size=size, seed=seed), out,
                                            device=device)
        data, checkpoint = trained.scenes.root, trained.summary.final_checkpoint
        log.info("evaluating %s, the model after the last iteration, on the %d val scenes (training validated on "
                 "%s)", checkpoint, trained.scenes.val, trained.summary.validated_on)
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
    context = DemoContext(out=out, data=Path(data), checkpoint=Path(checkpoint), segmenter=segmenter,
                          device=device, report=files.markdown, options=step_options)
    available, skipped = demo_steps()
    for name, reason in skipped.items():
        log.warning("demo step %r skipped: it %s", name, reason)
    steps = {name: step(context) for name, step in available.items()}
    return DemoReport(root=out, checkpoint=Path(checkpoint), miou=result.scores.miou, mef1=result.scores.mef1,
                      pictures=pictures, steps=steps, skipped=skipped)


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


def _strip(examples, segmenter: Segmenter):
    """Input, ground truth, prediction and predicted exposure of each example, one row per image."""
    rows = []
    for example in examples:
        predicted = segmenter.predict(example.image)
        rows.append(strip([("input", example.image), ("ground truth", colorize(example.label)),
                           ("prediction", colorize(predicted.labels)),
                           ("exposure", exposure_picture(predicted.exposure))], height=192))
    return np.concatenate(rows, axis=0)
