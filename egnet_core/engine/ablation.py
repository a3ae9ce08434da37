"""The ablation study of the paper's Tables 4 and 5 as one command: every variant trained with the same seed and
budget, each scored on the test split with the paper's protocol, one table for all.

Runs go one after another into ``OUT/runs/NAME/``: the training run (its checkpoints and ``final.pt``), the test
report ``test/`` (``metrics.json`` with the model's cost under ``"model"``), and ``done.json`` once all of it is
written. A study started again skips the runs that are done, resumes a half-trained one from its newest
checkpoint, and rescores one whose training ended; the table is ``OUT/comparison.md`` (``reports.comparison``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from egnet_core.config import ARCHITECTURES, VARIANTS, TrainConfig
from egnet_core.data.datasets import open_dataset
from egnet_core.data.synthetic import render_night_scene
from egnet_core.deploy.benchmark import model_gflop
from egnet_core.deploy.inference import PAPER_INPUT_SIZE, WARM_UP_SIZE, Segmenter
from egnet_core.deploy.options import resolve_device
from egnet_core.engine.evaluation import evaluate
from egnet_core.engine.train import saved_checkpoints, train
from egnet_core.model.checkpoint import load_model
from egnet_core.reports.comparison import ComparisonFiles, ModelCost, read_row, write_comparison
from egnet_core.reports.report import write_report

logger = logging.getLogger(__name__)

# Table 4 (the EGL and the exposure stream) then Table 5 (other ways to use exposure), the full model first.
STUDY = tuple(VARIANTS)
# Table 1's other networks, trained and scored the same way (model.arch; they need output stride 8).
BASELINES = tuple(arch for arch in ARCHITECTURES if arch != "egnet")
TIMED_FRAMES = 3  # ms per frame: the median of this many 1024×512 frames after one untimed


@dataclass(frozen=True)
class StudyRun:
    name: str
    folder: Path
    status: str  # "trained" (or resumed) in this call; "scored": trained earlier, scored now; "done earlier"
    final: Path


@dataclass(frozen=True)
class AblationResult:
    runs: tuple[StudyRun, ...]
    table: ComparisonFiles


def check_names(names: Sequence[str]) -> tuple[str, ...]:
    """The study's runs, validated where they enter: EGNet variants or other networks, each once."""
    unknown = [name for name in names if name not in VARIANTS and name not in BASELINES]
    if unknown:
        raise ValueError(f"--variants: unknown variant(s) {unknown}; known: {', '.join(STUDY + BASELINES)}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated or not names:
        raise ValueError(f"--variants must name each variant once, got {list(names)}")
    return tuple(names)


def run_ablation(
    config: TrainConfig, out: str | Path, *, names: Sequence[str] = STUDY, test_split: str = "val",
    eval_size: tuple[int, int] | None = PAPER_INPUT_SIZE, on_run: Callable[[StudyRun], None] | None = None,
) -> AblationResult:
    """Train and score each of ``names`` with ``config`` (its seed, schedule and data; only ``model.variant``, or
    ``model.arch`` for a baseline network, and ``run.out_dir`` change), then write the table.
    ``test_split``: the split scored (NightCity's test set is its
    ``val``); ``eval_size``: the test protocol's input size (the paper's 900×900)."""
    names = check_names(list(names))
    out = Path(out)
    runs = []
    for name in names:
        run = _run_one(config, out / "runs" / name, name, test_split=test_split, eval_size=eval_size)
        runs.append(run)
        if on_run is not None:
            on_run(run)
    rows = [read_row(run.folder, name=run.name) for run in runs]
    title = f"Ablation on {config.data.dataset} {test_split} ({config.model.backbone} OS{config.model.output_stride})"
    return AblationResult(runs=tuple(runs), table=write_comparison(rows, out, title=title))


def _run_one(config: TrainConfig, folder: Path, name: str, *, test_split: str,
             eval_size: tuple[int, int] | None) -> StudyRun:
    final = folder / "final.pt"
    if (folder / "done.json").is_file():
        logger.info("%s: done in an earlier run (%s), not retrained", name, folder)
        return StudyRun(name=name, folder=folder, status="done earlier", final=final)
    model = {"arch": name} if name in BASELINES else {"variant": name}
    run_config = dataclasses.replace(
        config, model=dataclasses.replace(config.model, **model),
        run=dataclasses.replace(config.run, out_dir=str(folder)),
    )
    trained = not final.is_file()
    if trained:  # a half-trained run continues from its newest checkpoint
        resume = bool(saved_checkpoints(folder))
        logger.info("%s: %s in %s", name, "resuming" if resume else "training", folder)
        train(run_config, resume=resume)
    segmenter = Segmenter.from_checkpoint(final, device=resolve_device(config.run.device), input_size=eval_size)
    dataset = open_dataset(config.data.dataset, config.data.root, test_split,
                           cityscapes_root=config.data.cityscapes_root)
    result = evaluate(segmenter, dataset)
    cost = measure_cost(final, config.run.device)
    files = write_report(result, folder / "test", title=f"{name}: {config.data.dataset} {test_split}",
                         config={"checkpoint": str(final), "eval_size": eval_size, "variant": name},
                         model=dataclasses.asdict(cost))
    _write_json(folder / "done.json", {"name": name, "metrics": str(files.metrics)})
    return StudyRun(name=name, folder=folder, status="trained" if trained else "scored", final=final)


def measure_cost(checkpoint: Path, device: str = "auto") -> ModelCost:
    """Parameters, GFLOPs of one 1024×512 frame, and ms per such frame here (fp32, batch 1, median)."""
    model = load_model(checkpoint)  # as trained, BatchNorm unfolded: parameters and FLOPs as the paper counts them
    segmenter = Segmenter(model, device=resolve_device(device), precision="fp32")
    parameters = sum(p.numel() for p in model.parameters())
    width, height = WARM_UP_SIZE
    frame = render_night_scene(np.random.default_rng(0), width=width, height=height).image
    segmenter.predict(frame)
    seconds = []
    for _ in range(TIMED_FRAMES):
        start = time.perf_counter()
        segmenter.predict(frame)
        seconds.append(time.perf_counter() - start)
    gflops = model_gflop(model)
    return ModelCost(parameters=parameters, gflops=gflops, ms_per_frame=statistics.median(seconds) * 1e3,
                     device=_device_name(segmenter.device))


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _write_json(path: Path, value: dict) -> None:
    """Atomically: a study killed here leaves the old file or the new one."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=2, default=str) + "\n", encoding="utf-8")
    temporary.replace(path)
