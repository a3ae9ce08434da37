"""NightCity (Tan et al., TIP 2021) and its relabelled versions, read from their released folder layouts.

``version="nightcity"``, the release (raw Cityscapes label ids, converted to train ids on load)::

    root/NightCity-images/images/{train,val}/<City>_<NNNN>.png
    root/NightCity-label/label/{train,val}/<City>_<NNNN>_labelIds.png    (the color/ sibling is not read)

or a root holding ``images/`` and ``label/`` directly. ``version="nightcity+"`` swaps in the re-annotated val
labels of NightCity+ (Gao et al., CVPR 2022), drawn at 2048×1024 for the 1024×512 images; they stay at that size
because evaluation compares at the label's resolution. Its train split is NightCity's. ``version="nightcity-fine"``
reads ``root/nightcity-fine/{train,val}/{img,lbl}/`` with ``<name>.png`` and ``<name>_trainIds.png``.

The published lists hold 2,997 train / 1,300 val images (the paper says 2,998 / 1,299) and NightCity+'s val
holds one train image (Dubai_0016), so no counts are asserted here; opening a split logs the pairs found next to
the release's count (``RELEASE``), and ``duplicates_between_splits`` finds overlaps.

``LabelledImageFolder`` is the pairing and loading shared with ``cityscapes.Cityscapes``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from egnet_core.data.folders import files_below
from egnet_core.data.imageio import read_label, read_rgb
from egnet_core.data.labels import IGNORE_INDEX, NUM_CLASSES, label_id_to_train_id
from egnet_core.data.sample import RawSample

logger = logging.getLogger(__name__)

SPLITS = ("train", "val")
VERSIONS = ("nightcity", "nightcity+", "nightcity-fine")
LABEL_IDS, TRAIN_IDS = "labelIds", "trainIds"
# Label file endings by what they hold: cityscapesscripts' createTrainIdLabelImgs, mmsegmentation, ACDC and Dark
# Zurich write ``_labelTrainIds.png``; NightCity-fine writes ``_trainIds.png``.
LABEL_FORMATS = {"_labelIds.png": LABEL_IDS, "_trainIds.png": TRAIN_IDS, "_labelTrainIds.png": TRAIN_IDS}
MAX_LABEL_ID = 33  # the largest Cityscapes label id (bicycle); -1 (licence plate) is never stored
# Image/label pairs per split in the published release, where the count is known.
RELEASE = {"nightcity": {"train": 2997, "val": 1300}, "nightcity+": {"train": 2997}}
# A split with at least this share of its release's pairs, but not all, is warned about (a city folder missing);
# a smaller one is taken for a deliberate subset (a debug split, generated data) and only logged.
SHORT_WARNING = 0.5
_SHOWN_FILES = 10  # how many offending files an error lists
# Label maps read when a data set is opened, evenly spaced: about 0.3 s at 1024×512, whatever the split size.
SAMPLED_LABELS = 32
IGNORED_WARNING = 0.5  # a sample with a larger share of ignored pixels is warned about

Transform = Callable[[RawSample], Any]


@dataclass(frozen=True)
class LabelledImage:
    """One image file and the label file it was paired with."""

    name: str
    image: Path
    label: Path


@dataclass(frozen=True)
class DatasetSummary:
    """What a data set found on disk."""

    dataset: str
    split: str
    images: int  # image/label pairs
    release: int | None  # pairs in the published release, None where unknown
    skipped: int  # files in the two folders that are neither (README.txt, .DS_Store, colour labels, ...)
    image_dir: Path
    label_dir: Path
    label_format: str  # LABEL_IDS or TRAIN_IDS
    ignored: float  # share of ignored pixels (IGNORE_INDEX after conversion) in the sampled label maps
    sampled: int  # label maps read for ``ignored``, evenly spaced over the sorted pairs

    def __str__(self) -> str:
        release = "" if self.release is None else f" (the release has {self.release:,})"
        return (
            f"{self.dataset} {self.split}: {self.images:,} image/label pairs{release} in {self.image_dir} with "
            f"{self.label_format} labels in {self.label_dir} ({self.skipped} other files skipped); "
            f"{self.ignored:.0%} of the pixels in a sample of {self.sampled} of the {self.images} label maps are "
            "ignored"
        )

    @property
    def short(self) -> bool:
        """Fewer pairs than the release, but enough to be meant as the release: something was not found."""
        return self.release is not None and SHORT_WARNING * self.release <= self.images < self.release


class LabelledImageFolder(Dataset):
    """Images paired by file name with label maps; ``__getitem__`` gives ``transform(RawSample)``.

    An image ``<key><image_suffix>`` pairs with ``<key><label_suffix>``, where the key is the path below the
    split folder (links to folders followed, see ``folders.files_below``). The label suffix is the first of
    ``label_suffixes`` that any file in ``label_dir`` carries; it must end in one of ``LABEL_FORMATS``:
    ``_labelIds.png`` (raw Cityscapes ids, converted), ``_trainIds.png`` or ``_labelTrainIds.png`` (used as they
    are). Label maps must have their image's size times one of ``label_scales``. ``release`` is the number of
    pairs the published split has, for the log line that says how many were found.
    """

    def __init__(
        self,
        image_dir: Path,
        label_dir: Path,
        *,
        dataset: str,
        split: str,
        image_suffix: str,
        label_suffixes: Sequence[str],
        recursive: bool = False,
        label_scales: Sequence[int] = (1,),
        release: int | None = None,
        transform: Transform | None = None,
    ) -> None:
        image_files, skipped_images = _list_files(image_dir, (image_suffix,), recursive)
        label_suffix, label_files, skipped_labels = _label_files(label_dir, label_suffixes, recursive)
        if not image_files:
            raise ValueError(f"no *{image_suffix} images found in {image_dir}")
        self._pairs = _pair(
            _by_key(image_dir, image_files, image_suffix),
            _by_key(label_dir, label_files, label_suffix),
            f"<name>{image_suffix} in {image_dir}",
            f"<name>{label_suffix} in {label_dir}",
        )
        label_format = label_format_of(label_suffix)
        self._train_ids = label_format == TRAIN_IDS
        self._label_suffixes = tuple(label_suffixes)
        self._label_scales = tuple(label_scales)
        self.transform = transform
        sampled, ignored, values = self._sample_labels()
        self.summary = DatasetSummary(
            dataset=dataset,
            split=split,
            images=len(self._pairs),
            release=release,
            skipped=len(skipped_images) + len(skipped_labels),
            image_dir=image_dir,
            label_dir=label_dir,
            label_format=label_format,
            ignored=ignored,
            sampled=len(sampled),
        )
        self._check_labels(sampled, values)
        self._check_naming(values)
        self._log_summary()

    @property
    def names(self) -> list[str]:
        """Sample names in loading order, which is sorted."""
        return [pair.name for pair in self._pairs]

    def __len__(self) -> int:
        return len(self._pairs)

    def __getitem__(self, index: int):
        pair = self._pairs[index]
        image, label = read_rgb(pair.image), read_label(pair.label)
        self._check_size(pair, image, label)
        sample = RawSample(image=image, label=self._to_train_ids(label), name=pair.name)
        return sample if self.transform is None else self.transform(sample)

    def _sample_labels(self) -> tuple[set[int], float, dict[Path, np.ndarray]]:
        """Indices of up to SAMPLED_LABELS label maps spread over the split, the share of their pixels that are
        ignored, and the distinct values stored in each of them."""
        sampled = set(np.linspace(0, len(self) - 1, min(SAMPLED_LABELS, len(self))).round().astype(int).tolist())
        ignored = total = 0
        values: dict[Path, np.ndarray] = {}
        for index in sorted(sampled):
            path = self._pairs[index].label
            stored = read_label(path)
            ignored += np.count_nonzero(self._to_train_ids(stored) == IGNORE_INDEX)
            total += stored.size
            values[path] = np.flatnonzero(np.bincount(stored.ravel(), minlength=256))
        return sampled, ignored / max(total, 1), values

    def _has_valid_label(self, index: int) -> bool:
        return bool((self._to_train_ids(read_label(self._pairs[index].label)) != IGNORE_INDEX).any())

    def _check_labels(self, sampled: set[int], values: dict[Path, np.ndarray]) -> None:
        """Refuse a split without a single valid label (cross-entropy 0 at every step, mIoU NaN); warn about one
        that is mostly ignored. Only when the sample holds no valid label are the other label maps read."""
        summary, expected = self.summary, _VALID_VALUES[self.summary.label_format]
        if summary.ignored == 1.0 and not any(self._has_valid_label(i) for i in range(len(self)) if i not in sampled):
            stored = sorted(set(np.concatenate(list(values.values())).tolist()))[:10]  # enough to recognise a format
            raise ValueError(
                f"{summary.dataset} {summary.split}: none of the {len(self)} label maps in {summary.label_dir} has "
                f"a valid label (the {len(sampled)} sampled hold only the values {stored}), so there is nothing to "
                f"train on or score; {summary.label_format} maps must hold {expected}"
            )
        if summary.ignored > IGNORED_WARNING:
            logger.warning(
                "%s %s: %.0f%% of the pixels in a sample of %d of the %d label maps in %s are ignored (255, or not "
                "one of the %d classes); %s maps must hold %s", summary.dataset, summary.split, 100 * summary.ignored,
                len(sampled), len(self), summary.label_dir, NUM_CLASSES, summary.label_format, expected,
            )

    def _check_naming(self, values: dict[Path, np.ndarray]) -> None:
        """Warn about sampled label maps holding values that their names rule out: train ids (with 255) in a
        ``_labelIds.png`` file, label ids of 19 and above in a train-id file. Either is read as the wrong classes.

        A train-id map without a single 255 pixel holds only valid label ids, so it cannot be told apart.
        """
        summary = self.summary
        wrong = {path: stored for path, stored in values.items() if _misfits(stored, summary.label_format).size}
        if not wrong:
            return
        shown = "; ".join(
            f"{path.name} holds {stored[:12].tolist()}{' ...' if len(stored) > 12 else ''}: "
            f"{self._fitting_naming(stored)}"
            for path, stored in list(wrong.items())[:_SHOWN_FILES]
        )
        logger.warning(
            "%s %s: %d of the %d sampled label maps in %s hold values that no %s map holds (%s); their classes "
            "would be misread. %s. Rename the files, or convert them, so that name and contents agree",
            summary.dataset, summary.split, len(wrong), len(values), summary.label_dir, summary.label_format,
            _VALID_VALUES[summary.label_format], shown,
        )

    def _fitting_naming(self, stored: np.ndarray) -> str:
        """Which naming these values would fit, with the suffix this data set reads for it."""
        for label_format, kind in ((TRAIN_IDS, "train ids"), (LABEL_IDS, "Cityscapes label ids")):
            if not _misfits(stored, label_format).size:
                suffixes = [s for s in self._label_suffixes if label_format_of(s) == label_format]
                named = f"*{suffixes[0]}" if suffixes else f"a *{label_format}.png name"
                return f"{kind}, which {named} would fit"
        return "neither train ids (0-18, 255) nor Cityscapes label ids (0-33)"

    def _log_summary(self) -> None:
        summary = self.summary
        logger.info("%s", summary)
        if summary.short:
            logger.warning(
                "%s %s: %d image/label pairs found, %d fewer than the release's %d; was a folder not unpacked, not "
                "readable, or left out (see the lines above)? Scores on this split are not comparable with "
                "published ones", summary.dataset, summary.split, summary.images, summary.release - summary.images,
                summary.release,
            )

    def _to_train_ids(self, label: np.ndarray) -> np.ndarray:
        if self._train_ids:
            return np.where(label < NUM_CLASSES, label, IGNORE_INDEX).astype(np.uint8)
        return label_id_to_train_id(label)

    def _check_size(self, pair: LabelledImage, image: np.ndarray, label: np.ndarray) -> None:
        height, width = image.shape[:2]
        if label.shape not in {(height * s, width * s) for s in self._label_scales}:
            allowed = " or ".join(f"{width * s}×{height * s}" for s in self._label_scales)
            raise ValueError(
                f"label {str(pair.label)!r} is {label.shape[1]}×{label.shape[0]} but its image "
                f"{str(pair.image)!r} is {width}×{height}; the label must be {allowed}"
            )


class NightCity(LabelledImageFolder):
    """NightCity, NightCity+ or NightCity-fine, one split; see the module docstring for the layouts.

    ``labels_root`` (NightCity+ only) is the folder of relabelled val label maps, by default
    ``root/NightCity+/label/val``; it is not used for the train split, which NightCity+ shares with NightCity.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        version: str = "nightcity",
        labels_root: str | os.PathLike | None = None,
        transform: Transform | None = None,
    ) -> None:
        root = Path(root)
        check_split(split)
        if version not in VERSIONS:
            raise ValueError(f"unknown NightCity version {version!r}; choose one of {', '.join(VERSIONS)}")
        if labels_root is not None and version != "nightcity+":
            raise ValueError(f"labels_root={str(labels_root)!r} only applies to version='nightcity+', not {version!r}")
        label_scales = (1,)
        if version == "nightcity-fine":
            image_dir, label_dir = _fine_folders(root, split)
            layouts = f"{root}/nightcity-fine/{split}/{{img,lbl}} or {root}/{split}/{{img,lbl}}"
        else:
            image_dir, label_dir = _release_folders(root, split)
            layouts = (
                f"{root}/NightCity-images/images/{split} with {root}/NightCity-label/label/{split}, "
                f"or {root}/images/{split} with {root}/label/{split}"
            )
            if version == "nightcity+" and split == "val":
                label_dir = Path(labels_root) if labels_root is not None else root / "NightCity+" / "label" / "val"
                layouts += "; NightCity+ val labels come from labels_root (default root/NightCity+/label/val)"
                label_scales = (1, 2)  # relabelled at 2048×1024 for the 1024×512 images
        require_folders(image_dir, label_dir, layouts)
        super().__init__(
            image_dir,
            label_dir,
            dataset=version,
            split=split,
            image_suffix=".png",
            label_suffixes=(f"_{LABEL_IDS}.png", f"_{TRAIN_IDS}.png"),
            label_scales=label_scales,
            release=RELEASE.get(version, {}).get(split),
            transform=transform,
        )


