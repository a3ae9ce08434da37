"""The training engine behind ``training/train.py`` and ``egnet train``: config at the top, one loop.

Checkpoints are plain dicts (model, optimizer, scheduler, scaler, iteration, RNG states, config) written
atomically; ``resume`` continues from the newest readable one exactly where the run stopped. Validation runs on
images held out of the training split (``data.validate_on: holdout``, listed in ``holdout.txt``) unless the config
names the val split; ``best.pt`` is the best validated model, ``final.pt`` the model after the last iteration.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from egnet_core.config import DataConfig, TrainConfig
from egnet_core.criteria.losses import EGNetLoss
from egnet_core.data.datasets import open_dataset
from egnet_core.data.holdout import refuse_holdout_file, resolve_holdout, sample_names, split_holdout
from egnet_core.data.labels import colorize
from egnet_core.data.transforms import TrainTransform
from egnet_core.deploy.inference import Segmenter
from egnet_core.deploy.options import InferenceOptions
from egnet_core.engine.distributed import (
    DistributedContext,
    cleanup_distributed,
    mean_across_processes,
    setup_distributed,
)
from egnet_core.engine.evaluation import evaluate
from egnet_core.engine.sampling import IterationSampler, SeededSamples
from egnet_core.model.checkpoint import checkpoint_config, load_checkpoint, save_checkpoint
from egnet_core.model.egnet import EGNet
from egnet_core.model.networks import build_model
from egnet_core.reports.visualize import strip

log = logging.getLogger(__name__)

DIVERGENCE_GROWTH = 1e3  # a loss this many times its first value is worth a warning: the run is diverging
CHECKPOINTS = "checkpoints"  # the folder of iter_NNNNNNN.pt files inside run.out_dir
BEST, FINAL = "best.pt", "final.pt"  # in run.out_dir: the best validated model, the model of the last iteration
_CHECKPOINT_NAME = re.compile(r"iter_([0-9]+)\.pt")


class TrainingDiverged(RuntimeError):
    """The loss or the weights are no longer finite: the run stops before a checkpoint can hold them."""


@dataclass(frozen=True)
class TrainSummary:
    out_dir: Path
    iteration: int
    last_checkpoint: Path
    best_miou: float
    final_checkpoint: Path | None  # final.pt once the schedule is complete; None after a run.stop_at stop
    validated_on: str  # what best_miou was measured on: "val", or "N held-out train images"


@dataclass(frozen=True)
class TrainingData:
    """The samples a run trains on and the images its validation scores."""

    train: Dataset  # transformed Samples
    validation: Dataset  # RawSamples, as the evaluator takes them
    validated_on: str  # "val", or "N held-out train images"
    held_out: tuple[str, ...]  # names of the held-out images; empty when validating on val


class SavedCheckpoint(NamedTuple):
    iteration: int
    path: Path


def train(config: TrainConfig, *, resume: bool = False) -> TrainSummary:
    context = setup_distributed(config.run.device)
    try:
        # The run's files are closed (TensorBoard flushed) however the run ends: done, an error, or Ctrl-C.
        with _RunFiles(Path(config.run.out_dir), keep_last=config.run.keep_last, is_main=context.is_main) as run:
            return _train(config, context, run, resume=resume)
    finally:
        cleanup_distributed()


def saved_checkpoints(out_dir: str | Path) -> list[SavedCheckpoint]:
    """The checkpoints a run left in ``out_dir``, newest first by the iteration their name carries. Files of
    any other name (``iter_best.pt``, a copy) are not the run's: never chosen for --resume, never pruned."""
    found = [SavedCheckpoint(int(match.group(1)), path) for path in (Path(out_dir) / CHECKPOINTS).glob("iter_*.pt")
             if (match := _CHECKPOINT_NAME.fullmatch(path.name))]
    return sorted(found, reverse=True)


def newest_readable_checkpoint(out_dir: str | Path) -> tuple[Path, dict]:
    """Where --resume starts: the newest checkpoint that loads, and its state. A damaged newer one (a disk that
    filled up, a copy cut short) is skipped with a warning naming it."""
    found = saved_checkpoints(out_dir)
    if not found:
        raise FileNotFoundError(f"--resume found no checkpoint in {str(Path(out_dir) / CHECKPOINTS)!r}")
    problems = []
    for iteration, path in found:
        try:
            state = load_checkpoint(path)
            if state.get("iteration") != iteration:
                raise ValueError(f"checkpoint {str(path)!r} holds iteration {state.get('iteration')!r}, "
                                 f"its name says {iteration}")
        except (ValueError, OSError) as error:
            log.warning("--resume skips %s: %s", path.name, error)
            problems.append(f"{path.name}: {error}")
            continue
        return path, state
    raise ValueError(f"--resume found no readable checkpoint in {str(Path(out_dir) / CHECKPOINTS)!r}: "
                     + "; ".join(problems))


