"""The held-out part of a training split: the images that validation scores while a model trains.

NightCity ships ``train`` and ``val``, and its ``val`` (1,299 images in the paper) is the paper's *test* set:
choosing ``best.pt`` by its mIoU there and then reporting that same mIoU would select on the test set. Training
therefore validates on images taken out of ``train`` (``data.validate_on: holdout``) and trains on the rest.

``data.holdout`` is a fraction or the path of a name list. A fraction takes that share of each data set in the
split (both halves of "C + N"), at least one image each, chosen by ``run.seed``. A name list holds one sample
name a line (``Chicago_0003``, ``aachen_000000_000019``: the image file name without its suffix); blank lines
and ``#`` comments are skipped. The names chosen are written to ``run.out_dir/holdout.txt`` in that format, so
a later run can hold out the same images by naming that file.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import ConcatDataset, Dataset

log = logging.getLogger(__name__)

HOLDOUT_FILE = "holdout.txt"  # in run.out_dir: the names a run holds out, read back by --resume
_SHOWN = 10  # how many names an error lists


@dataclass(frozen=True)
class HeldOutSplit:
    """A training split cut in two: what the model trains on and what validation scores."""

    train: SplitPart  # transformed samples for the training loop
    validation: SplitPart  # RawSamples, as the evaluator takes them
    names: tuple[str, ...]  # the held-out sample names, sorted


class SplitPart(Dataset):
    """The samples of ``dataset`` at ``indices``, through ``transform`` when one is given; ``names`` are theirs."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], names: Sequence[str],
                 transform: Callable | None = None) -> None:
        self.dataset, self.indices, self.names, self.transform = dataset, list(indices), list(names), transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Any:
        sample = self.dataset[self.indices[index]]
        return sample if self.transform is None else self.transform(sample)


def sample_names(dataset: Dataset) -> list[list[str]]:
    """The sample names of each data set inside ``dataset`` (one list, or one per part of a ConcatDataset), in
    loading order; a name found in two parts is refused, since a name list could not tell them apart."""
    parts = [list(part.names) for part in dataset.datasets] if isinstance(dataset, ConcatDataset) else [
        list(dataset.names)]
    seen: set[str] = set()
    for names in parts:
        twice = sorted(seen.intersection(names))
        if twice:
            raise ValueError(f"the training split holds {len(twice)} names in two of its data sets "
                             f"({', '.join(twice[:_SHOWN])}); held-out images are chosen by name")
        seen.update(names)
    return parts


def choose_holdout(parts: Sequence[Sequence[str]], fraction: float, seed: int) -> tuple[str, ...]:
    """``fraction`` of each part's names (at least one), drawn by ``seed``; sorted."""
    chosen: list[str] = []
    for index, names in enumerate(parts):
        count = max(1, round(fraction * len(names)))
        if count >= len(names):
            raise ValueError(f"data.holdout {fraction!r} holds out {count} of the {len(names)} training images "
                             "of a data set in the split, leaving none to train on; choose a smaller fraction")
        order = np.random.default_rng([seed, index]).permutation(len(names))
        ordered = sorted(names)
        chosen += [ordered[i] for i in order[:count]]
    return tuple(sorted(chosen))