_VALID_VALUES = {
    LABEL_IDS: "Cityscapes label ids of the 19 classes (7 road ... 33 bicycle)",
    TRAIN_IDS: "train ids 0-18",
}


def label_format_of(suffix: str) -> str:
    """LABEL_IDS or TRAIN_IDS, from the ending of a label file name (one of ``LABEL_FORMATS``)."""
    for ending, label_format in LABEL_FORMATS.items():
        if suffix.endswith(ending):
            return label_format
    raise ValueError(f"label suffix {suffix!r} must end in one of {', '.join(LABEL_FORMATS)}")


def _misfits(stored: np.ndarray, label_format: str) -> np.ndarray:
    """The stored values that a label map of ``label_format`` never holds."""
    if label_format == TRAIN_IDS:
        return stored[(stored >= NUM_CLASSES) & (stored != IGNORE_INDEX)]
    return stored[stored > MAX_LABEL_ID]


def duplicates_between_splits(train: LabelledImageFolder, val: LabelledImageFolder) -> list[str]:
    """Sorted names found in both data sets (NightCity+'s val holds the train image Dubai_0016)."""
    return sorted(set(train.names) & set(val.names))


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")


def require_folders(image_dir: Path, label_dir: Path, layouts: str) -> None:
    for kind, folder in (("image", image_dir), ("label", label_dir)):
        if not folder.is_dir():
            raise FileNotFoundError(f"{kind} folder {str(folder)!r} does not exist; layouts accepted: {layouts}")