def _train(config: TrainConfig, context: DistributedContext, run: _RunFiles, *, resume: bool) -> TrainSummary:
    out = run.out
    device, cuda = context.device, context.device.type == "cuda"
    torch.backends.cudnn.benchmark = cuda

    torch.manual_seed(config.run.seed)
    model = build_model(config.model)
    if config.run.init_from:
        load_pretrained(model, config.run.init_from)
    model.to(device, memory_format=torch.channels_last if cuda and config.run.channels_last else torch.preserve_format)
    optim = config.optim
    optimizer = torch.optim.SGD(
        model.parameters(), lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: (1 - min(step, optim.iterations) / optim.iterations) ** optim.poly_power
    )
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and config.run.amp)
    start, best_miou, resumed = 0, float("-inf"), None
    if resume:
        resumed, state = newest_readable_checkpoint(out)
        start, best_miou = _restore(resumed, state, model, optimizer, scheduler, scaler, config)
    trained = DistributedDataParallel(model) if context.world_size > 1 else model
    criterion = EGNetLoss(alpha=optim.alpha, beta=optim.beta, exposure_term=config.model.predicts_exposure)
    stop = min(config.run.stop_at or optim.iterations, optim.iterations)
    # Opened once, here: a split without a valid label stops the run now, not at the first validation.
    data = build_training_data(config, run_dir=out, resume=resume, write=context.is_main)
    batches = _loader(data.train, config, context, start, stop)
    run.log(f"training {config.model.name} ({config.model.backbone}) on {device} x{context.world_size}, "
            f"iterations {start}..{stop} of {optim.iterations}, on {len(data.train)} images with "
            f"{config.data.train_geometry} geometry, validating on {data.validated_on}")

    progress = tqdm(total=stop, initial=start, disable=not context.is_main or None, desc="train", unit="it")
    last_checkpoint, clock, watch = None, time.perf_counter(), _LossWatch(optim.lr)
    final = out / FINAL if (out / FINAL).is_file() and start == optim.iterations else None
    for iteration, sample in zip(range(start + 1, stop + 1), batches):
        images = sample.image.to(device, non_blocking=True)
        if cuda and config.run.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.float16, enabled=scaler.is_enabled()):
            output = trained(images)
        parts = criterion(output._replace(logits=output.logits.float(), exposure=output.exposure.float()),
                          sample.label.to(device), sample.exposure.to(device))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(parts.total).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        watch.check(iteration, parts.total)

        if iteration % config.run.log_every == 0 or iteration == stop:
            losses = mean_across_processes(torch.stack([p.detach().float() for p in parts]))
            rate = config.run.log_every * optim.batch_size / (time.perf_counter() - clock)
            clock = time.perf_counter()
            run.scalars(iteration, total=losses[0], ce=losses[1], l1=losses[2], lr=scheduler.get_last_lr()[0],
                        images_per_s=rate)
            progress.set_postfix(loss=f"{losses[0]:.3f}", ce=f"{losses[1]:.3f}", l1=f"{losses[2]:.3f}",
                                 lr=f"{scheduler.get_last_lr()[0]:.2e}", img_s=f"{rate:.1f}")
        if iteration % config.run.val_every == 0 or iteration == optim.iterations:
            miou = _validate(model, data.validation, config, context, run, iteration)
            if miou > best_miou:
                best_miou = miou
                if context.is_main:
                    save_checkpoint(out / BEST, model, iteration=iteration, best_miou=best_miou,
                                    validated_on=data.validated_on, train_config=config.to_dict())
            model.train()
        if iteration % config.run.checkpoint_every == 0 or iteration == stop:
            last_checkpoint = run.checkpoint(
                model, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                scaler=scaler.state_dict(), iteration=iteration, best_miou=best_miou, rng=_rng_state(),
                train_config=config.to_dict(),
            )
        if iteration == optim.iterations:  # whatever val_every and checkpoint_every are
            final = run.final(model, iteration=iteration, validated_on=data.validated_on,
                              train_config=config.to_dict())
        progress.update(1)
    progress.close()
    return TrainSummary(out_dir=out, iteration=stop, last_checkpoint=last_checkpoint or resumed, best_miou=best_miou,
                        final_checkpoint=final, validated_on=data.validated_on)