def read_names(path: str | os.PathLike, what: str) -> tuple[str, ...]:
    """The sample names listed in ``path``, sorted; ``what`` names the file in errors (``data.holdout``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "it is not UTF-8 text"
        raise FileNotFoundError(f"{what} {str(path)!r} cannot be read: {reason}; it must be a text file of "
                                "sample names, one a line") from None
    names = [line.strip() for line in text.splitlines()]
    names = sorted({name for name in names if name and not name.startswith("#")})
    if not names:
        raise ValueError(f"{what} {str(path)!r} lists no sample names (one a line, e.g. Chicago_0003)")
    return tuple(names)


def write_names(path: Path, names: Sequence[str], header: str) -> Path:
    """``names`` one a line under ``# header`` lines, written atomically (a temporary file, then a rename)."""
    text = "".join(f"# {line}\n" for line in header.splitlines()) + "".join(f"{name}\n" for name in names)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def split_holdout(dataset: Dataset, held_out: Sequence[str], transform: Callable | None) -> HeldOutSplit:
    """``dataset`` (RawSamples) cut into the samples not named in ``held_out`` (through ``transform``) and those
    named (as they are). Every held-out name must be in the split."""
    names = [name for part in sample_names(dataset) for name in part]
    wanted = set(held_out)
    missing = sorted(wanted.difference(names))
    if missing:
        raise ValueError(f"{len(missing)} held-out names are not in the training split: "
                         f"{', '.join(missing[:_SHOWN])}; data.holdout must name images of the train split, "
                         "each by its file name without the suffix (Chicago_0003)")
    kept = [index for index, name in enumerate(names) if name not in wanted]
    if not kept:
        raise ValueError(f"all {len(names)} images of the training split are held out, leaving none to train on")
    validation = [index for index, name in enumerate(names) if name in wanted]
    return HeldOutSplit(
        train=SplitPart(dataset, kept, [names[i] for i in kept], transform),
        validation=SplitPart(dataset, validation, [names[i] for i in validation]),
        names=tuple(sorted(wanted)),
    )


def resolve_holdout(setting: float | str, parts: Sequence[Sequence[str]], *, seed: int, run_dir: Path | None,
                    resume: bool = False, write: bool = True) -> tuple[str, ...]:
    """The names a run holds out: chosen by ``setting`` (``data.holdout``) and kept in ``run_dir/holdout.txt``
    (``run_dir`` None: chosen only, nothing read or written).

    A new run writes the file (when ``write``: the main process); a folder holding one that names other images
    is refused rather than overwritten. ``resume`` reuses the file and checks it against what ``setting`` and
    ``seed`` choose from the split now: a changed config or training split is refused, so a resumed run always
    trains and validates on the images it started with.
    """
    if isinstance(setting, str):
        chosen, how = read_names(setting, "data.holdout"), f"data.holdout {setting!r}"
    else:
        chosen, how = choose_holdout(parts, setting, seed), f"data.holdout {setting!r} with run.seed {seed}"
    if run_dir is None:
        return chosen
    written = run_dir / HOLDOUT_FILE
    if resume:
        if not written.is_file():
            raise ValueError(f"--resume found no {HOLDOUT_FILE} in {str(run_dir)!r}: the run there validated on the "
                             "val split; resume it with data.validate_on: val, or start a new run.out_dir")
        kept = read_names(written, "the run's held-out list")
        if kept != chosen:
            raise ValueError(f"cannot resume: {str(written)!r} lists the {len(kept)} images this run held out, but "
                             f"{how} now chooses {len(chosen)} that differ ({_difference(kept, chosen)}); the "
                             "config or the training split changed. Resume with the original ones, or start a new "
                             "run.out_dir")
        log.info("resumed with the %d held-out images listed in %s", len(kept), written)
        return kept
    if write:
        earlier = read_names(written, "the run's held-out list") if written.is_file() else chosen
        if earlier != chosen:
            raise ValueError(f"{str(written)!r} lists the images an earlier run held out, not the ones {how} "
                             f"chooses ({_difference(earlier, chosen)}); continue that run with --resume, or choose "
                             "a new run.out_dir")
        write_names(written, chosen, f"held-out training images, chosen by {how}; one sample name a line.\n"
                                     "Give this file as data.holdout to hold out the same images again.")
    return chosen


def refuse_holdout_file(run_dir: Path) -> None:
    """A run that validates on val trains on the whole train split: a folder whose run held images out (its
    ``holdout.txt``) is not continued or reused by it."""
    if (run_dir / HOLDOUT_FILE).is_file():
        raise ValueError(f"{str(run_dir / HOLDOUT_FILE)!r} lists images that the run in this folder held out of "
                         "training; data.validate_on: val trains on all of them. Keep data.validate_on: holdout "
                         "to continue that run, or choose a new run.out_dir")


def _difference(kept: Sequence[str], chosen: Sequence[str]) -> str:
    only_kept, only_chosen = sorted(set(kept) - set(chosen)), sorted(set(chosen) - set(kept))
    return (f"only in the file: {', '.join(only_kept[:_SHOWN]) or 'none'}; "
            f"only chosen now: {', '.join(only_chosen[:_SHOWN]) or 'none'}")