def nightcity_folders(root: Path, split: str, version: str = "nightcity") -> tuple[Path, Path]:
    """The image and label folders of a split in ``version``'s layout (NightCity+ val: its default label folder)."""
    if version == "nightcity-fine":
        return _fine_folders(root, split)
    image_dir, label_dir = _release_folders(root, split)
    if version == "nightcity+" and split == "val":
        label_dir = root / "NightCity+" / "label" / "val"
    return image_dir, label_dir


def _release_folders(root: Path, split: str) -> tuple[Path, Path]:
    """The release's two archives unpacked side by side, or a root holding images/ and label/ directly."""
    if (root / "NightCity-images" / "images").is_dir():
        return root / "NightCity-images" / "images" / split, root / "NightCity-label" / "label" / split
    return root / "images" / split, root / "label" / split


def _fine_folders(root: Path, split: str) -> tuple[Path, Path]:
    base = root / "nightcity-fine" if (root / "nightcity-fine").is_dir() else root
    return base / split / "img", base / split / "lbl"


def _list_files(folder: Path, suffixes: Sequence[str], recursive: bool) -> tuple[list[Path], list[Path]]:
    """Files ending in one of ``suffixes``, and the others, which are logged and skipped.

    Hidden files are skipped too: macOS leaves ``._<name>.png`` resource forks that are not images.
    """
    files = files_below(folder) if recursive else sorted(p for p in folder.iterdir() if p.is_file())
    is_wanted = [p.name.endswith(tuple(suffixes)) and not p.name.startswith(".") for p in files]
    wanted = [p for p, keep in zip(files, is_wanted) if keep]
    skipped = [p for p, keep in zip(files, is_wanted) if not keep]
    if skipped:
        shown = ", ".join(p.name for p in skipped[:_SHOWN_FILES])
        logger.info("skipping %d files in %s that are not *%s: %s", len(skipped), folder, " / *".join(suffixes), shown)
    return wanted, skipped