def load_pretrained(model: EGNet, path: str) -> None:
    """Fine-tuning start: every weight of a full EGNet checkpoint, refusing any tensor of another shape."""
    state = load_checkpoint(path)["model"]
    own = model.state_dict()
    mismatched = [f"{key} {tuple(value.shape)} vs {tuple(own[key].shape)}"
                  for key, value in state.items() if key in own and value.shape != own[key].shape]
    if mismatched:
        raise ValueError(f"checkpoint {path!r} does not fit this model (another number of classes or backbone?): "
                         + "; ".join(mismatched[:5]))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint {path!r} is another architecture: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")


def train_transform(data: DataConfig) -> TrainTransform:
    """``data.train_geometry`` as a transform (``data.eval_size`` is [width, height], the transform's sizes are
    (height, width))."""
    if data.train_geometry == "resize":  # the whole image, aspect not kept, as testing resizes it
        return TrainTransform(crop_size=data.crop_size, resize_to=data.crop_size, scale_range=(1.0, 1.0))
    resize_to = tuple(reversed(data.eval_size)) if data.train_geometry == "resize_crop" else None
    return TrainTransform(crop_size=data.crop_size, scale_range=(data.scale_min, data.scale_max), resize_to=resize_to)


def build_training_data(config: TrainConfig, *, run_dir: Path | None = None, resume: bool = False,
                        write: bool = True) -> TrainingData:
    """What the run trains and validates on. With ``data.validate_on: holdout`` the val split is never opened:
    the held-out names are chosen (or, with ``resume``, read back from ``run_dir``) and written to
    ``run_dir/holdout.txt`` when ``write``; ``run_dir`` None reads and writes nothing."""
    data = config.data
    if data.validate_on == "val":
        if run_dir is not None:
            refuse_holdout_file(run_dir)
        if "nightcity" in data.dataset:
            log.warning("data.validate_on: val validates on %s's val split, which is NightCity's test set (the "
                        "paper's 1,299 test images): best.pt is then chosen on the test set", data.dataset)
        train_set = open_dataset(data.dataset, data.root, "train", transform=train_transform(data),
                                 cityscapes_root=data.cityscapes_root)
        return TrainingData(train=train_set, validation=open_dataset(data.dataset, data.root, "val"),
                            validated_on="val", held_out=())
    whole = open_dataset(data.dataset, data.root, "train", cityscapes_root=data.cityscapes_root)
    names = resolve_holdout(data.holdout, sample_names(whole), seed=config.run.seed, run_dir=run_dir, resume=resume,
                            write=write)
    split = split_holdout(whole, names, train_transform(data))
    return TrainingData(train=split.train, validation=split.validation,
                        validated_on=f"{len(split.names)} held-out train images", held_out=split.names)


def _loader(dataset: Dataset, config: TrainConfig, context: DistributedContext, start: int, stop: int) -> DataLoader:
    sampler = IterationSampler(len(dataset), batch_size=config.optim.batch_size, seed=config.run.seed, start=start,
                               end=stop, rank=context.rank, world_size=context.world_size)
    return DataLoader(SeededSamples(dataset), batch_size=sampler.per_process, sampler=sampler,
                      num_workers=config.data.workers, pin_memory=context.device.type == "cuda")


def validation_options(config: TrainConfig, device: torch.device) -> InferenceOptions:
    """How validation runs the model being trained: the options every other caller of the Segmenter builds."""
    return InferenceOptions(device=device, input_size=config.data.eval_size,
                            names={"input_size": "data.eval_size", "device": "run.device"})


def _validate(model: EGNet, val_set: Dataset, config: TrainConfig, context: DistributedContext, run: _RunFiles,
              iteration: int) -> float:
    _require_finite_weights(model, iteration)  # NaN weights predict class 0 everywhere, and best.pt would keep them
    segmenter = Segmenter(model, validation_options(config, context.device))
    result = evaluate(segmenter, val_set, limit=config.data.eval_limit, shard=(context.rank, context.world_size))
    scores = result.scores
    run.scalars(iteration, val_miou=scores.miou, val_mef1=scores.mef1, val_pixel_accuracy=scores.pixel_accuracy)
    run.log(f"iteration {iteration}: val mIoU {scores.miou:.4f}, mEF1 {scores.mef1:.4f}, "
            f"pixel accuracy {scores.pixel_accuracy:.4f} on {result.images} images")
    run.images(iteration, result.examples)
    return float(np.nan_to_num(scores.miou, nan=0.0))


