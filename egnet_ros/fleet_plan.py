"""Which bags a fleet run segments, where each one's output goes, and which process takes which.

An input is a bag (a rosbag2 folder, or a single ``.db3``/``.mcap`` file) or a folder searched for bags. A
folder is a bag when it holds ``metadata.yaml`` or storage files (``.db3``, ``.mcap``, either ``.zstd``
compressed); the search does not descend into a bag, nor into hidden folders or linked folders that are not
bags themselves. Each bag's output mirrors its place under the inputs' common folder (a folder searched
counts from itself, a bag from the folder holding it), so ``drives/day1/a`` and ``drives/day2/b`` given
together land in ``OUT/day1/a`` and ``OUT/day2/b``. The order is the sorted relative paths, the same on every
machine, and the split between processes is a deterministic function of it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from egnet_core.reports.fleet_report import SUMMARY_FILES

from .bag_segment import check_apart
from .bags import BagError

_STORAGE_SUFFIXES = (".db3", ".mcap")


@dataclass(frozen=True)
class FleetBag:
    source: Path  # the input bag: a folder, or a .db3/.mcap file
    relative: PurePosixPath  # its output's place under the output folder (its name, for a single file's stem)
    size: int  # bytes of its files, to balance the processes

    @property
    def name(self) -> str:
        return self.relative.as_posix()


def is_bag(path: Path) -> bool:
    """A rosbag2 folder (``metadata.yaml``, or storage files of a recording never closed) or a storage file."""
    if path.is_file():
        return _is_storage_file(path)
    return path.is_dir() and ((path / "metadata.yaml").is_file()
                              or any(_is_storage_file(entry) for entry in path.iterdir() if entry.is_file()))


def bags_under(folder: Path) -> list[Path]:
    """The bags in ``folder`` and its sub-folders (not in hidden ones, nor inside a bag), sorted."""
    bags = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        if is_bag(entry):
            bags.append(entry)
        elif not entry.is_symlink():  # a linked folder could lead back up the tree
            bags += bags_under(entry)
    return bags


def find_bags(inputs: Sequence[Path], out: Path) -> list[FleetBag]:
    """Every bag of ``inputs``, sorted by its output's relative path; BagError (naming the path) for an input
    that does not exist or holds no bag, an input overlapping ``out``, or two outputs that would collide."""
    if not inputs:
        raise BagError("no input given: name bags or folders of bags to segment")
    roots, found = _inputs(inputs, out)
    common = Path(os.path.commonpath(roots))
    planned: dict[PurePosixPath, FleetBag] = {}
    for bag in found:
        relative = PurePosixPath(bag.relative_to(common).as_posix())
        relative = relative.with_name(relative.stem) if bag.is_file() else relative
        if relative in planned:
            raise BagError(f"bags {str(planned[relative].source)!r} and {str(bag)!r} would both be written to "
                           f"{str(out / relative)!r}; segment them in separate runs or rename one")
        if relative.as_posix() in SUMMARY_FILES:
            raise BagError(f"bag {str(bag)!r} would be written to {str(out / relative)!r}, the fleet summary's "
                           "name; rename it")
        planned[relative] = FleetBag(source=bag, relative=relative, size=_size(bag))
    for relative in planned:
        if outer := next((parent for parent in relative.parents if parent in planned), None):
            raise BagError(f"output {str(out / relative)!r} would lie inside the output {str(out / outer)!r} of "
                           f"{str(planned[outer].source)!r}; segment {str(planned[relative].source)!r} in a "
                           "separate run")
    return [planned[relative] for relative in sorted(planned)]


def share_of(bags: Sequence[FleetBag], rank: int, world_size: int) -> list[FleetBag]:
    """The bags process ``rank`` of ``world_size`` segments: the largest first, each to the process with the
    fewest bytes so far (the lowest rank on a tie), so every process gets about the same work. Every process
    computes the same split from the same sorted list; the share comes back in the list's order."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, {world_size}), got {rank!r}")
    loads = [0] * world_size
    mine = set()
    for index in sorted(range(len(bags)), key=lambda i: (-bags[i].size, i)):
        least = min(range(world_size), key=lambda r: (loads[r], r))
        loads[least] += bags[index].size
        if least == rank:
            mine.add(index)
    return [bag for index, bag in enumerate(bags) if index in mine]


def _inputs(inputs: Sequence[Path], out: Path) -> tuple[list[Path], list[Path]]:
    """The folders the outputs mirror (a folder searched, a bag's parent) and the bags, each recording once."""
    roots, found = [], {}
    for given in inputs:
        path = Path(os.path.abspath(given))
        if not path.exists():
            raise BagError(f"input {str(given)!r} does not exist")
        check_apart(path, out)
        bags = [path] if is_bag(path) else bags_under(path) if path.is_dir() else []
        if not bags:
            what = "is not a .db3 or .mcap file" if path.is_file() else "holds no rosbag2 bag (no folder with " \
                   "metadata.yaml or .db3/.mcap files)"
            raise BagError(f"input {str(given)!r} {what}")
        roots.append(path.parent if is_bag(path) else path)
        for bag in bags:
            check_apart(bag, out)  # also a bag reached through a link
            found.setdefault(bag.resolve(), bag)  # a bag given twice (itself and through its folder) counts once
    # A storage file of a bag folder that is segmented whole is the same recording.
    return roots, [bag for real, bag in found.items() if not (bag.is_file() and real.parent in found)]


def _is_storage_file(path: Path) -> bool:
    return Path(path.name.removesuffix(".zstd")).suffix in _STORAGE_SUFFIXES


def _size(bag: Path) -> int:
    files = [bag] if bag.is_file() else [entry for entry in bag.iterdir() if entry.is_file()]
    return sum(file.stat().st_size for file in files)