def _label_files(folder: Path, suffixes: Sequence[str], recursive: bool) -> tuple[str, list[Path], list[Path]]:
    """The first of ``suffixes`` that any file carries, the files carrying it, and the other files."""
    files, skipped = _list_files(folder, suffixes, recursive)
    suffix = next((s for s in suffixes if any(p.name.endswith(s) for p in files)), suffixes[0])
    others = [p for p in files if not p.name.endswith(suffix)]
    return suffix, [p for p in files if p.name.endswith(suffix)], skipped + others


def _by_key(folder: Path, files: list[Path], suffix: str) -> dict[str, Path]:
    """Path below ``folder`` without ``suffix`` (``aachen/aachen_000000_000019``) -> file."""
    return {path.relative_to(folder).as_posix()[: -len(suffix)]: path for path in files}


def _pair(images: dict[str, Path], labels: dict[str, Path], image_form: str, label_form: str) -> list[LabelledImage]:
    unmatched = sorted(
        [images[key] for key in images.keys() - labels.keys()] + [labels[key] for key in labels.keys() - images.keys()]
    )
    if unmatched:
        shown = "\n  ".join(str(path) for path in unmatched[:_SHOWN_FILES])
        raise ValueError(
            f"files without a partner: {len(unmatched)} (images {image_form} pair with labels {label_form}); "
            f"the first {min(len(unmatched), _SHOWN_FILES)}:\n  {shown}"
        )
    return [LabelledImage(name=Path(key).name, image=images[key], label=labels[key]) for key in sorted(images)]
