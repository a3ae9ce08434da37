"""Folders as people have them: city folders linked in from other disks, links that loop, unlabelled photos.

pathlib's ``rglob`` does not follow links to folders (before Python 3.13), so a split whose city folders are
links was read as a subset without a word. ``files_below`` follows them, reads each real folder once, and logs
what it skips and why.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from egnet_core.data.imageio import read_rgb

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def files_below(folder: Path) -> list[Path]:
    """Every file below ``folder``, sorted, following links to folders and files.

    A folder reached a second time (a link loop, or two links to one folder) is skipped, as are broken links
    and folders that cannot be read; each skip is a warning naming the path and the reason.
    """
    seen = {_identity(folder): folder}
    files: list[Path] = []

    def unreadable(error: OSError) -> None:
        logger.warning("skipping folder %s: %s", error.filename, error.strerror)

    for parent, folders, names in os.walk(folder, followlinks=True, onerror=unreadable):
        parent = Path(parent)
        folders[:] = [name for name in sorted(folders) if _first_visit(parent / name, seen)]
        for name in names:
            path = parent / name
            if path.is_file():
                files.append(path)
            elif path.is_symlink() and not path.exists():
                logger.warning("skipping %s: it links to %s, which does not exist", path, os.readlink(path))
    return sorted(files)


def _identity(folder: Path) -> tuple[int, int]:
    status = folder.stat()
    return status.st_dev, status.st_ino


def _first_visit(folder: Path, seen: dict[tuple[int, int], Path]) -> bool:
    try:
        identity = _identity(folder)
    except OSError as error:
        logger.warning("skipping folder %s: %s", folder, error.strerror)
        return False
    first = seen.setdefault(identity, folder)
    if first == folder:
        return True
    why = "a link loop" if folder.is_relative_to(first) else "two links to one folder"
    logger.warning("skipping folder %s: it is %s again (%s), whose files are read once", folder, first, why)
    return False


def image_files(folder: Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """The image files below ``folder`` (by suffix, any case), sorted; hidden files (macOS' ``._*``) left out."""
    return [
        path for path in files_below(folder)
        if path.suffix.lower() in suffixes and not path.name.startswith(".")
    ]


class ImageFolder(Dataset):
    """Every image below a folder, for what needs no labels (the exposure histogram); items are H×W×3 RGB."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"image folder {str(self.folder)!r} does not exist")
        self.files = image_files(self.folder)
        if not self.files:
            raise ValueError(f"{str(self.folder)!r} holds no {'/'.join(IMAGE_SUFFIXES)} images")
        logger.info("%d images below %s", len(self.files), self.folder)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> np.ndarray:
        return read_rgb(self.files[index])