class _LossWatch:
    """Stops the run at the first loss that is not finite, before a checkpoint of the weights it leaves, and
    warns once when the loss climbs far above its first value (a learning rate too high for the model)."""

    def __init__(self, lr: float) -> None:
        self.lr = lr
        self.first: tuple[int, float] | None = None
        self.warned = False

    def check(self, iteration: int, loss: torch.Tensor) -> None:
        # The mean over processes, so that every process of a distributed run stops at the same iteration.
        value = float(mean_across_processes(loss.detach().float()))
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"training diverged at iteration {iteration}: the loss is {value}; no checkpoint is written from "
                f"these weights. Lower optim.lr (now {self.lr:g}) or check the data")
        if self.first is None:
            self.first = (iteration, value)
        elif not self.warned and self.first[1] > 0 and value > DIVERGENCE_GROWTH * self.first[1]:
            self.warned = True
            log.warning("iteration %d: the loss %.3g is over %g times above its first value %.3g (iteration %d); "
                        "the run is diverging: lower optim.lr (now %g)", iteration, value, DIVERGENCE_GROWTH,
                        self.first[1], self.first[0], self.lr)


def _require_finite_weights(model: EGNet, iteration: int) -> None:
    """A finite loss can still take a step to infinite weights; none of those reaches a checkpoint."""
    tensors = {name: tensor for name, tensor in model.state_dict().items() if tensor.is_floating_point()}
    finite = torch.stack([torch.isfinite(tensor).all() for tensor in tensors.values()]).tolist()
    broken = [name for name, ok in zip(tensors, finite) if not ok]
    if broken:
        raise TrainingDiverged(f"training diverged by iteration {iteration}: {len(broken)} weight tensors are not "
                               f"finite ({', '.join(broken[:3])}); no checkpoint is written from them. Lower optim.lr")


def _restore(path: Path, state: dict, model, optimizer, scheduler, scaler,
             config: TrainConfig) -> tuple[int, float]:
    if checkpoint_config(state, path) != config.model:
        raise ValueError(f"cannot resume from {str(path)!r}: it was trained with {checkpoint_config(state, path)}, "
                         f"the config asks for {config.model}")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    _set_rng_state(state["rng"])
    log.info("resumed from %s at iteration %d", path, state["iteration"])
    return state["iteration"], state["best_miou"]


def _rng_state() -> dict:
    numpy_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]],
        "python": random.getstate(),
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    random.setstate(state["python"])


class _RunFiles:
    """What a run leaves in its folder: checkpoints, train.log, scalars.jsonl and TensorBoard events.
    Only the main process writes."""

    def __init__(self, out: Path, *, keep_last: int, is_main: bool) -> None:
        self.out, self.keep_last, self.is_main = out, keep_last, is_main
        self.checkpoints = out / CHECKPOINTS
        self.writer = None
        if is_main:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            for stale in self.checkpoints.glob(".*.tmp"):  # left by a run killed mid-write
                stale.unlink()
            handler = logging.FileHandler(out / "train.log")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            package_log = logging.getLogger("egnet_core")
            # The run's own log keeps INFO lines whatever the caller's logging set-up shows on the console.
            self.previous_level = package_log.level
            package_log.setLevel(min(package_log.getEffectiveLevel(), logging.INFO))
            package_log.addHandler(handler)
            self.handler = handler
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tensorboard"))

    def __enter__(self) -> _RunFiles:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is KeyboardInterrupt:
            self.log("interrupted")
        self.close()

    def final(self, model: EGNet, **state) -> Path:
        _require_finite_weights(model, state["iteration"])
        if self.is_main:
            save_checkpoint(self.out / FINAL, model, **state)
        return self.out / FINAL

    def checkpoint(self, model: EGNet, **state) -> Path:
        _require_finite_weights(model, state["iteration"])
        path = self.checkpoints / f"iter_{state['iteration']:07d}.pt"
        if self.is_main:
            save_checkpoint(path, model, **state)
            for old in saved_checkpoints(self.out)[self.keep_last:]:
                old.path.unlink()
        return path

    def log(self, message: str) -> None:
        if self.is_main:
            log.info(message)

    def scalars(self, iteration: int, **values) -> None:
        if not self.is_main:
            return
        values = {name: float(value) for name, value in values.items()}
        with open(self.out / "scalars.jsonl", "a", encoding="utf-8") as file:
            file.write(json.dumps({"iteration": iteration, **values}) + "\n")
        for name, value in values.items():
            self.writer.add_scalar(name.replace("_", "/", 1) if name.startswith("val_") else name, value, iteration)

    def images(self, iteration: int, examples) -> None:
        if self.is_main:
            for index, example in enumerate(examples):
                picture = strip([("input", example.image), ("ground truth", colorize(example.label)),
                                 ("prediction", colorize(example.prediction))], height=128)
                self.writer.add_image(f"val/example_{index}", picture, iteration, dataformats="HWC")

    def close(self) -> None:
        if self.is_main:
            self.writer.close()
            package_log = logging.getLogger("egnet_core")
            package_log.removeHandler(self.handler)
            package_log.setLevel(self.previous_level)
            self.handler.close()
